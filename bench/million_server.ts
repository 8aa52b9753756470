/**
 * One million leases on one server (issue 12, item 2), against the real `dstm server` process
 * (from source): for a store of 0, 1,000 and N active leases (SQLite, written beforehand), the
 * time from spawn to the `start` line, the server's RSS (VmRSS of /proc/PID/status) once
 * started and after the load, and the answer latency of 20,000 DSTM_DISCOVERs of new hosts
 * (64 in flight, over loopback). RSS per lease = (RSS with N − RSS with 0) / N. Not a test.
 *
 *   node_modules/.bin/bun bench/million_server.ts [--leases 1000000]
 *
 * @module
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { parseBenchArgs } from "./bench_args.ts";
import { benchHost6, benchLease } from "./bench_leases.ts";
import { spawnBenchServer } from "./server_process.ts";

const PROBES = 20_000;
const CONCURRENCY = 64;

/** First address of the leases' pool, 198.16.0.0/12 (lease `i` holds BASE + 1 + i). */
export const BASE = 0xc6100000; // 198.16.0.0
/** The pool of the leases {@link fill} writes. */
export const POOL = "198.16.0.0/12";
/** Host IPv6 address of lease `i`: 2001:db8:(i >>> 16)::(i & 0xffff). */
export const host = benchHost6;

/**
 * Writes `n` active leases (lease `i`: BASE + 1 + i, whole address, for {@link host}(i), one
 * day and up to an hour more) to the SQLite store at `path`, all on TEP `tep6`.
 */
export async function fill(path: string, n: number, tep6 = "2001:db8::1"): Promise<void> {
  const store = SqliteLeaseStore.open(path);
  const now = Date.now();
  for (let i = 0; i < n; i += 50_000) {
    const rows: Lease[] = [];
    for (let j = i; j < Math.min(n, i + 50_000); j++) {
      rows.push({ ...benchLease(BASE, POOL, j, now, now + 86_400_000 + (j % 3600) * 1000), tep6 });
    }
    await store.write(rows.map((lease) => ({ op: "put" as const, lease })));
  }
  await store.close();
}

/** VmRSS of process `pid` (bytes), 0 when it has none (gone). */
export function rss(pid: number): number {
  let status = "";
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return 0;
  }
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
}

async function run(db: string, n: number, N: number) {
  const t0 = performance.now();
  const server = await spawnBenchServer([
    ...["--pool", "198.16.0.0/12", "--tep", "2001:db8::1"],
    ...["--db", db, "--no-control", "--lease-time", "1d"],
  ]);
  const { proc, port } = server;
  try {
    const startMs = performance.now() - t0;
    await Bun.sleep(2000); // let the start's garbage be collected
    const started = rss(proc.pid);
    const transport = await DstmTransport.open({
      server: "::1",
      port,
      retry: { initialMs: 2000, tries: 3 },
    });
    const waits: number[] = [];
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < PROBES; i = next++) {
        const t = performance.now();
        await new DstmClient(transport, benchHost6(N + 1 + i)).discover();
        waits.push(performance.now() - t);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    transport.close();
    waits.sort((a, b) => a - b);
    const pct = (p: number) => waits[Math.floor(p * (waits.length - 1))] as number;
    return { n, startMs, rss: started, p50: pct(0.5), p99: pct(0.99) };
  } finally {
    await server.stop();
  }
}

async function main(N: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "dstm-million-server-"));
  try {
    const results = [];
    for (const n of [0, 1000, N]) {
      const db = join(dir, `${n}.db`);
      await fill(db, n);
      results.push(await run(db, n, N));
    }
    const empty = results[0] as (typeof results)[number];
    for (const r of results) {
      console.log(
        `${r.n.toLocaleString("en-US").padStart(9)} leases: start ${(r.startMs / 1000).toFixed(2)} s, RSS ${(r.rss / 2 ** 20).toFixed(0)} MiB${r.n ? ` (${((r.rss - empty.rss) / r.n).toFixed(0)} bytes per lease beyond empty)` : ""}, DISCOVER p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseBenchArgs(import.meta.path, {
    options: { leases: { type: "string", default: "1000000" } },
  });
  await main(Number(values.leases));
}
