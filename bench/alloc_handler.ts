/**
 * Micro-benchmark of the native request path in one process, without UDP: DSTM_DISCOVERs of
 * fresh hosts decoded, decided, stored (group commit) and encoded by the server's
 * `DstmHandler` over an `AllocationEngine` on the SQLite store (WAL, fsynced, in a temporary
 * directory) or the memory store, with the info line of each lease formatted and written to
 * a sink that drops it. Prints the main thread's CPU time per request (µs; user + system,
 * process.threadCpuUsage), the figure that bounds `bench/alloc.ts` on a two-vCPU machine,
 * steadier than a rate on a shared one. Not a test.
 *
 *   node_modules/.bin/bun bench/alloc_handler.ts [count] [concurrency] [rounds]   # 100000 128 3
 *   STORE=sqlite LEVEL=warn node_modules/.bin/bun bench/alloc_handler.ts   # one store; log level
 *   TEP=1 node_modules/.bin/bun bench/alloc_handler.ts   # with the TEP sink, as `bench/alloc.ts --spawn`
 *   HOSTS=sequential node_modules/.bin/bun bench/alloc_handler.ts   # hosts' addresses in order
 *
 * `TEP=1`: the handler installs each binding through a `TepSync` whose TEP (2001:db8::1) never
 * syncs, as in `bench/alloc.ts --spawn` (`--tep` given, no TEP running): every lease's binding
 * goes into the TEP's table and digest and its BIND is deferred (rate-limited warning).
 *
 * Each round first runs 30,000 requests that are not measured (the JIT compiles the path).
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import type { LeaseStore } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { DstmHandler } from "../lib/server/handler.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import { type HostAddresses, hostAddress } from "./alloc.ts";
import { benchNumbers } from "./bench_args.ts";

/** The hosts' IPv6 addresses (bench/alloc.ts hostAddress): random (default) or sequential. */
const HOSTS: HostAddresses = process.env.HOSTS === "sequential" ? "sequential" : "random";

/** Requests before the measured ones (the pool, 198.18.0.0/15, has 131,070 addresses). */
const WARM_UP = 30_000;
const [count = 100_000, concurrency = 128, rounds = 3] = benchNumbers(
  import.meta.path,
  ["count", "concurrency", "rounds"],
  [100_000, 128, 3],
);
if (count + WARM_UP > 131_000)
  throw new Error(`count: at most ${131_000 - WARM_UP} (the pool's size)`);

/** One round on a fresh engine and store: µs of main-thread CPU per request, and ms wall. */
async function round(store: LeaseStore): Promise<{ cpuUs: number; ms: number; acked: number }> {
  const engine = new AllocationEngine({
    pools: [{ prefixes: ["198.18.0.0/15"], tep6: "2001:db8::1" }],
    store,
    leaseTime: 3600,
  });
  await engine.start();
  let bytes = 0;
  const log = new Logger({
    sink: (text) => (bytes += text.length),
    level: (process.env.LEVEL as "info") ?? "info",
  });
  const metrics = new Metrics();
  const bindings =
    process.env.TEP === "1"
      ? new TepSync(
          { teps: ["2001:db8::1"], log, metrics, send: () => true, pools: engine.pools() },
          [],
        )
      : undefined;
  const handler = new DstmHandler({ engine, metrics, log, sourceCheck: false, bindings });
  // The first WARM_UP requests let the JIT compile the path (not measured), then `count`.
  const total = WARM_UP + count;
  const requests = Array.from({ length: total }, (_, i) => {
    // Host 0 would be 2001:db8::1 (the TEP) in sequential form: numbers from 1.
    const host6 = hostAddress(i + 1, HOSTS);
    return encodeMessage({ type: MessageType.DISCOVER, xid: i, host6 });
  });
  let acked = 0;
  let next = 0;
  // `concurrency` hosts in flight, each taking the next request when answered (closed loop).
  const worker = async (end: number) => {
    while (next < end) {
      const i = next++;
      const answer = await handler.handle(requests[i]!, "::1", 546, "::1");
      if (answer?.[1] === MessageType.DISCOVER_ACK) acked++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker(WARM_UP)));
  acked = 0;
  const cpu0 = process.threadCpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, () => worker(total)));
  const ms = performance.now() - started;
  const cpu = process.threadCpuUsage(cpu0);
  log.flush();
  bindings?.close();
  await engine.close();
  if (bytes === 0 && log.enabled("info")) throw new Error("no log line was written");
  return { cpuUs: (cpu.user + cpu.system) / count, ms, acked };
}

for (let r = 0; r < rounds; r++) {
  // STORE=sqlite or STORE=memory: that store only (default both).
  const kinds = (["sqlite", "memory"] as const).filter((k) => (process.env.STORE ?? k) === k);
  for (const kind of kinds) {
    const dir = mkdtempSync(join(tmpdir(), "dstm-bench-handler-"));
    try {
      const store =
        kind === "sqlite"
          ? await SqliteLeaseStore.open(join(dir, "leases.db"))
          : new MemoryLeaseStore();
      const { cpuUs, ms, acked } = await round(store);
      await store.close();
      console.log(
        `round ${r + 1} ${kind}: ${acked} of ${count} acked, ${cpuUs.toFixed(2)} µs main-thread CPU per request, ${Math.round(count / (ms / 1000))}/s`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
