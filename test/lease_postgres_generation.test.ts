/**
 * The PostgreSQL store's generations (lib/lease/postgres_write.ts `writeBatch`,
 * lib/lease/postgres.ts `watchedThrough`; docs/protocol.md "Generations"): each write resolves
 * with the `seq` of every op it applied, numbered in the commit order of every writer, so a
 * later write by another store (server) on the same database has a higher one; a delete takes
 * one too; a skipped `lapse` put and a failed write give none; the watch says the `seq` it has
 * delivered through. The group committer hands each submitter the generations of its own ops.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { GroupCommitter } from "../lib/lease/group_commit.ts";
import { LeaseConflictError, leaseKey, leaseOf, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
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
const Y = parseIPv4("198.51.100.8")!;
const lease = (host6: string, state: "active" | "expired", at: number, ipv4 = X) =>
  leaseOf(ipv4, WHOLE_ADDRESS, host6, 0, "2001:db8::1", "p", state, at, at + 60_000, undefined);

describe.skipIf(skip !== null)("generations of the PostgreSQL store", () => {
  test("each server's write of one row gets a higher seq; deletes get one, failed writes none", async () => {
    pg = await startPostgres();
    const url = await pg.createDatabase();
    const a = await PostgresLeaseStore.open(url);
    const b = await PostgresLeaseStore.open(url);
    stores.push(a, b);
    const stop = b.watch(() => {});
    await waitUntil(() => b.watchedThrough() !== undefined, { what: "B's watch's first read" });
    const start = b.watchedThrough()!;

    const granted = lease("2001:db8:2::1", "active", 1000);
    const g = (await a.write([{ op: "put", lease: granted, expected: null }]))?.generations?.[0];
    expect(g).toBeGreaterThan(start);

    const expired = lease("2001:db8:2::1", "expired", 2000);
    const e = (await a.write([{ op: "put", lease: expired, expected: granted }]))?.generations;
    const again = lease("2001:db8:2::1", "active", 3000);
    const r = (await b.write([{ op: "put", lease: again, expected: expired }]))?.generations;
    expect(e?.[0]).toBeGreaterThan(g!);
    expect(r?.[0]).toBeGreaterThan(e![0]!);

    // A write another server won has no generation: it rejects.
    const lost = lease("2001:db8:2::9", "active", 4000);
    await expect(a.write([{ op: "put", lease: lost, expected: expired }])).rejects.toBeInstanceOf(
      LeaseConflictError,
    );

    // One op each, in order; a skipped lapse put has none; a delete of a row takes a seq
    // above every write before it (a later grant's is above it), of no row none.
    const other = lease("2001:db8:2::2", "active", 5000, Y);
    const mixed = await a.write([
      { op: "put", lease: other, expected: null },
      { op: "put", lease: lease("2001:db8:2::1", "expired", 6000), expected: granted, lapse: true },
      { op: "delete", key: leaseKey(Y, 0) },
      { op: "delete", key: leaseKey(Y, 0) },
    ]);
    expect(mixed?.skipped?.has(leaseKey(X, 0))).toBe(true);
    const [put, skipped, deleted, none] = mixed?.generations ?? [];
    expect(put).toBeGreaterThan(r![0]!);
    expect(skipped).toBeUndefined();
    expect(deleted).toBeGreaterThan(put!);
    expect(none).toBeUndefined();
    const back = (await b.write([{ op: "put", lease: other, expected: null }]))?.generations;
    expect(back?.[0]).toBeGreaterThan(deleted!);

    // B's watch delivers through B's own last write, at least.
    await b.caughtUp();
    expect(b.watchedThrough()).toBeGreaterThanOrEqual(back![0]!);
    await stop();
  }, 60_000);

  test("the group committer gives each submitter of one batch its own ops' generations", async () => {
    pg ??= await startPostgres();
    const a = await PostgresLeaseStore.open(await pg.createDatabase());
    stores.push(a);
    const committer = new GroupCommitter(a);
    const one = lease("2001:db8:3::1", "active", 1000);
    const two = lease("2001:db8:3::2", "active", 1000, Y);
    const three = lease("2001:db8:3::2", "expired", 2000, Y);
    // Submitted in one turn: one batch, one transaction.
    const first = committer.submit([{ op: "put", lease: one, expected: null }]);
    const second = committer.submit([
      { op: "put", lease: two, expected: null },
      { op: "put", lease: three, expected: two },
    ]);
    const [f, s] = await Promise.all([first, second]);
    expect(committer.stats.batches).toBe(1);
    expect(f?.generations).toHaveLength(1);
    expect(s?.generations).toHaveLength(2);
    expect(s?.generations?.[0]).toBeGreaterThan(f!.generations![0]!);
    expect(s?.generations?.[1]).toBeGreaterThan(s!.generations![0]!);
  }, 60_000);
});
