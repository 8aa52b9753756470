/**
 * Red team: the TEP's UDP coalescing (lib/tunnel/gro_udp.ts in tep_batch.ts) attacked with
 * crafted inner datagrams, no root: every batch goes once through a TUN that takes UDP
 * super-datagrams (cut back as the kernel cuts them, lib/net/udp_segment.ts) and once through
 * one that takes nothing (the reference: `dstm tep --no-offload`). The rule: what arrives is,
 * flow by flow, byte for byte the same, and the counters are the same.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { FakeBatchTun } from "./helpers/fake_devices.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { internetChecksum } from "./helpers/packets.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { A6, B6, HOST_A, runTepBatches, SHARED, WEB } from "./helpers/redteam_tep.ts";
import type { Arrival } from "./helpers/tep_context.ts";
import {
  datagramsByFlow,
  deliveredDatagrams,
  kernelHasTunUso,
  type UdpSpec,
  udp,
} from "./helpers/udp_packets.ts";
import { waitUntil } from "./helpers/wait.ts";

const run = runTepBatches;

/** Same input with and without UDP coalescing: same datagrams per flow, same counters. */
function expectSameAsSeparate(batches: Arrival[][]): { supers: number } {
  const uso = new FakeBatchTun(true, 10, true);
  const plain = new FakeBatchTun(false, 0);
  const a = run(uso, batches);
  const b = run(plain, batches);
  expect(a.counters).toEqual(b.counters);
  expect(a.stats.writeErrors).toBe(b.stats.writeErrors);
  const got = deliveredDatagrams(uso.written);
  expect(got.length).toBe(plain.written.length);
  expect(datagramsByFlow(got)).toEqual(datagramsByFlow(plain.written.map((w) => w.packet)));
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

// ---------------------------------------------------------------------------------------------
// The same attack on a real `dstm tep`, against `dstm tep --no-offload`: a host namespace sends
// the crafted IPv4-in-IPv6 (raw IPv6 sockets, next header 4: the kernel adds only the outer
// header, and fragments it above the link MTU), the IPv4 receiver records every UDP datagram
// with a raw socket (bad checksums included), the TEP's decap counters are compared.
//
//   host ns: 2001:db8:1::10, ::11, ::12 ──veth── tep ns: 2001:db8:1::1 | 192.0.2.1 ──veth── web ns 192.0.2.80

const skip = netnsSkipReason({ tun: true });
announceSkip("redteam_udp_gro (kernel)", skip);
const INJECT = join(ROOT, "test", "fixtures", "redteam", "inject4in6.py");
const dir = mkdtempSync(join(tmpdir(), "dstm-rtu-"));
const made: Netns[] = [];
const killers: { kill(): void; exited: Promise<unknown> }[] = [];

afterAll(async () => {
  for (const k of killers) k.kill();
  await Promise.all(killers.map((k) => k.exited));
  for (const n of made) n.delete();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

const WEB_K = [192, 0, 2, 80];
const OUTER = ["2001:db8:1::10", "2001:db8:1::11", "2001:db8:1::12"];

/** The crafted bursts: [outer source index, outer traffic class, inner IPv4 packet]. */
function attackBursts(): [number, number, Uint8Array][][] {
  const f: UdpSpec = { payload: 200, src: HOST_A, dst: WEB_K, tos: 0x02, dstPort: 7100 };
  const bursts: [number, number, Uint8Array][][] = [];
  // 1: a bound train with a spoofed datagram of the same 5-tuple in it (outer ::11 is B's).
  bursts.push(train(12, f).map((p, i) => [i === 5 ? 1 : 0, 0, p]));
  // 2: a shared address, a port outside its set mid-train; an unbound source.
  const sh = { ...f, src: SHARED, srcPort: 1280, id: 0x3000 };
  bursts.push(
    train(10, sh, (i) =>
      i === 4 ? { srcPort: 1536 } : i === 7 ? { src: [198, 51, 100, 99] } : {},
    ).map((p) => [0, 0, p]),
  );
  // 3: lying lengths, zero / bad checksums, TTL 1 and 0, a first fragment, CE, not-ECT.
  const t = train(16, { ...f, id: 0x4000, srcPort: 40100 }, (i) => {
    if (i === 2) return { checksum: "zero" };
    if (i === 3) return { checksum: "bad" };
    if (i === 5) return { ttl: 1 };
    if (i === 6) return { ttl: 0 };
    if (i === 8) return { mf: true, df: false };
    if (i === 11) return { tos: 0 };
    return {};
  });
  t[9]![25] = t[9]![25]! - 1;
  const long = new Uint8Array(t[13]!.length + 6);
  long.set(t[13]!);
  t[13] = long;
  bursts.push(t.map((p, i) => [0, i === 10 || i === 11 ? 3 : 0, p]));
  // 4: sizes up and down, a datagram above the link MTU, 64+ in a train, repeated ids.
  const sizes = [300, 300, 100, 300, 1200, 1200, 1, 3000, 3000, 500];
  bursts.push(
    sizes.map((payload, i) => [
      0,
      0,
      udp({ ...f, payload, srcPort: 40200, id: 0x5000 + i, seed: i }),
    ]),
  );
  bursts.push(train(70, { ...f, payload: 16, srcPort: 40300, id: 0xffe0 }).map((p) => [0, 0, p]));
  bursts.push(train(5, { ...f, srcPort: 40400 }, () => ({ id: 0 })).map((p) => [0, 0, p]));
  // Oversize: datagrams of 30,000 and 20,000 bytes without DF (the host's kernel fragments the
  // outer packets, the TEP's reassembles; the IPv4 side gets them fragmented), trains above
  // 65,535 bytes in all.
  bursts.push(
    [30000, 30000, 20000, 20000, 20000, 20000].map((payload, i) => [
      0,
      0,
      udp({ ...f, payload, df: false, srcPort: 40500, id: 0x6000 + i, seed: i }),
    ]),
  );
  // 5: 11 interleaved flows.
  const many: [number, number, Uint8Array][] = [];
  for (let i = 0; i < 5; i++)
    for (let k = 0; k < 11; k++)
      many.push([
        0,
        0,
        udp({ ...f, payload: 60 + k, srcPort: 41000 + k, id: 0x100 * k + i, seed: i }),
      ]);
  bursts.push(many);
  return bursts;
}

const recorded = (file: string): Uint8Array[] => {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    // Nothing recorded yet.
  }
  return text
    .split("\n")
    .filter(Boolean)
    .map((h) => Uint8Array.from(Buffer.from(h, "hex")))
    .filter((p) => p.length >= 28 && p[16] === 192 && p[17] === 0 && p[18] === 2 && p[19] === 80);
};

function send(host: Netns, packets: [number, number, Uint8Array][], name: string): void {
  const file = join(dir, name);
  writeFileSync(
    file,
    JSON.stringify({
      to: "2001:db8:1::1",
      packets: packets.map(([o, tc, p]) => [OUTER[o], tc, Buffer.from(p).toString("hex")]),
    }),
  );
  const r = host.exec(["python3", INJECT, "send", file]);
  if (r.code !== 0) throw new Error(`inject: ${r.stderr}`);
}

async function decapCounters(tep: Netns, socket: string): Promise<Record<string, number>> {
  const r = tep.exec([BUN, join(ROOT, "mod.ts"), "tep", "stats", "--json", "--control", socket]);
  const all = (JSON.parse(r.stdout) as { counters: Record<string, number> }).counters;
  return Object.fromEntries(Object.entries(all).filter(([k]) => k.startsWith("decap-")));
}

/** One run against a TEP started with `extra`: what the receiver got and the counters' change. */
async function attackRun(host: Netns, tep: Netns, web: Netns, label: string, extra: string[]) {
  const socket = join(dir, `${label}.sock`);
  const proc: DstmProcess = spawnDstm(
    [
      "tep",
      "--insecure-control",
      "--ipv6",
      "2001:db8:1::1",
      "--ipv4",
      "192.0.2.1",
      "--server",
      "2001:db8:1::53",
      "--route",
      "198.51.100.0/24",
      "--binding",
      "198.51.100.10=2001:db8:1::10",
      "--binding",
      "198.51.100.11=2001:db8:1::11",
      "--binding-file",
      join(dir, "bindings.txt"),
      "--control",
      socket,
      "--ifname",
      "tep.rt0", // a name with a dot (sysctl keys take it with slashes)
      ...extra,
    ],
    {},
    tep.name,
  );
  killers.push({ kill: () => proc.proc.kill("SIGKILL"), exited: proc.exited });
  const start = await proc.waitFor(/tep-start/, 20_000);
  const file = join(dir, `${label}.rec`);
  const rec = web.spawn(["python3", INJECT, "record", file], { timeoutMs: 120_000 });
  killers.push({ kill: () => rec.kill("SIGKILL"), exited: rec.exited });
  // Neighbours resolved and the recorder listening: a marker flow until one arrives.
  const marker = (n: number) =>
    udp({ payload: 8, src: HOST_A, dst: WEB_K, dstPort: 7999, id: n, seed: n });
  let n = 0;
  await waitUntil(
    () => {
      send(host, [[0, 0, marker(n++)]], `${label}-m.json`);
      return recorded(file).some((p) => p[23] === 0x3f);
    },
    { timeoutMs: 20_000, intervalMs: 200, what: `${label}: the TEP forwards` },
  );
  const before = await decapCounters(tep, socket);
  const rxBefore = tep.ipJson<{ stats64: { rx: { packets: number } } }[]>(
    "-s",
    "link",
    "show",
    "tep.rt0",
  )[0]!.stats64.rx.packets;
  for (const [i, b] of attackBursts().entries()) send(host, b, `${label}-${i}.json`);
  // A last marker, then until the recording stops growing (bounded).
  const seen = recorded(file).filter((p) => p[23] === 0x3f).length;
  const markersBefore = n;
  await waitUntil(
    () => {
      send(host, [[0, 0, marker(n++)]], `${label}-m.json`);
      return recorded(file).filter((p) => p[23] === 0x3f).length > seen;
    },
    { timeoutMs: 20_000, intervalMs: 200, what: `${label}: the last marker` },
  );
  let last = -1;
  await waitUntil(
    () => {
      const now = recorded(file).length;
      const stable = now === last;
      last = now;
      return stable;
    },
    { timeoutMs: 10_000, intervalMs: 300, what: `${label}: the recording to settle` },
  );
  const after = await decapCounters(tep, socket);
  const rx = tep.ipJson<{ stats64: { rx: { packets: number } } }[]>(
    "-s",
    "link",
    "show",
    "tep.rt0",
  )[0]!.stats64.rx.packets;
  proc.proc.kill("SIGTERM");
  await proc.exited;
  rec.kill("SIGKILL");
  await rec.exited;
  const delta = Object.fromEntries(
    Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]),
  );
  // Without the last markers (as many as it took): 36 bytes each.
  delta["decap-forward"]! -= n - markersBefore;
  delta["decap-forward-bytes"]! -= 36 * (n - markersBefore);
  const got = recorded(file).filter((p) => p[23] !== 0x3f);
  return { start, got, counters: delta, tunWrites: rx - rxBefore };
}

