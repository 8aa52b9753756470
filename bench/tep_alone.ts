/**
 * The TEP alone (issue 14, item 5): a kernel 4over6 host sends through one tunnel end point to
 * an IPv4 iperf3 server, and only the TEP changes between runs. Side by side in one run:
 *
 * - **routing**: no tunnel; the host routes IPv4 to the TEP namespace, which forwards it.
 * - **kernel-tep**: the Linux kernel as the TEP: seg6local `End.DX4` decapsulates, an IPv4
 *   route with seg6 `encap.red` (one segment: plain IPv6, next header 4) encapsulates.
 * - **dstm**: `dstm tep` (from source, `bun mod.ts tep`) with a static binding for the host.
 * - **c**: bench/c/tunfwd.c, a minimal C TUN forwarder (raw IPv6 socket for next header 4 ↔
 *   TUN, blocking read/write, one thread per direction), compiled here with the system's cc.
 *
 *   bun bench/tep_alone.ts [--rounds 3] [--duration 4] [--omit 1] [--paths a,b] [--tests a,b]
 *                          [--tx-off c] [--ping] [--json]  # as root, iperf3 and ethtool installed
 *
 * Topology (namespaces `dstmb-…`, veth pairs, documentation prefixes, deleted at the end):
 *
 *   H (host) eth0 ── eth6 T (TEP) eth4 ── eth0 S (IPv4 server 192.0.2.80)
 *   H: 2001:db8:1::2/64, 203.0.113.2/24, 198.51.100.1/32 on lo (its "leased" IPv4 address);
 *      seg6 tunnel source 2001:db8:100::1, a seg6local End.DX4 route for it (so the kernel
 *      decapsulates what the TEP sends back), IPv4 to 192.0.2.0/24 through seg6 encap.red with
 *      the route MTU locked to 1460 (the tunnel MTU: the same packet sizes on every path).
 *   T: 2001:db8:1::1/64 (dstm's and the C forwarder's tunnel end point), 2001:db8:d4::1 (the
 *      kernel TEP's End.DX4 SID), 203.0.113.1/24, 192.0.2.1/24.
 *
 * Checksums: a raw IPv6 socket receives a veth peer's packets with the inner TCP/UDP checksum
 * unfinished (CHECKSUM_PARTIAL) and, with TSO, whole 64 KiB TCP packets. dstm's TEP completes
 * and cuts them (lib/net/csum_partial.ts, tcp_segment.ts); the C forwarder does not, so for it
 * the bench turns tx checksum offload off on the host's eth0 (`ethtool -K eth0 tx off`, which
 * also turns TSO off: the host's kernel segments in software before the veth). `--tx-off
 * PATHS` (default `c`) names the paths run that way; the output says which.
 *
 * Paths `dstm` (TUN offloads, batched I/O, GRO: the default) and `dstm-no-offload` (`dstm tep
 * --no-offload`, one packet per system call) compare the data plane before and after in one run;
 * `dstm-ring` is `dstm` with `--rx-ring` (an AF_PACKET receive ring, lib/sys/packet_ring.ts);
 * `dstm-ring-base` the same from the checkout `DSTM_BENCH_BASE_ROOT` names (a change's before
 * and after in one run). `DSTM_BENCH_NS_PREFIX` renames the namespaces (default `dstmb`).
 *
 * Flood tests (`flood64`, one flow; `flood64x64`, 64 flows in turn): iperf3's one sender
 * cannot load a forwarder past about 290k pps here, so what they measure is the sender and the
 * receiver, not the TEP. bench/c/flood4in6.c sends prebuilt 64-byte UDP datagrams (IPv4 in
 * IPv6 to the path's tunnel address; plain IPv4 for routing) from an AF_PACKET socket's
 * transmit ring (PACKET_TX_RING; sendmmsg before udp14b, ~1.3× slower per frame, which
 * capped the ring TEP's figure) straight to T's eth6, for omit + duration s, as fast as its
 * CPU goes: the forwarding rate at maximum offered load (RFC 2285 §3.6.2). Each flow's IPv4 identification counts up
 * with DF set, as a connected Linux UDP socket (iperf3's) numbers them; with 64 flows in turn
 * no two consecutive datagrams share a flow, so no GRO can coalesce them (the worst case).
 * S counts with a bound UDP socket that never reads: every datagram is counted once at S's
 * UDP layer (queued or dropped as RcvbufErrors), also each one the kernel cuts from a
 * super-datagram (without a socket a super-datagram would count once, as NoPorts).
 *
 * Latency: the `ping` test (not run by default) pings S from H through the idle path, 400
 * times 5 ms apart, and reports the round-trip times' median, 99th percentile and maximum;
 * `--ping` pings the same way during every load run (iperf3's and the flood's measured
 * seconds): what a packet waits behind the load, e.g. for the ring TEP's naps.
 *
 * Tests: TCP one stream H → S; UDP with 64-byte payloads, unlimited (`-b 0`). Rounds rotate the
 * order of the paths; the table gives medians over rounds and the ratios of every dstm path
 * to the C forwarder and to the kernel TEP. Per run: goodput or packets received per second,
 * packets leaving the TEP's IPv4 side per second (UDP: datagrams reaching S's UDP layer, since
 * dstm now writes UDP super-datagrams that eth4 counts once), the forwarder process's CPU per
 * forwarded packet (dstm, C: all its threads; /proc/PID/task), the whole machine's busy CPU
 * per forwarded packet (every path, iperf3 on both ends included) and iperf3's own CPU on
 * each end (from its report). Packets are counted as 1,500-byte equivalents (the larger of
 * packets and bytes / 1,500), since the kernel paths and dstm with offloads move GSO
 * super-packets of up to 64 KiB that the counters count once.
 *
 * Bounded: every iperf3 client is killed after duration + omit + 20 s, servers and forwarders
 * by PID after their run.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { seg6EncapRed, seg6EndDx4 } from "../test/helpers/seg6_host.ts";
import { eventually } from "../test/helpers/wait.ts";
import { parseBenchArgs } from "./bench_args.ts";
import { codeVersion, median, TICKS_PER_SECOND } from "./dataplane.ts";
import { machineTicks } from "./lab_counters.ts";

/** The ping test's pings, and the interval of every ping (also `--ping` during a load), s. */
const PING_COUNT = 400;
const PING_INTERVAL_S = 0.005;

