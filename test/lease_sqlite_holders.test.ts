/**
 * The SQLite store's one-active-lease-per-holder rule, checked in memory before a batch
 * reaches SQLite (lib/lease/sqlite_holders.ts) instead of by a partial UNIQUE index: what it
 * reads (nothing for a renewal or a new holder), holders whose 32-bit hashes collide, an
 * entry left stale by a row that changed hands, the rule after a restart (with and without
 * the load), a file an older dstm made with the index, and random batches against the memory
 * store (the reference model of the LeaseStore contract) with hosts moving between keys and
 * colliding holders among them.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { holderHash } from "../lib/lease/holder_index.ts";
import {
  type Lease,
  type LeaseOp,
  type LeaseState,
  LeaseStoreError,
  leaseKey,
  leaseOf,
  WHOLE_ADDRESS,
} from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { SqliteHolderGuard } from "../lib/lease/sqlite_holders.ts";
import { COLUMNS, create, HOLDER_INDEX, SCHEMA_1 } from "../lib/lease/sqlite_schema.ts";
import { SqliteBatchWriter } from "../lib/lease/sqlite_write.ts";
import { prng } from "./helpers/fuzz.ts";
import { pairsWithOneHash } from "./helpers/holder_collisions.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-holders-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Two IPv6 address texts with one holderHash in this process (a birthday search). */
const COLLIDING = pairsWithOneHash(
  1,
  (i) => `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`,
)[0] as [string, string];

function lease(slot: number, host6: string, state: LeaseState = "active", identity?: string) {
  return leaseOf(
    0xc0000200 + slot,
    WHOLE_ADDRESS,
    host6,
    0xc0000201,
    "2001:db8::1",
    "pool",
    state,
    1_700_000_000_000,
    1_700_003_600_000,
    identity,
  );
}
const put = (l: Lease): LeaseOp => ({ op: "put", lease: l });
const keyOf = (slot: number) => leaseKey(0xc0000200 + slot, 0);

/** The write path on an in-memory database of the current schema, and its guard. */
function writerOnMemory(): { writer: SqliteBatchWriter; guard: SqliteHolderGuard; db: Database } {
  const db = new Database(":memory:");
  create(db);
  const guard = new SqliteHolderGuard(db, ":memory:");
  const writer = new SqliteBatchWriter(db, ":memory:", undefined, undefined, guard);
  return { writer, guard, db };
}

/** Active rows as stored: key → holder. */
function activeRows(db: Database): Map<number, string> {
  const rows = db
    .query("SELECT key, coalesce(identity, host6) FROM leases WHERE state = 'active' ORDER BY key")
    .values() as [number, string][];
  return new Map(rows.map(([k, h]) => [Number(k), String(h)]));
}

