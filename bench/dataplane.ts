/**
 * Data-plane throughput: dstm's userspace 4over6 path against plain kernel IPv4 forwarding
 * through the same TEP namespace, side by side in one lab, with iperf3.
 *
 *   bun bench/dataplane.ts [--duration 4] [--omit 0] [--rounds 2] [--json]   # as root
 *
 * It brings up the lab of `dstm lab` under a unique name in a temporary directory (and takes
 * it down again, also on failure or Ctrl-C), then runs iperf3 from node A to the web host
 * 192.0.2.80 over two paths that share every namespace, veth, bridge and CPU:
 *
 * - **dstm**: A's DTI (`dti0`, TUN) → client Worker → raw IPv6 socket → sw6 bridge → TEP raw
 *   IPv6 socket → TEP Worker → `tep0` (TUN) → kernel IPv4 forwarding → eth4 → sw4 → web.
 * - **kernel**: the same wires without the tunnel. A's eth0 gets 203.0.113.2/24 and the TEP's
 *   eth6 203.0.113.1/24; in A a policy rule sends what comes from 203.0.113.2 to
 *   192.0.2.0/24 via the TEP, with the route MTU locked to the DTI's MTU (1460) so that both
 *   paths carry packets of the same size; the web host routes 203.0.113.0/24 back via the
 *   TEP. iperf3 binds to 203.0.113.2 (`-B`) to take this path. The kernel keeps TCP as GSO
 *   super-packets along it (veth and bridge do not segment), a TUN device cannot: that is
 *   part of what is compared.
 *
 * Tests (each `-t duration -O omit`, iperf3 `-J`): TCP 1 stream, TCP 4 streams, TCP 1 stream
 * reversed (web → A), UDP with 64-byte payloads unlimited (`-b 0`), and UDP 64 bytes at an
 * offered 150,000 packets/s. Rounds alternate which path goes first; the table shows medians
 * over rounds and the ratio dstm / kernel per test. For every run the counters along the
 * path are read before and after: packets leaving the TEP on each side (same counter for
 * both paths) and where dstm packets were dropped (A's DTI ring, the raw sockets' queues,
 * the TEP's TUN ring, the web host's UDP socket buffer), the CPU time of each forwarding
 * Worker (/proc/PID/task), and the CPU of the processes outside the lab: a run during which
 * they used 10% of a CPU or more is flagged, since other sessions share these machines.
 *
 * Bounded: every iperf3 client is killed after duration + omit + 20 s, every iperf3 server
 * (`-s -1`, one test) is killed by PID after its test.
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { leasedAddress } from "../lib/lab/demo.ts";
import { Lab } from "../lib/lab/lab.ts";
import { dstmArgv } from "../lib/lab/services.ts";
import { LAB } from "../lib/lab/topology.ts";
import { waitUntil } from "../test/helpers/wait.ts";

/** The kernel path's addresses (documentation prefix 203.0.113.0/24, TEST-NET-3). */
const KERNEL = { net: "203.0.113.0/24", a: "203.0.113.2", tep: "203.0.113.1", table: "100" };
const UDP_PAYLOAD = 64;
const UDP_FIXED_PPS = 150_000;

type PathName = "dstm" | "kernel";
const PATHS: readonly PathName[] = ["dstm", "kernel"];

export interface TestSpec {
  id: string;
  title: string;
  args: string[];
  kind: "tcp" | "udp";
  /** Data flows web → A (iperf3 -R): the TEP encapsulates. */
  reverse?: boolean;
}

export const TESTS: readonly TestSpec[] = [
  { id: "tcp1", title: "TCP, 1 stream, A → web", args: [], kind: "tcp" },
  { id: "tcp4", title: "TCP, 4 streams, A → web", args: ["-P", "4"], kind: "tcp" },
  {
    id: "tcp1-rev",
    title: "TCP, 1 stream, web → A (-R)",
    args: ["-R"],
    kind: "tcp",
    reverse: true,
  },
  {
    id: "udp64-max",
    title: "UDP 64 B, unlimited (-b 0)",
    args: ["-u", "-l", String(UDP_PAYLOAD), "-b", "0"],
    kind: "udp",
  },
  {
    id: "udp64-150k",
    title: "UDP 64 B, 150k pps offered",
    args: ["-u", "-l", String(UDP_PAYLOAD), "-b", String(UDP_FIXED_PPS * UDP_PAYLOAD * 8)],
    kind: "udp",
  },
];

