/**
 * Software GSO (lib/net/gso.ts) and GRO (lib/tunnel/gro.ts): TCP super-packets cut into
 * segments as the kernel's tcp_gso_segment would, and segments coalesced back only when the
 * kernel's tcp_gro_receive would. Checksums are verified with the test's own RFC 1071 sum
 * (test/helpers/packets.ts), not the library's.
 */
import { describe, expect, test } from "bun:test";
import { checksumSum, internetChecksum as libChecksum } from "../lib/net/checksum.ts";
import { GsoError, tcpSegmentIPv4 } from "../lib/net/gso.ts";
import { type GroEmit, TcpCoalescer } from "../lib/tunnel/gro.ts";
import { internetChecksum } from "./helpers/packets.ts";
import { ACK, CWR, FIN, PSH, SYN, tcp, tcpChecksumOf, u32 } from "./helpers/tcp_packets.ts";

function segment(p: Uint8Array, mss: number): Uint8Array[] {
  const stride = 2048;
  const out = new Uint8Array(64 * stride);
  const sizes = new Int32Array(64);
  const n = tcpSegmentIPv4(p, 0, p.length, mss, out, 0, stride, sizes);
  if (n < 0) throw new Error(`tcpSegmentIPv4: ${n}`);
  return Array.from({ length: n }, (_, i) => out.slice(i * stride, i * stride + sizes[i]!));
}

interface Emitted {
  packet: Uint8Array;
  gsoSize: number;
  segments: number;
}

function coalescer(opts?: { trains?: number; headroom?: number }) {
  const emitted: Emitted[] = [];
  const emit: GroEmit = (buf, off, len, gsoSize, segments) =>
    emitted.push({ packet: buf.slice(off, off + len), gsoSize, segments });
  return { gro: new TcpCoalescer(emit, opts), emitted };
}

describe("checksum over 32-bit words (RFC 1071 §2(B),(C)), what GSO/GRO sum most", () => {
  test("equals the test's byte-wise sum at every alignment, odd and even lengths, with an initial sum", () => {
    const backing = new Uint8Array(70000 + 16);
    let x = 12345;
    for (let i = 0; i < backing.length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      backing[i] = x >>> 24;
    }
    // Views at every offset mod 4 inside a larger buffer, so the word alignment varies.
    for (const viewAt of [0, 1, 2, 3, 5]) {
      const view = backing.subarray(viewAt);
      for (const offset of [0, 1, 2, 3, 6, 7]) {
        for (const length of [127, 128, 129, 130, 131, 1000, 1001, 1499, 65000, 65535]) {
          expect(libChecksum(view, offset, length)).toBe(
            internetChecksum(view, offset, offset + length),
          );
        }
      }
    }
    // An initial (pseudo-header) sum is folded in the same way as with the byte-wise loop.
    const ref = new Uint8Array(4 + 1001);
    ref.set([0x12, 0x34, 0xab, 0xcd], 0);
    ref.set(backing.subarray(3, 1004), 4);
    expect(checksumSum(backing, 3, 1001, 0x1234 + 0xabcd)).toBe(checksumSum(ref, 0, ref.length));
    expect((~checksumSum(backing, 3, 1001, 0x1234 + 0xabcd) & 0xffff) >>> 0).toBe(
      internetChecksum(ref, 0, ref.length),
    );
  });
});

describe("GSO: tcpSegmentIPv4", () => {
  test("cuts a 64 KiB super-packet like the kernel: lengths, ids, seq, flags, both checksums", () => {
    const payload = 65535 - 52;
    const sp = tcp({ payload, flags: ACK | PSH | CWR | FIN, id: 0xfffe });
    const segs = segment(sp, 1448);
    expect(segs.length).toBe(Math.ceil(payload / 1448));
    let offset = 0;
    segs.forEach((s, i) => {
      const last = i === segs.length - 1;
      const size = last ? payload - 1448 * (segs.length - 1) : 1448;
      expect((s[2]! << 8) | s[3]!).toBe(52 + size);
      expect(s.length).toBe(52 + size);
      expect((s[4]! << 8) | s[5]!).toBe((0xfffe + i) & 0xffff); // ids increment and wrap
      expect(internetChecksum(s, 0, 20)).toBe(0);
      expect(tcpChecksumOf(s)).toBe(0);
      expect(u32(s, 24)).toBe((0xfffff000 + offset) >>> 0);
      expect(s[33]).toBe((i === 0 ? CWR : 0) | ACK | (last ? PSH | FIN : 0));
      expect([...s.subarray(20 + 20, 52)]).toEqual([...sp.subarray(40, 52)]); // options copied
      expect([...s.subarray(52)]).toEqual([...sp.subarray(52 + offset, 52 + offset + size)]);
      offset += size;
    });
    expect(offset).toBe(payload);
  });

  test("ignores what the super-packet's TCP checksum field held (CHECKSUM_PARTIAL)", () => {
    const sp = tcp({ payload: 5000, seed: 3 });
    sp[36] = 0x12; // a pseudo-header sum, as a TUN with IFF_VNET_HDR hands it over
    sp[37] = 0x34;
    for (const s of segment(sp, 1000)) expect(tcpChecksumOf(s)).toBe(0);
  });

  test("a payload that fits gives one segment; refusals are negative codes", () => {
    const small = tcp({ payload: 100 });
    const one = segment(small, 1448);
    expect(one.length).toBe(1);
    expect([...one[0]!]).toEqual([...small]);
    const sizes = new Int32Array(4);
    const out = new Uint8Array(8192);
    const udp = small.slice();
    udp[9] = 17;
    expect(tcpSegmentIPv4(udp, 0, udp.length, 1448, out, 0, 2048, sizes)).toBe(GsoError.NOT_TCP);
    expect(tcpSegmentIPv4(small, 0, 30, 1448, out, 0, 2048, sizes)).toBe(GsoError.MALFORMED);
    const big = tcp({ payload: 10000 });
    expect(tcpSegmentIPv4(big, 0, big.length, 1448, out, 0, 2048, sizes)).toBe(GsoError.NO_ROOM);
    expect(tcpSegmentIPv4(big, 0, big.length, 0, out, 0, 2048, sizes)).toBe(GsoError.NO_ROOM);
  });
});

