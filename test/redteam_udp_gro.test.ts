/**
 * Red team: the TEP's UDP coalescing (lib/tunnel/gro_udp.ts in tep_batch.ts) attacked with
 * crafted inner datagrams, no root: every batch goes once through a TUN that takes UDP
 * super-datagrams (cut back as the kernel cuts them, lib/net/udp_segment.ts) and once through
 * one that takes nothing (the reference: `dstm tep --no-offload`). The rule: what arrives is,
 * flow by flow, byte for byte the same, and the counters are the same.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { BindingTable } from "../lib/tunnel/binding.ts";
import { Counters } from "../lib/tunnel/counters.ts";
import { TepContext } from "../lib/tunnel/pipeline.ts";
import { TepDecapBatch } from "../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket, type TunWrite } from "./helpers/fake_devices.ts";
import { internetChecksum } from "./helpers/packets.ts";
import { type UdpSpec, udp, udpCut } from "./helpers/udp_packets.ts";

const A6 = parseIPv6("2001:db8:a::1")!;
const B6 = parseIPv6("2001:db8:a::2")!;
const HOST_A = [198, 51, 100, 10];
const SHARED = [198, 51, 100, 20];
const WEB = [203, 0, 113, 80];

function setup() {
  const bindings = BindingTable.create({ maxEntries: 16 });
  bindings.set(parseIPv4("198.51.100.10")!, { offset: 0, psidLength: 0, psid: 0 }, A6);
  bindings.set(parseIPv4("198.51.100.11")!, { offset: 0, psidLength: 0, psid: 0 }, B6);
  bindings.set(parseIPv4("198.51.100.20")!, { offset: 6, psidLength: 2, psid: 1 }, A6);
  const counters = Counters.create({ slices: 1 });
  const tep = new TepContext({
    bindings,
    counters: counters.slice(0),
    tepIPv4: parseIPv4("192.0.2.1")!,
    mssClamp: false,
  });
  return { tep, counters };
}

interface Arrival {
  packet: Uint8Array;
  src6: Uint8Array;
  trafficClass: number;
}

/** Runs `batches` through a TEP whose TUN is `tun`; returns the counters and what was written. */
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

const delivered = (written: TunWrite[]) =>
  written.flatMap((w) => (w.gsoSize > 0 ? udpCut(w.packet, w.gsoSize) : [w.packet]));

/** Hex of each packet, grouped by addresses and ports, in order within each group. */
function byFlow(ps: Uint8Array[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of ps) {
    const key = Buffer.from(p.subarray(12, 24)).toString("hex");
    out[key] = [...(out[key] ?? []), Buffer.from(p).toString("hex")];
  }
  return out;
}

