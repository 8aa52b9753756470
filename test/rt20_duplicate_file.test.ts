/**
 * Red team (rt20): since a05cc11 a writable open drops the partial UNIQUE index that made
 * SQLite itself refuse a second active row for one holder, so `sqlite3 leases.db` (an
 * operator's repair, a restore script) can now write two active rows for one host while the
 * server is stopped. What does the store and the engine do with such a file at the next start?
 * Not crash, and not hand that host a second lease; and one host's broken rows must not fail
 * the allocations of the other hosts whose changes share its group-commit batch.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { type Lease, LeaseStoreError, leaseOf, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { COLUMNS } from "../lib/lease/sqlite_schema.ts";
import { HOST_PAIRS, IDENTITY_PAIRS } from "./helpers/rt20_guard_fuzz.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-rt20-dup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 1_700_000_000_000;
const BASE = 0xc6336400; // 198.51.100.0
const POOL = "198.51.100.0/28";
const H = "2001:db8::d0b1";

function row(last: number, host6: string, expiresAt: number): Lease {
  return leaseOf(
    BASE + last,
    WHOLE_ADDRESS,
    host6,
    0,
    "2001:db8::1",
    POOL,
    "active",
    T0,
    expiresAt,
    undefined,
  );
}

/** A store file with rows written by hand (sqlite3) while no server runs. */
async function fileWith(name: string, rows: Lease[]): Promise<string> {
  const path = join(dir, name);
  const store = SqliteLeaseStore.open(path);
  await store.close();
  const db = new Database(path);
  const insert = db.query(
    `INSERT INTO leases (${COLUMNS}) VALUES (?, ?, 0, 0, 0, ?, 0, '2001:db8::1', ?, 'active', ?, ?, NULL)`,
  );
  for (const r of rows)
    insert.run(r.ipv4 * 65536, r.ipv4, r.host6, r.pool, r.grantedAt, r.expiresAt);
  db.close();
  return path;
}

function activeHolders(path: string): Map<string, number> {
  const db = new Database(path, { readonly: true });
  const rows = db
    .query(
      "SELECT coalesce(identity, host6), count(*) FROM leases WHERE state = 'active' GROUP BY 1",
    )
    .values() as [string, number][];
  db.close();
  return new Map(rows.map(([h, n]) => [h, Number(n)]));
}

describe("rt20: a file with two active rows for one holder (written by sqlite3)", () => {
  test("the store refuses to load it with a clear error naming the holder and both keys", async () => {
    // H holds .1 and .2: as sqlite3 can write them now that the UNIQUE index is gone.
    const path = await fileWith("store.db", [row(1, H, T0 + 10_000), row(2, H, T0 + 600_000)]);
    const store = SqliteLeaseStore.open(path);
    try {
      // Before the fix the load succeeded, and every later batch with a write of H failed.
      const load = store.loadAll();
      await expect(load).rejects.toBeInstanceOf(LeaseStoreError);
      await expect(load).rejects.toThrow(
        /2001:db8::d0b1 holds two active leases.*198\.51\.100\.1.*198\.51\.100\.2/,
      );
      // A write before any load reads the rows itself: refused the same way.
      await expect(
        store.write([{ op: "put", lease: row(5, "2001:db8::a5", T0 + 600_000) }]),
      ).rejects.toThrow(/holds two active leases/);
    } finally {
      await store.close();
    }
    // Expired by hand again, the file loads.
    const db = new Database(path);
    db.run(`UPDATE leases SET state = 'expired' WHERE key = ${(BASE + 1) * 65536}`);
    db.close();
    const fixed = SqliteLeaseStore.open(path);
    expect((await fixed.loadAll()).filter((l) => l.state === "active")).toHaveLength(1);
    await fixed.close();
  });

  test("the engine does not start on it (before the fix: it started, and other hosts' DISCOVERs batched with that host's renewal failed)", async () => {
    const path = await fileWith("engine.db", [row(1, H, T0 + 10_000), row(2, H, T0 + 20_000)]);
    const store = SqliteLeaseStore.open(path);
    const engine = new AllocationEngine({
      pools: [{ prefixes: [POOL], tep6: "2001:db8::1" }],
      store,
      leaseTime: 600,
      now: () => T0 + 5_000,
    });
    try {
      await expect(engine.start()).rejects.toThrow(/holds two active leases/);
    } finally {
      await engine.close().catch(() => {});
      await store.close();
    }
    expect(activeHolders(path)).toEqual(new Map([[H, 2]]));
  });

  test("holders whose hashes collide, one active row each, load and work as before", async () => {
    const [a, b] = HOST_PAIRS[0] as [string, string];
    const [id, host] = IDENTITY_PAIRS[0] as [string, string];
    const path = await fileWith("colliding.db", [
      row(1, a, T0 + 600_000),
      row(2, b, T0 + 600_000),
      row(3, host, T0 + 600_000),
    ]);
    const db = new Database(path);
    db.run(
      `INSERT INTO leases (${COLUMNS}) VALUES (${(BASE + 4) * 65536}, ${BASE + 4}, 0, 0, 0, '${host}', 0, '2001:db8::1', '${POOL}', 'active', ${T0}, ${T0 + 600_000}, '${id}')`,
    );
    db.close();
    const store = SqliteLeaseStore.open(path);
    expect((await store.loadAll()).filter((l) => l.state === "active")).toHaveLength(4);
    await expect(store.write([{ op: "put", lease: row(5, b, T0 + 600_000) }])).rejects.toThrow(
      /two active/,
    );
    await store.write([{ op: "put", lease: row(2, b, T0 + 1_200_000) }]);
    await store.close();
    // And without the load (a write first).
    const again = SqliteLeaseStore.open(path);
    await expect(again.write([{ op: "put", lease: row(5, a, T0 + 600_000) }])).rejects.toThrow(
      /two active/,
    );
    await again.write([{ op: "put", lease: row(1, a, T0 + 1_200_000) }]);
    await again.close();
  });
});

describe("rt20: sqlite3 writing the file while the server runs (the dstm lock does not stop it)", () => {
  test("a second active row for a holder inserted live is not seen by the guard; the next start says so", async () => {
    const path = await fileWith("live.db", []);
    const store = SqliteLeaseStore.open(path);
    await store.loadAll();
    await store.write([{ op: "put", lease: row(1, H, T0 + 600_000) }]);
    // An operator's sqlite3, while the server runs: with the UNIQUE index (before a05cc11)
    // this INSERT failed; now it goes in.
    const db = new Database(path);
    db.run("PRAGMA busy_timeout = 2000");
    db.run(
      `INSERT INTO leases (${COLUMNS}) VALUES (${(BASE + 2) * 65536}, ${BASE + 2}, 0, 0, 0, '${H}', 0, '2001:db8::1', '${POOL}', 'active', ${T0}, ${T0 + 600_000}, NULL)`,
    );
    db.close();
    // The guard read its rows at the load: it does not know of .2, and the renewal of .1 goes in.
    await store.write([{ op: "put", lease: row(1, H, T0 + 1_200_000) }]);
    await store.close();
    expect(activeHolders(path)).toEqual(new Map([[H, 2]]));
    // The next start refuses the file with the one-line error (rt20 fix), not a silent double.
    const next = SqliteLeaseStore.open(path);
    await expect(next.loadAll()).rejects.toThrow(/2001:db8::d0b1 holds two active leases/);
    await next.close();
  });
});
