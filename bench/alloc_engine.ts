/**
 * Micro-benchmark: durable DISCOVERs per second through AllocationEngine + GroupCommitter +
 * SqliteLeaseStore (WAL, synchronous=FULL) in a temp directory. Not a test.
 *
 *   node_modules/.bin/bun bench/alloc_engine.ts [count] [concurrency]
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import type { LeaseStore } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";

const count = Number(process.argv[2] ?? 50_000);
const concurrency = Number(process.argv[3] ?? 256);
const hosts = Array.from(
  { length: count },
  (_, i) => `2001:db8:${(i >>> 16).toString(16)}::${(i & 0xffff).toString(16)}`,
);

async function run(label: string, store: LeaseStore): Promise<void> {
  const engine = new AllocationEngine({
    pools: [{ prefixes: ["10.64.0.0/16", "10.65.0.0/16"], tep6: "2001:db8::1" }],
    store,
    leaseTime: 3600,
  });
  await engine.start();
  const phase = async (name: string): Promise<void> => {
    const start = performance.now();
    let failed = 0;
    for (let i = 0; i < count; i += concurrency) {
      const calls = [];
      for (let j = i; j < Math.min(count, i + concurrency); j++)
        calls.push(engine.discover(hosts[j] as string));
      for (const result of await Promise.all(calls)) if (!result.ok) failed++;
    }
    const seconds = (performance.now() - start) / 1000;
    const rate = Math.round(count / seconds).toLocaleString("en-US");
    console.log(
      `${label.padEnd(7)} ${name.padEnd(9)} ${count} in ${seconds.toFixed(3)} s = ${rate}/s${failed ? `, ${failed} failed` : ""}`,
    );
  };
  await phase("allocate");
  await phase("renew"); // the same hosts again: retransmitted DISCOVERs
  const { batches, ops } = engine.writeStats();
  console.log(`${label.padEnd(7)} ${batches} writes, ${(ops / batches).toFixed(1)} ops per write`);
  await engine.close();
}

const dir = mkdtempSync(join(tmpdir(), "dstm-bench-"));
try {
  const sqlite = SqliteLeaseStore.open(join(dir, "leases.db"));
  await run("sqlite", sqlite);
  await sqlite.close();
  await run("memory", new MemoryLeaseStore());
} finally {
  rmSync(dir, { recursive: true, force: true });
}
