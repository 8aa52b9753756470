/**
 * UDP GRO (lib/tunnel/gro_udp.ts) and the kernel's cut of a UDP super-datagram
 * (lib/net/udp_segment.ts), without root: which datagrams join a train (the kernel's
 * udp_gro_receive_segment / inet_gro_receive rules), what a super-datagram carries, and that
 * cutting it gives back the datagrams byte for byte, in order.
 */
import { describe, expect, test } from "bun:test";
import { completePartialChecksum } from "../lib/net/csum_partial.ts";
import type { GroEmit } from "../lib/tunnel/gro.ts";
import { UDP_GRO_MAX_SEGMENTS, UdpCoalescer, UdpHint } from "../lib/tunnel/gro_udp.ts";
import { internetChecksum } from "./helpers/packets.ts";
import {
  partialUdp,
  type UdpSpec,
  udp,
  udpChecksumOf,
  udpCut,
  udpTrain,
} from "./helpers/udp_packets.ts";

interface Emitted {
  packet: Uint8Array;
  gsoSize: number;
  segments: number;
  partial: boolean;
}

function coalescer(opts: ConstructorParameters<typeof UdpCoalescer>[1] = {}) {
  const emitted: Emitted[] = [];
  const emit: GroEmit = (buf, off, len, gsoSize, segments, partial) =>
    emitted.push({ packet: buf.slice(off, off + len), gsoSize, segments, partial });
  return { gro: new UdpCoalescer(emit, opts), emitted };
}

/** What the receiver gets from the emitted packets: super-datagrams cut as the kernel cuts. */
function delivered(emitted: Emitted[]): Uint8Array[] {
  return emitted.flatMap((e) => (e.gsoSize > 0 ? udpCut(e.packet, e.gsoSize) : [e.packet]));
}

const hex = (ps: Uint8Array[]) => ps.map((p) => Buffer.from(p).toString("hex"));

function offerAll(gro: UdpCoalescer, packets: Uint8Array[]): void {
  for (const p of packets) gro.add(p, 0, p.length);
  gro.flush();
}

const FLOW: UdpSpec = { payload: 64 };

describe("UDP GSO cut (lib/net/udp_segment.ts)", () => {
  test("every datagram gets its own length, id + i, IPv4 and UDP checksums; the last the rest", () => {
    const { gro, emitted } = coalescer();
    const train = [...udpTrain(4, { payload: 300 }), udp({ payload: 120, id: 0x2004 })];
    offerAll(gro, train);
    // The coalescer keeps the shorter one apart; as a kernel sender's UDP_SEGMENT packet has
    // it, it is put at the end by hand.
    expect(emitted.map((e) => e.segments)).toEqual([4, 1]);
    const four = emitted[0]!.packet;
    const whole = new Uint8Array(four.length + 120);
    whole.set(four);
    whole.set(train[4]!.subarray(28), four.length);
    whole[2] = whole.length >>> 8;
    whole[3] = whole.length & 0xff;
    const cut = udpCut(whole, 300);
    expect(cut.map((p) => p.length)).toEqual([328, 328, 328, 328, 148]);
    for (const p of cut) {
      expect(internetChecksum(p, 0, 20)).toBe(0);
      expect(udpChecksumOf(p)).toBe(0);
    }
    expect(cut.map((p) => (p[4]! << 8) | p[5]!)).toEqual([0x2000, 0x2001, 0x2002, 0x2003, 0x2004]);
  });
});

