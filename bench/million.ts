/**
 * One million leases on one server (issue 12, item 2), the engine part: how long the
 * allocation engine takes to start on a SQLite store holding N active leases, and how much
 * resident memory each lease costs beyond the same server with an empty store. Not a test.
 *
 *   node_modules/.bin/bun bench/million.ts [--leases 1000000] [--rounds 2]
 *
 * The parent writes the database (198.18.0.0/12 region of RFC 2544's benchmarking range
 * widened to 2^20 addresses: 10.0.0.0/12 would do as well; nothing is ever sent to them)
 * once, then for each round starts two fresh child processes, one on an empty database and
 * one on the full one, each: open the store, `new AllocationEngine` (the same pool, so the
 * per-slot arrays are in both), `start()` (load and index every row), a full GC, RSS. It
 * prints the start time and (RSS full − RSS empty) / N. Also the p50/p99 of 20,000 DISCOVERs
 * of new hosts into a memory store beside the loaded table (engine only, no UDP), with N and
 * with 1,000 leases.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { parseBenchArgs } from "./bench_args.ts";
import { benchHost6, benchLease } from "./bench_leases.ts";

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    leases: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "2" },
    child: { type: "string" },
  },
});
const POOL = { prefixes: ["198.16.0.0/12"], tep6: "2001:db8::1" };
const BASE = 0xc6100000; // 198.16.0.0
const host = benchHost6;

function rows(n: number, from = 0): Lease[] {
  const now = Date.now();
  const out: Lease[] = [];
  for (let i = from; i < from + n; i++) {
    out.push(benchLease(BASE, "198.16.0.0/12", i, now, now + 86_400_000 + (i % 3600) * 1000));
  }
  return out;
}

if (values.child) {
  // child: start an engine on the database, report start time and RSS
  const start = performance.now();
  const store = SqliteLeaseStore.open(values.child);
  const engine = new AllocationEngine({ pools: [POOL], store, leaseTime: 86_400 });
  await engine.start();
  const ms = performance.now() - start;
  Bun.gc(true);
  const rss = process.memoryUsage().rss;
  const active = engine.stats()[0]?.active ?? 0;
  console.log(JSON.stringify({ ms, rss, active }));
  await engine.close();
  await store.close();
  process.exit(0);
}

const N = Number(values.leases);
const ROUNDS = Number(values.rounds);
const dir = mkdtempSync(join(tmpdir(), "dstm-million-"));
try {
  const full = join(dir, "full.db");
  const empty = join(dir, "empty.db");
  await SqliteLeaseStore.open(empty).close();
  const store = SqliteLeaseStore.open(full);
  const t = performance.now();
  for (let i = 0; i < N; i += 50_000) {
    await store.write(rows(Math.min(50_000, N - i), i).map((lease) => ({ op: "put", lease })));
  }
  await store.close();
  console.log(
    `${N.toLocaleString("en-US")} leases written in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
  const child = (db: string) => {
    const out = Bun.spawnSync([process.execPath, import.meta.path, "--child", db]);
    if (out.exitCode !== 0) throw new Error(out.stderr.toString());
    return JSON.parse(out.stdout.toString()) as { ms: number; rss: number; active: number };
  };
  for (let round = 1; round <= ROUNDS; round++) {
    const e = child(empty);
    const f = child(full);
    if (f.active !== N) throw new Error(`loaded ${f.active} of ${N}`);
    console.log(
      `round ${round}: start with ${N.toLocaleString("en-US")} leases ${(f.ms / 1000).toFixed(2)} s (empty ${(e.ms / 1000).toFixed(2)} s); RSS ${(f.rss / 2 ** 20).toFixed(0)} MiB vs ${(e.rss / 2 ** 20).toFixed(0)} MiB empty: ${((f.rss - e.rss) / N).toFixed(0)} bytes per lease`,
    );
  }
  // DISCOVER latency in the engine with N and with 1,000 leases (memory store).
  for (const n of [1000, N]) {
    const memory = new MemoryLeaseStore();
    for (let i = 0; i < n; i += 50_000) {
      await memory.write(rows(Math.min(50_000, n - i), i).map((lease) => ({ op: "put", lease })));
    }
    const engine = new AllocationEngine({ pools: [POOL], store: memory, leaseTime: 86_400 });
    await engine.start();
    const waits: number[] = [];
    for (let i = 0; i < 20_000; i += 64) {
      const batch = [];
      for (let j = i; j < i + 64; j++) {
        const t0 = performance.now();
        batch.push(engine.discover(host(N + j)).then(() => waits.push(performance.now() - t0)));
      }
      await Promise.all(batch);
    }
    waits.sort((a, b) => a - b);
    const pct = (p: number) => (waits[Math.floor(p * (waits.length - 1))] as number).toFixed(3);
    console.log(
      `discover with ${n.toLocaleString("en-US")} leases: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms (64 in flight)`,
    );
    await engine.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
