/**
 * Reclamation after downtime: N leases all overdue at start (a restart after a downtime longer
 * than the lease time), reclaimed by the engine's sweep the way the server runs it (a slice,
 * then a turn of the event loop, until nothing due is left). Not a test.
 *
 *   node_modules/.bin/bun bench/reclaim.ts [--counts 10000,20000,40000] [--max-leases 100] [--max-ms 250]
 *
 * `--max-leases 0` and `--max-ms 0` lift the limit (the engine's meaning of 0): both 0 is one
 * unbounded sweep, as before issue 12's bound.
 *
 * The leases are written to a memory store first, their expiries in an order unrelated to
 * their keys (a seeded shuffle), as real expiries are. For each N it prints the time to
 * reclaim all of them, the number of slices, the longest slice (the longest a DISCOVER
 * arriving during reclamation waits on it), and the wait of DISCOVERs due every millisecond
 * during reclamation (each a new host, so each allocates), counted from when it was due, so
 * a probe held up by a busy event loop counts the hold-up, as a datagram would.
 *
 * @module
 */
import { AllocationEngine } from "../lib/alloc/engine.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { prng } from "../test/helpers/fuzz.ts";
import { parseBenchArgs } from "./bench_args.ts";
import { benchHost6, benchLease } from "./bench_leases.ts";

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    counts: { type: "string", default: "10000,20000,40000" },
    "max-leases": { type: "string", default: "100" },
    "max-ms": { type: "string", default: "250" },
  },
});
const COUNTS = (values.counts as string).split(",").map(Number);
const MAX_LEASES = Number(values["max-leases"]);
const MAX_MS = Number(values["max-ms"]);
const BASE = 0xc6120000; // 198.18.0.0, RFC 2544's benchmarking range
const POOLS = [{ prefixes: ["198.18.0.0/15"], tep6: "2001:db8::1" }];
const host = benchHost6;

async function run(n: number): Promise<void> {
  const now = Date.now();
  const random = prng(n);
  const store = new MemoryLeaseStore();
  const rows: Lease[] = [];
  for (let i = 0; i < n; i++) {
    const expiresAt = now - 3_600_000 + Math.floor(random() * 3_000_000);
    rows.push(benchLease(BASE, "198.18.0.0/15", i, expiresAt - 3_600_000, expiresAt));
  }
  await store.write(rows.map((lease) => ({ op: "put" as const, lease })));
  const engine = new AllocationEngine({
    pools: POOLS,
    store,
    leaseTime: 3600,
    reclaimMaxLeases: MAX_LEASES,
    reclaimMaxMs: MAX_MS,
  } as ConstructorParameters<typeof AllocationEngine>[0]);
  await engine.start();
  const latencies: number[] = [];
  let reclaiming = true;
  let next = n;
  // A probe is due 1 ms after the previous one; its wait counts from then, as a datagram
  // arriving on time would wait while the event loop is busy.
  let due = performance.now() + 1;
  const probe = setInterval(() => {
    const since = due;
    due = performance.now() + 1;
    void engine.discover(host(next++)).then(() => latencies.push(performance.now() - since));
  }, 1);
  // Let the first probe be issued, as a DISCOVER that arrives right at start.
  await new Promise((resolve) => setTimeout(resolve, 2));
  const start = performance.now();
  let slices = 0;
  let longest = 0;
  let reclaimed = 0;
  while (reclaiming) {
    const t = performance.now();
    const expired = await engine.sweep();
    longest = Math.max(longest, performance.now() - t);
    slices++;
    reclaimed += expired.length;
    const pending = (engine as unknown as { reclaimPending?: boolean }).reclaimPending;
    reclaiming = pending === true || (pending === undefined && expired.length > 0);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const total = performance.now() - start;
  clearInterval(probe);
  await engine.close();
  if (reclaimed !== n) throw new Error(`reclaimed ${reclaimed} of ${n}`);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  console.log(
    `${String(n).padStart(7)}  ${(total / 1000).toFixed(3).padStart(8)} s  ${String(slices).padStart(6)}  ${longest.toFixed(1).padStart(9)} ms  ${String(latencies.length).padStart(5)}  ${pct(0.5).toFixed(1).padStart(7)} ms  ${pct(1).toFixed(1).padStart(8)} ms`,
  );
}

const limit = (n: number, unit: string) => (n === 0 ? `no limit of ${unit}` : `${n} ${unit}`);
console.log(
  MAX_LEASES === 0 && MAX_MS === 0
    ? "unbounded: one sweep reclaims every due lease (--max-leases 0 --max-ms 0)"
    : `slices of at most ${limit(MAX_LEASES, "leases")} or ${limit(MAX_MS, "ms")}`,
);
console.log(" leases   reclaim all  slices  longest slice  probes  p50 wait  max wait");
for (const n of COUNTS) await run(n);
