/**
 * What the lab benchmarks share (dataplane.ts, bindings.ts, tep_alone.ts): the preflight
 * (root, iperf3, how busy the machine was before), a uniquely named lab that is taken down also
 * on Ctrl-C, the report's common fields and lines, medians, and the code version measured.
 *
 * @module
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lab } from "../lib/lab/lab.ts";

/** A whole number with thousands separators (en-US). */
export const int = (n: number): string => Math.round(n).toLocaleString("en-US");

/** Linux USER_HZ: /proc times are in hundredths of a second. */
export const TICKS_PER_SECOND = 100;

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
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

/** A benchmark's progress lines: printed unless --json (then only the JSON report is). */
export type BenchLog = (line: string) => void;

/**
 * What every lab benchmark checks first: root (the lab creates namespaces), iperf3, and how
 * busy the machine is before the lab comes up (over 1 s; a warning line, `note` appended, when
 * above 15%).
 */
export async function benchPreflight(
  json: boolean,
  note = "",
): Promise<{ log: BenchLog; busyBefore: number }> {
  if (process.getuid?.() !== 0) throw new Error("run as root: the lab creates namespaces");
  if (Bun.spawnSync(["iperf3", "--version"]).exitCode !== 0) throw new Error("iperf3 not found");
  const log = (line: string) => {
    if (!json) console.log(line);
  };
  const busyBefore = await cpuBusy(1000);
  if (busyBefore > 0.15)
    log(
      `warning: the machine was ${(busyBefore * 100).toFixed(0)}% busy before the lab came up${note}`,
    );
  return { log, busyBefore };
}

/** The fields a JSON report starts with: when, what ran, which code, the machine, how long (s). */
export function reportHead(command: string, busyBefore: number, startedMs: number) {
  return {
    date: new Date().toISOString(),
    command,
    code: codeVersion(),
    machine: { cpus: navigator.hardwareConcurrency, busyBefore },
    seconds: (Date.now() - startedMs) / 1000,
  };
}

/** The table of medians under its heading line. */
export function printMedians(
  rounds: number,
  head: { seconds: number; code: string },
  table: string,
): void {
  console.log(
    `\nmedians of ${rounds} rounds (${head.seconds.toFixed(0)} s in all, code ${head.code}):\n`,
  );
  console.log(table);
}

/**
 * A bench's entry: `usage` (exit 2) unless `valid`, else `run()`; a failure is one line
 * `NAME: message` on stderr and exit 1.
 */
export async function benchMain(
  name: string,
  valid: boolean,
  usage: string,
  run: () => Promise<void>,
): Promise<void> {
  if (!valid) {
    console.error(usage);
    process.exit(2);
  }
  try {
    await run();
  } catch (error) {
    console.error(`${name}: ${(error as Error).message}`);
    process.exit(1);
  }
}
