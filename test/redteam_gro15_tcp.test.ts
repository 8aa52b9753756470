/**
 * Red team (gro15): the TEP's TCP coalescing (lib/tunnel/gro.ts in tep_batch.ts) and its cut of
 * a peer's oversized TCP packet, attacked with crafted inner segments, no root: every batch goes
 * once through a TUN that takes TCP super-packets (cut back as the kernel cuts them,
 * lib/net/gso.ts) and once through one that takes nothing (the reference: `dstm tep
 * --no-offload`). The rule (issue 14): what arrives is the same packets in the same order
 * between two addresses, and the counters are the same.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv6 } from "../lib/net/addr.ts";
import { TepDecapBatch } from "../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";
import { internetChecksum } from "./helpers/packets.ts";
import {
  ACK,
  CWR,
  FIN,
  PSH,
  SYN,
  segmentsOf,
  type TcpSpec,
  tcp,
  tcpChecksumOf,
} from "./helpers/tcp_packets.ts";
import { type Arrival, tepContext, WHOLE } from "./helpers/tep_context.ts";

const A6 = parseIPv6("2001:db8:a::1")!;
const B6 = parseIPv6("2001:db8:a::2")!;
const HOST_A = [198, 51, 100, 10];
const SHARED = [198, 51, 100, 20];
const WEB = [203, 0, 113, 80];

function setup() {
  return tepContext([
    ["198.51.100.10", WHOLE, A6],
    ["198.51.100.11", WHOLE, B6],
    ["198.51.100.20", { offset: 6, psidLength: 2, psid: 1 }, A6],
  ]);
}

/** Runs `batches` through a TEP whose TUN is `tun`; returns its counters and loop stats. */
function run(tun: FakeBatchTun, batches: Arrival[][]) {
  const { tep, counters } = setup();
  const raw = new FakeTunnelSocket(64);
  const loop = new TepDecapBatch(tep, raw, tun);
  for (const batch of batches) {
    raw.inbox.push(...batch.map((a) => ({ ...a, packet: a.packet.slice() })));
    while (loop.step() > 0) {}
  }
  return { counters: counters.snapshot(), stats: loop.stats };
}

/** What the IPv4 side receives from TUN writes: a super-packet cut as the kernel cuts it. */
function delivered(written: readonly { packet: Uint8Array; gsoSize: number }[]): Uint8Array[] {
  return written.flatMap((w) => (w.gsoSize > 0 ? segmentsOf(w.packet, w.gsoSize) : [w.packet]));
}

const hex = (p: Uint8Array) => Buffer.from(p).toString("hex");

/**
 * Packets grouped by flow, in order: one by one they come in this order, so must they
 * coalesced (flows may interleave differently). The key is bytes 12 to `end`: 24, addresses
 * and ports; 20, the addresses only, for a test of one flow per address pair with fragments
 * (a non-first fragment has no ports).
 */
function byFlow(ps: readonly Uint8Array[], end: number): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of ps) {
    const key = hex(p.subarray(12, end));
    out[key] = [...(out[key] ?? []), hex(p)];
  }
  return out;
}

/** Same input with and without TCP coalescing: same packets per address pair, same counters. */
function expectSameAsSeparate(
  batches: Arrival[][],
  keyEnd = 24,
): { supers: number; got: Uint8Array[] } {
  const gso = new FakeBatchTun(true, 10, false);
  const plain = new FakeBatchTun(false, 0);
  const a = run(gso, batches);
  const b = run(plain, batches);
  expect(a.counters).toEqual(b.counters);
  expect(a.stats.writeErrors).toBe(b.stats.writeErrors);
  const got = delivered(gso.written);
  expect(byFlow(got, keyEnd)).toEqual(
    byFlow(
      plain.written.map((w) => w.packet),
      keyEnd,
    ),
  );
  expect(got.length).toBe(plain.written.length);
  return { supers: gso.written.filter((w) => w.gsoSize > 0).length, got };
}

const from = (packet: Uint8Array, src6 = A6, trafficClass = 0): Arrival => ({
  packet,
  src6,
  trafficClass,
});

