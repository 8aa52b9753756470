/**
 * Every bench script answers `--help` with its usage (its module comment) and exit 0, and an
 * unknown option with one line naming it, the usage and exit 2, never a stack trace
 * (bench/bench_args.ts). Nothing is measured: both exit before any work.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BUN } from "./helpers/process.ts";

const BENCH = join(import.meta.dir, "..", "bench");
const scripts = readdirSync(BENCH)
  .filter((f) => f.endsWith(".ts") && f !== "bench_args.ts")
  .filter((f) => readFileSync(join(BENCH, f), "utf8").includes("parseBenchArgs("));

test("the bench scripts with options all parse them through parseBenchArgs", () => {
  const raw = readdirSync(BENCH).filter(
    (f) => f.endsWith(".ts") && /\bparseArgs\(/.test(readFileSync(join(BENCH, f), "utf8")),
  );
  expect(raw).toEqual(["bench_args.ts"]);
  expect(scripts.length).toBeGreaterThan(10);
});

describe.each(scripts)("bench/%s", (script) => {
  const run = (arg: string) =>
    Bun.spawnSync([BUN, join(BENCH, script), arg], {
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
    });

  test("--help prints the usage and exits 0", () => {
    const r = run("--help");
    expect(r.exitCode).toBe(0);
    const out = r.stdout.toString();
    expect(out.length).toBeGreaterThan(40);
    expect(out).not.toContain("@module");
    expect(out).not.toContain("/**");
  });

  test("an unknown option: one line naming it, the usage, exit 2, no stack trace", () => {
    const r = run("--no-such-option");
    expect(r.exitCode).toBe(2);
    const err = r.stderr.toString();
    expect(err.split("\n")[0]).toStartWith(`${script}: Unknown option '--no-such-option'`);
    expect(err).not.toMatch(/^\s+at /m);
    expect(err).not.toContain("ERR_PARSE_ARGS");
  });
});

describe("numbers that are none are refused before any work", () => {
  const run = (script: string, ...args: string[]) =>
    Bun.spawnSync([BUN, join(BENCH, script), ...args], {
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
    });

  test.each([
    ["alloc.ts", ["--hosts", "abc"], '--hosts "abc": expected a number above 0'],
    ["alloc.ts", ["--hosts", "0"], '--hosts "0": expected a number above 0'],
    ["alloc.ts", ["--concurrency=-4"], '--concurrency "-4": expected a number above 0'],
    ["tep_alone.ts", ["--rounds", "x"], '--rounds "x": expected a number above 0'],
    ["kea_compare.ts", ["--rounds", "0"], '--rounds "0": expected a number above 0'],
    ["dataplane.ts", ["--omit=-1"], '--omit "-1": expected a number of 0 or more'],
    ["reclaim.ts", ["--max-ms=-1"], '--max-ms "-1": expected a number of 0 or more'],
    ["binding_file.ts", ["abc"], 'rounds "abc": expected a number above 0'],
    ["alloc_engine.ts", ["100", "0"], 'concurrency "0": expected a number above 0'],
    ["alloc_engine.ts", ["1", "2", "3", "4"], "at most 3 arguments: count concurrency rounds"],
  ])("bench/%s %p: exit 2, one line, the usage", (script, args, message) => {
    const r = run(script, ...args);
    expect(r.exitCode).toBe(2);
    const err = r.stderr.toString();
    expect(err.split("\n")[0]).toBe(`${script}: ${message}`);
    expect(err.length).toBeGreaterThan(message.length + 40);
    expect(r.stdout.toString()).toBe("");
  });

  test("bench/reclaim.ts takes 0 for --max-leases and --max-ms (no limit, one unbounded sweep)", () => {
    const r = run("reclaim.ts", "--counts", "200", "--max-leases", "0", "--max-ms", "0");
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toContain("unbounded");
  });

  test.each(["binding_file.ts", "alloc_engine.ts"])(
    "bench/%s (positional numbers) answers --help with its usage",
    (script) => {
      const r = run(script, "--help");
      expect(r.exitCode).toBe(0);
      expect(r.stdout.toString()).toContain("Micro-benchmark");
    },
  );
});