const PATHS = [
  "routing",
  "kernel-tep",
  "dstm",
  "dstm-ring",
  "dstm-ring-base",
  "dstm-no-offload",
  "c",
] as const;
type PathName = (typeof PATHS)[number];
interface TestSpec {
  title: string;
  /** iperf3's arguments (iperf3 tests). */
  args: string[];
  udp: boolean;
  /** Flood tests: bench/c/flood4in6.c sends instead of iperf3, over this many UDP flows. */
  floodFlows?: number;
  /** The ping test: H pings S alone, no load (round-trip times through the idle TEP). */
  pingOnly?: boolean;
}
const TESTS = {
  tcp1: { title: "TCP, 1 stream, H → S", args: [], udp: false },
  udp64: { title: "UDP 64 B, -b 0, H → S", args: ["-u", "-l", "64", "-b", "0"], udp: true },
  flood64: {
    title: "UDP 64 B flood, 1 flow, AF_PACKET sender (forwarding rate under overload)",
    args: [],
    udp: true,
    floodFlows: 1,
  },
  flood64x64: {
    title: "UDP 64 B flood, 64 flows in turn, AF_PACKET sender (forwarding rate under overload)",
    args: [],
    udp: true,
    floodFlows: 64,
  },
  ping: {
    title: `ping H → S through the idle TEP, ${PING_COUNT} every ${PING_INTERVAL_S * 1000} ms`,
    args: [],
    udp: false,
    pingOnly: true,
  },
} as const satisfies Record<string, TestSpec>;
const spec = (test: TestName): TestSpec => TESTS[test];
type TestName = keyof typeof TESTS;

const A = {
  host6: "2001:db8:1::2",
  tep6: "2001:db8:1::1",
  hostSid: "2001:db8:100::1",
  kernelSid: "2001:db8:d4::1",
  host4: "198.51.100.1",
  hostPlain4: "203.0.113.2",
  tepPlain4: "203.0.113.1",
  tep4: "192.0.2.1",
  server4: "192.0.2.80",
};
const ROOT = join(import.meta.dir, "..");
/** The checkout path `dstm-ring-base` runs (`DSTM_BENCH_BASE_ROOT`): a before/after A/B in one run. */
const BASE_ROOT = process.env.DSTM_BENCH_BASE_ROOT;
/** The namespaces' name prefix (`DSTM_BENCH_NS_PREFIX`, default `dstmb`). */
const NS_PREFIX = process.env.DSTM_BENCH_NS_PREFIX ?? "dstmb";

interface Options {
  rounds: number;
  duration: number;
  omit: number;
  paths: PathName[];
  tests: TestName[];
  /** Paths for which the host's tx checksum offload is turned off. */
  txOff: PathName[];
  json: boolean;
  /** Ping H → S during every load run too (round-trip times under load). */
  ping: boolean;
}

