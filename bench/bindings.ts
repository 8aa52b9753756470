/**
 * Binding table size in the data plane: UDP packets per second through the TEP with one
 * binding and with 65,537, side by side in one lab, as root.
 *
 *   bun bench/bindings.ts [--duration 4] [--rounds 6] [--tests spread,iperf3] [--json]
 *
 * The lab of `dstm lab` comes up with its pool shared by 4 (`--share 4`, port sets 6/2/p as
 * RFC 7597 §5.1 has them), under a unique name in a temporary directory, taken down at the
 * end, also on failure or Ctrl-C. Client B is stopped, so the server holds one lease: node
 * A's. The TEP runs in one of two configurations, restarted for each:
 *
 * - **1 binding**: the lab's TEP, plus `--route 198.18.0.0/18`. Its table holds A's lease.
 * - **65,537 bindings**: the same, plus `--binding-file` with 65,536 static bindings: the
 *   16,384 addresses of 198.18.0.0/18 (RFC 2544's benchmarking range), each shared by 4
 *   (6/2/0 … 6/2/3), all bound to node A's IPv6 address. A's lease comes from the server on
 *   top, so A's own traffic is checked against a binding that lives among the 65,536.
 *
 * Both tables have the default size (2^17 bindings: 65,536 static + 65,536 room for the
 * server), so the two configurations differ only in what the table holds. Two tests, the
 * same in both:
 *
 * - **iperf3**: UDP, 64-byte payloads, unlimited (`-u -l 64 -b 0`), from node A through its
 *   client Workers and the TEP to the web host: the node's own traffic, one binding looked up
 *   in the full table on every packet (decapsulation checks (source, port) → host, and looks
 *   the destination up for the hairpin check). One flow keeps hitting the same slots.
 * - **spread**: bench/spray4in6.ts in A's namespace, pinned to the CPU that the TEP's
 *   decapsulating Worker is not pinned to, sends IPv4-in-IPv6 straight to the TEP (no
 *   client), 64-byte UDP payloads as fast as it can, to 192.0.2.99 (an address of the
 *   IPv4 side that the TEP reaches through a static neighbour entry pointing at the web
 *   host, which drops the packets without answering: it does not forward). With 65,537
 *   bindings, consecutive packets come from the 65,536 static bindings in a shuffled order,
 *   so every packet looks up another binding, cache misses included; with 1 binding, every
 *   packet comes from A's lease (ports varying inside its set). This is the table's worst
 *   case; a single flow is its best.
 *
 * The measure is what dataplane.ts calls "through the TEP": packets per second leaving the
 * TEP's IPv4 side (`eth4`), plus the TEP's decapsulating Worker's CPU time per packet it
 * forwarded, which does not depend on whether the sender or the TEP was the bottleneck.
 * Rounds alternate which configuration goes first; the table shows medians and the ratio
 * 65,537 / 1. Runs during which other processes used ≥ 10% of a CPU are flagged.
 *
 * Bounded: iperf3 as in dataplane.ts; the spray stops after `--duration` and is killed after
 * duration + 20 s.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { leasedAddress } from "../lib/lab/demo.ts";
import { Lab } from "../lib/lab/lab.ts";
import { dstmArgv } from "../lib/lab/services.ts";
import { LAB } from "../lib/lab/topology.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { parsePortSet } from "../lib/net/portset.ts";
import { waitUntil } from "../test/helpers/wait.ts";
import {
  benchLabSession,
  codeVersion,
  cpuBusy,
  dropsBetween,
  median,
  type Options,
  outsideLoad,
  type RunResult,
  runOne,
  snapshot,
  TESTS,
  TICKS_PER_SECOND,
} from "./dataplane.ts";

const STATIC_BASE = "198.18.0.0";
const STATIC_ROUTE = "198.18.0.0/18";
const STATIC_ADDRESSES = 16_384;
const PSIDS = 4;
/** Where the spread test sends: on the IPv4 side, nobody's, neighbour entry → web's MAC. */
const SINK4 = "192.0.2.99";