describe("the holder guard (lib/lease/sqlite_holders.ts)", () => {
  test("renewals and new holders read no row; a move freed earlier in its batch reads none", () => {
    const { writer, guard } = writerOnMemory();
    for (let i = 0; i < 500; i++) writer.write([put(lease(i, `2001:db8:1::${i.toString(16)}`))]);
    for (let i = 0; i < 500; i++) writer.write([put(lease(i, `2001:db8:1::${i.toString(16)}`))]);
    // A move: the old row released first, in the same batch.
    writer.write([put(lease(7, "2001:db8:1::7", "released")), put(lease(900, "2001:db8:1::7"))]);
    // An expiry, and the holder back later on another slot: its entry went with the expiry.
    writer.write([put(lease(8, "2001:db8:1::8", "expired"))]);
    writer.write([put(lease(901, "2001:db8:1::8"))]);
    expect({ reads: guard.reads, size: guard.size }).toEqual({ reads: 0, size: 500 });
  });

  test("a second active lease is refused with the whole batch; nothing of the batch is recorded", () => {
    const { writer, guard, db } = writerOnMemory();
    writer.write([put(lease(1, "2001:db8::a"))]);
    const batch = [put(lease(3, "2001:db8::b")), put(lease(2, "2001:db8::a"))];
    expect(() => writer.write(batch)).toThrow(LeaseStoreError);
    expect(() => writer.write(batch)).toThrow(/two active leases/);
    // ::b was not recorded by the refused batch: it may take slot 4 alone.
    writer.write([put(lease(4, "2001:db8::b"))]);
    expect(() => writer.write([put(lease(2, "2001:db8::a"))])).toThrow(LeaseStoreError);
    expect(activeRows(db)).toEqual(
      new Map([
        [keyOf(1), "2001:db8::a"],
        [keyOf(4), "2001:db8::b"],
      ]),
    );
    expect(guard.size).toBe(2);
  });

  test("two holders whose hashes collide hold an active lease each, and still one each", () => {
    const [a, b] = COLLIDING;
    expect(holderHash(a)).toBe(holderHash(b));
    const { writer, guard, db } = writerOnMemory();
    writer.write([put(lease(1, a))]);
    writer.write([put(lease(2, b))]);
    expect(() => writer.write([put(lease(3, b))])).toThrow(LeaseStoreError);
    expect(() => writer.write([put(lease(3, a))])).toThrow(LeaseStoreError);
    // a released: b keeps its lease and its one-lease rule; a may lease again.
    writer.write([put(lease(1, a, "expired"))]);
    expect(() => writer.write([put(lease(3, b))])).toThrow(LeaseStoreError);
    writer.write([put(lease(3, a))]);
    expect(activeRows(db)).toEqual(
      new Map([
        [keyOf(2), b],
        [keyOf(3), a],
      ]),
    );
    expect(guard.size).toBe(2);
  });

  test("a row that changed hands directly leaves a stale entry, taken out at its first read", () => {
    const { writer, guard } = writerOnMemory();
    writer.write([put(lease(1, "2001:db8::a"))]);
    // Slot 1 goes to ::b without ::a's release being written (as `lease set` could).
    writer.write([put(lease(1, "2001:db8::b"))]);
    writer.write([put(lease(2, "2001:db8::a"))]); // ::a's entry under key 1 is stale
    expect(guard.reads).toBe(1);
    expect(guard.size).toBe(2);
    expect(() => writer.write([put(lease(3, "2001:db8::a"))])).toThrow(LeaseStoreError);
    expect(() => writer.write([put(lease(3, "2001:db8::b"))])).toThrow(LeaseStoreError);
  });

  test("deletes take the row's holder out; a delete and a put of its holder in one batch", () => {
    const { writer, guard } = writerOnMemory();
    writer.write([put(lease(1, "2001:db8::a", "active", "id:01"))]);
    writer.write([
      { op: "delete", key: keyOf(1) },
      put(lease(2, "2001:db8::a", "active", "id:01")),
    ]);
    expect(guard.size).toBe(1);
    // The identity is the holder: another identity behind ::a gets its own lease.
    writer.write([put(lease(3, "2001:db8::a", "active", "id:02"))]);
    expect(() => writer.write([put(lease(4, "2001:db8::a", "active", "id:01"))])).toThrow(
      LeaseStoreError,
    );
  });

  test("after a restart the rule holds, whether or not the rows were loaded first", async () => {
    const path = join(dir, "restart.db");
    const first = SqliteLeaseStore.open(path);
    await first.write([put(lease(1, "2001:db8::a")), put(lease(2, "2001:db8::b", "released"))]);
    await first.close();
    // No loadAll: the first write reads the active rows.
    const unloaded = SqliteLeaseStore.open(path);
    await expect(unloaded.write([put(lease(3, "2001:db8::a"))])).rejects.toBeInstanceOf(
      LeaseStoreError,
    );
    await unloaded.write([put(lease(3, "2001:db8::b"))]);
    await unloaded.close();
    // With the load: the guard learns from it.
    const loaded = SqliteLeaseStore.open(path);
    expect((await loaded.loadAll()).filter((l) => l.state === "active")).toHaveLength(2);
    await expect(loaded.write([put(lease(4, "2001:db8::b"))])).rejects.toBeInstanceOf(
      LeaseStoreError,
    );
    await expect(loaded.write([put(lease(4, "2001:db8::a"))])).rejects.toBeInstanceOf(
      LeaseStoreError,
    );
    await loaded.write([put(lease(4, "2001:db8::c"))]);
    await loaded.close();
  });

  test("a file an older dstm made with the holder index opens without it: rows and rule kept", async () => {
    const path = join(dir, "older.db");
    const old = new Database(path, { create: true });
    old.run(SCHEMA_1);
    old.run("ALTER TABLE leases ADD COLUMN identity TEXT");
    old.run("DROP INDEX leases_active_host");
    old.run(HOLDER_INDEX);
    old.run("PRAGMA user_version = 2");
    const a = lease(1, "2001:db8::a");
    old
      .query(
        `INSERT INTO leases (${COLUMNS}) VALUES (?, ?, 0, 0, 0, ?, ?, ?, ?, 'active', ?, ?, NULL)`,
      )
      .run(keyOf(1), a.ipv4, a.host6, a.tep4, a.tep6, a.pool, a.grantedAt, a.expiresAt);
    old.close();
    const store = SqliteLeaseStore.open(path);
    expect(await store.loadAll()).toEqual([a]);
    await expect(store.write([put(lease(2, "2001:db8::a"))])).rejects.toBeInstanceOf(
      LeaseStoreError,
    );
    await store.close();
    const check = new Database(path, { readonly: true });
    const indexes = check
      .query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'leases'")
      .values()
      .flat();
    const version = (check.query("PRAGMA user_version").get() as { user_version: number })
      .user_version;
    check.close();
    expect({ indexes, version }).toEqual({ indexes: [], version: 2 });
  });

  test("random batches, hosts moving between keys and colliding holders: as the memory store", async () => {
    const next = prng(0x5eed15); // mulberry32: a failure replays from its seed
    const hosts = [...COLLIDING, "2001:db8::a", "2001:db8::b", "2001:db8::c", "2001:db8::d"];
    const states: LeaseState[] = ["active", "active", "released", "expired"];
    const { writer, db } = writerOnMemory();
    const memory = new MemoryLeaseStore();
    let refused = 0;
    for (let round = 0; round < 3000; round++) {
      const ops: LeaseOp[] = [];
      for (let n = 1 + Math.floor(next() * 4); n > 0; n--) {
        const slot = Math.floor(next() * 10);
        if (next() < 0.05) {
          ops.push({ op: "delete", key: keyOf(slot) });
          continue;
        }
        const host = hosts[Math.floor(next() * hosts.length)] as string;
        const identity = next() < 0.15 ? `id:${Math.floor(next() * 3)}` : undefined;
        ops.push(put(lease(slot, host, states[Math.floor(next() * states.length)], identity)));
      }
      const expected = await memory.write(ops).then(
        () => "written",
        () => "refused",
      );
      let got = "written";
      try {
        writer.write(ops);
      } catch (error) {
        expect(error).toBeInstanceOf(LeaseStoreError);
        got = "refused";
      }
      if (got !== expected) throw new Error(`round ${round}: sqlite ${got}, memory ${expected}`);
      if (got === "refused") refused++;
    }
    const fromMemory = new Map(
      (await memory.loadAll())
        .filter((l) => l.state === "active")
        .map((l) => [leaseKey(l.ipv4, 0), l.identity ?? l.host6]),
    );
    expect(activeRows(db)).toEqual(fromMemory);
    // The rule was tried: a fair share of batches broke it.
    expect(refused).toBeGreaterThan(100);
  });
});
