/**
 * bench/alloc.ts --spawn's `--store` (one store instead of both, alternately) and the server's
 * CPU per allocation on each line, as the A/B runs of docs/benchmarks.md use them
 * (`--spawn --rounds 1 --store sqlite --dstm TREE/dist/dstm`).
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { hostAddress } from "../bench/alloc.ts";
import { canonicalIPv6 } from "../lib/net/addr.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = process.execPath;
const run = (...args: string[]) =>
  Bun.spawnSync([BUN, join(ROOT, "bench", "alloc.ts"), ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    timeout: 90_000,
  });

test("--store memory runs the memory store only, each line with the server's CPU per allocation", () => {
  // From source (not a dist/dstm that may be stale): the command every bench defaults to.
  const r = run(
    "--spawn",
    "--store",
    "memory",
    "--rounds",
    "1",
    "--hosts",
    "300",
    "--dstm",
    join(ROOT, "test", "helpers", "dstm_from_source.sh"),
  );
  const out = r.stdout.toString();
  expect(r.exitCode).toBe(0);
  const rounds = out.split("\n").filter((l) => l.startsWith("round "));
  expect(rounds).toHaveLength(1);
  expect(rounds[0]).toMatch(/^round 1 memory: 300 allocations in /);
  expect(rounds[0]).toMatch(
    /server CPU \d+\.\d \(main thread \d+\.\d\) µs\/allocation, load generator CPU \d+\.\d µs\/answer$/,
  );
  expect(out).not.toContain("sqlite:");
});

test("--store with another word: one line naming it, exit 2, no load run (with or without --spawn)", () => {
  for (const args of [
    ["--spawn", "--store", "disk"],
    ["--store", "disk"],
  ]) {
    const r = run(...args);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString().split("\n")[0]).toBe(
      "--store disk: expected sqlite, memory or both",
    );
    expect(r.stdout.toString()).toBe("");
  }
});

test("--spawn --server-log-level warn: a server that logs warnings only (its port picked by the bench, ready once bound) still gets the load; another word is refused", () => {
  const r = run(
    "--spawn",
    "--server-log-level",
    "warn",
    "--store",
    "memory",
    "--rounds",
    "1",
    "--hosts",
    "300",
    "--dstm",
    join(ROOT, "test", "helpers", "dstm_from_source.sh"),
  );
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toMatch(/^round 1 memory: 300 allocations in .* loss 0\.00%/m);
  const bad = run("--spawn", "--server-log-level", "debug");
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr.toString().split("\n")[0]).toBe(
    "--server-log-level debug: expected info or warn",
  );
  expect(bad.stdout.toString()).toBe("");
});

test("--host-addresses: random interface identifiers by default (no order, none twice), sequential on request, anything else refused", () => {
  const n = 50_000;
  const random = Array.from({ length: n }, (_, i) => hostAddress(i + 1));
  const sequential = Array.from({ length: n }, (_, i) => hostAddress(i + 1, "sequential"));
  expect(new Set(random).size).toBe(n);
  expect(new Set(sequential).size).toBe(n);
  expect(sequential.slice(0, 2)).toEqual(["2001:db8:0:1::1", "2001:db8:0:2::1"]);
  expect(random.every((a) => a === canonicalIPv6(a) && a.startsWith("2001:db8:1:"))).toBe(true);
  // In text order (an index's order), how often does host i+1 follow host i? Sequential
  // addresses: mostly; random ones: almost never.
  const adjacent = (list: string[]) => {
    const rank = new Map([...list].sort().map((a, i) => [a, i]));
    let k = 0;
    for (let i = 1; i < list.length; i++)
      if (
        (rank.get(list[i] as string) as number) ===
        (rank.get(list[i - 1] as string) as number) + 1
      )
        k++;
    return k / (list.length - 1);
  };
  expect(adjacent(sequential)).toBeGreaterThan(0.5);
  expect(adjacent(random)).toBeLessThan(0.01);
  const bad = run("--spawn", "--host-addresses", "ordered");
  expect({ code: bad.exitCode, err: bad.stderr.toString().trim() }).toEqual({
    code: 2,
    err: "--host-addresses ordered: expected random or sequential",
  });
});