/** Same input with and without UDP coalescing: same datagrams per flow, same counters. */
function expectSameAsSeparate(batches: Arrival[][]): { supers: number } {
  const uso = new FakeBatchTun(true, 10, true);
  const plain = new FakeBatchTun(false, 0);
  const a = run(uso, batches);
  const b = run(plain, batches);
  expect(a.counters).toEqual(b.counters);
  expect(a.stats.writeErrors).toBe(b.stats.writeErrors);
  const got = delivered(uso.written);
  expect(got.length).toBe(plain.written.length);
  expect(byFlow(got)).toEqual(byFlow(plain.written.map((w) => w.packet)));
  return { supers: uso.written.filter((w) => w.gsoSize > 0).length };
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

/** `count` datagrams of a flow, id from `id`, each `spec` changed by `vary(i)`. */
function train(count: number, spec: UdpSpec, vary: (i: number) => Partial<UdpSpec> = () => ({})) {
  const id = spec.id ?? 0x2000;
  return Array.from({ length: count }, (_, i) =>
    udp({ ...spec, id: (id + i) & 0xffff, seed: (spec.seed ?? 3) + i, ...vary(i) }),
  );
}

const FLOW: UdpSpec = { payload: 100, src: HOST_A, dst: WEB, tos: 0x02 };

describe("red team: UDP coalescing against the one-by-one path", () => {
  test("a spoofed datagram of the same 5-tuple next to a bound host's train", () => {
    const t = train(10, FLOW);
    const batch = t.map((p, i) => from(p, i === 4 || i === 5 ? B6 : A6));
    expect(expectSameAsSeparate([batch]).supers).toBeGreaterThan(0);
  });

  test("port-set violations and no-binding sources mid-train", () => {
    const shared = { ...FLOW, src: SHARED, srcPort: 1280 };
    const t = train(12, shared, (i) => (i % 3 === 1 ? { srcPort: 1536 } : {}));
    const batch = t.map((p) => from(p));
    batch.splice(6, 0, from(udp({ ...FLOW, src: [198, 51, 100, 99] })));
    expectSameAsSeparate([batch]);
  });

  test("lying UDP lengths, IPv4 total lengths shorter than the packet, zero checksums", () => {
    const t = train(12, FLOW);
    // UDP length one short (checksum left as it was): not coalescable, forwarded as it is.
    t[3]![25] = t[3]![25]! - 1;
    // A total length 4 bytes short of what came (the IPv6 payload is longer): 4 bytes of
    // trailing junk that the one-by-one path cuts off.
    const long = new Uint8Array(t[6]!.length + 4);
    long.set(t[6]!);
    long.fill(0xee, t[6]!.length);
    t[6] = long;
    t[8] = udp({ ...FLOW, id: 0x2008, seed: 11, checksum: "zero" });
    t[9] = udp({ ...FLOW, id: 0x2009, seed: 12, checksum: "bad" });
    expectSameAsSeparate([t.map((p) => from(p))]);
  });

  test("an IPv4 header with options in the middle of a train", () => {
    const t = train(8, FLOW);
    const plain = t[4]!;
    const opt = new Uint8Array(plain.length + 4);
    opt.set(plain.subarray(0, 20));
    opt.set([1, 1, 1, 0], 20); // NOP NOP NOP EOL
    opt.set(plain.subarray(20), 24);
    opt[0] = 0x46;
    opt[2] = opt.length >>> 8;
    opt[3] = opt.length & 0xff;
    t[4] = fixIpSum(opt);
    expectSameAsSeparate([t.map((p) => from(p))]);
  });

  test("TTL 1 and 0, DF changes and fragments mid-train", () => {
    const t = train(14, FLOW, (i) => {
      if (i === 3) return { ttl: 1 };
      if (i === 4) return { ttl: 0 };
      if (i === 7) return { df: false };
      if (i === 9) return { mf: true, df: false };
      return {};
    });
    expectSameAsSeparate([t.map((p) => from(p))]);
  });

  test("ECN: CE on the outer header mid-train, not-ECT inner among ECT ones", () => {
    const t = train(10, FLOW, (i) => (i === 6 ? { tos: 0 } : {}));
    const batch = t.map((p, i) => from(p, A6, i === 3 || i === 6 ? 0x03 : 0));
    expectSameAsSeparate([batch]);
  });

  test("sizes: shorter, longer, bigger than the segment size, empty", () => {
    const sizes = [100, 100, 50, 100, 200, 200, 1, 300, 0, 300, 1400, 1400, 1400];
    const t = sizes.map((payload, i) => udp({ ...FLOW, payload, id: 0x2000 + i, seed: i }));
    expectSameAsSeparate([t.map((p) => from(p))]);
  });

  test("65 KiB trains: 64 datagrams and more, and near 65,535-byte datagrams", () => {
    const t = train(70, { ...FLOW, payload: 1400 });
    const tiny = train(70, { ...FLOW, payload: 1, srcPort: 40001, id: 0x3000 });
    const huge = train(3, { ...FLOW, payload: 65507 - 28, srcPort: 40002, id: 0x4000 });
    const mixed: Arrival[] = [];
    for (let i = 0; i < 70; i++) mixed.push(from(t[i]!), from(tiny[i]!));
    mixed.push(...huge.map((p) => from(p)));
    expectSameAsSeparate([mixed.slice(0, 64), mixed.slice(64, 128), mixed.slice(128)]);
  });

  test("more interleaved flows than trains: held ones flushed early, none reordered", () => {
    const flows = Array.from({ length: 11 }, (_, f) =>
      train(6, { ...FLOW, srcPort: 41000 + f, id: 0x1000 * f, payload: 40 + f }),
    );
    const batch: Arrival[] = [];
    for (let i = 0; i < 6; i++)
      for (let f = 0; f < flows.length; f++) if ((i + f) % 4 !== 0) batch.push(from(flows[f]![i]!));
    expectSameAsSeparate([batch.slice(0, 30), batch.slice(30)]);
  });

  test("identification: wrapping, repeated without DF, repeated with DF", () => {
    const wrap = train(6, { ...FLOW, id: 0xfffd });
    const sameNoDf = train(4, { ...FLOW, srcPort: 40010, df: false }, () => ({ id: 0x7777 }));
    const sameDf = train(4, { ...FLOW, srcPort: 40011 }, () => ({ id: 0 }));
    expectSameAsSeparate([[...wrap, ...sameNoDf, ...sameDf].map((p) => from(p))]);
  });
});
