import { join } from "node:path";
import { leasedAddress } from "../lib/lab/demo.ts";
import { Lab } from "../lib/lab/lab.ts";
import { dstmArgv } from "../lib/lab/services.ts";
import { LAB } from "../lib/lab/topology.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { parsePortSet } from "../lib/net/portset.ts";
import { parseBenchArgs } from "./bench_args.ts";
import {
  type BenchLog,
  benchLabSession,
  benchMain,
  benchPreflight,
  int,
  median,
  printMedians,
  reportHead,
} from "./bench_common.ts";
import {
  type Config,
  type Lease,
  PSIDS,
  type Run,
  runIperf,
  runSpray,
  SINK4,
  STATIC_ROUTE,
  startTep,
  type TestId,
  writeBindingFile,
} from "./bindings_runs.ts";
import type { Options } from "./dataplane_tests.ts";

const CONFIGS: readonly Config[] = ["one", "many"];
const TEST_IDS: readonly TestId[] = ["spread", "iperf3"];

interface BenchOptions extends Options {
  tests: readonly TestId[];
}
const TITLES: Record<TestId, string> = {
  iperf3: "iperf3 UDP 64 B -b 0 from node A (its binding, one flow)",
  spread: "spread: 64 B UDP, every packet another binding",
};

// ---------------------------------------------------------------------------------------

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
  const { log, busyBefore } = await benchPreflight(o.json);
  const { name, baseDir, takeDown, release } = benchLabSession("bb", "dstm-bindings-");
  const started = Date.now();
  let setup: Setup;
  let rounds: Rounds;
  try {
    log(`lab ${name}: bringing it up with --share 4 (dstm = ${dstmArgv().join(" ")})`);
    const lab = await Lab.up(name, baseDir, () => {}, { share: 4 });
    setup = await prepareLab(lab, baseDir, log);
    log(`-t ${o.duration} s per run, ${o.rounds} rounds, configurations alternating\n`);
    rounds = await runRounds(lab, o, setup, log);
  } finally {
    await takeDown();
    release();
  }
  const report = makeReport(o, setup, rounds, busyBefore, started);
  if (o.json) console.log(JSON.stringify(report, null, 2));
  else printReport(o, report);
}

/** Node A's shared lease, and the static binding file (65,536 lines) beside it. */
interface Setup {
  lease: Lease;
  file: string;
  statics: number;
}

/**
 * Client B stopped (the server holds A's lease alone), A's lease read (shared, or an error),
 * the binding file written, the spread test's sink reachable from the TEP.
 */
async function prepareLab(lab: Lab, baseDir: string, log: BenchLog): Promise<Setup> {
  await lab.stop("client-b");
  const a4 = await leasedAddress(lab, "a");
  const status = (await (
    await fetch("http://localhost/v1/status", { unix: lab.services.socket("client-a") })
  ).json()) as { ports: string | null };
  const set = parsePortSet(status.ports ?? "");
  if (!set || set.psidLength === 0)
    throw new Error(`node A's lease is not a shared one (ports ${status.ports})`);
  const lease: Lease = { ipv4: parseIPv4(a4)!, ...set };
  const file = join(baseDir, "bindings-65536.txt");
  const statics = writeBindingFile(file, lease);
  const [web] = lab.ns.web.ipJson<{ address: string }[]>("link", "show", "dev", "eth0");
  const neigh = ["neigh", "replace", SINK4, "lladdr", web!.address, "dev", "eth4"];
  lab.ns.tep.ip(...neigh, "nud", "permanent");
  log(
    `node A: lease ${a4} port set ${status.ports}; static file: ${statics} bindings of ${STATIC_ROUTE} × ${PSIDS} → ${LAB.nodeA6}`,
  );
  return { lease, file, statics };
}

/** The runs, and each TEP start: how long until ready, and the binding file's load time (ms). */
interface Rounds {
  runs: Run[];
  starts: { config: Config; readyMs: number; loadMs?: number }[];
}

/** Every round: the TEP restarted in each configuration (alternating order), then each test. */
async function runRounds(lab: Lab, o: BenchOptions, setup: Setup, log: BenchLog): Promise<Rounds> {
  const rounds: Rounds = { runs: [], starts: [] };
  for (let round = 0; round < o.rounds; round++) {
    const order = round % 2 === 0 ? CONFIGS : [...CONFIGS].reverse();
    for (const config of order) {
      const start = await startTep(lab, config, setup.file, setup.statics);
      rounds.starts.push({ config, ...start });
      log(
        `round ${round + 1}: TEP with ${LABEL[config]} ready in ${int(start.readyMs)} ms${start.loadMs === undefined ? "" : ` (file read and checked in ${start.loadMs} ms)`}`,
      );
      for (const test of o.tests) {
        const r =
          test === "spread"
            ? await runSpray(lab, config, setup.lease, round, o)
            : await runIperf(lab, config, round, o);
        rounds.runs.push(r);
        log(formatRun(r));
      }
    }
  }
  return rounds;
}

type Report = ReturnType<typeof makeReport>;

/** The JSON report: medians, the target (65,537 bindings ≥ 90% of 1's rate), every run. */
function makeReport(
  o: BenchOptions,
  { lease, statics }: Setup,
  { runs, starts }: Rounds,
  busyBefore: number,
  started: number,
) {
  const summaries = summarize(runs, o.tests);
  return {
    ...reportHead(
      `bun bench/bindings.ts --duration ${o.duration} --rounds ${o.rounds} --tests ${o.tests.join(",")}`,
      busyBefore,
      started,
    ),
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
}

function printReport(o: BenchOptions, report: Report): void {
  const { summaries, tepStarts: starts } = report;
  printMedians(o.rounds, report, formatTable(summaries));
  const readyMs = (config: Config) =>
    int(median(starts.filter((s) => s.config === config).map((s) => s.readyMs)));
  console.log(
    `\nTEP start with the file, to A's lease installed: median ${readyMs("many")} ms (without: ${readyMs("one")} ms)`,
  );
  if (report.runsWithOtherLoad > 0)
    console.log(
      `warning: ${report.runsWithOtherLoad} of ${report.runs.length} runs shared the machine with other load (≥ 10% of a CPU outside the lab)`,
    );
  console.log(
    `target: 65,537 bindings forward ≥ 90% of the packets per second of 1 binding: ${summaries.map((s) => `${s.test} ${s.ratio.toFixed(3)} (${s.ratio >= 0.9 ? "met" : "not met"})`).join(", ")}`,
  );
}

if (import.meta.main) {
  const { values } = parseBenchArgs(import.meta.path, {
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
  const valid =
    options.duration >= 1 &&
    options.duration <= 30 &&
    options.rounds >= 1 &&
    options.rounds <= 12 &&
    tests.length > 0 &&
    tests.every((t) => TEST_IDS.includes(t));
  const usage = `--duration 1..30, --rounds 1..12, --tests of ${TEST_IDS.join(",")}`;
  await benchMain("bindings", valid, usage, () => main(options));
}
