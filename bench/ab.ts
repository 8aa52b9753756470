/**
 * A/B of two source trees with one benchmark, side by side in one run: the benchmark of each
 * tree (`bun bench/NAME.ts … --json`, run from that tree, so the lab runs that tree's dstm)
 * alternately, `--pairs` times (A B, B A, A B, …), and the medians per test.
 *
 *   bun bench/ab.ts --before /path/to/main-at-start --after . [--bench dataplane|tep_alone]
 *                   [--pairs 3] -- [the benchmark's own options]     # as root
 *
 * dataplane: per test the dstm result, the kernel result and their ratio (each run measures
 * both paths, so the ratio is per run, then its median). tep_alone: per test and path the
 * goodput (TCP, Gbit/s) or packets received per second (UDP), and the forwarder's CPU µs per
 * packet. Prints a table, or `--json` everything.
 *
 * @module
 */
import { parseBenchArgs } from "./bench_args.ts";

const { values, positionals } = parseBenchArgs(import.meta.path, {
  args: Bun.argv.slice(2),
  options: {
    before: { type: "string" },
    after: { type: "string", default: "." },
    bench: { type: "string", default: "dataplane" },
    pairs: { type: "string", default: "3" },
    json: { type: "boolean", default: false },
  },
  allowPositionals: true,
});
if (!values.before) throw new Error("--before DIR: the tree to compare against");
const trees = { before: values.before, after: values.after! } as const;
type Side = keyof typeof trees;
const pairs = Number(values.pairs);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** One benchmark run of one tree: metric name → value. */
function runOnce(side: Side): Record<string, number> {
  const dir = trees[side];
  const argv = [process.execPath, `bench/${values.bench}.ts`, ...positionals, "--json"];
  const r = Bun.spawnSync(argv, { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0)
    throw new Error(`${side}: ${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.toString()}`);
  // tep_alone prints a header line before its JSON: the JSON starts at the first line that
  // opens an array or an object.
  const text = r.stdout.toString();
  const start = text.search(/^[[{]/m);
  const out = JSON.parse(start < 0 ? text : text.slice(start));
  const m: Record<string, number> = {};
  if (values.bench === "dataplane") {
    for (const s of out.summaries as {
      test: string;
      dstm: number;
      kernel: number;
      ratio: number;
    }[]) {
      m[`${s.test} dstm`] = s.dstm;
      m[`${s.test} kernel`] = s.kernel;
      m[`${s.test} dstm/kernel`] = s.ratio;
    }
  } else {
    for (const run of out as {
      test: string;
      path: string;
      gbps: number;
      receivedPps?: number;
      forwarderUsPerPacket?: number;
    }[]) {
      const key = `${run.test} ${run.path}`;
      m[key] = run.receivedPps ?? run.gbps;
      if (run.forwarderUsPerPacket !== undefined) m[`${key} µs/packet`] = run.forwarderUsPerPacket;
    }
  }
  return m;
}

const results: Record<Side, Record<string, number>[]> = { before: [], after: [] };
for (let i = 0; i < pairs; i++) {
  const order: Side[] = i % 2 === 0 ? ["before", "after"] : ["after", "before"];
  for (const side of order) {
    const m = runOnce(side);
    results[side].push(m);
    if (!values.json) console.log(`pair ${i + 1}, ${side}: ${JSON.stringify(m)}`);
  }
}
const keys = [...new Set(Object.values(results).flatMap((rs) => rs.flatMap(Object.keys)))];
const table = keys.map((key) => {
  const b = median(results.before.map((m) => m[key]!).filter((x) => x !== undefined));
  const a = median(results.after.map((m) => m[key]!).filter((x) => x !== undefined));
  return { key, before: b, after: a, change: a / b };
});
if (values.json) {
  console.log(JSON.stringify({ trees, bench: values.bench, pairs, results, table }, null, 2));
} else {
  const fmt = (x: number) => (x >= 1000 ? Math.round(x).toLocaleString("en") : x.toFixed(3));
  console.log(
    `\nmedians of ${pairs} runs per tree (before ${trees.before}, after ${trees.after}):`,
  );
  for (const row of table)
    console.log(
      `${row.key.padEnd(28)} ${fmt(row.before).padStart(12)} → ${fmt(row.after).padStart(12)}  ×${row.change.toFixed(2)}`,
    );
}
