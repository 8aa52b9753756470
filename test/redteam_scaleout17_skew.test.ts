/**
 * Red team, issue 12 §3: two servers active-active on one PostgreSQL database whose wall
 * clocks disagree. Leases are stored with wall-clock expiries (`expiresAt`); a server whose
 * clock runs ahead reads the other's leases as expiring that much sooner. Its sweeper must
 * not reclaim a lease the granting server (and the host) hold valid for most of its time:
 * the address would go to another host while the first still uses it, before its renewal is
 * even due (RFC 2131 §4.4.5: T1 at half the lease).
 *
 * Two allocation engines on one throwaway PostgreSQL; server B's wall clock 50 s ahead of A's
 * (lease time 60 s). B's monotonic clock is injected so that the time it lets pass is exact.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { DstmServer } from "../lib/server/server.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";
import { waitUntil } from "./helpers/wait.ts";

const TEP6 = "2001:db8::1";
const SKEW_MS = 50_000;

let pg: PgServer | undefined;
const closing: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const close of closing.reverse()) await close().catch(() => {});
  await pg?.stop();
});

describe.skipIf(!postgresBin())("servers whose clocks disagree, one PostgreSQL", () => {
  test("a server whose clock runs ahead never reclaims the other's lease early", async () => {
    pg = await startPostgres();
    const url = await pg.createDatabase();
    const pools = [{ prefixes: ["198.18.0.0/24"], tep6: TEP6 }];
    const open = async () => {
      const store = await PostgresLeaseStore.open(url);
      closing.push(() => store.close());
      return store;
    };
    const a = new AllocationEngine({ pools, store: await open(), leaseTime: 60 });
    await a.start();
    // B: wall clock SKEW_MS ahead; its monotonic clock moves only when the test says.
    let bElapsed = 0;
    const b = new AllocationEngine({
      pools,
      store: await open(),
      leaseTime: 60,
      now: () => Date.now() + SKEW_MS + bElapsed,
      monotonic: () => bElapsed,
    });
    await b.start();

    const granted = await a.discover("2001:db8:1::1");
    expect(granted.ok).toBe(true);
    await waitUntil(() => b.lookupHost("2001:db8:1::1")?.state === "active", {
      timeoutMs: 10_000,
      what: "B taking in A's lease",
    });
    // 15 s pass at B (the lease has 45 s left by A's clock, which granted it; the host
    // renews at 30 s): B's sweeps reclaim nothing.
    const expired = [];
    for (let s = 0; s < 15; s++) {
      bElapsed += 1000;
      expired.push(...(await b.sweep()));
    }
    expect(expired.map((l) => l.host6)).toEqual([]);
    const sql = new SQL(url);
    closing.push(() => sql.close());
    const rows = (await sql`SELECT state FROM dstm_leases WHERE host6 = '2001:db8:1::1'`) as {
      state: string;
    }[];
    expect(rows.map((r) => r.state)).toEqual(["active"]);
    // Past its 60 s (by the database's clock), B reclaims it: once.
    bElapsed += 46_000;
    expect((await b.sweep()).map((l) => l.host6)).toEqual(["2001:db8:1::1"]);
    expect(await a.sweep()).toEqual([]);
  }, 60_000);

  test("a server whose clock is off the database's says so at start (warn db-clock-offset)", async () => {
    pg ??= await startPostgres();
    const url = await pg.createDatabase();
    const lines: string[] = [];
    const server = await DstmServer.start({
      pools: [{ prefixes: ["198.18.1.0/24"], tep6: TEP6 }],
      leaseTime: 60,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      db: url,
      clock: { now: () => Date.now() - SKEW_MS, monotonic: () => performance.now() },
      log: new Logger({ sink: (text) => lines.push(...text.split("\n")) }),
    });
    closing.push(() => server.stop());
    const said = lines.find((l) => / WARN db-clock-offset /.test(l));
    expect(said).toBeDefined();
    // The database is ahead by SKEW_MS (± the round trip).
    const offset = Number(/offset-ms=(-?\d+)/.exec(said ?? "")?.[1]);
    expect(Math.abs(offset - SKEW_MS)).toBeLessThan(1000);
  }, 60_000);
});
