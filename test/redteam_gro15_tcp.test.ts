/**
 * Red team (gro15): the TEP's TCP coalescing (lib/tunnel/gro.ts in tep_batch.ts) and its cut of
 * a peer's oversized TCP packet, attacked with crafted inner segments, no root: every batch goes
 * once through a TUN that takes TCP super-packets (cut back as the kernel cuts them,
 * lib/net/gso.ts) and once through one that takes nothing (the reference: `dstm tep
 * --no-offload`). The rule (issue 14): what arrives is the same packets in the same order
 * between two addresses, and the counters are the same.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientInBatch } from "../lib/dataplane/client_batch.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { ClientState } from "../lib/tunnel/client_state.ts";
import { COUNTER_NAMES } from "../lib/tunnel/counters.ts";
import { NaptTable } from "../lib/tunnel/napt.ts";
import { PathMtuTable } from "../lib/tunnel/pmtu.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { internetChecksum } from "./helpers/packets.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { A6, B6, HOST_A, runTepBatches, SHARED, WEB } from "./helpers/redteam_tep.ts";
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
import type { Arrival } from "./helpers/tep_context.ts";
import { waitUntil } from "./helpers/wait.ts";

const run = runTepBatches;

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

  test("identification: repeated with DF (atomic datagrams numbered 0), wrapping past 0xffff", () => {
    const fixed = train(6, { ...FLOW, srcPort: 40010 }, () => ({ id: 0 }));
    const wrap = train(6, { ...FLOW, srcPort: 40011, id: 0xfffd });
    const { supers } = expectSameAsSeparate([[...fixed, ...wrap].map((p) => from(p))]);
    expect(supers).toBe(1); // the wrapping train only
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

describe("red team gro15: the client's TCP coalescing into the DTI against one by one", () => {
  const TEP6 = parseIPv6("2001:db8:7e9::1")!;
  /** What a ClientInBatch (whole lease 198.51.100.10) writes into a DTI with or without GSO. */
  function inbound(
    gso: boolean,
    packets: Uint8Array[],
  ): { written: Uint8Array[]; counters: number[] } {
    const counters = new Float64Array(COUNTER_NAMES.length);
    const state = ClientState.create();
    state.setLease(parseIPv4("198.51.100.10")!, undefined, TEP6);
    const init = {
      state,
      napt: NaptTable.create(),
      counters,
      onDemand: false,
      client: { tunnelMtu: 1460, mssClamp: false },
      pathMtu: PathMtuTable.create({ capacity: 4 }),
    };
    const raw = new FakeTunnelSocket(64);
    const tun = gso ? new FakeBatchTun(true, 10, false) : new FakeBatchTun(false, 0);
    const loop = new ClientInBatch(init, raw, tun);
    for (const p of packets) raw.inbox.push({ packet: p.slice(), src6: TEP6, trafficClass: 0 });
    while (loop.step() > 0) {}
    return { written: delivered(tun.written), counters: [...counters] };
  }

  test("a non-first fragment from the peer never overtakes the host's train held since its first", () => {
    const f: TcpSpec = { payload: 1000, src: WEB, dst: HOST_A, df: false };
    const t = train(4, f);
    const [f1, f2] = fragments(tcp({ ...f, seq: 0x90000, id: 0x4444, seed: 77 }), 512);
    const batch = [t[0]!, t[1]!, f1, t[2]!, t[3]!, f2];
    const gso = inbound(true, batch);
    const plain = inbound(false, batch);
    expect(gso.counters).toEqual(plain.counters);
    expect(gso.written.length).toBe(6);
    expect(byFlow(gso.written, 20)).toEqual(byFlow(plain.written, 20));
  });
});

// ---------------------------------------------------------------------------------------------
// The same attacks on a real `dstm tep`, against `dstm tep --no-offload`: an on-link host
// namespace sends crafted IPv4-in-IPv6 (raw IPv6 sockets, next header 4; above the link MTU
// the host's kernel fragments the outer packet and the TEP's reassembles it), the IPv4
// receiver records every TCP packet with a raw socket (after IPv4 reassembly, bad checksums
// included), the TEP's decap counters are compared.
//
//   host ns: 2001:db8:1::10, ::11 ──veth── tep ns: 2001:db8:1::1 | 192.0.2.1 ──veth── web ns 192.0.2.80