type Config = "one" | "many";
const CONFIGS: readonly Config[] = ["one", "many"];
type TestId = "iperf3" | "spread";
const TEST_IDS: readonly TestId[] = ["spread", "iperf3"];

interface BenchOptions extends Options {
  tests: readonly TestId[];
}
const TITLES: Record<TestId, string> = {
  iperf3: "iperf3 UDP 64 B -b 0 from node A (its binding, one flow)",
  spread: "spread: 64 B UDP, every packet another binding",
};
const UDP_MAX = TESTS.find((t) => t.id === "udp64-max")!;

interface Run {
  round: number;
  config: Config;
  test: TestId;
  /** Packets per second offered to the tunnel (iperf3 sender or the spray). */
  sentPps: number;
  /** Packets per second leaving the TEP's IPv4 side (eth4). */
  tepPps: number;
  /** The TEP's decap-forward counter per second. */
  tunnelPps: number;
  /** CPU time of the TEP's decapsulating Worker per packet it forwarded (µs). */
  decapUs: number;
  /** iperf3 only: received at the web host, and loss. */
  receivedPps?: number;
  lossPercent?: number;
  drops: Record<string, number>;
  outsideLoad: { percent: number; top: string };
}

interface Lease {
  ipv4: number;
  offset: number;
  psidLength: number;
  psid: number;
}

// ---------------------------------------------------------------------------------------

/** 65,536 lines: the addresses of STATIC_ROUTE × PSIDs 0..3 under the lease's rule → A. */
function writeBindingFile(path: string, lease: Lease): number {
  const base = parseIPv4(STATIC_BASE)!;
  const rule = `${lease.offset}/${lease.psidLength}`;
  const lines = [
    `# bench/bindings.ts: ${STATIC_ADDRESSES} addresses of ${STATIC_ROUTE} (RFC 2544) shared by ${PSIDS}, all bound to node A`,
  ];
  for (let a = 0; a < STATIC_ADDRESSES; a++)
    for (let p = 0; p < PSIDS; p++)
      lines.push(`${formatIPv4(base + a)} ${LAB.nodeA6} ${rule}/${p}`);
  writeFileSync(path, `${lines.join("\n")}\n`);
  return lines.length - 1;
}

interface TepStats {
  bindings: number;
  serverBindings: number;
  staticBindings: number;
}

async function tepStats(lab: Lab): Promise<TepStats> {
  const response = await fetch("http://localhost/v1/stats", { unix: lab.services.socket("tep") });
  return (await response.json()) as TepStats;
}

/** Restarts the TEP in `config`; resolves once A's lease is back in its table and A reaches web. */
async function startTep(
  lab: Lab,
  config: Config,
  file: string,
  statics: number,
): Promise<{ readyMs: number; loadMs?: number }> {
  const started = performance.now();
  const extra = ["--route", STATIC_ROUTE, ...(config === "many" ? ["--binding-file", file] : [])];
  await lab.restart("tep", extra);
  const want = config === "many" ? statics : 0;
  await waitUntil(
    async () => {
      const s = await tepStats(lab);
      return s.serverBindings === 1 && s.staticBindings === want;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: `the TEP (${config}) to hold its bindings` },
  );
  const readyMs = performance.now() - started;
  const ping = lab.run("a", ["ping", "-c", "1", "-W", "2", LAB.web4]);
  if (ping.code !== 0) throw new Error(`TEP (${config}): A cannot ping ${LAB.web4}`);
  const log = readFileSync(lab.services.logFile("tep"), "utf8");
  const loaded = [...log.matchAll(/ binding-file .* ms=(\d+)/g)].at(-1);
  return { readyMs, loadMs: config === "many" && loaded ? Number(loaded[1]) : undefined };
}

