/**
 * The PostgreSQL store's generations (lib/lease/postgres.ts `generation`, `watchedThrough`;
 * docs/protocol.md "Generations"): each committed put's lease object gets the row's `seq`,
 * numbered in the commit order of every writer, so a later write by another store (server) on
 * the same database has a higher one; copies and rows of failed writes have none; the watch
 * says the `seq` it has delivered through.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { LeaseConflictError, leaseOf, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip = postgresBin() ? null : "needs PostgreSQL (scripts/test-deps.sh installs it)";
if (skip) console.warn(`[skip] lease_postgres_generation: ${skip}`);
let pg: PgServer | undefined;
const stores: PostgresLeaseStore[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
  await pg?.stop();
}, 60_000);

const X = parseIPv4("198.51.100.7")!;
const lease = (host6: string, state: "active" | "expired", at: number) =>
  leaseOf(X, WHOLE_ADDRESS, host6, 0, "2001:db8::1", "p", state, at, at + 60_000, undefined);

describe.skipIf(skip !== null)("generations of the PostgreSQL store", () => {
  test("each server's write of one row gets a higher seq; copies and failed writes get none", async () => {
    pg = await startPostgres();
    const url = await pg.createDatabase();
    const a = await PostgresLeaseStore.open(url);
    const b = await PostgresLeaseStore.open(url);
    stores.push(a, b);
    const stop = b.watch(() => {});
    await waitUntil(() => b.watchedThrough() !== undefined, { what: "B's watch's first read" });
    const start = b.watchedThrough()!;

    const granted = lease("2001:db8:2::1", "active", 1000);
    await a.write([{ op: "put", lease: granted, expected: null }]);
    const g = a.generation(granted);
    expect(g).toBeGreaterThan(start);
    expect(a.generation({ ...granted })).toBeUndefined(); // a copy is not the row written
    expect(b.generation(granted)).toBeUndefined(); // the other server did not write it

    const expired = lease("2001:db8:2::1", "expired", 2000);
    await a.write([{ op: "put", lease: expired, expected: granted }]);
    const again = lease("2001:db8:2::1", "active", 3000);
    await b.write([{ op: "put", lease: again, expected: expired }]);
    expect(a.generation(expired)).toBeGreaterThan(g!);
    expect(b.generation(again)).toBeGreaterThan(a.generation(expired)!);

    // A write another server won has no generation.
    const lost = lease("2001:db8:2::9", "active", 4000);
    await expect(a.write([{ op: "put", lease: lost, expected: expired }])).rejects.toBeInstanceOf(
      LeaseConflictError,
    );
    expect(a.generation(lost)).toBeUndefined();

    // B's watch delivers through B's own last write, at least.
    await b.caughtUp();
    expect(b.watchedThrough()).toBeGreaterThanOrEqual(b.generation(again)!);
    await stop();
  }, 60_000);
});
