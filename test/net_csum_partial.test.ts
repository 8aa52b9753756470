import { describe, expect, test } from "bun:test";
import { checksumSum } from "../lib/net/checksum.ts";
import { completePartialChecksum } from "../lib/net/csum_partial.ts";

/** An IPv4 packet (20-byte header) carrying `l4` with protocol `proto`, its L4 checksum finished. */
function packet(proto: number, l4: Uint8Array): Uint8Array {
  const total = 20 + l4.length;
  const p = new Uint8Array(total);
  p.set([0x45, 0, total >> 8, total & 0xff, 0, 1, 0x40, 0, 64, proto, 0, 0]);
  p.set([198, 51, 100, 10, 192, 0, 2, 80], 12);
  p.set(l4, 20);
  const field = 20 + (proto === 6 ? 16 : 6);
  p[field] = 0;
  p[field + 1] = 0;
  let check = ~checksumSum(p, 20, l4.length, pseudo(p)) & 0xffff;
  if (check === 0 && proto === 17) check = 0xffff;
  p[field] = check >> 8;
  p[field + 1] = check & 0xff;
  return p;
}

function pseudo(p: Uint8Array): number {
  return checksumSum(p, 12, 8, p[9]! + (p.length - 20));
}

/** What a Linux sender with offload puts on the wire: the field holds the pseudo-header sum. */
function partial(p: Uint8Array): Uint8Array {
  const q = p.slice();
  const field = 20 + (q[9] === 6 ? 16 : 6);
  const ps = pseudo(q);
  q[field] = ps >> 8;
  q[field + 1] = ps & 0xff;
  return q;
}

function l4(length: number, seed: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  if (length >= 20) b[12] = 0x50; // TCP data offset 5
  return b;
}

describe("completePartialChecksum()", () => {
  for (const [name, proto, len] of [
    ["TCP, even length", 6, 1400],
    ["TCP, odd length", 6, 1001],
    ["UDP", 17, 513],
    ["UDP, header only", 17, 8],
  ] as const) {
    test(`finishes a CHECKSUM_PARTIAL ${name} packet to the checksum a NIC would write`, () => {
      for (let seed = 0; seed < 50; seed++) {
        const full = packet(proto, l4(len, seed));
        const q = partial(full);
        if (q.every((b, i) => b === full[i])) continue; // the rare payload where they agree
        expect(completePartialChecksum(q, 0, q.length)).toBe(true);
        expect([...q]).toEqual([...full]);
      }
    });
  }

  test("leaves finished packets alone, correct or corrupt", () => {
    for (let seed = 0; seed < 50; seed++) {
      const full = packet(6, l4(600, seed));
      const copy = full.slice();
      expect(completePartialChecksum(copy, 0, copy.length)).toBe(false);
      expect([...copy]).toEqual([...full]);
      copy[100] = copy[100]! ^ 0xff; // corrupted in flight
      const corrupt = copy.slice();
      expect(completePartialChecksum(copy, 0, copy.length)).toBe(false);
      expect([...copy]).toEqual([...corrupt]);
    }
  });

  test("never touches UDP without a checksum, fragments, or other protocols", () => {
    const udp = packet(17, l4(100, 1));
    udp[26] = 0;
    udp[27] = 0;
    expect(completePartialChecksum(udp, 0, udp.length)).toBe(false);
    const frag = partial(packet(6, l4(200, 2)));
    frag[6] = 0x20; // MF
    expect(completePartialChecksum(frag, 0, frag.length)).toBe(false);
    const icmp = partial(packet(6, l4(64, 3)));
    icmp[9] = 1;
    expect(completePartialChecksum(icmp, 0, icmp.length)).toBe(false);
  });

  test("works at an offset into a larger buffer", () => {
    const full = packet(6, l4(300, 9));
    const buf = new Uint8Array(40 + full.length);
    buf.set(partial(full), 40);
    expect(completePartialChecksum(buf, 40, full.length)).toBe(true);
    expect([...buf.subarray(40)]).toEqual([...full]);
  });
});
