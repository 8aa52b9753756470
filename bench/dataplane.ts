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
import { leasedAddress } from "../lib/lab/demo.ts";
import { Lab } from "../lib/lab/lab.ts";
import { dstmArgv } from "../lib/lab/services.ts";
import { LAB } from "../lib/lab/topology.ts";
import { parseBenchArgs } from "./bench_args.ts";
import {
  type BenchLog,
  benchLabSession,
  benchMain,
  benchPreflight,
  int,
  printMedians,
  reportHead,
  TICKS_PER_SECOND,
} from "./bench_common.ts";
import { formatRun, formatTable, summarize } from "./dataplane_report.ts";
import {
  type Options,
  PATHS,
  type PathName,
  type RunResult,
  TESTS,
  type TestSpec,
} from "./dataplane_tests.ts";
import { type IperfJson, runIperfClient, startIperfServer } from "./iperf.ts";
import { dropsBetween, outsideLoad, type Snapshot, snapshot } from "./lab_counters.ts";

// Moved to ./bench_common.ts and ./lab_counters.ts; re-exported for the benches that import
// them from here.
export { codeVersion, median, TICKS_PER_SECOND } from "./bench_common.ts";
export { dropsBetween, outsideLoad, type Snapshot, snapshot } from "./lab_counters.ts";

/** The kernel path's addresses (documentation prefix 203.0.113.0/24, TEST-NET-3). */
const KERNEL = { net: "203.0.113.0/24", a: "203.0.113.2", tep: "203.0.113.1", table: "100" };
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

// ---------------------------------------------------------------------------------------
// One run

/** Runs `test` over `path` once: iperf3 from node A to the web host, counters around it. */
export async function runOne(
  lab: Lab,
  test: TestSpec,
  path: PathName,
  round: number,
  o: Options,
  /** The node iperf3 runs on (B, C: bench/dataplane_kernel_dti.ts). */
  from: "a" | "b" | "c" = "a",
): Promise<RunResult> {
  const boundS = o.duration + o.omit + 20;
  const server = await startIperfServer(lab, (boundS + 10) * 1000);
  try {
    const before = await snapshot(lab);
    const started = performance.now();
    const json = await runIperfClient(
      lab.ns[from],
      [
        ...["-c", LAB.web4, "-p", String(server.port)],
        ...["-t", String(o.duration), "-O", String(o.omit)],
        ...(path === "kernel" ? ["-B", KERNEL.a] : []),
        ...test.args,
      ],
      boundS * 1000,
      `${test.id}, ${path}`,
    );
    const seconds = (performance.now() - started) / 1000;
    const after = await snapshot(lab);
    return runResult({ test, path, round, omit: o.omit }, json, { before, after, seconds });
  } finally {
    await server.stop();
  }
}

/** The counters before and after a run, and its wall time (s). */
interface Measured {
  before: Snapshot;
  after: Snapshot;
  seconds: number;
}

/** One run's figures, from iperf3's report and the counters around it. */
function runResult(
  run: { test: TestSpec; path: PathName; round: number; omit: number },
  json: IperfJson,
  { before, after, seconds }: Measured,
): RunResult {
  const { test, path } = run;
  // Counter differences are divided by the time the sender sent (iperf3's own figure,
  // plus the omitted warm-up, which the counters include), not by the wall time of the
  // client, which also holds the set-up and the end of the test.
  const traffic = json.end.sum_sent.seconds + run.omit;
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
    round: run.round,
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
  if (path === "dstm") addTunnelCost(result, test, before, after, traffic);
  if (test.kind === "tcp") result.retransmits = sent.retransmits ?? 0;
  else addUdpFigures(result, json);
  return result;
}

/** dstm path: the two Workers in the data's direction, per packet they tunnelled (TEP counter). */
function addTunnelCost(
  result: RunResult,
  test: TestSpec,
  before: Snapshot,
  after: Snapshot,
  traffic: number,
): void {
  const [first, second, counter] = test.reverse
    ? ["tep-encap", "client-in", "encap-forward"]
    : ["client-out", "tep-decap", "decap-forward"];
  const tunnelled = (after.tepCounters[counter] ?? 0) - (before.tepCounters[counter] ?? 0);
  const workerSeconds =
    (((result.workers[first] ?? 0) + (result.workers[second] ?? 0)) * traffic) / 100;
  result.tunnelPps = tunnelled / traffic;
  result.workerUsPerPacket = (1e6 * workerSeconds) / Math.max(1, tunnelled);
}