const skip = netnsSkipReason({ tun: true });
announceSkip("redteam_gro15_tcp (kernel)", skip);
const INJECT = join(ROOT, "test", "fixtures", "redteam", "inject4in6.py");
const RECORD = join(ROOT, "test", "fixtures", "redteam", "gro15_record_tcp.py");
const dir = mkdtempSync(join(tmpdir(), "dstm-gro15-"));
const made: Netns[] = [];
const killers: { kill(): void; exited: Promise<unknown> }[] = [];

afterAll(async () => {
  for (const k of killers) k.kill();
  await Promise.all(killers.map((k) => k.exited));
  for (const n of made) n.delete();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

const WEB_K = [192, 0, 2, 80];
const OUTER = ["2001:db8:1::10", "2001:db8:1::11"];
const MARK_PORT = 7999;
const BAD_PORT = 40200;
const BIG_PORT = 40300;

/** The crafted bursts: [outer source index, outer traffic class, inner IPv4 packet]. */
function attackBursts(): [number, number, Uint8Array][][] {
  const f: TcpSpec = { payload: 1000, src: HOST_A, dst: WEB_K, tos: 0x02 };
  const bursts: [number, number, Uint8Array][][] = [];
  // 1: a bound train with B's copy of segment 5 (same sequence number, other bytes) in it.
  const t = train(12, f);
  const spoof = tcp({ ...f, seq: 0x10000 + 5 * 1000, id: 0x2005, seed: 99 });
  bursts.push([
    ...t.slice(0, 5).map((p) => [0, 0, p] as [number, number, Uint8Array]),
    [1, 0, spoof],
    ...t.slice(5).map((p) => [0, 0, p] as [number, number, Uint8Array]),
  ]);
  // 2: a shared address, ports outside its set mid-train, CE outside, a bad checksum.
  const sh = train(12, { ...f, src: SHARED, srcPort: 1280, id: 0x3000 }, (i) =>
    i === 3 ? { srcPort: 1536 } : i === 7 ? { srcPort: 1024 } : {},
  );
  sh[9]![45] = sh[9]![45]! ^ 0x10;
  bursts.push(sh.map((p, i) => [0, i === 5 ? 3 : 0, p]));
  // 3: a train, the first fragment of another segment of the flow, a train, its rest.
  const fr = train(4, { ...f, df: false, srcPort: 40100, id: 0x4000 });
  const whole = tcp({ ...f, df: false, srcPort: 40100, seq: 0x90000, id: 0x4444, seed: 77 });
  const [f1, f2] = fragments(whole, 512);
  bursts.push([fr[0]!, fr[1]!, f1, fr[2]!, fr[3]!, f2].map((p) => [0, 0, p]));
  // 4: above the link MTU: a segment with a wrong, finished checksum (DF clear: the IPv4 side
  // fragments it whole) and a good one (DF: cut to the tunnel MTU by the TEP).
  const bad = tcp({ ...f, payload: 4000, df: false, srcPort: BAD_PORT, seq: 0x7000, id: 0x6000 });
  bad[1000] = bad[1000]! ^ 0x01;
  const big = tcp({ ...f, payload: 4000, srcPort: BIG_PORT, seq: 0x8000, id: 0x6100 });
  bursts.push([
    [0, 0, bad],
    [0, 0, big],
  ]);
  // 5: 200 one-byte segments of a flow (a train of gso size 1), and DF segments of one
  // identification (a stack that numbers atomic datagrams 0, RFC 6864).
  bursts.push(train(200, { ...f, payload: 1, srcPort: 40400, id: 0x7000 }).map((p) => [0, 0, p]));
  bursts.push(train(4, { ...f, srcPort: 40500 }, () => ({ id: 0 })).map((p) => [0, 0, p]));
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
    .filter((p) => p.length >= 40 && p[16] === 192 && p[17] === 0 && p[18] === 2 && p[19] === 80);
};

const srcPort = (p: Uint8Array) => (p[20]! << 8) | p[21]!;

function send(host: Netns, packets: [number, number, Uint8Array][], name: string): void {
  const file = join(dir, name);
  writeFileSync(
    file,
    JSON.stringify({
      to: "2001:db8:1::1",
      packets: packets.map(([o, tc, p]) => [OUTER[o], tc, Buffer.from(p).toString("hex")]),
    }),
  );
  // On one CPU: a veth hands each packet to the backlog of the CPU that sent it, so a sender
  // that moves between CPUs mid-burst would reorder the burst itself (the TEP too, below).
  const r = host.exec(["taskset", "-c", "0", "python3", INJECT, "send", file]);
  if (r.code !== 0) throw new Error(`inject: ${r.stderr}`);
}

async function decapCounters(tep: Netns, socket: string): Promise<Record<string, number>> {
  const r = tep.exec([BUN, join(ROOT, "mod.ts"), "tep", "stats", "--json", "--control", socket]);
  const all = (JSON.parse(r.stdout) as { counters: Record<string, number> }).counters;
  return Object.fromEntries(Object.entries(all).filter(([k]) => k.startsWith("decap-")));
}

/** One run against a TEP started with `extra`: what the receiver got and the counters' change. */
async function attackRun(
  host: Netns,
  tep: Netns,
  web: Netns,
  label: string,
  extra: string[],
  bursts = attackBursts(),
) {
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
      "dsg15tep",
      ...extra,
    ],
    {},
    ["ip", "netns", "exec", tep.name, "taskset", "-c", "0"],
  );
  killers.push({ kill: () => proc.proc.kill("SIGKILL"), exited: proc.exited });
  const start = await proc.waitFor(/tep-start/, 20_000);
  const file = join(dir, `${label}.rec`);
  const rec = web.spawn(["python3", RECORD, file], { timeoutMs: 120_000 });
  killers.push({ kill: () => rec.kill("SIGKILL"), exited: rec.exited });
  // Neighbours resolved and the recorder listening: a marker segment until one arrives.
  const marker = (n: number) =>
    tcp({ payload: 8, src: HOST_A, dst: WEB_K, srcPort: MARK_PORT, seq: n, id: n, seed: n });
  const markers = () => recorded(file).filter((p) => srcPort(p) === MARK_PORT).length;
  let n = 0;
  await waitUntil(
    () => {
      send(host, [[0, 0, marker(n++)]], `${label}-m.json`);
      return markers() > 0;
    },
    { timeoutMs: 20_000, intervalMs: 200, what: `${label}: the TEP forwards` },
  );
  const before = await decapCounters(tep, socket);
  for (const [i, b] of bursts.entries()) send(host, b, `${label}-${i}.json`);
  const seen = markers();
  const markersBefore = n;
  await waitUntil(
    () => {
      send(host, [[0, 0, marker(n++)]], `${label}-m.json`);
      return markers() > seen;
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
  proc.proc.kill("SIGTERM");
  await proc.exited;
  rec.kill("SIGKILL");
  await rec.exited;
  const delta = Object.fromEntries(
    Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]),
  );
  // Without the last markers (as many as it took): 60 bytes each.
  delta["decap-forward"]! -= n - markersBefore;
  delta["decap-forward-bytes"]! -= 60 * (n - markersBefore);
  const got = recorded(file).filter((p) => srcPort(p) !== MARK_PORT);
  return { start, got, counters: delta };
}