describe("UDP GRO: UdpCoalescer", () => {
  test("a run of one flow becomes one super-datagram (partial checksum) that cuts back byte for byte", () => {
    const { gro, emitted } = coalescer();
    const train = udpTrain(20, FLOW);
    offerAll(gro, train);
    expect(emitted.length).toBe(1);
    const e = emitted[0]!;
    expect(e.gsoSize).toBe(64);
    expect(e.segments).toBe(20);
    expect(e.partial).toBe(true);
    expect(e.packet.length).toBe(28 + 20 * 64);
    expect(internetChecksum(e.packet, 0, 20)).toBe(0);
    expect((e.packet[24]! << 8) | e.packet[25]!).toBe(8 + 20 * 64); // UDP length of the whole
    // The checksum field holds the pseudo-header sum only (the kernel finishes each datagram).
    const pseudo =
      17 +
      8 +
      20 * 64 +
      ((198 << 8) | 51) +
      ((100 << 8) | 10) +
      ((203 << 8) | 0) +
      ((113 << 8) | 80);
    const folded = (pseudo & 0xffff) + (pseudo >>> 16);
    expect((e.packet[26]! << 8) | e.packet[27]!).toBe(folded);
    expect(hex(delivered(emitted))).toEqual(hex(train));
    expect(gro.stats).toEqual({ merged: 19, superPackets: 1, single: 0 });
  });

  test("a shorter or a longer datagram starts a new train; a lone one goes untouched", () => {
    const { gro, emitted } = coalescer();
    const ps = [
      udp({ payload: 100, id: 1 }),
      udp({ payload: 100, id: 2 }),
      udp({ payload: 40, id: 3 }), // shorter: starts its own (it must not share the fate of 100s)
      udp({ payload: 40, id: 4 }), // joins the 40s
      udp({ payload: 200, id: 5 }), // longer than 40: cannot join, starts its own
    ];
    offerAll(gro, ps);
    expect(emitted.map((e) => [e.gsoSize, e.segments])).toEqual([
      [100, 2],
      [40, 2],
      [0, 1],
    ]);
    expect(hex(delivered(emitted))).toEqual(hex(ps));
    // A train of one is emitted as it came: its own checksum, not marked partial.
    expect(emitted[2]!.partial).toBe(false);
    expect(Buffer.from(emitted[2]!.packet).equals(Buffer.from(ps[4]!))).toBe(true);
  });

  test("a wrong checksum is passed on as it came (never repaired) and splits the run, in order", () => {
    const { gro, emitted } = coalescer();
    const ps = udpTrain(6, FLOW);
    ps[3] = udp({ ...FLOW, id: 0x2003, seed: 6, checksum: "bad" });
    offerAll(gro, ps);
    expect(emitted.map((e) => e.segments)).toEqual([3, 1, 2]);
    expect(emitted[1]!.gsoSize).toBe(0);
    expect(udpChecksumOf(emitted[1]!.packet)).not.toBe(0); // still wrong: the receiver drops it
    expect(hex(delivered(emitted))).toEqual(hex(ps));
  });

  test("no checksum (zero), IPv4 options, a wrong header checksum or padding never join", () => {
    const { gro, emitted } = coalescer();
    const zero = udp({ ...FLOW, id: 0x2002, checksum: "zero" });
    const badIp = udp({ ...FLOW, id: 0x2003 });
    badIp[10] = badIp[10]! ^ 0xff;
    const padded = new Uint8Array(28 + 64 + 4);
    padded.set(udp({ ...FLOW, id: 0x2004 }));
    // IPv4 total length covers 4 bytes more than the UDP length: padding (kernel: flush).
    padded[3] = padded.length & 0xff;
    padded[10] = 0;
    padded[11] = 0;
    const c = internetChecksum(padded, 0, 20);
    padded[10] = c >>> 8;
    padded[11] = c & 0xff;
    // IPv4 options (4 NOPs): the header is 24 bytes.
    const plain = udp({ ...FLOW, id: 0x2005 });
    const options = new Uint8Array(plain.length + 4);
    options.set(plain.subarray(0, 20));
    options.set([1, 1, 1, 1], 20);
    options.set(plain.subarray(20), 24);
    options[0] = 0x46;
    options[3] = options.length & 0xff;
    options[10] = 0;
    options[11] = 0;
    const o = internetChecksum(options, 0, 24);
    options[10] = o >>> 8;
    options[11] = o & 0xff;
    const ps = [
      udp({ ...FLOW, id: 0x2000 }),
      udp({ ...FLOW, id: 0x2001 }),
      zero,
      badIp,
      padded,
      options,
    ];
    offerAll(gro, ps);
    expect(emitted.map((e) => e.segments)).toEqual([2, 1, 1, 1, 1]);
    expect(hex(emitted.slice(1).map((e) => e.packet))).toEqual(hex([zero, badIp, padded, options]));
  });

  test("another TOS (ECN CE), TTL or DF, or a gap in ids starts a new train; so does a repeated id", () => {
    const cases: [string, Partial<UdpSpec>][] = [
      ["tos", { tos: 0x03 }],
      ["ttl", { ttl: 63 }],
      ["df", { df: false }],
      ["id gap", { id: 0x2005 }],
    ];
    for (const [name, change] of cases) {
      const { gro, emitted } = coalescer();
      const ps = [
        udp({ ...FLOW, id: 0x2000 }),
        udp({ ...FLOW, id: 0x2001 }),
        udp({ ...FLOW, id: 0x2002, ...change }),
      ];
      offerAll(gro, ps);
      expect([name, emitted.map((e) => e.segments)]).toEqual([name, [2, 1]]);
      expect(hex(delivered(emitted))).toEqual(hex(ps));
    }
    // DF set and the same id every time (an unconnected Linux socket sends 0): the kernel's cut
    // would number them 7, 8, 9, so they go as they came.
    const { gro, emitted } = coalescer();
    const same = [udp({ ...FLOW, id: 7 }), udp({ ...FLOW, id: 7 }), udp({ ...FLOW, id: 7 })];
    offerAll(gro, same);
    expect(emitted.map((e) => e.segments)).toEqual([1, 1, 1]);
    expect(hex(delivered(emitted))).toEqual(hex(same));
  });

  test("a fragment is never coalesced, and emits the held train between its addresses first", () => {
    const { gro, emitted } = coalescer();
    const other = udpTrain(2, { ...FLOW, dst: [203, 0, 113, 81] });
    const first = udp({ ...FLOW, id: 0x3000, mf: true, df: false });
    // Another flow first, then two of ours, then a first fragment of ours (same addresses).
    const ps = [other[0]!, ...udpTrain(2, FLOW), first, other[1]!];
    for (const p of ps) gro.add(p, 0, p.length);
    // Our train went out before the fragment; the other flow's train is still held.
    expect(emitted.map((e) => e.segments)).toEqual([2, 1]);
    expect(Buffer.from(emitted[1]!.packet).equals(Buffer.from(first))).toBe(true);
    gro.flush();
    expect(emitted.map((e) => e.segments)).toEqual([2, 1, 2]);
  });

  test("interleaved flows coalesce each; one train slot: flows flush each other, in order per flow", () => {
    const a = udpTrain(4, { ...FLOW, srcPort: 1000 });
    const b = udpTrain(4, { ...FLOW, srcPort: 1001 });
    const mixed = [a[0]!, b[0]!, a[1]!, b[1]!, a[2]!, b[2]!, a[3]!, b[3]!];
    const two = coalescer();
    offerAll(two.gro, mixed);
    expect(two.emitted.map((e) => e.segments)).toEqual([4, 4]);
    const port = (p: Uint8Array) => (p[20]! << 8) | p[21]!;
    const got = delivered(two.emitted);
    expect(hex(got.filter((p) => port(p) === 1000))).toEqual(hex(a));
    expect(hex(got.filter((p) => port(p) === 1001))).toEqual(hex(b));
    const one = coalescer({ trains: 1 });
    offerAll(one.gro, mixed);
    expect(one.emitted.length).toBe(8);
    expect(hex(delivered(one.emitted))).toEqual(hex(mixed));
  });

  test(`a train holds at most ${UDP_GRO_MAX_SEGMENTS} datagrams and 65,535 bytes`, () => {
    const many = coalescer();
    const small = udpTrain(UDP_GRO_MAX_SEGMENTS + 6, { payload: 16 });
    offerAll(many.gro, small);
    expect(many.emitted.map((e) => e.segments)).toEqual([UDP_GRO_MAX_SEGMENTS, 6]);
    expect(hex(delivered(many.emitted))).toEqual(hex(small));
    const big = coalescer();
    const large = udpTrain(10, { payload: 8000, df: false });
    offerAll(big.gro, large);
    expect(big.emitted.map((e) => e.segments)).toEqual([8, 2]);
    for (const e of big.emitted) expect(e.packet.length).toBeLessThanOrEqual(65535);
    expect(hex(delivered(big.emitted))).toEqual(hex(large));
  });

  test("datagrams in buffers of the trains' own ArrayBuffer (memmove) coalesce alike", () => {
    const arena = new Uint8Array(UdpCoalescer.bytes(2, 10) + 4 * 2048);
    const emitted: Emitted[] = [];
    const gro = new UdpCoalescer(
      (buf, off, len, gsoSize, segments, partial) =>
        emitted.push({ packet: buf.slice(off, off + len), gsoSize, segments, partial }),
      { trains: 2, headroom: 10, memory: arena.subarray(0, UdpCoalescer.bytes(2, 10)) },
    );
    const train = udpTrain(4, FLOW);
    for (const [i, p] of train.entries()) {
      const b = arena.subarray(
        UdpCoalescer.bytes(2, 10) + i * 2048,
        UdpCoalescer.bytes(2, 10) + (i + 1) * 2048,
      );
      b.set(p, 10);
      gro.add(b, 10, p.length);
    }
    gro.flush();
    expect(emitted.map((e) => e.segments)).toEqual([4]);
    expect(hex(delivered(emitted))).toEqual(hex(train));
    expect(() => new UdpCoalescer(() => {}, { trains: 2, memory: new Uint8Array(100) })).toThrow(
      /memory/,
    );
  });
});