/** Counters read around every run (cumulative values; a run reports differences). */
export interface Snapshot {
  /** TEP eth4 (IPv4 side): packets/bytes out = towards web, in = from web. */
  tepEth4TxPackets: number;
  tepEth4TxBytes: number;
  tepEth4RxPackets: number;
  tepEth4RxBytes: number;
  /** A's DTI: packets the kernel could not queue for the client Worker (TUN ring full). */
  dtiTxDropped: number;
  /** The TEP's TUN: the same on the TEP's encapsulating side. */
  tepTunTxDropped: number;
  /** Raw IPv6 sockets (next header 4): packets dropped because the receive queue was full. */
  tepRaw6Drops: number;
  aRaw6Drops: number;
  /** Web host: UDP datagrams dropped on a full socket buffer (the iperf3 server). */
  webUdpRcvbufErrors: number;
  /** dstm's own per-reason counters at the TEP (forwards and drops). */
  tepCounters: Record<string, number>;
  /** CPU clock ticks of the TEP's and node A's client threads, by thread name. */
  ticks: Record<string, number>;
  /** /proc/stat: busy and total ticks of the whole machine. */
  machine: { busy: number; total: number };
  /** CPU ticks of every user process outside the lab's namespaces (other people's load). */
  outside: Map<number, { name: string; ticks: number }>;
}

export interface RunResult {
  round: number;
  test: string;
  path: PathName;
  /** TCP: receiver goodput; UDP: payload bits received. */
  gbps: number;
  retransmits?: number;
  /** UDP: datagrams sent and received per second, loss at the receiver. */
  sentPps?: number;
  receivedPps?: number;
  lossPercent?: number;
  /** Packets per second leaving the TEP towards the receiver, and their mean size. */
  tepPps: number;
  tepMeanBytes: number;
  /** iperf3's own CPU figures (% of one CPU). */
  cpu: { sender: number; receiver: number };
  /** dstm's forwarding Workers (TEP and node A): % of one CPU while traffic flowed, by thread. */
  workers: Record<string, number>;
  /** The whole machine: % of all its CPUs busy over the run. */
  machineBusy: number;
  /** Processes outside the lab (not this benchmark): % of one CPU over the run, and the top one. */
  outsideLoad: { percent: number; top: string };
  /** dstm path: packets per second the TEP tunnelled in the data's direction (its counter). */
  tunnelPps?: number;
  /** dstm path: CPU time of the two Workers in the data's direction per tunnelled packet. */
  workerUsPerPacket?: number;
  /** Counter differences over the run (only the non-zero drop counters). */
  drops: Record<string, number>;
  seconds: number;
}

export interface Options {
  duration: number;
  omit: number;
  rounds: number;
  json: boolean;
}

// ---------------------------------------------------------------------------------------
// The kernel path and the counters

export function addKernelPath(lab: Lab, mtu: number): void {
  lab.ns.a.addAddress("eth0", `${KERNEL.a}/24`);
  lab.ns.tep.addAddress("eth6", `${KERNEL.tep}/24`);
  lab.ns.a.ip("-4", "rule", "add", "from", KERNEL.a, "lookup", KERNEL.table, "pref", "100");
  lab.ns.a.ip(
    "-4",
    "route",
    "add",
    LAB.ipv4Net,
    "via",
    KERNEL.tep,
    "dev",
    "eth0",
    "mtu",
    "lock",
    String(mtu),
    "table",
    KERNEL.table,
  );
  lab.ns.web.addRoute(KERNEL.net, "via", LAB.tep4);
}

interface LinkStats {
  stats64: {
    rx: { packets: number; bytes: number; dropped: number };
    tx: { packets: number; bytes: number; dropped: number };
  };
}

function linkStats(lab: Lab, role: "a" | "tep", dev: string): LinkStats["stats64"] {
  const [link] = lab.ns[role].ipJson<LinkStats[]>("-s", "link", "show", "dev", dev);
  if (!link) throw new Error(`no link ${dev} in ${role}`);
  return link.stats64;
}

/** Drops of the bound raw IPv6 sockets of next header 4 (/proc/net/raw6, last column). */
function raw6Drops(lab: Lab, role: "a" | "tep"): number {
  const text = lab.run(role, ["cat", "/proc/net/raw6"]).stdout;
  let drops = 0;
  for (const line of text.trim().split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(":0004")) drops += Number(f[f.length - 1]);
  }
  return drops;
}