describe.skipIf(skip !== null)(
  "red team gro15: a real dstm tep with and without TCP offload",
  () => {
    test("crafted IPv4-in-IPv6 TCP bursts: the same segments per flow, the same counters, no checksum repaired", async () => {
      const host = createNetns("dsg15-");
      const tep = createNetns("dsg15-");
      const web = createNetns("dsg15-");
      made.push(host, tep, web);
      vethPair(host, "h0", tep, "t0");
      vethPair(tep, "t1", web, "w0");
      for (const a of OUTER) host.addAddress("h0", `${a}/64`);
      tep.addAddress("t0", "2001:db8:1::1/64");
      tep.addAddress("t1", "192.0.2.1/24");
      web.addAddress("w0", "192.0.2.80/24");
      web.addRoute("default", "via", "192.0.2.1");
      // The kernel cuts a super-packet where a device cannot, before the IPv4 link (a veth with
      // TSO would carry it whole, and the recorder's raw socket would see it so).
      const off = tep.exec(["ethtool", "-K", "t1", "tx", "off", "tso", "off"]);
      expect(off.stderr).toBe("");
      writeFileSync(join(dir, "bindings.txt"), "198.51.100.20 2001:db8:1::10 6/2/1\n");
      const offload = await attackRun(host, tep, web, "offload", []);
      const separate = await attackRun(host, tep, web, "separate", ["--no-offload"]);
      // And through the packet ring: the oversized ones come in outer fragments (marks).
      const ring = await attackRun(host, tep, web, "attack-ring", ["--rx-ring"]);
      expect(offload.start).toMatch(/offload=tcp/);
      expect(separate.start).toMatch(/offload=off/);
      expect(ring.start).toMatch(/rx-ring=on/);
      expect(offload.counters).toEqual(separate.counters);
      const { "decap-ring": ringRead, ...ringRest } = ring.counters;
      const { "decap-ring": _none, ...separateRest } = separate.counters;
      expect(ringRest).toEqual(separateRest);
      expect(ringRead).toBeGreaterThan(40);
      expect(separate.counters["decap-drop-spoofed-source"]).toBe(1);
      expect(separate.counters["decap-drop-bad-port"]).toBe(2);
      expect(byFlow(offload.got, 24)).toEqual(byFlow(separate.got, 24));
      expect(byFlow(ring.got, 24)).toEqual(byFlow(separate.got, 24));
      for (const run of [offload, separate, ring]) {
        // The corrupt oversized segment arrives with its checksum still wrong (or not at all).
        const bad = run.got.filter((p) => srcPort(p) === BAD_PORT);
        expect(bad.length).toBeGreaterThan(0);
        for (const p of bad) expect(tcpChecksumOf(p)).not.toBe(0);
        // The good one arrives cut to the tunnel MTU, every segment's checksum right.
        const big = run.got.filter((p) => srcPort(p) === BIG_PORT);
        expect(big.length).toBe(3);
        for (const p of big) expect(tcpChecksumOf(p)).toBe(0);
      }
      console.log(
        `redteam_gro15_tcp: ${offload.got.length} segments (offload), ${separate.got.length} (--no-offload)`,
      );
    }, 120_000);
  },
);

