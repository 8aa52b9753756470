/**
 * Active-active: durable DSTM allocations per second through one `dstm server` and through two
 * sharing one PostgreSQL database (a throwaway server, test/helpers/postgres.ts), and how
 * many writes the other server won. Not a test.
 *
 *   node_modules/.bin/bun bench/active_active.ts [--hosts 20000] [--concurrency 128]
 *
 * Each run: a fresh database, the server(s) started from source (`bun mod.ts server --db
 * postgres://…` on [::1]:0, pool 198.18.0.0/15, default logging to a pipe), `--hosts`
 * simulated hosts each sending one DSTM_DISCOVER over UDP (from ::1, `--no-source-check`),
 * `--concurrency` in flight, spread over the servers in turn. Then the database is checked:
 * as many active rows as answers, each address with the host that was told it.
 *
 * @module
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { type ClientLease, DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { startPostgres } from "../test/helpers/postgres.ts";
import { parseBenchArgs } from "./bench_args.ts";
import { type BenchServer, spawnBenchServer } from "./server_process.ts";

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    hosts: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "128" },
  },
});
const HOSTS = Number(values.hosts);
const CONCURRENCY = Number(values.concurrency);
const host = (i: number) => `2001:db8:${(i >>> 16).toString(16)}::${(i & 0xffff).toString(16)}`;

interface Running {
  server: BenchServer;
  control: string;
}

async function startServer(url: string, control: string): Promise<Running> {
  const server = await spawnBenchServer([
    // The TEP outside the hosts' 2001:db8:0::/48: host 1 would be the TEP's own address, refused
    // (host6-is-tep, c5ef42b), one DISCOVER "failed" of every run since.
    ...["--pool", "198.18.0.0/15", "--tep", "2001:db8:ff::1"],
    ...["--db", url, "--control", control],
  ]);
  return { server, control };
}

async function gauge(control: string, name: string): Promise<number> {
  const body = await (await fetch("http://localhost/metrics", { unix: control })).text();
  return Number(new RegExp(`^${name}(?:\\{\\})? (\\d+)$`, "m").exec(body)?.[1] ?? 0);
}

const pg = await startPostgres();
const dir = mkdtempSync(join(tmpdir(), "dstm-aa-bench-"));
const running: Running[] = [];
try {
  console.log(`${HOSTS} hosts, ${CONCURRENCY} DISCOVERs in flight, PostgreSQL ${pg.socketDir}`);
  for (const count of [1, 2]) {
    const url = await pg.createDatabase();
    const servers: Running[] = [];
    for (let s = 0; s < count; s++) {
      const server = await startServer(url, join(dir, `${count}-${s}.sock`));
      servers.push(server);
      running.push(server);
    }
    const transports = await Promise.all(
      servers.map((s) =>
        DstmTransport.open({
          server: "::1",
          port: s.server.port,
          retry: { initialMs: 2000, tries: 3 },
        }),
      ),
    );
    const leases: ClientLease[] = [];
    let failed = 0;
    let next = 0;
    const start = performance.now();
    const worker = async () => {
      for (let i = next++; i < HOSTS; i = next++) {
        const transport = transports[i % transports.length] as DstmTransport;
        try {
          leases.push(await new DstmClient(transport, host(i)).discover());
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const seconds = (performance.now() - start) / 1000;
    let conflicts = 0;
    for (const s of servers) conflicts += await gauge(s.control, "dstm_lease_write_conflicts");
    const sql = new SQL(url);
    const rows = (await sql`SELECT ipv4, host6 FROM dstm_leases WHERE state = 'active'`) as {
      ipv4: string;
      host6: string;
    }[];
    await sql.close();
    const holder = new Map(rows.map((r) => [Number(r.ipv4), r.host6]));
    const wrong = leases.filter((l) => holder.get(l.ipv4) !== l.host6).length;
    console.log(
      `${count} server(s): ${Math.round(leases.length / seconds).toLocaleString("en-US")} allocations/s, ${failed} failed, ${conflicts} writes lost to the other server; database: ${rows.length} active rows, ${wrong} answers not matching it`,
    );
    for (const t of transports) t.close();
    for (const s of servers) await s.server.stop();
  }
} finally {
  for (const s of running) await s.server.stop();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