function nstat(lab: Lab, role: "web", name: string): number {
  const r = lab.run(role, ["nstat", "-az", "-j", name]);
  const parsed = JSON.parse(r.stdout || "{}") as { kernel?: Record<string, number> };
  return parsed.kernel?.[name] ?? 0;
}

async function tepCounters(lab: Lab): Promise<Record<string, number>> {
  const response = await fetch("http://localhost/v1/stats", { unix: lab.services.socket("tep") });
  return ((await response.json()) as { counters: Record<string, number> }).counters;
}

export async function snapshot(lab: Lab): Promise<Snapshot> {
  const eth4 = linkStats(lab, "tep", "eth4");
  return {
    tepEth4TxPackets: eth4.tx.packets,
    tepEth4TxBytes: eth4.tx.bytes,
    tepEth4RxPackets: eth4.rx.packets,
    tepEth4RxBytes: eth4.rx.bytes,
    dtiTxDropped: linkStats(lab, "a", "dti0").tx.dropped,
    tepTunTxDropped: linkStats(lab, "tep", "tep0").tx.dropped,
    tepRaw6Drops: raw6Drops(lab, "tep"),
    aRaw6Drops: raw6Drops(lab, "a"),
    webUdpRcvbufErrors: nstat(lab, "web", "UdpRcvbufErrors"),
    tepCounters: await tepCounters(lab),
    ticks: { ...threadTicks(lab.state.pids.tep), ...threadTicks(lab.state.pids["client-a"]) },
    machine: machineTicks(),
    outside: outsideTicks(lab),
  };
}

let labNetnsInodes: Set<string> | undefined;

/**
 * utime + stime of the user processes that run outside the lab's namespaces, except this
 * one and its helpers (kernel threads are left out: softirq work of the test lands there).
 */