/** UDP: datagrams sent and received per second, and the loss. */
function addUdpFigures(result: RunResult, json: IperfJson): void {
  const { sum_sent: sent, sum_received: received } = json.end;
  const blksize = json.start.test_start.blksize;
  result.sentPps = (sent.packets ?? 0) / sent.seconds;
  result.receivedPps = received.bytes / blksize / received.seconds;
  // From the counts, not iperf3's lost_percent (which miscounts with -O).
  const sentPackets = sent.packets ?? 0;
  result.lossPercent = sentPackets ? 100 * (1 - received.bytes / blksize / sentPackets) : 0;
}

// ---------------------------------------------------------------------------------------

async function main(o: Options): Promise<void> {
  const { log, busyBefore } = await benchPreflight(o.json, "; other load lowers both paths");
  const { name, baseDir, takeDown, release } = benchLabSession("bd", "dstm-dataplane-");
  const started = Date.now();
  let results: RunResult[];
  try {
    log(`lab ${name}: bringing it up (dstm = ${dstmArgv().join(" ")})`);
    const lab = await Lab.up(name, baseDir);
    await preparePaths(lab, log);
    log(
      `iperf3 -t ${o.duration} -O ${o.omit}, ${o.rounds} rounds, paths alternating; web server ${LAB.web4}\n`,
    );
    results = await runRounds(lab, o, log);
  } finally {
    await takeDown();
    release();
  }
  const report = makeReport(o, results, busyBefore, started);
  if (o.json) console.log(JSON.stringify(report, null, 2));
  else printReport(o, report);
}

/** Adds the kernel path beside A's DTI and checks that both paths answer a ping. */
async function preparePaths(lab: Lab, log: BenchLog): Promise<void> {
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
}

/** Every test over both paths, `o.rounds` times, alternating which path goes first. */
async function runRounds(lab: Lab, o: Options, log: BenchLog): Promise<RunResult[]> {
  const results: RunResult[] = [];
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
  return results;
}

type Report = ReturnType<typeof makeReport>;

/** The JSON report: medians, the targets (TCP 1 stream ≥ 1.2 Gbit/s, ≥ 150,000 pps), every run. */
function makeReport(o: Options, results: RunResult[], busyBefore: number, started: number) {
  const summaries = summarize(results);
  const tcp1 = summaries.find((s) => s.test === "tcp1")!;
  const udpMax = summaries.find((s) => s.test === "udp64-max")!;
  return {
    ...reportHead(
      `bun bench/dataplane.ts --duration ${o.duration} --omit ${o.omit} --rounds ${o.rounds}`,
      busyBefore,
      started,
    ),
    summaries,
    targets: {
      tcpGbps: { target: 1.2, dstm: tcp1.dstm, met: tcp1.dstm >= 1.2 },
      tepPps: { target: 150_000, dstm: udpMax.tepPps.dstm, met: udpMax.tepPps.dstm >= 150_000 },
    },
    runsWithOtherLoad: results.filter((r) => r.outsideLoad.percent >= 10).length,
    runs: results,
  };
}

function printReport(o: Options, report: Report): void {
  printMedians(o.rounds, report, formatTable(report.summaries));
  if (report.runsWithOtherLoad > 0)
    console.log(
      `\nwarning: ${report.runsWithOtherLoad} of ${report.runs.length} runs shared the machine with other load (≥ 10% of a CPU outside the lab); rerun on a quiet machine`,
    );
  const { tcpGbps, tepPps } = report.targets;
  console.log(
    `\ntargets: TCP 1 stream ≥ 1.2 Gbit/s: ${tcpGbps.dstm.toFixed(2)} (${tcpGbps.met ? "met" : "not met"}); ≥ 150,000 pps through the TEP (UDP 64 B unlimited): ${int(tepPps.dstm)} (${tepPps.met ? "met" : "not met"})`,
  );
}

if (import.meta.main) {
  const { values } = parseBenchArgs(import.meta.path, {
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
  const valid =
    options.duration >= 1 &&
    options.duration <= 30 &&
    options.omit >= 0 &&
    options.omit <= 5 &&
    options.rounds >= 1 &&
    options.rounds <= 5;
  const usage = "--duration 1..30, --omit 0..5, --rounds 1..5";
  await benchMain("dataplane", valid, usage, () => main(options));
}