/** Recomputes the IPv4 header checksum (after a test changed the header). */
function fixIpSum(p: Uint8Array): Uint8Array {
  const ihl = (p[0]! & 15) * 4;
  p[10] = 0;
  p[11] = 0;
  const s = internetChecksum(p, 0, ihl);
  p[10] = s >>> 8;
  p[11] = s & 0xff;
  return p;
}

/** `count` in-order segments of one flow (seq and id following), each `spec` changed by `vary(i)`. */
function train(count: number, spec: TcpSpec, vary: (i: number) => Partial<TcpSpec> = () => ({})) {
  const seq = spec.seq ?? 0x10000;
  const id = spec.id ?? 0x2000;
  return Array.from({ length: count }, (_, i) =>
    tcp({
      ...spec,
      seq: (seq + i * spec.payload) >>> 0,
      id: (id + i) & 0xffff,
      seed: (spec.seed ?? 3) + i,
      ...vary(i),
    }),
  );
}

/**
 * IPv4 fragments of `p` (DF clear): the first carries the IPv4 header, the TCP header and `at`
 * (a multiple of 8) bytes after the IPv4 header; the second the rest.
 */
function fragments(p: Uint8Array, at: number): [Uint8Array, Uint8Array] {
  const total = p.length;
  const first = new Uint8Array(20 + at);
  first.set(p.subarray(0, 20 + at));
  first[2] = first.length >>> 8;
  first[3] = first.length & 0xff;
  first[6] = 0x20; // MF
  first[7] = 0;
  const rest = new Uint8Array(total - at);
  rest.set(p.subarray(0, 20));
  rest.set(p.subarray(20 + at), 20);
  rest[2] = rest.length >>> 8;
  rest[3] = rest.length & 0xff;
  const fo = at / 8;
  rest[6] = fo >>> 8;
  rest[7] = fo & 0xff;
  return [fixIpSum(first), fixIpSum(rest)];
}

const FLOW: TcpSpec = { payload: 1000, src: HOST_A, dst: WEB, tos: 0x02 };

