import { describe, expect, test } from "bun:test";
import { checksumSum } from "../lib/net/checksum.ts";
import { tcpSegmentCount, writeTcpSegment } from "../lib/net/tcp_segment.ts";

/** A TCP/IPv4 packet with `options` bytes of TCP options and `data` bytes; flags CWR|ACK|PSH|FIN. */
function bigPacket(data: number, options = 12): Uint8Array {
  const thl = 20 + options;
  const total = 20 + thl + data;
  const p = new Uint8Array(total);
  p.set([0x45, 0, total >> 8, total & 0xff, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
  p.set([198, 51, 100, 10, 192, 0, 2, 80], 12);
  p.set([0x1f, 0x90, 0xc0, 0x01, 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 1, (thl / 4) << 4, 0x99], 20);
  for (let i = 0; i < options; i++) p[40 + i] = 1; // NOPs
  for (let i = 20 + thl; i < total; i++) p[i] = (i * 7) & 0xff;
  return p;
}

const seq = (p: Uint8Array) => new DataView(p.buffer, p.byteOffset).getUint32(24) >>> 0;

describe("tcpSegmentCount() / writeTcpSegment()", () => {
  test("a packet that fits, a fragment or a UDP packet is not cut", () => {
    expect(tcpSegmentCount(bigPacket(1000), 0, 1052, 1460)).toBe(0);
    const frag = bigPacket(5000);
    frag[6] = 0x20;
    expect(tcpSegmentCount(frag, 0, frag.length, 1460)).toBe(0);
    const udp = bigPacket(5000);
    udp[9] = 17;
    expect(tcpSegmentCount(udp, 0, udp.length, 1460)).toBe(0);
  });

  test("cuts a 64 KB TSO packet into valid segments that carry the same bytes in order", () => {
    const p = bigPacket(60_000);
    const headers = 20 + 32;
    const n = tcpSegmentCount(p, 0, p.length, 1460);
    expect(n).toBe(Math.ceil(60_000 / (1460 - headers)));
    const out = new Uint8Array(2000);
    const data: number[] = [];
    let expectedSeq = seq(p);
    for (let i = 0; i < n; i++) {
      const len = writeTcpSegment(p, 0, p.length, 1460, i, out, 0);
      const s = out.subarray(0, len);
      expect(len).toBeLessThanOrEqual(1460);
      expect((s[2]! << 8) | s[3]!).toBe(len);
      expect(checksumSum(s, 0, 20)).toBe(0xffff); // IPv4 header checksum verifies
      const pseudo = checksumSum(s, 12, 8, 6 + len - 20);
      expect(checksumSum(s, 20, len - 20, pseudo)).toBe(0xffff); // TCP checksum verifies
      expect(seq(s)).toBe(expectedSeq);
      expect([...s.subarray(40, 52)]).toEqual([...p.subarray(40, 52)]); // options copied
      const flags = s[33]!;
      expect((flags & 0x01) !== 0).toBe(i === n - 1); // FIN last only
      expect((flags & 0x08) !== 0).toBe(i === n - 1); // PSH last only
      expect((flags & 0x80) !== 0).toBe(i === 0); // CWR first only
      expect(flags & 0x10).toBe(0x10); // ACK on all
      for (const b of s.subarray(headers)) data.push(b);
      expectedSeq = (expectedSeq + len - headers) >>> 0; // wraps past 2^32
    }
    expect(data).toEqual([...p.subarray(headers)]);
  });
});
