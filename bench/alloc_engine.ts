/**
 * Micro-benchmark: durable DISCOVERs per second through AllocationEngine + GroupCommitter +
 * a lease store (memory, and SqliteLeaseStore with WAL, synchronous=FULL, in a temp
 * directory), for a whole-address pool (two /16s) and a shared one (a /16 shared by 4:
 * 262,144 (address, PSID) slots). Not a test.
 *
 *   node_modules/.bin/bun bench/alloc_engine.ts [count] [concurrency] [rounds]
 *
 * Phases, each over `count` hosts: allocate (never-used slots, via the cursor), renew (the
 * same hosts again), release, reallocate (other hosts: the freed slots, via the free list).
 * Each phase runs `rounds` times on a fresh engine; the best rate is printed (the machine
 * may be busy with other work).
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine, type EngineResult, type PoolConfig } from "../lib/alloc/engine.ts";
import type { LeaseStore } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { benchNumbers } from "./bench_args.ts";

const [count = 100_000, concurrency = 256, rounds = 3] = benchNumbers(
  import.meta.path,
  ["count", "concurrency", "rounds"],
  [100_000, 256, 3],
);
const hostName = (i: number) => `2001:db8:${(i >>> 16).toString(16)}::${(i & 0xffff).toString(16)}`;
const hosts = Array.from({ length: count }, (_, i) => hostName(i));
const others = Array.from({ length: count }, (_, i) => hostName(count + i));

const POOLS: Record<string, PoolConfig[]> = {
  whole: [{ prefixes: ["10.64.0.0/16", "10.65.0.0/16"], tep6: "2001:db8::1" }],
  "shared/4": [{ prefixes: ["10.64.0.0/16"], share: 4, tep6: "2001:db8::1" }],
};
const PHASES = ["allocate", "renew", "release", "reallocate"] as const;

async function round(
  pools: PoolConfig[],
  store: LeaseStore,
): Promise<{ rates: number[]; opsPerWrite: number }> {
  const engine = new AllocationEngine({ pools, store, leaseTime: 3600 });
  await engine.start();
  const held = new Map<string, number>();
  const phase = async (call: (i: number) => Promise<EngineResult>): Promise<number> => {
    const start = performance.now();
    let failed = 0;
    for (let i = 0; i < count; i += concurrency) {
      const calls = [];
      for (let j = i; j < Math.min(count, i + concurrency); j++) calls.push(call(j));
      for (const result of await Promise.all(calls)) {
        if (!result.ok) failed++;
        else held.set(result.lease.host6, result.lease.ipv4);
      }
    }
    if (failed) throw new Error(`${failed} calls failed`);
    return count / ((performance.now() - start) / 1000);
  };
  const rates = [
    await phase((i) => engine.discover(hosts[i] as string)),
    await phase((i) => engine.discover(hosts[i] as string)),
    await phase((i) => engine.release(hosts[i] as string, held.get(hosts[i] as string) as number)),
    await phase((i) => engine.discover(others[i] as string)),
  ];
  const { batches, ops } = engine.writeStats();
  await engine.close();
  return { rates, opsPerWrite: ops / batches };
}

const dir = mkdtempSync(join(tmpdir(), "dstm-bench-"));
const format = (rate: number) => Math.round(rate).toLocaleString("en-US").padStart(10);
console.log(
  `${count} hosts, ${concurrency} concurrent calls, best of ${rounds} rounds (calls per second)`,
);
console.log(
  `${"store".padEnd(7)} ${"pool".padEnd(9)} ${PHASES.map((p) => p.padStart(11)).join("")}`,
);
try {
  for (const kind of ["memory", "sqlite"]) {
    for (const [name, pools] of Object.entries(POOLS)) {
      const best = [0, 0, 0, 0];
      let opsPerWrite = 0;
      for (let r = 0; r < rounds; r++) {
        const store: LeaseStore =
          kind === "memory"
            ? new MemoryLeaseStore()
            : SqliteLeaseStore.open(join(dir, `${name.replace("/", "-")}-${r}.db`));
        const result = await round(pools, store);
        await store.close();
        result.rates.forEach((rate, i) => {
          best[i] = Math.max(best[i] as number, rate);
        });
        opsPerWrite = result.opsPerWrite;
      }
      console.log(
        `${kind.padEnd(7)} ${name.padEnd(9)} ${best.map((rate) => ` ${format(rate)}`).join("")}   (${opsPerWrite.toFixed(1)} ops per write)`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