interface Run {
  round: number;
  test: TestName;
  path: PathName;
  senderTxCsum: "on" | "off";
  gbps: number;
  receivedPps?: number;
  lossPercent?: number;
  retransmits?: number;
  /** Packets leaving the TEP's IPv4 side per second (towards S), in 1,500-byte equivalents. */
  tepPps: number;
  /** Packets per write(2) into the userspace TEP's TUN (dstm, c): its rx counter against `tepPps`. */
  packetsPerTunWrite?: number;
  /** CPU µs of the forwarder process (all threads) per forwarded packet (dstm, c). */
  forwarderUsPerPacket?: number;
  /** Busy CPU µs of the whole machine per forwarded packet. */
  machineUsPerPacket: number;
  /** CPU of the forwarder process and of the whole machine, % of one CPU (busy both: 200). */
  forwarderCpuPercent?: number;
  machineCpuPercent: number;
  /** Round-trip times of H's pings to S, ms: the ping test, or during a load with `--ping`. */
  ping?: PingResult;
  /** iperf3's own CPU, sender (H) and receiver (S), % of one CPU (iperf3 tests). */
  senderCpuPercent?: number;
  receiverCpuPercent?: number;
}

interface Topology {
  h: Netns;
  t: Netns;
  s: Netns;
  dir: string;
}