describe("red team gro15: TCP coalescing at the TEP against the one-by-one path", () => {
  test("a spoofed segment of the same 5-tuple, the same sequence number, mid-train", () => {
    const t = train(10, FLOW);
    // B's outer source sends A's next segment (a duplicate sequence number, other bytes).
    const batch = t.map((p) => from(p));
    batch.splice(5, 0, from(tcp({ ...FLOW, seq: 0x10000 + 5 * 1000, id: 0x2005, seed: 99 }), B6));
    const { supers } = expectSameAsSeparate([batch]);
    expect(supers).toBeGreaterThan(0);
  });

  test("port-set violations, another host's port, no-binding sources mid-train", () => {
    const shared = { ...FLOW, src: SHARED, srcPort: 1280 };
    const t = train(12, shared, (i) =>
      i === 3 ? { srcPort: 1536 } : i === 7 ? { srcPort: 1024 } : {},
    );
    const batch = t.map((p) => from(p));
    batch.splice(6, 0, from(tcp({ ...FLOW, src: [198, 51, 100, 99] })));
    expectSameAsSeparate([batch]);
  });

  test("wrong TCP checksums, a wrong IPv4 header checksum, trailing bytes, a short total length", () => {
    const t = train(12, FLOW);
    t[3]![40] = t[3]![40]! ^ 0xff; // TCP checksum wrong
    t[5]![10] = t[5]![10]! ^ 0x01; // IPv4 header checksum wrong: dropped as malformed
    const long = new Uint8Array(t[7]!.length + 6);
    long.set(t[7]!);
    long.fill(0xee, t[7]!.length);
    t[7] = long;
    expectSameAsSeparate([t.map((p) => from(p))]);
  });

  test("ECN: CE on the outer header mid-train, not-ECT and CWR/ECE segments", () => {
    const t = train(12, FLOW, (i) =>
      i === 6 ? { tos: 0 } : i === 8 ? { flags: ACK | CWR } : i === 10 ? { flags: ACK | 0x40 } : {},
    );
    const batch = t.map((p, i) => from(p, A6, i === 3 ? 0x03 : 0));
    expectSameAsSeparate([batch]);
  });

  test("TTL 1 and 0, DF cleared, IPv4 options, SYN/FIN/RST/URG mid-train", () => {
    const t = train(16, FLOW, (i) => {
      if (i === 2) return { flags: ACK | PSH };
      if (i === 4) return { df: false };
      if (i === 9) return { flags: SYN | ACK };
      if (i === 11) return { flags: ACK | 0x20 };
      if (i === 12) return { flags: ACK | 0x04 };
      if (i === 15) return { flags: ACK | FIN };
      return {};
    });
    t[5]![8] = 1;
    fixIpSum(t[5]!);
    t[6]![8] = 0;
    fixIpSum(t[6]!);
    const plain = t[13]!;
    const opt = new Uint8Array(plain.length + 4);
    opt.set(plain.subarray(0, 20));
    opt.set([1, 1, 1, 0], 20);
    opt.set(plain.subarray(20), 24);
    opt[0] = 0x46;
    opt[2] = opt.length >>> 8;
    opt[3] = opt.length & 0xff;
    t[13] = fixIpSum(opt);
    expectSameAsSeparate([t.map((p) => from(p))]);
  });

  test("retransmissions, overlaps and a sequence number wrapping 2^32", () => {
    const t = train(8, { ...FLOW, seq: 0xffffffff - 2500 });
    const dup = t[3]!.slice();
    const overlap = tcp({ ...FLOW, seq: 0xffffffff - 2500 + 3500, id: 0x2005, seed: 50 });
    const batch = [...t.slice(0, 5), dup, overlap, ...t.slice(5)].map((p) => from(p));
    expectSameAsSeparate([batch]);
  });

  test("trains near 65,535 bytes, and sizes up and down", () => {
    const big = train(50, { ...FLOW, payload: 1408 });
    const sizes = [500, 500, 400, 500, 600, 600, 1, 600];
    const mixed = sizes.map((payload, i) =>
      tcp({ ...FLOW, payload, srcPort: 40001, id: 0x3000 + i, seq: 0x100 + i * 1000 }),
    );
    expectSameAsSeparate([[...big, ...mixed].map((p) => from(p))]);
  });

  test("a non-first fragment never overtakes a train of its flow held since its first fragment", () => {
    // S0 S1 | first fragment of P | S2 S3 (a new train) | the rest of P. One by one, P is whole
    // only after S2 and S3 came; a coalescer that lets the rest of P overtake the held train
    // (it has no ports: bytes 20–23 are data) hands the receiver P before S2 and S3.
    const t = train(4, { ...FLOW, df: false });
    const p = tcp({ ...FLOW, df: false, seq: 0x90000, id: 0x4444, seed: 77 });
    const [f1, f2] = fragments(p, 512);
    const batch = [t[0]!, t[1]!, f1, t[2]!, t[3]!, f2].map((x) => from(x));
    const { supers } = expectSameAsSeparate([batch], 20);
    expect(supers).toBe(2);
  });

  test("a peer's oversized segment with a wrong, finished checksum is not repaired by the cut", () => {
    // Above the tunnel MTU (an IPv6 packet the TEP's kernel reassembled): the TEP cuts a kernel
    // peer's TSO packet as a NIC would, computing each segment's checksum. A NIC only ever
    // cuts packets whose checksum it is to compute (CHECKSUM_PARTIAL); a finished, wrong one is
    // corrupt, and cut into fresh checksums it would reach the IPv4 host as good data.
    const good = tcp({ ...FLOW, payload: 4000, seq: 0x7000, id: 0x6000 });
    const bad = tcp({ ...FLOW, payload: 4000, seq: 0x7000 + 4000, id: 0x6001, seed: 9 });
    bad[37] = bad[37]! ^ 0x20;
    for (const gro of [true, false]) {
      const tun = () => (gro ? new FakeBatchTun(true, 10, false) : new FakeBatchTun(false, 0));
      const g = tun();
      run(g, [[from(good)]]);
      const goodOut = delivered(g.written);
      expect(goodOut.length).toBeGreaterThan(1);
      for (const s of goodOut) expect(tcpChecksumOf(s)).toBe(0);
      const b = tun();
      run(b, [[from(bad)]]);
      const badOut = delivered(b.written);
      expect(badOut.length).toBeGreaterThan(0);
      expect(badOut.some((s) => tcpChecksumOf(s) !== 0)).toBe(true);
    }
  });
});