describe("GRO: TcpCoalescer", () => {
  test("segments read into the coalescer's own buffers (copied with copyWithin) coalesce as from any other buffer", () => {
    const original = tcp({ payload: 30 * 1400 + 77, flags: ACK | PSH });
    const segs = segment(original, 1400);
    const emitted: Emitted[] = [];
    const gro = new TcpCoalescer(
      (buf, off, len, gsoSize, segments) =>
        emitted.push({ packet: buf.slice(off, off + len), gsoSize, segments }),
      { headroom: 10, buffers: { count: 4, bytes: 2048 } },
    );
    expect(gro.buffers.length).toBe(4);
    for (let i = 0; i < segs.length; i++) {
      const b = gro.buffers[i % 4]!; // reused, as a loop reuses its read buffers
      b.fill(0xee);
      b.set(segs[i]!, 10);
      gro.add(b, 10, segs[i]!.length);
    }
    gro.flush();
    expect(emitted.length).toBe(1);
    expect(emitted[0]!.segments).toBe(31);
    expect(Buffer.from(emitted[0]!.packet).equals(Buffer.from(original))).toBe(true);
  });

  test("round trip: segment then coalesce gives back the original, byte for byte", () => {
    for (const [payload, mss] of [
      [65535 - 52, 1448],
      [30001, 1447], // odd segment size: payload sums start at odd bytes
      [2897, 1448],
    ] as const) {
      const sp = tcp({ payload, flags: ACK | PSH, seed: payload });
      const { gro, emitted } = coalescer();
      for (const s of segment(sp, mss)) gro.add(s, 0, s.length);
      gro.flush();
      expect(emitted.length).toBe(1);
      expect(emitted[0]!.gsoSize).toBe(mss);
      expect(emitted[0]!.segments).toBe(Math.ceil(payload / mss));
      expect(emitted[0]!.packet.length).toBe(sp.length);
      expect(internetChecksum(emitted[0]!.packet, 0, 20)).toBe(0);
      expect(tcpChecksumOf(emitted[0]!.packet)).toBe(0);
      expect(Buffer.from(emitted[0]!.packet).equals(Buffer.from(sp))).toBe(true);
    }
  });

  test("a segment with a wrong TCP checksum is passed on unchanged and ends the train", () => {
    const segs = segment(tcp({ payload: 6000 }), 1000);
    segs[3]![60] = segs[3]![60]! ^ 0xff; // corrupt payload: checksum no longer verifies
    const { gro, emitted } = coalescer();
    for (const s of segs) gro.add(s, 0, s.length);
    gro.flush();
    expect(emitted.map((e) => e.segments)).toEqual([3, 1, 2]);
    expect(Buffer.from(emitted[1]!.packet).equals(Buffer.from(segs[3]!))).toBe(true);
    expect(tcpChecksumOf(emitted[1]!.packet)).not.toBe(0); // not repaired
    for (const e of [emitted[0]!, emitted[2]!]) expect(tcpChecksumOf(e.packet)).toBe(0);
  });

  test("out of order, a gap in ids, another TOS (ECN CE) or a SYN never join a train", () => {
    const segs = segment(tcp({ payload: 4000 }), 1000);
    const run = (packets: Uint8Array[]) => {
      const { gro, emitted } = coalescer();
      for (const s of packets) gro.add(s, 0, s.length);
      gro.flush();
      return emitted;
    };
    // Reordered 0,2,1,3: no segment follows the one before it, so none joins another.
    const reordered = run([segs[0]!, segs[2]!, segs[1]!, segs[3]!]);
    expect(reordered.map((e) => e.segments)).toEqual([1, 1, 1, 1]);
    expect(u32(reordered[1]!.packet, 24)).toBe(u32(segs[2]!, 24));
    // CE on the third segment (TOS differs; checksums rewritten so only the TOS differs).
    const ce = segs[2]!.slice();
    ce[1] = 0x03;
    ce[10] = 0;
    ce[11] = 0;
    const s = internetChecksum(ce, 0, 20);
    ce[10] = s >>> 8;
    ce[11] = s & 0xff;
    expect(run([segs[0]!, segs[1]!, ce, segs[3]!]).map((e) => e.segments)).toEqual([2, 1, 1]);
    // Identification jumps (not consecutive): separate.
    const idGap = tcp({ payload: 1000, seq: u32(segs[1]!, 24), id: 0x2000 });
    expect(run([segs[0]!, idGap]).map((e) => e.segments)).toEqual([1, 1]);
    // A SYN of the same flow flushes the train first, then passes.
    const syn = tcp({ payload: 0, flags: SYN });
    const withSyn = run([segs[0]!, segs[1]!, syn]);
    expect(withSyn.map((e) => e.segments)).toEqual([2, 1]);
    expect(withSyn[1]!.packet[33]).toBe(SYN);
  });

  test("a non-first fragment (data where the ports were) emits the trains to its destination first", () => {
    const segs = segment(tcp({ payload: 2000, df: false }), 1000);
    const elsewhere = segment(tcp({ payload: 2000, dst: [192, 0, 2, 81], seed: 4 }), 1000);
    // The rest of another segment of the flow, from byte 512 of its IPv4 payload on.
    const whole = tcp({ payload: 1000, df: false, seq: 0x90000, id: 0x4444, seed: 9 });
    const rest = new Uint8Array(whole.length - 512);
    rest.set(whole.subarray(0, 20));
    rest.set(whole.subarray(20 + 512), 20);
    rest[2] = rest.length >>> 8;
    rest[3] = rest.length & 0xff;
    rest[6] = 0;
    rest[7] = 512 / 8;
    rest[10] = 0;
    rest[11] = 0;
    const ipSum = internetChecksum(rest, 0, 20);
    rest[10] = ipSum >>> 8;
    rest[11] = ipSum & 0xff;
    const { gro, emitted } = coalescer();
    for (const s of [...segs, ...elsewhere, rest]) gro.add(s, 0, s.length);
    // The flow's train went before the fragment; the train to another host is still held.
    expect(emitted.map((e) => e.segments)).toEqual([2, 1]);
    expect(Buffer.from(emitted[1]!.packet).equals(Buffer.from(rest))).toBe(true);
    gro.flush();
    expect(emitted.map((e) => e.segments)).toEqual([2, 1, 2]);
  });

  test("FIN on the last segment: the train ends before it, the order within the flow is kept", () => {
    const sp = tcp({ payload: 3000, flags: ACK | FIN });
    const segs = segment(sp, 1000);
    const { gro, emitted } = coalescer();
    for (const s of segs) gro.add(s, 0, s.length);
    gro.flush();
    expect(emitted.map((e) => e.segments)).toEqual([2, 1]);
    expect(emitted[1]!.packet[33]).toBe(ACK | FIN);
    expect(u32(emitted[1]!.packet, 24)).toBe(u32(segs[2]!, 24));
  });

  test("interleaved flows each coalesce; with one train slot, flows flush each other in order", () => {
    const a = segment(tcp({ payload: 3000, srcPort: 1111, seed: 1 }), 1000);
    const b = segment(tcp({ payload: 3000, srcPort: 2222, seed: 2 }), 1000);
    const interleaved = [a[0]!, b[0]!, a[1]!, b[1]!, a[2]!, b[2]!];
    const two = coalescer();
    for (const s of interleaved) two.gro.add(s, 0, s.length);
    two.gro.flush();
    expect(two.emitted.map((e) => e.segments)).toEqual([3, 3]);
    const one = coalescer({ trains: 1 });
    for (const s of interleaved) one.gro.add(s, 0, s.length);
    one.gro.flush();
    expect(one.emitted.length).toBe(6);
    // Per flow the sequence numbers still increase.
    for (const port of [1111, 2222]) {
      const seqs = one.emitted
        .filter((e) => ((e.packet[20]! << 8) | e.packet[21]!) === port)
        .map((e) => u32(e.packet, 24));
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      expect(seqs.length).toBe(3);
    }
  });

  test("non-TCP packets pass through at once; a train never exceeds 65,535 bytes", () => {
    const { gro, emitted } = coalescer();
    const udp = tcp({ payload: 50 });
    udp[9] = 17;
    gro.add(udp, 0, udp.length);
    expect(emitted.length).toBe(1);
    const segs = segment(tcp({ payload: 65535 - 52 }), 1448);
    const more = tcp({
      payload: 1448,
      seq: (0xfffff000 + 65535 - 52) >>> 0,
      id: 0x1234 + segs.length,
    });
    // The last of `segs` is shorter than 1448, so it closes the train; use full-size ones only.
    const full = segs.slice(0, -1);
    for (const s of full) gro.add(s, 0, s.length);
    gro.add(more, 0, more.length); // does not follow: the seq jumps past the short last segment
    gro.flush();
    for (const e of emitted) expect(e.packet.length).toBeLessThanOrEqual(65535);
    expect(emitted.slice(1).reduce((n, e) => n + e.segments, 0)).toBe(full.length + 1);
  });
});