describe.skipIf(skip !== null)("red team: a real dstm tep with and without UDP offload", () => {
  test("crafted IPv4-in-IPv6 bursts: the same datagrams per flow and the same decap counters", async () => {
    const host = createNetns("dstmrt-");
    const tep = createNetns("dstmrt-");
    const web = createNetns("dstmrt-");
    made.push(host, tep, web);
    vethPair(host, "h0", tep, "t0");
    vethPair(tep, "t1", web, "w0");
    for (const a of OUTER) host.addAddress("h0", `${a}/64`);
    tep.addAddress("t0", "2001:db8:1::1/64");
    tep.addAddress("t1", "192.0.2.1/24");
    web.addAddress("w0", "192.0.2.80/24");
    web.addRoute("default", "via", "192.0.2.1");
    // The kernel cuts a super-datagram and finishes its checksums where a device cannot: here,
    // before the IPv4 link (a veth would carry it whole and unfinished, CHECKSUM_PARTIAL, and
    // the recorder's raw socket would see it so; a UDP socket would get it cut).
    const off = tep.exec(["ethtool", "-K", "t1", "tx", "off", "tx-udp-segmentation", "off"]);
    expect(off.stderr).toBe("");
    writeFileSync(join(dir, "bindings.txt"), "198.51.100.20 2001:db8:1::10 6/2/1\n");
    const offload = await attackRun(host, tep, web, "offload", []);
    const separate = await attackRun(host, tep, web, "separate", ["--no-offload"]);
    expect(offload.start).toMatch(kernelHasTunUso() ? /offload=tcp,udp/ : /offload=tcp\b/);
    expect(separate.start).toMatch(/offload=off/);
    console.log(
      `redteam_udp_gro: ${offload.got.length} datagrams in ${offload.tunWrites} TUN writes (offload); ${separate.got.length} in ${separate.tunWrites} (--no-offload)`,
    );
    expect(datagramsByFlow(offload.got)).toEqual(datagramsByFlow(separate.got));
    expect(offload.counters).toEqual(separate.counters);
    expect(separate.counters["decap-drop-spoofed-source"]).toBe(1);
    expect(separate.counters["decap-drop-bad-port"]).toBe(1);
    expect(separate.got.length).toBeGreaterThan(100);
    expect(datagramsByFlow(offload.got)).toEqual(datagramsByFlow(separate.got));
    if (kernelHasTunUso()) expect(offload.tunWrites).toBeLessThan(separate.tunWrites);
  }, 120_000);
});