describe("UDP GRO: datagrams with partial checksums (UdpHint.UDP_CHECKSUM_PARTIAL)", () => {
  const offerPartial = (
    gro: UdpCoalescer,
    ps: Uint8Array[],
    hints: number = UdpHint.UDP_CHECKSUM_PARTIAL,
  ) => {
    for (const p of ps) gro.add(p, 0, p.length, hints);
    gro.flush();
  };

  test("a run joins one super-datagram; cut, each datagram carries the checksum its sender's NIC would have", () => {
    const { gro, emitted } = coalescer();
    const finished = udpTrain(12, FLOW);
    offerPartial(gro, finished.map(partialUdp));
    expect(emitted.map((e) => [e.gsoSize, e.segments, e.partial])).toEqual([[64, 12, true]]);
    expect(hex(delivered(emitted))).toEqual(hex(finished));
  });

  test("a datagram alone in its train leaves completed, not partial", () => {
    const { gro, emitted } = coalescer();
    const finished = udp({ ...FLOW, id: 0x2000 });
    offerPartial(gro, [partialUdp(finished)]);
    expect(emitted.map((e) => [e.gsoSize, e.partial])).toEqual([[0, false]]);
    expect(udpChecksumOf(emitted[0]!.packet)).toBe(0);
    expect(hex([emitted[0]!.packet])).toEqual(hex([finished]));
  });

  test("one that cannot join (padding) leaves completed; partial and finished ones of a flow share a train", () => {
    const { gro, emitted } = coalescer();
    const finished = udpTrain(6, FLOW);
    // IPv4 total length 4 bytes beyond the UDP length (padding): never coalesced.
    const padded = new Uint8Array(28 + 64 + 4);
    padded.set(udp({ ...FLOW, id: 0x2006 }));
    padded[3] = padded.length & 0xff;
    padded[10] = 0;
    padded[11] = 0;
    const ipSum = internetChecksum(padded, 0, 20);
    padded[10] = ipSum >>> 8;
    padded[11] = ipSum & 0xff;
    const paddedPartial = padded.slice();
    let s = 17 + (padded.length - 20);
    for (let k = 12; k < 20; k += 2) s += (padded[k]! << 8) | padded[k + 1]!;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    paddedPartial[26] = s >>> 8;
    paddedPartial[27] = s & 0xff;
    const completed = paddedPartial.slice(); // (the coalescer completes the offered buffer)
    const ps = finished.map((p, i) => (i % 2 === 0 ? partialUdp(p) : p));
    for (const [i, p] of ps.entries())
      gro.add(p, 0, p.length, i % 2 === 0 ? UdpHint.UDP_CHECKSUM_PARTIAL : 0);
    gro.add(paddedPartial, 0, paddedPartial.length, UdpHint.UDP_CHECKSUM_PARTIAL);
    gro.flush();
    expect(emitted.map((e) => e.segments)).toEqual([6, 1]);
    expect(hex(delivered(emitted).slice(0, 6))).toEqual(hex(finished));
    // Completed as the decapsulating loop completed every datagram before (over the IPv4
    // payload, lib/net/csum_partial.ts).
    expect(completePartialChecksum(completed, 0, completed.length)).toBe(true);
    expect(hex([emitted[1]!.packet])).toEqual(hex([completed]));
  });

  test("without the hint a partial checksum is a wrong one: passed on as it came, never completed", () => {
    const { gro, emitted } = coalescer();
    const ps = udpTrain(3, FLOW).map(partialUdp);
    offerPartial(gro, ps, 0);
    expect(emitted.map((e) => e.gsoSize)).toEqual([0, 0, 0]);
    expect(hex(emitted.map((e) => e.packet))).toEqual(hex(ps));
  });
});