async function runSpray(
  lab: Lab,
  config: Config,
  lease: Lease,
  round: number,
  o: Options,
): Promise<Run> {
  const keys =
    config === "many"
      ? ["--base", STATIC_BASE, "--addresses", String(STATIC_ADDRESSES), "--psids", String(PSIDS)]
      : ["--base", formatIPv4(lease.ipv4), "--first-psid", String(lease.psid)];
  // On the CPU that the TEP's decapsulating Worker is not pinned to (forwarder.ts: CPU 0),
  // so that the sender and the TEP each have a CPU and the TEP is what limits the rate.
  const cpus = navigator.hardwareConcurrency;
  const argv = [
    ...(cpus >= 2 ? ["taskset", "-c", String(cpus - 1)] : []),
    process.execPath,
    join(import.meta.dir, "spray4in6.ts"),
    "--tep6",
    LAB.tep6,
    "--dst",
    SINK4,
    "--rule",
    `${lease.offset}/${lease.psidLength}`,
    "--seconds",
    String(o.duration),
    ...keys,
  ];
  const before = await snapshot(lab);
  const proc = lab.ns.a.spawn(argv, { timeoutMs: (o.duration + 20) * 1000 });
  const [stdout, stderr] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  const code = await proc.exited;
  const after = await snapshot(lab);
  if (code !== 0) throw new Error(`spray4in6 (${config}) exit ${code}: ${stderr.trim()}`);
  const out = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
    sent: number;
    errors: number;
    seconds: number;
  };
  const forwarded =
    (after.tepCounters["decap-forward"] ?? 0) - (before.tepCounters["decap-forward"] ?? 0);
  const decapTicks = (after.ticks["tep-decap"] ?? 0) - (before.ticks["tep-decap"] ?? 0);
  const drops = dropsBetween(before, after);
  if (out.errors) drops["spray send errors"] = out.errors;
  return {
    round,
    config,
    test: "spread",
    sentPps: out.sent / out.seconds,
    tepPps: (after.tepEth4TxPackets - before.tepEth4TxPackets) / out.seconds,
    tunnelPps: forwarded / out.seconds,
    decapUs: (1e6 * decapTicks) / TICKS_PER_SECOND / Math.max(1, forwarded),
    drops,
    outsideLoad: outsideLoad(before.outside, after.outside, out.seconds),
  };
}

async function runIperf(lab: Lab, config: Config, round: number, o: Options): Promise<Run> {
  const r: RunResult = await runOne(lab, UDP_MAX, "dstm", round, o);
  const tunnelPps = r.tunnelPps ?? 0;
  return {
    round,
    config,
    test: "iperf3",
    sentPps: r.sentPps ?? 0,
    tepPps: r.tepPps,
    tunnelPps,
    // workers: % of one CPU over the traffic time; per packet = share / packets per second.
    decapUs: ((r.workers["tep-decap"] ?? 0) / 100 / Math.max(1, tunnelPps)) * 1e6,
    receivedPps: r.receivedPps,
    lossPercent: r.lossPercent,
    drops: r.drops,
    outsideLoad: r.outsideLoad,
  };
}

// ---------------------------------------------------------------------------------------

const int = (n: number) => Math.round(n).toLocaleString("en-US");
const LABEL: Record<Config, string> = { one: "1 binding", many: "65,537 bindings" };

function formatRun(r: Run): string {
  const drops = Object.entries(r.drops)
    .map(([k, v]) => `${k} ${int(v)}`)
    .join(", ");
  const received =
    r.receivedPps === undefined
      ? ""
      : `, received ${int(r.receivedPps)} pps (loss ${r.lossPercent!.toFixed(1)}%)`;
  const other =
    r.outsideLoad.percent >= 10
      ? `; OTHER LOAD ${r.outsideLoad.percent.toFixed(0)}% of a CPU, top: ${r.outsideLoad.top}`
      : "";
  return `round ${r.round + 1} ${LABEL[r.config].padEnd(15)} ${r.test.padEnd(6)}: sent ${int(r.sentPps)} pps, through the TEP ${int(r.tepPps)} pps (decap-forward ${int(r.tunnelPps)})${received}; TEP decap Worker ${r.decapUs.toFixed(2)} µs/packet${drops ? `; drops: ${drops}` : ""}${other}`;
}

