/**
 * Reclamation after downtime against a real `dstm server` process: N overdue leases in a
 * SQLite database, the server started on it (from source, `bun mod.ts`), and a new host's
 * DSTM_DISCOVER sent every 5 ms over UDP on loopback from the moment the server says `start`
 * until every lease is reclaimed (its metrics say so) and 1 s more. Prints the longest and
 * the p99 wait for an answer (one try, 30 s), and how many got none. Not a test.
 *
 *   node_modules/.bin/bun bench/reclaim_server.ts [--leases 40000] [--dstm "bun mod.ts"]
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { parseBenchArgs } from "./bench_args.ts";
import { benchHost6, benchLease } from "./bench_leases.ts";
import { type BenchServer, DSTM_FROM_SOURCE, spawnBenchServer } from "./server_process.ts";

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    leases: { type: "string", default: "40000" },
    dstm: {
      type: "string",
      default: DSTM_FROM_SOURCE.join(" "),
    },
  },
});
const N = Number(values.leases);
const BASE = 0xc6120000; // 198.18.0.0

const dir = mkdtempSync(join(tmpdir(), "dstm-reclaim-"));
let server: BenchServer | undefined;
try {
  const db = join(dir, "leases.db");
  const store = SqliteLeaseStore.open(db);
  const now = Date.now();
  for (let i = 0; i < N; i += 20_000) {
    const rows: Lease[] = [];
    for (let j = i; j < Math.min(N, i + 20_000); j++) {
      const expiresAt = now - 3_600_000 + ((j * 7919) % N) * 10;
      rows.push(benchLease(BASE, "198.18.0.0/15", j, expiresAt - 3_600_000, expiresAt));
    }
    await store.write(rows.map((lease) => ({ op: "put" as const, lease })));
  }
  await store.close();
  const control = join(dir, "control.sock");
  server = await spawnBenchServer(
    [...["--pool", "198.18.0.0/15", "--tep", "2001:db8::1"], ...["--db", db, "--control", control]],
    (values.dstm as string).split(" "),
  );
  const port = server.port;
  const transport = await DstmTransport.open({
    server: "::1",
    port,
    retry: { initialMs: 30_000, tries: 1 },
  });
  const waits: number[] = [];
  const start = performance.now();
  let next = N;
  let inFlight = 0;
  const expired = async (): Promise<number> => {
    try {
      const body = await (await fetch("http://localhost/metrics", { unix: control })).text();
      return Number(/^dstm_leases_expired_total(?:\{\})? (\d+)$/m.exec(body)?.[1] ?? 0);
    } catch {
      return -1;
    }
  };
  let doneAt = 0;
  const timer = setInterval(() => {
    const t0 = performance.now();
    inFlight++;
    void new DstmClient(transport, benchHost6(next++))
      .discover()
      .then(
        () => waits.push(performance.now() - t0),
        () => waits.push(Number.POSITIVE_INFINITY),
      )
      .finally(() => inFlight--);
  }, 5);
  for (let i = 0; i < 1200; i++) {
    await Bun.sleep(100);
    if ((await expired()) >= N) {
      doneAt = performance.now();
      break;
    }
  }
  await Bun.sleep(1000);
  clearInterval(timer);
  for (let i = 0; i < 300 && inFlight > 0; i++) await Bun.sleep(100);
  transport.close();
  const lost = waits.filter((w) => w === Number.POSITIVE_INFINITY).length;
  const answered = waits.filter((w) => w !== Number.POSITIVE_INFINITY);
  waits.length = 0;
  waits.push(...answered);
  waits.sort((a, b) => a - b);
  const pct = (p: number) =>
    waits[Math.min(waits.length - 1, Math.floor(p * waits.length))] as number;
  console.log(
    `${N} overdue leases: all reclaimed ${doneAt ? `${((doneAt - start) / 1000).toFixed(2)} s` : "not"} after start; ${waits.length} DISCOVERs meanwhile, ${lost} unanswered within 30 s; answered: p50 ${pct(0.5).toFixed(1)} ms, p99 ${pct(0.99).toFixed(1)} ms, longest ${pct(1).toFixed(1)} ms`,
  );
} finally {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
}
