/**
 * Two allocation engines on one PostgreSQL database (two `dstm server`s active-active, as
 * test/alloc_shared.test.ts models with the shared memory store): both sweepers find the same
 * leases overdue, and the expiries one server did first must not fail the other's allocations
 * that share a batch with its expiries of them (each expiry still counted once).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import type { EngineResult } from "../lib/alloc/engine_types.ts";
import type { Lease, LeaseOp, LeaseStore, WriteOutcome } from "../lib/lease/lease.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { T0 } from "./helpers/engine.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";

const TEP6 = "2001:db8::1";
const host = (n: number) => `2001:db8:1::${n.toString(16)}`;

let pg: Promise<PgServer> | undefined;
const stores: PostgresLeaseStore[] = [];
afterAll(async () => {
  for (const store of stores) await store.close().catch(() => {});
  if (pg) await (await pg).stop();
});

/** The store of one server, whose writes wait for `gate` (the other server's write first). */
class GatedStore implements LeaseStore {
  readonly kind = "postgres";
  readonly shared = true;
  gate: Promise<unknown> = Promise.resolve();
  constructor(readonly inner: PostgresLeaseStore) {}
  loadAll(): Promise<Lease[]> {
    return this.inner.loadAll();
  }
  async write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    await this.gate;
    return await this.inner.write(ops);
  }
  watch(onRows: (rows: Lease[]) => void): () => Promise<void> {
    return this.inner.watch(onRows);
  }
  // The database's clock, which every engine on it takes (a server without it would read the
  // others' stored times off by its test clock's distance from the database's).
  clockMs(): Promise<number> {
    return this.inner.clockMs();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe.skipIf(!postgresBin())("two engines, one PostgreSQL", () => {
  test("expiries the other server did first fail no allocation; each expiry counted once", async () => {
    pg ??= startPostgres();
    const url = await (await pg).createDatabase();
    const open = async () => {
      const store = await PostgresLeaseStore.open(url);
      stores.push(store);
      return store;
    };
    const clock = { now: T0 };
    const pools = [{ prefixes: ["198.18.0.0/22"], tep6: TEP6 }];
    const gated = new GatedStore(await open());
    const make = async (store: LeaseStore) => {
      const engine = new AllocationEngine({ pools, store, leaseTime: 60, now: () => clock.now });
      await engine.start();
      return engine;
    };
    const a = await make(gated);
    const b = await make(await open());
    const N = 250;
    for (let i = 0; i < N; i++) expect((await (i % 2 ? a : b).discover(host(i))).ok).toBe(true);
    clock.now += 61_000;
    const before = a.conflicts(); // the grants above may have met B's (not yet heard of)
    const expired: Lease[] = [];
    const granted: Promise<EngineResult>[] = [];
    for (let round = 0; round < 20; round++) {
      // Both decide on the same due leases now; A's batch (its slice and new hosts' allocations)
      // reaches the database only after B's slice has committed.
      const fromB = b.sweep();
      gated.gate = fromB;
      const fromA = a.sweep();
      for (let j = 0; j < 4; j++) granted.push(a.discover(host(1000 + round * 4 + j)));
      for (const x of await Promise.all([fromB, fromA])) expired.push(...x);
      if (!a.reclaimPending && !b.reclaimPending && expired.length >= N) break;
    }
    const results = await Promise.all(granted);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(a.conflicts() - before).toBe(0); // no allocation was decided again
    expect(a.expiriesLapsed()).toBeGreaterThan(0); // the sweeps did meet
    expect(expired.length).toBe(N);
    expect(new Set(expired.map((l) => l.host6)).size).toBe(N);
    const rows = await gated.loadAll();
    expect(rows.filter((l) => l.state === "expired").length).toBe(N);
    expect(rows.filter((l) => l.state === "active").length).toBe(results.length);
    await a.close();
    await b.close();
  });
});