interface Summary {
  test: TestId;
  title: string;
  one: { tepPps: number; sentPps: number; decapUs: number };
  many: { tepPps: number; sentPps: number; decapUs: number };
  /** Median 65,537 / median 1, through the TEP. */
  ratio: number;
  /** The same ratio per round (65,537 / 1 of that round), lowest and highest. */
  roundRatios: number[];
}

function summarize(runs: Run[], tests: readonly TestId[]): Summary[] {
  return tests.map((test) => {
    const of = (config: Config) => runs.filter((r) => r.test === test && r.config === config);
    const side = (config: Config) => ({
      tepPps: median(of(config).map((r) => r.tepPps)),
      sentPps: median(of(config).map((r) => r.sentPps)),
      decapUs: median(of(config).map((r) => r.decapUs)),
    });
    const one = side("one");
    const many = side("many");
    const rounds = [...new Set(runs.map((r) => r.round))];
    const roundRatios = rounds.map(
      (round) =>
        of("many").find((r) => r.round === round)!.tepPps /
        of("one").find((r) => r.round === round)!.tepPps,
    );
    return { test, title: TITLES[test], one, many, ratio: many.tepPps / one.tepPps, roundRatios };
  });
}

function formatTable(summaries: Summary[]): string {
  const rows = [
    [
      "test",
      "1 binding: through TEP (sent)",
      "65,537: through TEP (sent)",
      "65,537 / 1",
      "per round: median (range)",
      "decap Worker µs/packet (1 / 65,537)",
    ],
    ...summaries.map((s) => [
      s.title,
      `${int(s.one.tepPps)} pps (${int(s.one.sentPps)})`,
      `${int(s.many.tepPps)} pps (${int(s.many.sentPps)})`,
      s.ratio.toFixed(3),
      `${median(s.roundRatios).toFixed(2)} (${Math.min(...s.roundRatios).toFixed(2)}–${Math.max(...s.roundRatios).toFixed(2)})`,
      `${s.one.decapUs.toFixed(2)} / ${s.many.decapUs.toFixed(2)}`,
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ")).join("\n");
}

// ---------------------------------------------------------------------------------------

async function main(o: BenchOptions): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: the lab creates namespaces");
  if (Bun.spawnSync(["iperf3", "--version"]).exitCode !== 0) throw new Error("iperf3 not found");
  const log = (line: string) => {
    if (!o.json) console.log(line);
  };
  const busyBefore = await cpuBusy(1000);
  if (busyBefore > 0.15)
    log(`warning: the machine was ${(busyBefore * 100).toFixed(0)}% busy before the lab came up`);
  const { name, baseDir, takeDown, release } = benchLabSession("bb", "dstm-bindings-");
  const started = Date.now();
  const runs: Run[] = [];
  const starts: { config: Config; readyMs: number; loadMs?: number }[] = [];
  let lease: Lease;
  let statics: number;
  try {
    log(`lab ${name}: bringing it up with --share 4 (dstm = ${dstmArgv().join(" ")})`);
    const lab = await Lab.up(name, baseDir, () => {}, { share: 4 });
    await lab.stop("client-b");
    const a4 = await leasedAddress(lab, "a");
    const status = (await (
      await fetch("http://localhost/v1/status", { unix: lab.services.socket("client-a") })
    ).json()) as { ports: string | null };
    const set = parsePortSet(status.ports ?? "");
    if (!set || set.psidLength === 0)
      throw new Error(`node A's lease is not a shared one (ports ${status.ports})`);
    lease = { ipv4: parseIPv4(a4)!, ...set };
    const file = join(baseDir, "bindings-65536.txt");
    statics = writeBindingFile(file, lease);
    const [web] = lab.ns.web.ipJson<{ address: string }[]>("link", "show", "dev", "eth0");
    lab.ns.tep.ip(
      "neigh",
      "replace",
      SINK4,
      "lladdr",
      web!.address,
      "dev",
      "eth4",
      "nud",
      "permanent",
    );
    log(
      `node A: lease ${a4} port set ${status.ports}; static file: ${statics} bindings of ${STATIC_ROUTE} × ${PSIDS} → ${LAB.nodeA6}`,
    );
    log(`-t ${o.duration} s per run, ${o.rounds} rounds, configurations alternating\n`);
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? CONFIGS : [...CONFIGS].reverse();
      for (const config of order) {
        const start = await startTep(lab, config, file, statics);
        starts.push({ config, ...start });
        log(
          `round ${round + 1}: TEP with ${LABEL[config]} ready in ${int(start.readyMs)} ms${start.loadMs === undefined ? "" : ` (file read and checked in ${start.loadMs} ms)`}`,
        );
        for (const test of o.tests) {
          const r =
            test === "spread"
              ? await runSpray(lab, config, lease, round, o)
              : await runIperf(lab, config, round, o);
          runs.push(r);
          log(formatRun(r));
        }
      }
    }
  } finally {
    await takeDown();
    release();
  }
  const summaries = summarize(runs, o.tests);
  const report = {
    date: new Date().toISOString(),
    command: `bun bench/bindings.ts --duration ${o.duration} --rounds ${o.rounds} --tests ${o.tests.join(",")}`,
    code: codeVersion(),
    machine: { cpus: navigator.hardwareConcurrency, busyBefore },
    seconds: (Date.now() - started) / 1000,
    lease: {
      ipv4: formatIPv4(lease.ipv4),
      portSet: `${lease.offset}/${lease.psidLength}/${lease.psid}`,
    },
    bindings: { one: 1, many: statics + 1 },
    tepStarts: starts,
    summaries,
    target: {
      ratio: 0.9,
      met: Object.fromEntries(summaries.map((s) => [s.test, s.ratio >= 0.9])),
    },
    runsWithOtherLoad: runs.filter((r) => r.outsideLoad.percent >= 10).length,
    runs,
  };
  if (o.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.log(
    `\nmedians of ${o.rounds} rounds (${report.seconds.toFixed(0)} s in all, code ${report.code}):\n`,
  );
  console.log(formatTable(summaries));
  const manyStarts = starts.filter((s) => s.config === "many");
  console.log(
    `\nTEP start with the file, to A's lease installed: median ${int(median(manyStarts.map((s) => s.readyMs)))} ms (without: ${int(median(starts.filter((s) => s.config === "one").map((s) => s.readyMs)))} ms)`,
  );
  if (report.runsWithOtherLoad > 0)
    console.log(
      `warning: ${report.runsWithOtherLoad} of ${runs.length} runs shared the machine with other load (≥ 10% of a CPU outside the lab)`,
    );
  console.log(
    `target: 65,537 bindings forward ≥ 90% of the packets per second of 1 binding: ${summaries.map((s) => `${s.test} ${s.ratio.toFixed(3)} (${s.ratio >= 0.9 ? "met" : "not met"})`).join(", ")}`,
  );
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      duration: { type: "string", default: "4" },
      rounds: { type: "string", default: "6" },
      tests: { type: "string", default: TEST_IDS.join(",") },
      json: { type: "boolean", default: false },
    },
  });
  const tests = values.tests.split(",") as TestId[];
  const options: BenchOptions = {
    duration: Number(values.duration),
    omit: 0,
    rounds: Number(values.rounds),
    json: values.json,
    tests,
  };
  if (
    !(options.duration >= 1 && options.duration <= 30) ||
    !(options.rounds >= 1 && options.rounds <= 12) ||
    tests.length === 0 ||
    !tests.every((t) => TEST_IDS.includes(t))
  ) {
    console.error(`--duration 1..30, --rounds 1..12, --tests of ${TEST_IDS.join(",")}`);
    process.exit(2);
  }
  try {
    await main(options);
  } catch (error) {
    console.error(`bindings: ${(error as Error).message}`);
    process.exit(1);
  }
}