function sh(ns: Netns, argv: string[], allowFail = false): string {
  const r = ns.exec(argv);
  if (r.code !== 0 && !allowFail)
    throw new Error(`${ns.name}: ${argv.join(" ")}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

function build(): Topology {
  const h = createNetns(`${NS_PREFIX}-h-`);
  const t = createNetns(`${NS_PREFIX}-t-`);
  const s = createNetns(`${NS_PREFIX}-s-`);
  vethPair(h, "eth0", t, "eth6");
  vethPair(t, "eth4", s, "eth0");
  h.addAddress("eth0", `${A.host6}/64`);
  h.addAddress("eth0", `${A.hostPlain4}/24`);
  h.addAddress("lo", `${A.host4}/32`);
  t.addAddress("eth6", `${A.tep6}/64`);
  t.addAddress("eth6", `${A.tepPlain4}/24`);
  t.addAddress("eth4", `${A.tep4}/24`);
  s.addAddress("eth0", `${A.server4}/24`);
  sh(t, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
  s.ip("route", "add", "198.51.100.0/24", "via", A.tep4);
  s.ip("route", "add", "203.0.113.0/24", "via", A.tep4);
  t.ip("-6", "route", "add", "2001:db8:100::/64", "via", A.host6);
  h.ip("-6", "route", "add", "2001:db8:d4::/64", "via", A.tep6);
  sh(h, ["ip", "sr", "tunsrc", "set", A.hostSid]);
  seg6EndDx4(h, A.hostSid, "eth0");
  // The kernel TEP's routes stay in place: dstm and C use another SID and a wider IPv4 route
  // to their TUN, and the host picks the SID per path.
  seg6EndDx4(t, A.kernelSid, "eth6", A.server4);
  return { h, t, s, dir: mkdtempSync(join(tmpdir(), "dstm-tep-alone-")) };
}

function hostRoute(topo: Topology, path: PathName): void {
  const mtu = ["mtu", "lock", "1460"];
  if (path === "routing")
    topo.h.ip(
      "route",
      "replace",
      "192.0.2.0/24",
      "via",
      A.tepPlain4,
      "dev",
      "eth0",
      "src",
      A.hostPlain4,
      ...mtu,
    );
  else {
    const sid = path === "kernel-tep" ? A.kernelSid : A.tep6;
    seg6EncapRed(topo.h, "replace", "192.0.2.0/24", sid, "eth0", "src", A.host4, ...mtu);
  }
}

function baseRoot(): string {
  if (BASE_ROOT === undefined)
    throw new Error("path dstm-ring-base: set DSTM_BENCH_BASE_ROOT to the checkout it runs");
  return BASE_ROOT;
}

function setTxCsum(topo: Topology, on: boolean): void {
  sh(topo.h, ["ethtool", "-K", "eth0", "tx", on ? "on" : "off"]);
}

/** Starts the path's TEP; returns its PID (userspace paths) and a stop function. */
async function startPath(topo: Topology, path: PathName, ccBinary: string) {
  const { t } = topo;
  if (path === "routing") return { pid: undefined, stop: async () => {} };
  if (path === "kernel-tep") {
    seg6EncapRed(t, "add", `${A.host4}/32`, A.hostSid, "eth6");
    return { pid: undefined, stop: async () => void t.ip("route", "del", `${A.host4}/32`) };
  }
  const dstm = path.startsWith("dstm");
  const argv = dstm
    ? [
        process.execPath,
        // e.g. DSTM_BENCH_BUN_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the TEP.
        ...(process.env.DSTM_BENCH_BUN_ARGS?.split(" ").filter((a) => a !== "") ?? []),
        join(path === "dstm-ring-base" ? baseRoot() : ROOT, "mod.ts"),
        "tep",
        "--ipv6",
        A.tep6,
        "--ipv4",
        A.tep4,
        "--server",
        "2001:db8:1::53",
        "--insecure-control",
        "--route",
        "198.51.100.0/24",
        "--binding",
        `${A.host4}=${A.hostSid}`,
        "--control",
        join(topo.dir, "tep.sock"),
        "--log-level",
        "warn",
        ...(path === "dstm-no-offload" ? ["--no-offload"] : []),
        ...(path.startsWith("dstm-ring") ? ["--rx-ring"] : []),
      ]
    : [ccBinary, "tunc", A.tep6, A.hostSid];
  const proc = t.spawn(argv, { timeoutMs: 3_600_000 });
  const ifname = dstm ? "tep0" : "tunc";
  const up = await eventually(
    () => {
      const link = t.exec(["ip", "-o", "link", "show", ifname]);
      return (
        proc.exitCode !== null || (link.code === 0 && (path === "c" || /\bUP\b/.test(link.stdout)))
      );
    },
    { timeoutMs: 15_000, intervalMs: 50 },
  );
  if (!up || proc.exitCode !== null) {
    const err = await new Response(proc.stderr).text();
    throw new Error(`${path} TEP did not come up: ${err.trim()}`);
  }
  if (path === "c") {
    t.ip("link", "set", "tunc", "txqueuelen", "5000", "up");
    t.ip("route", "add", "198.51.100.0/24", "dev", "tunc");
    sh(t, ["sysctl", "-qw", "net.ipv4.conf.tunc.rp_filter=0", "net.ipv4.conf.all.rp_filter=0"]);
  }
  return {
    pid: proc.pid,
    stop: async () => {
      proc.kill("SIGTERM");
      const done = await Promise.race([
        proc.exited.then(() => true),
        Bun.sleep(5000).then(() => false),
      ]);
      if (!done) {
        proc.kill("SIGKILL");
        await proc.exited;
      }
    },
  };
}

function processTicks(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let sum = 0;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      sum += Number(f[11]) + Number(f[12]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return sum;
}

/** Packets and bytes the TEP sent towards S (a GSO super-packet counts once, as the kernel counts). */
function eth4Tx(topo: Topology): { packets: number; bytes: number } {
  const j = topo.t.ipJson<{ stats64: { tx: { packets: number; bytes: number } } }[]>(
    "-s",
    "link",
    "show",
    "eth4",
  );
  return j[0]!.stats64.tx;
}

let nextPort = 5301;

/**
 * Datagrams that reached S's UDP layer (a GSO super-datagram counted as the datagrams it
 * carries: the kernel cuts it before it counts): InDatagrams + InErrors + NoPorts.
 */
function serverUdpDatagrams(topo: Topology): number {
  const lines = topo.s
    .exec(["cat", "/proc/net/snmp"])
    .stdout.split("\n")
    .filter((l) => l.startsWith("Udp:"));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/).map(Number);
  const at = (field: string) => values[names.indexOf(field)] ?? 0;
  return at("InDatagrams") + at("InErrors") + at("NoPorts");
}

/** Counters read before and after a run. */
interface Sample {
  tx: { packets: number; bytes: number };
  /** Packets the userspace TEP wrote into its TUN (the TUN's rx counter; a super-packet once). */
  tunWrites: number;
  udp: number;
  cpu: number;
  machine: number;
}

function sample(topo: Topology, pid: number | undefined, path: PathName): Sample {
  const tun = path === "c" ? "tunc" : path.startsWith("dstm") ? "tep0" : undefined;
  return {
    tx: eth4Tx(topo),
    tunWrites: tun
      ? topo.t.ipJson<{ stats64: { rx: { packets: number } } }[]>("-s", "link", "show", tun)[0]!
          .stats64.rx.packets
      : 0,
    udp: serverUdpDatagrams(topo),
    cpu: processTicks(pid) / TICKS_PER_SECOND,
    machine: machineTicks().busy / TICKS_PER_SECOND,
  };
}

/**
 * Waits until H reaches S over the path (neighbours warm) and, with a `port`, S's iperf3
 * listens on it.
 */
function waitForPath(topo: Topology, path: PathName, port?: number): void {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ping = topo.h.exec(["ping", "-c", "1", "-W", "1", A.server4]);
    const listening =
      port === undefined ||
      topo.s.exec(["ss", "-Hltn", `sport = :${port}`]).stdout.includes(`:${port}`);
    if (ping.code === 0 && listening) return;
    if (Date.now() > deadline)
      throw new Error(`${path}: no IPv4 path H → S (ping) or no iperf3 server`);
  }
}

/** Runs iperf3 on H against S's server on `port`; its JSON report. */
async function iperf3(topo: Topology, test: TestName, path: PathName, port: number, o: Options) {
  const client = topo.h.spawn(
    ["iperf3", "-c", A.server4, "-p", String(port), "-t", String(o.duration)].concat([
      "-O",
      String(o.omit),
      "-J",
      ...TESTS[test].args,
    ]),
    { timeoutMs: (o.duration + o.omit + 20) * 1000 },
  );
  const [stdout, stderr] = await Promise.all([
    new Response(client.stdout).text(),
    new Response(client.stderr).text(),
  ]);
  const code = await client.exited;
  // biome-ignore lint/suspicious/noExplicitAny: iperf3's JSON
  let json: any;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new Error(`iperf3 (${test}, ${path}) exit ${code}: ${stderr.trim()}`);
  }
  if (json.error) throw new Error(`iperf3 (${test}, ${path}): ${json.error}`);
  return json;
}

/** One run's figures from iperf3's report and the counters before (`a`) and after (`b`). */
function toRun(
  // biome-ignore lint/suspicious/noExplicitAny: iperf3's JSON
  json: any,
  a: Sample,
  b: Sample,
  at: { round: number; test: TestName; path: PathName; txOff: boolean; pid?: number },
  o: Options,
): Run {
  const spec = TESTS[at.test];
  // Work in 1,500-byte packets: a super-packet of 64 KiB stands for about 44 of them. UDP:
  // the datagrams that reached S (a super-datagram counts once on eth4).
  const equivalent = spec.udp
    ? b.udp - a.udp
    : Math.max(b.tx.packets - a.tx.packets, (b.tx.bytes - a.tx.bytes) / 1500);
  const seconds = json.end.sum_sent.seconds + o.omit;
  const run: Run = {
    round: at.round,
    test: at.test,
    path: at.path,
    senderTxCsum: at.txOff ? "off" : "on",
    gbps: json.end.sum_received.bits_per_second / 1e9,
    tepPps: equivalent / seconds,
    machineUsPerPacket: (1e6 * (b.machine - a.machine)) / Math.max(1, equivalent),
    machineCpuPercent: (100 * (b.machine - a.machine)) / seconds,
  };
  if (at.pid !== undefined) {
    run.forwarderUsPerPacket = (1e6 * (b.cpu - a.cpu)) / Math.max(1, equivalent);
    run.packetsPerTunWrite = equivalent / Math.max(1, b.tunWrites - a.tunWrites);
    run.forwarderCpuPercent = (100 * (b.cpu - a.cpu)) / seconds;
  }
  run.senderCpuPercent = json.end.cpu_utilization_percent?.host_total;
  run.receiverCpuPercent = json.end.cpu_utilization_percent?.remote_total;
  if (spec.udp) {
    const blk = json.start.test_start.blksize;
    const sent = json.end.sum_sent.packets ?? 0;
    const got = json.end.sum_received.bytes / blk;
    run.receivedPps = got / json.end.sum_received.seconds;
    run.lossPercent = sent ? 100 * (1 - got / sent) : 0;
  } else run.retransmits = json.end.sum_sent.retransmits ?? 0;
  return run;
}

/** Pings during a load run (`--ping`): its measured `duration` s, after the `omit` s. */
function pingsDuring(o: Options): number {
  return Math.floor(o.duration / PING_INTERVAL_S);
}

interface PingResult {
  medianMs: number;
  p99Ms: number;
  maxMs: number;
  lost: number;
}

/**
 * Starts H pinging S every {@link PING_INTERVAL_S} s, `count` times (bounded by a timeout);
 * resolves with the round-trip times' median, 99th percentile and maximum, and the lost count.
 */
function startPing(topo: Topology, count: number): Promise<PingResult> {
  const proc = topo.h.spawn(
    ["ping", "-n", "-i", String(PING_INTERVAL_S), "-c", String(count), "-W", "1", A.server4],
    { timeoutMs: (count * PING_INTERVAL_S + 20) * 1000 },
  );
  return (async () => {
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    const rtts = [...out.matchAll(/time=([\d.]+) ms/g)]
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    const at = (q: number) => rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))] ?? NaN;
    return { medianMs: at(0.5), p99Ms: at(0.99), maxMs: at(1), lost: count - rtts.length };
  })();
}

async function runOne(
  topo: Topology,
  test: TestName,
  path: PathName,
  round: number,
  o: Options,
  cc: { tunfwd: string; flood: string },
): Promise<Run> {
  const txOff = o.txOff.includes(path);
  setTxCsum(topo, !txOff);
  hostRoute(topo, path);
  const tep = await startPath(topo, path, cc.tunfwd);
  if (spec(test).pingOnly) {
    try {
      waitForPath(topo, path);
      const ping = await startPing(topo, PING_COUNT);
      const none = { gbps: 0, tepPps: 0, machineUsPerPacket: 0, machineCpuPercent: 0 };
      return { round, test, path, senderTxCsum: txOff ? "off" : "on", ...none, ping };
    } finally {
      await tep.stop();
    }
  }
  if (spec(test).floodFlows !== undefined) {
    try {
      return await floodOne(topo, test, path, round, o, cc.flood, tep.pid, txOff);
    } finally {
      await tep.stop();
    }
  }
  const port = nextPort++;
  const server = topo.s.spawn(
    ["iperf3", "-s", "-1", "-p", String(port), "--logfile", "/dev/null"],
    { timeoutMs: (o.duration + o.omit + 30) * 1000 },
  );
  try {
    waitForPath(topo, path, port);
    const a = sample(topo, tep.pid, path);
    const ping = o.ping ? startPing(topo, pingsDuring(o)) : undefined;
    const json = await iperf3(topo, test, path, port, o);
    const b = sample(topo, tep.pid, path);
    const run = toRun(json, a, b, { round, test, path, txOff, pid: tep.pid }, o);
    if (ping) run.ping = await ping;
    return run;
  } finally {
    if (server.exitCode === null) {
      server.kill("SIGKILL");
      await server.exited;
    }
    await tep.stop();
  }
}

/** The C programs the bench needs, compiled into `dir`: the C forwarder and the flood sender. */
function compile(dir: string): { tunfwd: string; flood: string } {
  const built = { tunfwd: join(dir, "tunfwd"), flood: join(dir, "flood4in6") };
  for (const out of Object.values(built)) {
    const name = out.slice(dir.length + 1);
    const r = Bun.spawnSync(
      ["cc", "-O2", "-pthread", "-o", out, join(import.meta.dir, "c", `${name}.c`)],
      { stderr: "pipe" },
    );
    if (r.exitCode !== 0) throw new Error(`cc bench/c/${name}.c: ${r.stderr.toString()}`);
  }
  return built;
}

function macOf(ns: Netns, ifname: string): string {
  return ns.ipJson<{ address: string }[]>("link", "show", ifname)[0]!.address;
}

/**
 * A flood test's run: bench/c/flood4in6.c on H sends frames straight to T's eth6 for omit +
 * duration s (4in6 to the path's tunnel address; plain IPv4 for routing); the datagrams that
 * reach S's UDP layer (no listener: NoPorts, its ICMP errors rate-limited by S's kernel) in
 * the last `duration` s are the forwarding rate.
 */
async function floodOne(
  topo: Topology,
  test: TestName,
  path: PathName,
  round: number,
  o: Options,
  flood: string,
  pid: number | undefined,
  txOff: boolean,
): Promise<Run> {
  // The path works (neighbours resolved) before the clock starts.
  waitForPath(topo, path);
  const v6 = path !== "routing";
  const sid = path === "kernel-tep" ? A.kernelSid : A.tep6;
  const argv = [
    flood,
    "eth0",
    macOf(topo.t, "eth6"),
    macOf(topo.h, "eth0"),
    v6 ? A.hostSid : "-",
    v6 ? sid : "-",
    v6 ? A.host4 : A.hostPlain4,
    A.server4,
    "9",
    "64",
    String(spec(test).floodFlows),
    String(o.duration + o.omit),
    String(50_000_000),
  ];
  // A UDP socket on S that never reads: each datagram counts once at S's UDP layer (queued, or
  // dropped as RcvbufErrors), also one the kernel cuts from a super-datagram. Without a
  // socket, a super-datagram would count once as NoPorts.
  const sink = topo.s.spawn(
    [
      "python3",
      "-c",
      `import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(("${A.server4}", 9))\nprint("bound", flush=True)\ntime.sleep(${o.duration + o.omit + 30})`,
    ],
    { timeoutMs: (o.duration + o.omit + 30) * 1000 },
  );
  const first = await Promise.race([
    sink.stdout.getReader().read(),
    Bun.sleep(10_000).then(() => ({ value: undefined })),
  ]);
  if (!new TextDecoder().decode(first.value ?? new Uint8Array()).startsWith("bound")) {
    sink.kill("SIGKILL");
    throw new Error(`${path}: the UDP sink on S did not bind`);
  }
  const sender = topo.h.spawn(argv, { timeoutMs: (o.duration + o.omit + 20) * 1000 });
  // The measurement window: counters after `omit` s and after `omit + duration` s (a bench's
  // clock, not synchronisation).
  await Bun.sleep(o.omit * 1000);
  const a = sample(topo, pid, path);
  const t0 = performance.now();
  const ping = o.ping ? startPing(topo, pingsDuring(o)) : undefined;
  await Bun.sleep(o.duration * 1000);
  const b = sample(topo, pid, path);
  const seconds = (performance.now() - t0) / 1000;
  const [stdout, stderr] = await Promise.all([
    new Response(sender.stdout).text(),
    new Response(sender.stderr).text(),
  ]);
  const code = await sender.exited;
  sink.kill("SIGKILL");
  await sink.exited;
  const m = /sent (\d+) failed (\d+)/.exec(stdout);
  if (code !== 0 || !m) throw new Error(`flood4in6 (${path}) exit ${code}: ${stderr.trim()}`);
  const sentPps = Number(m[1]) / (o.duration + o.omit);
  const received = b.udp - a.udp;
  const run: Run = {
    round,
    test,
    path,
    senderTxCsum: txOff ? "off" : "on",
    gbps: 0,
    receivedPps: received / seconds,
    lossPercent: sentPps > 0 ? 100 * Math.max(0, 1 - received / seconds / sentPps) : 0,
    tepPps: received / seconds,
    machineUsPerPacket: (1e6 * (b.machine - a.machine)) / Math.max(1, received),
    machineCpuPercent: (100 * (b.machine - a.machine)) / seconds,
  };
  if (pid !== undefined) {
    run.forwarderUsPerPacket = (1e6 * (b.cpu - a.cpu)) / Math.max(1, received);
    run.packetsPerTunWrite = received / Math.max(1, b.tunWrites - a.tunWrites);
    run.forwarderCpuPercent = (100 * (b.cpu - a.cpu)) / seconds;
  }
  if (ping) run.ping = await ping;
  return run;
}

function fmt(n: number | undefined, digits = 2): string {
  return n === undefined || Number.isNaN(n) ? "–" : n.toFixed(digits);
}

/** A run's pings, for the log and the report: median / p99 / max RTT in µs, and losses. */
function pingText(p: PingResult | undefined): string {
  if (p === undefined) return "";
  const us = (ms: number) => Math.round(ms * 1000);
  return `ping RTT median ${us(p.medianMs)} µs, p99 ${us(p.p99Ms)} µs, max ${us(p.maxMs)} µs, ${p.lost} lost`;
}

/** The ping lines of `test` (medians over rounds of each figure), one per path. */
function pingReport(runs: Run[], test: TestName, o: Options): string[] {
  const lines: string[] = [];
  for (const path of o.paths) {
    const ps = runs.filter((r) => r.test === test && r.path === path && r.ping).map((r) => r.ping!);
    if (ps.length === 0) continue;
    const m = (f: (p: PingResult) => number) => median(ps.map(f));
    const text = pingText({
      medianMs: m((p) => p.medianMs),
      p99Ms: m((p) => p.p99Ms),
      maxMs: m((p) => p.maxMs),
      lost: m((p) => p.lost),
    });
    lines.push(`${path.padEnd(14)} ${text} (medians of ${ps.length} rounds)`);
  }
  return lines;
}

function report(runs: Run[], o: Options): string {
  const lines: string[] = [];
  for (const test of o.tests) {
    const spec = TESTS[test];
    if ("pingOnly" in spec) {
      lines.push(`\n${spec.title}`, ...pingReport(runs, test, o));
      continue;
    }
    const value = (r: Run) => (spec.udp ? r.receivedPps! : r.gbps);
    const med = new Map<PathName, number>();
    lines.push(`\n${spec.title} — medians of ${o.rounds} rounds`);
    lines.push(
      `| path       | ${spec.udp ? "received pps" : "Gbit/s      "} | TEP out pps | sender tx csum | forwarder µs/pkt | machine µs/pkt | ${spec.udp ? "loss %" : "retr. "} |`,
    );
    lines.push(
      "| ---------- | ------------ | ----------- | -------------- | ---------------- | -------------- | ------ |",
    );
    for (const path of o.paths) {
      const rs = runs.filter((r) => r.test === test && r.path === path);
      if (rs.length === 0) continue;
      const v = median(rs.map(value));
      med.set(path, v);
      const fw = rs.every((r) => r.forwarderUsPerPacket !== undefined)
        ? median(rs.map((r) => r.forwarderUsPerPacket!))
        : undefined;
      lines.push(
        `| ${path.padEnd(10)} | ${(spec.udp ? Math.round(v).toString() : v.toFixed(2)).padStart(12)} | ${Math.round(
          median(rs.map((r) => r.tepPps)),
        )
          .toString()
          .padStart(
            11,
          )} | ${rs[0]!.senderTxCsum.padEnd(14)} | ${fmt(fw).padStart(16)} | ${fmt(median(rs.map((r) => r.machineUsPerPacket))).padStart(14)} | ${(spec.udp ? fmt(median(rs.map((r) => r.lossPercent!)), 1) : String(median(rs.map((r) => r.retransmits!)))).padStart(6)} |`,
      );
    }
    for (const dstm of o.paths.filter((p) => p.startsWith("dstm"))) {
      const d = med.get(dstm);
      if (d === undefined) continue;
      const ratio = (p: PathName) => (med.has(p) ? `${(d / med.get(p)!).toFixed(2)}×` : "–");
      lines.push(
        `${dstm} / c = ${ratio("c")}, ${dstm} / kernel-tep = ${ratio("kernel-tep")}, ${dstm} / routing = ${ratio("routing")}`,
      );
    }
    if (o.ping) lines.push("pings during the load:", ...pingReport(runs, test, o));
  }
  return lines.join("\n");
}

async function main(o: Options): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: the bench creates namespaces");
  for (const tool of ["iperf3", "ethtool", "cc"])
    if (!Bun.which(tool))
      throw new Error(`${tool} is needed (apt-get install ${tool === "cc" ? "gcc" : tool})`);
  const topo = build();
  const runs: Run[] = [];
  try {
    const cc = compile(topo.dir);
    console.log(
      `code ${codeVersion()}, ${o.rounds} rounds × ${o.tests.length} tests × ${o.paths.length} paths, iperf3 -t ${o.duration} -O ${o.omit}`,
    );
    console.log(
      `sender (host H eth0) tx checksum offload (and so TSO): OFF for ${o.txOff.join(", ") || "no path"}, ON for the others (dstm completes CHECKSUM_PARTIAL checksums and cuts TSO packets itself; the C forwarder does not)`,
    );
    for (let round = 0; round < o.rounds; round++) {
      const order = o.paths.map((_, i) => o.paths[(i + round) % o.paths.length]!);
      if (round % 2 === 1) order.reverse();
      for (const test of o.tests)
        for (const path of order) {
          const r = await runOne(topo, test, path, round, o, cc);
          runs.push(r);
          if (!o.json)
            console.log(
              `round ${round} ${test} ${path.padEnd(10)} ${TESTS[test].udp ? `${Math.round(r.receivedPps!)} pps received` : `${r.gbps.toFixed(2)} Gbit/s`}, TEP out ${Math.round(r.tepPps)} pps, forwarder ${fmt(r.forwarderUsPerPacket)} µs/pkt (${fmt(r.forwarderCpuPercent, 0)}% CPU), ${fmt(r.packetsPerTunWrite, 1)} pkt/TUN write, machine ${fmt(r.machineUsPerPacket)} µs/pkt (${fmt(r.machineCpuPercent, 0)}%)${r.senderCpuPercent === undefined ? "" : `, iperf3 sender ${fmt(r.senderCpuPercent, 0)}% receiver ${fmt(r.receiverCpuPercent, 0)}%`}${r.ping ? `; ${pingText(r.ping)}` : ""}`,
            );
        }
    }
  } finally {
    for (const ns of [topo.h, topo.t, topo.s]) ns.delete();
    rmSync(topo.dir, { recursive: true, force: true });
  }
  if (o.json) console.log(JSON.stringify(runs, null, 2));
  else console.log(report(runs, o));
}

if (import.meta.main) {
  const { values } = parseBenchArgs(import.meta.path, {
    options: {
      rounds: { type: "string", default: "3" },
      duration: { type: "string", default: "4" },
      omit: { type: "string", default: "1" },
      paths: { type: "string", default: PATHS.filter((p) => p !== "dstm-ring-base").join(",") },
      tests: {
        type: "string",
        default: Object.keys(TESTS)
          .filter((t) => t !== "ping")
          .join(","),
      },
      "tx-off": { type: "string", default: "c" },
      json: { type: "boolean", default: false },
      ping: { type: "boolean", default: false },
    },
  });
  const paths = values.paths.split(",") as PathName[];
  const tests = values.tests.split(",") as TestName[];
  for (const p of paths)
    if (!PATHS.includes(p)) throw new Error(`--paths: unknown "${p}" (${PATHS.join(", ")})`);
  for (const t of tests) if (!(t in TESTS)) throw new Error(`--tests: unknown "${t}"`);
  await main({
    rounds: Number(values.rounds),
    duration: Number(values.duration),
    omit: Number(values.omit),
    paths,
    tests,
    txOff: values["tx-off"] === "" ? [] : (values["tx-off"].split(",") as PathName[]),
    json: values.json,
    ping: values.ping,
  });
}