function outsideTicks(lab: Lab): Map<number, { name: string; ticks: number }> {
  labNetnsInodes ??= new Set(
    Object.values(lab.ns).map((ns) => `net:[${statSync(`/run/netns/${ns.name}`).ino}]`),
  );
  const out = new Map<number, { name: string; ticks: number }>();
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (labNetnsInodes.has(readlinkSync(`/proc/${pid}/ns/net`))) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // ppid (field 4) 2 = kthreadd's children; flags (field 9) PF_KTHREAD = 0x200000.
      if (pid === 2 || fields[1] === "2" || (Number(fields[6]) & 0x200000) !== 0) continue;
      if (Number(fields[1]) === process.pid) continue;
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      out.set(pid, { name, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

export function outsideLoad(
  before: Snapshot["outside"],
  after: Snapshot["outside"],
  seconds: number,
): { percent: number; top: string } {
  let total = 0;
  let top = { name: "", ticks: 0 };
  for (const [pid, a] of after) {
    const ticks = a.ticks - (before.get(pid)?.ticks ?? 0);
    total += ticks;
    if (ticks > top.ticks) top = { name: `${a.name} (${pid})`, ticks };
  }
  const pct = (ticks: number) => (100 * ticks) / TICKS_PER_SECOND / seconds;
  return {
    percent: pct(total),
    top: top.ticks ? `${top.name} ${pct(top.ticks).toFixed(0)}%` : "",
  };
}

/** utime + stime of each thread of `pid` whose name starts with "dstm-" (the Workers). */
function threadTicks(pid: number | undefined): Record<string, number> {
  const ticks: Record<string, number> = {};
  if (pid === undefined) return ticks;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      continue; // the thread ended meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    if (!comm.startsWith("dstm-")) continue;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of proc(5) (utime, stime); `fields` starts at field 3.
    ticks[comm.slice(5)] = (ticks[comm.slice(5)] ?? 0) + Number(fields[11]) + Number(fields[12]);
  }
  return ticks;
}

function machineTicks(): { busy: number; total: number } {
  const v = readFileSync("/proc/stat", "utf8")
    .split("\n")[0]!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
}

/** Linux USER_HZ: /proc times are in hundredths of a second. */
export const TICKS_PER_SECOND = 100;

export function dropsBetween(a: Snapshot, b: Snapshot): Record<string, number> {
  const drops: Record<string, number> = {
    "A dti0 ring full (tx_dropped)": b.dtiTxDropped - a.dtiTxDropped,
    "TEP raw6 socket queue full": b.tepRaw6Drops - a.tepRaw6Drops,
    "TEP tep0 ring full (tx_dropped)": b.tepTunTxDropped - a.tepTunTxDropped,
    "A raw6 socket queue full": b.aRaw6Drops - a.aRaw6Drops,
    "web UDP socket buffer full": b.webUdpRcvbufErrors - a.webUdpRcvbufErrors,
  };
  for (const [name, value] of Object.entries(b.tepCounters)) {
    if (/drop|rate-limited/.test(name))
      drops[`TEP counter ${name}`] = value - (a.tepCounters[name] ?? 0);
  }
  return Object.fromEntries(Object.entries(drops).filter(([, v]) => v !== 0));
}

// ---------------------------------------------------------------------------------------
// iperf3

interface IperfSum {
  seconds: number;
  bytes: number;
  bits_per_second: number;
  retransmits?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
}

interface IperfJson {
  error?: string;
  start: { test_start: { blksize: number } };
  end: {
    sum_sent: IperfSum;
    sum_received: IperfSum;
    cpu_utilization_percent: { host_total: number; remote_total: number };
  };
}

let nextPort = 5201;

async function waitListening(lab: Lab, port: number, timeoutMs: number): Promise<void> {
  await waitUntil(
    () => lab.run("web", ["ss", "-Hltn", `sport = :${port}`]).stdout.includes(`:${port}`),
    { timeoutMs, intervalMs: 20, what: `the iperf3 server on port ${port}` },
  );
}

export async function runOne(
  lab: Lab,
  test: TestSpec,
  path: PathName,
  round: number,
  o: Options,
  /** The node iperf3 runs on (B: bench/dataplane_kernel_dti.ts). */
  from: "a" | "b" = "a",
): Promise<RunResult> {
  const port = nextPort++;
  const boundS = o.duration + o.omit + 20;
  const server = lab.ns.web.spawn(
    ["iperf3", "-s", "-1", "-B", LAB.web4, "-p", String(port), "--logfile", "/dev/null"],
    { timeoutMs: (boundS + 10) * 1000 },
  );
  try {
    await waitListening(lab, port, 5000);
    const before = await snapshot(lab);
    const started = performance.now();
    // Spawned, not run synchronously, so that Ctrl-C takes the lab down at once.
    const client = lab.ns[from].spawn(
      [
        "iperf3",
        "-c",
        LAB.web4,
        "-p",
        String(port),
        "-t",
        String(o.duration),
        "-O",
        String(o.omit),
        "-J",
        ...(path === "kernel" ? ["-B", KERNEL.a] : []),
        ...test.args,
      ],
      { timeoutMs: boundS * 1000 },
    );
    const [stdout, stderr] = await Promise.all([
      new Response(client.stdout).text(),
      new Response(client.stderr).text(),
    ]);
    const code = await client.exited;
    const seconds = (performance.now() - started) / 1000;
    const after = await snapshot(lab);
    let json: IperfJson;
    try {
      json = JSON.parse(stdout) as IperfJson;
    } catch {
      throw new Error(`iperf3 (${test.id}, ${path}) exit ${code}: ${stderr.trim()}`);
    }
    if (json.error) throw new Error(`iperf3 (${test.id}, ${path}): ${json.error}`);
    // Counter differences are divided by the time the sender sent (iperf3's own figure,
    // plus the omitted warm-up, which the counters include), not by the wall time of the
    // client, which also holds the set-up and the end of the test.
    const traffic = json.end.sum_sent.seconds + o.omit;
    const { sum_sent: sent, sum_received: received, cpu_utilization_percent: cpu } = json.end;
    // Packets crossing the TEP's IPv4 side towards the receiver over the client's wall time
    // (the omitted first second included). A GSO super-packet counts once, as the kernel
    // counts it; the mean size shows it.
    const tepPackets = test.reverse
      ? after.tepEth4RxPackets - before.tepEth4RxPackets
      : after.tepEth4TxPackets - before.tepEth4TxPackets;
    const tepBytes = test.reverse
      ? after.tepEth4RxBytes - before.tepEth4RxBytes
      : after.tepEth4TxBytes - before.tepEth4TxBytes;
    const result: RunResult = {
      round,
      test: test.id,
      path,
      gbps: received.bits_per_second / 1e9,
      tepPps: tepPackets / traffic,
      tepMeanBytes: tepBytes / Math.max(1, tepPackets),
      cpu: {
        sender: test.reverse ? cpu.remote_total : cpu.host_total,
        receiver: test.reverse ? cpu.host_total : cpu.remote_total,
      },
      drops: dropsBetween(before, after),
      workers: Object.fromEntries(
        Object.entries(after.ticks).map(([thread, t]) => [
          thread,
          (100 * (t - (before.ticks[thread] ?? 0))) / TICKS_PER_SECOND / traffic,
        ]),
      ),
      machineBusy:
        (100 * (after.machine.busy - before.machine.busy)) /
        Math.max(1, after.machine.total - before.machine.total),
      outsideLoad: outsideLoad(before.outside, after.outside, seconds),
      seconds,
    };
    if (path === "dstm") {
      // The two Workers in the data's direction, per packet they tunnelled (TEP counter).
      const [first, second, counter] = test.reverse
        ? ["tep-encap", "client-in", "encap-forward"]
        : ["client-out", "tep-decap", "decap-forward"];
      const tunnelled = (after.tepCounters[counter] ?? 0) - (before.tepCounters[counter] ?? 0);
      const workerSeconds =
        (((result.workers[first!] ?? 0) + (result.workers[second!] ?? 0)) * traffic) / 100;
      result.tunnelPps = tunnelled / traffic;
      result.workerUsPerPacket = (1e6 * workerSeconds) / Math.max(1, tunnelled);
    }
    if (test.kind === "tcp") result.retransmits = sent.retransmits ?? 0;
    else {
      const blksize = json.start.test_start.blksize;
      result.sentPps = (sent.packets ?? 0) / sent.seconds;
      result.receivedPps = received.bytes / blksize / received.seconds;
      // From the counts, not iperf3's lost_percent (which miscounts with -O).
      const sentPackets = sent.packets ?? 0;
      result.lossPercent = sentPackets ? 100 * (1 - received.bytes / blksize / sentPackets) : 0;
    }
    return result;
  } finally {
    if (server.exitCode === null) {
      const done = await Promise.race([
        server.exited.then(() => true),
        Bun.sleep(3000).then(() => false),
      ]);
      if (!done) {
        server.kill("SIGKILL");
        await server.exited;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Report

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

interface Summary {
  test: string;
  title: string;
  metric: "Gbit/s" | "packets/s received";
  dstm: number;
  kernel: number;
  ratio: number;
  /** Packets per second leaving the TEP towards the receiver (medians). */
  tepPps: { dstm: number; kernel: number };
  lossPercent?: { dstm: number; kernel: number };
  /** dstm: CPU time of the two Workers in the data's direction per tunnelled packet (µs). */
  workerUsPerPacket: number;
}

function summarize(results: RunResult[]): Summary[] {
  return TESTS.map((test) => {
    const of = (path: PathName) => results.filter((r) => r.test === test.id && r.path === path);
    const primary = (r: RunResult) => (test.kind === "udp" ? r.receivedPps! : r.gbps);
    const dstm = median(of("dstm").map(primary));
    const kernel = median(of("kernel").map(primary));
    const summary: Summary = {
      test: test.id,
      title: test.title,
      metric: test.kind === "udp" ? "packets/s received" : "Gbit/s",
      dstm,
      kernel,
      ratio: dstm / kernel,
      tepPps: {
        dstm: median(of("dstm").map((r) => r.tepPps)),
        kernel: median(of("kernel").map((r) => r.tepPps)),
      },
      workerUsPerPacket: median(of("dstm").map((r) => r.workerUsPerPacket ?? Number.NaN)),
    };
    if (test.kind === "udp")
      summary.lossPercent = {
        dstm: median(of("dstm").map((r) => r.lossPercent!)),
        kernel: median(of("kernel").map((r) => r.lossPercent!)),
      };
    return summary;
  });
}

const int = (n: number) => Math.round(n).toLocaleString("en-US");

function formatValue(s: Summary, path: PathName): string {
  if (s.metric === "Gbit/s") return `${s[path].toFixed(2)} Gbit/s`;
  return `${int(s[path])} pps, loss ${s.lossPercent![path].toFixed(1)}%`;
}

function formatTable(summaries: Summary[]): string {
  const rows = [
    [
      "test",
      "dstm",
      "kernel",
      "dstm/kernel",
      "TEP IPv4 side pps, dstm / kernel",
      "dstm Worker CPU/packet",
    ],
    ...summaries.map((s) => [
      s.title,
      formatValue(s, "dstm"),
      formatValue(s, "kernel"),
      s.ratio.toFixed(2),
      `${int(s.tepPps.dstm)} / ${int(s.tepPps.kernel)}`,
      `${s.workerUsPerPacket.toFixed(1)} µs`,
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ")).join("\n");
}

function formatRun(r: RunResult): string {
  const test = TESTS.find((t) => t.id === r.test)!;
  const value =
    test.kind === "udp"
      ? `sent ${int(r.sentPps!)} pps, received ${int(r.receivedPps!)} pps, loss ${r.lossPercent!.toFixed(1)}%`
      : `${r.gbps.toFixed(2)} Gbit/s, ${r.retransmits} retransmits`;
  const size = ` (mean ${int(r.tepMeanBytes)} B)`;
  const drops = Object.entries(r.drops)
    .map(([k, v]) => `${k} ${int(v)}`)
    .join(", ");
  const workers =
    r.path === "dstm"
      ? `; Workers ${Object.entries(r.workers)
          .filter(([, v]) => v >= 1)
          .map(([k, v]) => `${k} ${v.toFixed(0)}%`)
          .join(
            " ",
          )}${r.workerUsPerPacket === undefined ? "" : ` (${int(r.tunnelPps!)} tunnelled pps, ${r.workerUsPerPacket.toFixed(1)} µs of Worker CPU per packet)`}`
      : "";
  return `round ${r.round + 1} ${r.path.padEnd(6)} ${test.title}: ${value}; TEP ${int(r.tepPps)} pps${size}; CPU: machine ${r.machineBusy.toFixed(0)}%, iperf3 sender ${r.cpu.sender.toFixed(0)}% receiver ${r.cpu.receiver.toFixed(0)}%${workers}${drops ? `; drops: ${drops}` : ""}${r.outsideLoad.percent >= 10 ? `; OTHER LOAD on the machine ${r.outsideLoad.percent.toFixed(0)}% of a CPU, top: ${r.outsideLoad.top}` : ""}`;
}

/** The commit measured, with "+changes" when lib/, cli/ or mod.ts differ from it. */
export function codeVersion(): string {
  const root = join(import.meta.dir, "..");
  const git = (...args: string[]) =>
    Bun.spawnSync(["git", "-C", root, ...args], { stdout: "pipe", stderr: "ignore" });
  const head = git("rev-parse", "--short", "HEAD");
  if (head.exitCode !== 0) return "unknown";
  const dirty = git("status", "--porcelain", "--", "lib", "cli", "mod.ts").stdout.toString();
  return `${head.stdout.toString().trim()}${dirty.trim() ? "+changes" : ""}`;
}

/** Share of the two CPUs busy over `ms`, from /proc/stat (to flag a machine that is not idle). */
/**
 * A uniquely named lab in a temporary directory for one benchmark run, taken down by
 * `takeDown()` (idempotent) or on SIGINT/SIGTERM; `release()` removes the signal handlers.
 */
export function benchLabSession(prefix: string, dirPrefix: string) {
  const name = `${prefix}${[...crypto.getRandomValues(new Uint8Array(3))].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  const baseDir = mkdtempSync(join(tmpdir(), dirPrefix));
  let down: Promise<unknown> | undefined;
  const takeDown = () => {
    down ??= Lab.down(name, baseDir).finally(() =>
      rmSync(baseDir, { recursive: true, force: true }),
    );
    return down;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    void takeDown().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const release = () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
  return { name, baseDir, takeDown, release };
}

export async function cpuBusy(ms: number): Promise<number> {
  const read = () => {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1);
    const v = f.map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { idle, total: v.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await Bun.sleep(ms);
  const b = read();
  return 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
}

// ---------------------------------------------------------------------------------------

async function main(o: Options): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: the lab creates namespaces");
  if (Bun.spawnSync(["iperf3", "--version"]).exitCode !== 0) throw new Error("iperf3 not found");
  const log = (line: string) => {
    if (!o.json) console.log(line);
  };
  const busyBefore = await cpuBusy(1000);
  if (busyBefore > 0.15)
    log(
      `warning: the machine was ${(busyBefore * 100).toFixed(0)}% busy before the lab came up; other load lowers both paths`,
    );
  const { name, baseDir, takeDown, release } = benchLabSession("bd", "dstm-dataplane-");
  const started = Date.now();
  const results: RunResult[] = [];
  try {
    log(`lab ${name}: bringing it up (dstm = ${dstmArgv().join(" ")})`);
    const lab = await Lab.up(name, baseDir);
    const a4 = await leasedAddress(lab, "a");
    const [dti] = lab.ns.a.ipJson<{ mtu: number }[]>("link", "show", "dev", "dti0");
    const mtu = dti?.mtu ?? LAB.ipv6Mtu - 40;
    addKernelPath(lab, mtu);
    for (const [path, extra] of [
      ["dstm", []],
      ["kernel", ["-I", KERNEL.a]],
    ] as const) {
      const r = lab.run("a", ["ping", "-c", "1", "-W", "2", ...extra, LAB.web4]);
      if (r.code !== 0) throw new Error(`${path} path: ping ${LAB.web4} failed: ${r.stdout}`);
    }
    log(
      `node A: dstm source ${a4} (dti0, MTU ${mtu}); kernel source ${KERNEL.a} (eth0, route MTU ${mtu} locked)`,
    );
    log(
      `iperf3 -t ${o.duration} -O ${o.omit}, ${o.rounds} rounds, paths alternating; web server ${LAB.web4}\n`,
    );
    for (let round = 0; round < o.rounds; round++) {
      for (const test of TESTS) {
        const order = round % 2 === 0 ? PATHS : [...PATHS].reverse();
        for (const path of order) {
          const r = await runOne(lab, test, path, round, o);
          results.push(r);
          log(formatRun(r));
        }
      }
    }
  } finally {
    await takeDown();
    release();
  }
  const summaries = summarize(results);
  const tcp1 = summaries.find((s) => s.test === "tcp1")!;
  const udpMax = summaries.find((s) => s.test === "udp64-max")!;
  const report = {
    date: new Date().toISOString(),
    command: `bun bench/dataplane.ts --duration ${o.duration} --omit ${o.omit} --rounds ${o.rounds}`,
    code: codeVersion(),
    machine: { cpus: navigator.hardwareConcurrency, busyBefore },
    seconds: (Date.now() - started) / 1000,
    summaries,
    targets: {
      tcpGbps: { target: 1.2, dstm: tcp1.dstm, met: tcp1.dstm >= 1.2 },
      tepPps: { target: 150_000, dstm: udpMax.tepPps.dstm, met: udpMax.tepPps.dstm >= 150_000 },
    },
    runsWithOtherLoad: results.filter((r) => r.outsideLoad.percent >= 10).length,
    runs: results,
  };
  if (o.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.log(
    `\nmedians of ${o.rounds} rounds (${report.seconds.toFixed(0)} s in all, code ${report.code}):\n`,
  );
  console.log(formatTable(summaries));
  if (report.runsWithOtherLoad > 0)
    console.log(
      `\nwarning: ${report.runsWithOtherLoad} of ${results.length} runs shared the machine with other load (≥ 10% of a CPU outside the lab); rerun on a quiet machine`,
    );
  console.log(
    `\ntargets: TCP 1 stream ≥ 1.2 Gbit/s: ${tcp1.dstm.toFixed(2)} (${report.targets.tcpGbps.met ? "met" : "not met"}); ≥ 150,000 pps through the TEP (UDP 64 B unlimited): ${int(udpMax.tepPps.dstm)} (${report.targets.tepPps.met ? "met" : "not met"})`,
  );
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      duration: { type: "string", default: "4" },
      omit: { type: "string", default: "0" },
      rounds: { type: "string", default: "2" },
      json: { type: "boolean", default: false },
    },
  });
  const options: Options = {
    duration: Number(values.duration),
    omit: Number(values.omit),
    rounds: Number(values.rounds),
    json: values.json,
  };
  if (
    !(options.duration >= 1 && options.duration <= 30) ||
    !(options.omit >= 0 && options.omit <= 5) ||
    !(options.rounds >= 1 && options.rounds <= 5)
  ) {
    console.error("--duration 1..30, --omit 0..5, --rounds 1..5");
    process.exit(2);
  }
  try {
    await main(options);
  } catch (error) {
    console.error(`dataplane: ${(error as Error).message}`);
    process.exit(1);
  }
}