/** host ── tep ── web as above, with the IPv4 link cutting super-packets (see below). */
function topology(): { host: Netns; tep: Netns; web: Netns } {
  const host = createNetns("dsg15-");
  const tep = createNetns("dsg15-");
  const web = createNetns("dsg15-");
  made.push(host, tep, web);
  vethPair(host, "h0", tep, "t0");
  vethPair(tep, "t1", web, "w0");
  for (const a of OUTER) host.addAddress("h0", `${a}/64`);
  tep.addAddress("t0", "2001:db8:1::1/64");
  tep.addAddress("t1", "192.0.2.1/24");
  web.addAddress("w0", "192.0.2.80/24");
  web.addRoute("default", "via", "192.0.2.1");
  const off = tep.exec(["ethtool", "-K", "t1", "tx", "off", "tso", "off"]);
  expect(off.stderr).toBe("");
  writeFileSync(join(dir, "bindings.txt"), "198.51.100.20 2001:db8:1::10 6/2/1\n");
  return { host, tep, web };
}

/**
 * Flows whose third segment is 1,480 bytes: 1,520 with the outer header, so the host's kernel
 * fragments the outer packet (the TEP's kernel reassembles it; no packet ring takes a
 * fragment), the others whole.
 */
function mixedBursts(): [number, number, Uint8Array][][] {
  const bursts: [number, number, Uint8Array][][] = [];
  for (let k = 0; k < 6; k++) {
    const f: TcpSpec = { payload: 600, src: HOST_A, dst: WEB_K, srcPort: 41000 + k };
    const s = train(4, { ...f, id: 0x100 * k });
    const p = tcp({ ...f, payload: 1428, seq: 0x10000 + 2 * 600, id: 0x100 * k + 0x80, seed: k });
    const rest = train(2, { ...f, seq: 0x10000 + 2 * 600 + 1428, id: 0x100 * k + 2 });
    bursts.push([s[0]!, s[1]!, p, rest[0]!, rest[1]!].map((x) => [0, 0, x]));
  }
  return bursts;
}

describe.skipIf(skip !== null)("red team gro15: --rx-ring with outer fragments", () => {
  // The ring takes no outer fragment: the raw socket gets the packet the kernel reassembled.
  // Read the ring first, the segments that came whole after it overtook it (6 flows of 6,
  // every run, before the ring left marks of fragments: lib/sys/packet_ring.ts).
  test("a segment whose outer packet came fragmented keeps its place in its flow", async () => {
    const ringT = topology();
    const ring = await attackRun(
      ringT.host,
      ringT.tep,
      ringT.web,
      "ring",
      ["--rx-ring"],
      mixedBursts(),
    );
    const rawT = topology();
    const raw = await attackRun(rawT.host, rawT.tep, rawT.web, "raw", [], mixedBursts());
    expect(ring.start).toMatch(/rx-ring=on/);
    expect(ring.counters["decap-ring"]).toBeGreaterThanOrEqual(24);
    expect(raw.got.length).toBe(30);
    expect(byFlow(ring.got, 24)).toEqual(byFlow(raw.got, 24));
  }, 120_000);
});
