/**
 * One conformance suite for every LeaseStore backend (the contract in lib/lease/lease.ts),
 * plus what only SQLite has: durability across reopen, the exclusive lock, open errors.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  type LeaseStore,
  LeaseStoreError,
  leaseKey,
  WHOLE_ADDRESS,
} from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { postgresSchema1, sqliteSchema1 } from "./helpers/lease_schema1.ts";
import { AS_NOBODY, nobodyKit } from "./helpers/nobody.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";

// Made on first use: with a test-name filter, a file whose tests all skip runs no afterAll.
let tempDir: string | undefined;
const dir = () => (tempDir ??= mkdtempSync(join(tmpdir(), "dstm-lease-")));
afterAll(() => tempDir && rmSync(tempDir, { recursive: true, force: true }));
let serial = 0;
const freshPath = () => join(dir(), `leases-${++serial}.db`);

function lease(overrides: Partial<Lease> = {}): Lease {
  return {
    ipv4: 0xc0000201,
    portSet: WHOLE_ADDRESS,
    host6: "2001:db8::a",
    tep4: 0xc6336401,
    tep6: "2001:db8::1",
    pool: "192.0.2.0/24",
    state: "active",
    grantedAt: 1_700_000_000_000,
    expiresAt: 1_700_000_600_000,
    ...overrides,
  };
}

const put = (l: Lease): LeaseOp => ({ op: "put", lease: l });
const keyOf = (l: Lease) => leaseKey(l.ipv4, l.portSet.psid);

interface Backend {
  name: string;
  /** A new, empty store. */
  create(): LeaseStore | Promise<LeaseStore>;
  /** It checks a put's `expected` row (compare-and-set, for stores several servers share). */
  cas?: boolean;
  /** Closes `store` and opens the same data again, if the backend persists. */
  reopen?(store: LeaseStore): Promise<LeaseStore>;
  /** Writes `rows` in a database of schema 1 (no identity column; dstm before it), then opens it. */
  fromSchema1?(rows: readonly Lease[]): Promise<LeaseStore>;
}

function leaseStoreConformance(backend: Backend): void {
  describe(`${backend.name} lease store`, () => {
    const open: LeaseStore[] = [];
    const create = async () => {
      const store = await backend.create();
      open.push(store);
      return store;
    };
    afterAll(async () => {
      for (const store of open) await store.close();
    });

    test("loadAll() returns every field of a put lease", async () => {
      const store = await create();
      const shared = lease({
        ipv4: 0xc0000202,
        portSet: { offset: 6, psidLength: 4, psid: 9 },
        host6: "2001:db8::b",
        tep4: 0,
        state: "released",
        grantedAt: 1,
        expiresAt: 2 ** 41 + 3,
      });
      await store.write([put(lease()), put(shared)]);
      expect(await store.loadAll()).toEqual([lease(), shared]);
    });

    test("reservations: put, replace, one slot one host, delete, survive a reopen", async () => {
      let store = await create();
      const a = { host6: "2001:db8::a", ipv4: 0xc0000205, psid: 0, createdAt: 7 };
      const b = { host6: "2001:db8::b", ipv4: 0xc0000203, psid: 2, createdAt: 8 };
      await store.writeReservation?.({ op: "put", reservation: a });
      await store.writeReservation?.({ op: "put", reservation: b });
      expect(await store.loadReservations?.()).toEqual([b, a]); // key order
      // Another host on a's slot: refused, nothing changed.
      const thief = { ...a, host6: "2001:db8::c" };
      await expect(
        Promise.resolve(store.writeReservation?.({ op: "put", reservation: thief })),
      ).rejects.toBeInstanceOf(LeaseStoreError);
      // The same host moved to another slot: replaced.
      const moved = { ...a, ipv4: 0xc0000206, createdAt: 9 };
      await store.writeReservation?.({ op: "put", reservation: moved });
      expect(await store.loadReservations?.()).toEqual([b, moved]);
      await store.writeReservation?.({ op: "delete", host6: b.host6 });
      await store.writeReservation?.({ op: "delete", host6: "2001:db8::ffff" });
      expect(await store.loadReservations?.()).toEqual([moved]);
      if (backend.reopen) {
        open.splice(open.indexOf(store), 1);
        store = await backend.reopen(store);
        open.push(store);
        expect(await store.loadReservations?.()).toEqual([moved]);
      }
    });

    test("reservations: no active lease for another host on a reserved slot, nor a reservation on another's lease", async () => {
      const store = await create();
      const r = { host6: "2001:db8::a", ipv4: 0xc0000201, psid: 0, createdAt: 1 };
      await store.writeReservation?.({ op: "put", reservation: r });
      const other = lease({ host6: "2001:db8::b" });
      // A plain put: refused as a store error; a compare-and-set put: a conflict.
      await expect(store.write([put(other)])).rejects.toBeInstanceOf(LeaseStoreError);
      if (backend.cas) {
        const conflict = await store.write([{ op: "put", lease: other, expected: null }]).then(
          () => undefined,
          (error: unknown) => error,
        );
        expect(conflict).toBeInstanceOf(LeaseConflictError);
        // It names the reservation, so a server that had not heard of it learns it and does
        // not pick the slot again on its retry.
        expect((conflict as LeaseConflictError).reservations).toEqual([r]);
      }
      expect(await store.loadAll()).toEqual([]);
      // The reserved host's lease, and another host's released row, are fine.
      await store.write([put(lease({ host6: "2001:db8::b", state: "released" }))]);
      await store.write([put(lease())]);
      expect((await store.loadAll()).map((l) => [l.host6, l.state])).toEqual([
        ["2001:db8::a", "active"],
      ]);
      // A reservation on a slot another host holds: a conflict, nothing stored.
      const taken = { host6: "2001:db8::c", ipv4: 0xc0000201, psid: 0, createdAt: 2 };
      await store.writeReservation?.({ op: "delete", host6: r.host6 });
      await expect(
        Promise.resolve(store.writeReservation?.({ op: "put", reservation: taken })),
      ).rejects.toBeInstanceOf(LeaseConflictError);
      expect(await store.loadReservations?.()).toEqual([]);
    });

    test("put replaces the row with the same key", async () => {
      const store = await create();
      await store.write([put(lease())]);
      const renewed = lease({ grantedAt: 5, expiresAt: 9, host6: "2001:db8::c" });
      await store.write([put(renewed)]);
      expect(await store.loadAll()).toEqual([renewed]);
    });

    test("delete removes a row; deleting a missing key is not an error", async () => {
      const store = await create();
      const other = lease({ ipv4: 0xc0000203, host6: "2001:db8::d" });
      await store.write([put(lease()), put(other)]);
      await store.write([
        { op: "delete", key: keyOf(lease()) },
        { op: "delete", key: 42 },
      ]);
      expect(await store.loadAll()).toEqual([other]);
    });

    test("ops of one batch apply in order", async () => {
      const store = await create();
      const released = lease({ state: "released" });
      await store.write([put(lease()), { op: "delete", key: keyOf(lease()) }, put(released)]);
      expect(await store.loadAll()).toEqual([released]);
    });

    test("a second active lease for a host rejects the whole batch", async () => {
      const store = await create();
      await store.write([put(lease())]);
      const unrelated = lease({ ipv4: 0xc0000209, host6: "2001:db8::9" });
      const second = lease({ ipv4: 0xc0000205 });
      const error = await store.write([put(unrelated), put(second)]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LeaseStoreError);
      expect(await store.loadAll()).toEqual([lease()]);
    });

    test("a failed batch leaves replaced and deleted rows as they were", async () => {
      const store = await create();
      const b = lease({ ipv4: 0xc0000203, host6: "2001:db8::b" });
      await store.write([put(lease()), put(b)]);
      const batch: LeaseOp[] = [
        put(lease({ state: "released" })),
        { op: "delete", key: keyOf(b) },
        put(lease({ ipv4: 0xc0000204, host6: "2001:db8::e" })),
        put(lease({ ipv4: 0xc0000206, host6: "2001:db8::e" })), // second active for ::e
      ];
      await expect(store.write(batch)).rejects.toBeInstanceOf(LeaseStoreError);
      expect(await store.loadAll()).toEqual([lease(), b]);
    });

    test("a host may keep released and expired rows beside its active lease", async () => {
      const store = await create();
      const rows = [
        lease({ ipv4: 0xc0000201, state: "released" }),
        lease({ ipv4: 0xc0000202, state: "expired" }),
        lease({ ipv4: 0xc0000203, state: "active" }),
      ];
      await store.write(rows.map(put));
      expect(await store.loadAll()).toEqual(rows);
    });

    test("moving a host's active lease works when the old one is freed first", async () => {
      const store = await create();
      await store.write([put(lease())]);
      const moved = lease({ ipv4: 0xc0000207 });
      await store.write([put(lease({ state: "expired" })), put(moved)]);
      expect((await store.loadAll()).filter((l) => l.state === "active")).toEqual([moved]);
    });

    test("identity round-trips; a lease without one loads without one", async () => {
      const store = await create();
      const keyed = lease({ ipv4: 0xc0000202, identity: "id:0102005e100001" });
      await store.write([put(lease()), put(keyed)]);
      const rows = await store.loadAll();
      expect(rows).toEqual([lease(), keyed]);
      expect("identity" in (rows[0] as Lease)).toBe(false);
    });

    test("two identities behind one IPv6 address hold an active lease each; one identity never two", async () => {
      const store = await create();
      const one = lease({ identity: "hw:1:02000000000001" });
      const two = lease({ ipv4: 0xc0000202, identity: "hw:1:02000000000002" });
      const plain = lease({ ipv4: 0xc0000203 }); // the host itself (source mode) beside them
      await store.write([put(one), put(two), put(plain)]);
      expect((await store.loadAll()).filter((l) => l.state === "active")).toEqual([
        one,
        two,
        plain,
      ]);
      const again = lease({ ipv4: 0xc0000204, host6: "2001:db8::f", identity: one.identity });
      await expect(store.write([put(again)])).rejects.toBeInstanceOf(LeaseStoreError);
      // Moving an identity's lease: the old one freed first, in one batch.
      await store.write([put({ ...one, state: "released" }), put(again)]);
      expect((await store.loadAll()).filter((l) => l.identity === one.identity)).toEqual([
        { ...one, state: "released" },
        again,
      ]);
    });

    if (backend.fromSchema1) {
      const fromSchema1 = backend.fromSchema1;
      test("a database of schema 1 (before the identity column) opens migrated: rows kept, identities stored", async () => {
        const old = [lease(), lease({ ipv4: 0xc0000202, host6: "2001:db8::b", state: "expired" })];
        const store = await fromSchema1(old);
        open.push(store);
        expect(await store.loadAll()).toEqual(old);
        // The one-lease rule is now per holder: a second client behind ::a gets its own.
        const keyed = lease({ ipv4: 0xc0000203, identity: "id:01020000000002" });
        await store.write([put(keyed)]);
        await expect(
          store.write([put(lease({ ipv4: 0xc0000204 }))]), // still one for the host itself
        ).rejects.toBeInstanceOf(LeaseStoreError);
        expect(await store.loadAll()).toEqual([...old, keyed]);
      });
    }

    test("renewing the same key keeps one active lease", async () => {
      const store = await create();
      await store.write([put(lease())]);
      await store.write([put(lease({ expiresAt: 1_700_000_900_000 }))]);
      expect(await store.loadAll()).toEqual([lease({ expiresAt: 1_700_000_900_000 })]);
    });

    test("loadAll() is in key order", async () => {
      const store = await create();
      const ipv4s = [0xcb007105, 0xc0000201, 0xc6336440, 0xc0000280];
      await store.write(ipv4s.map((ipv4, i) => put(lease({ ipv4, host6: `2001:db8::${i + 1}` }))));
      await store.write([
        put(
          lease({
            ipv4: 0xc0000280,
            portSet: { offset: 6, psidLength: 2, psid: 1 },
            host6: "2001:db8::77",
          }),
        ),
      ]);
      const keys = (await store.loadAll()).map(keyOf);
      expect(keys).toEqual([...keys].sort((a, b) => a - b));
      expect(keys).toHaveLength(5);
    });

    test("the PSIDs of a shared address are separate rows; one host still holds one active lease", async () => {
      const store = await create();
      const shared = [0, 1, 2, 3].map((psid) =>
        lease({
          portSet: { offset: 6, psidLength: 2, psid },
          host6: `2001:db8::${psid + 10}`,
        }),
      );
      await store.write(shared.map(put));
      expect(await store.loadAll()).toEqual(shared);
      // host ::10 (PSID 0) taking PSID 1 as well, in one batch: refused, nothing applied
      const grab = lease({ portSet: { offset: 6, psidLength: 2, psid: 1 }, host6: "2001:db8::10" });
      await expect(store.write([put(grab)])).rejects.toBeInstanceOf(LeaseStoreError);
      // releasing PSID 2 touches only that row
      const released = { ...(shared[2] as Lease), state: "released" as const };
      await store.write([put(released)]);
      expect(await store.loadAll()).toEqual(shared.map((row, i) => (i === 2 ? released : row)));
    });

    test("an empty batch resolves", async () => {
      const store = await create();
      await store.write([]);
      expect(await store.loadAll()).toEqual([]);
    });

    test("a shared store numbers each write, deletes too; a store with one writer none", async () => {
      const store = await create();
      const first = await store.write([put(lease())]);
      const second = await store.write([
        { op: "delete", key: keyOf(lease()) },
        { op: "delete", key: keyOf(lease()) },
        put(lease()),
      ]);
      if (!store.shared) {
        // One writer (SQLite, an unshared memory store): BIND / UNBIND carry no GENERATION.
        expect([first, second]).toEqual([undefined, undefined]);
        return;
      }
      const g = first?.generations?.[0];
      const [deleted, none, again] = second?.generations ?? [];
      expect(deleted).toBeGreaterThan(g!); // the delete of a row is ordered after its put
      expect(none).toBeUndefined(); // a delete of no row wrote nothing
      expect(again).toBeGreaterThan(deleted!); // and a later put after the delete
    });

    test("after close() every call rejects", async () => {
      const store = await backend.create();
      await store.write([put(lease())]);
      await store.close();
      await expect(store.loadAll()).rejects.toBeInstanceOf(LeaseStoreError);
      await expect(store.write([put(lease())])).rejects.toBeInstanceOf(LeaseStoreError);
    });

    if (backend.cas) {
      test("a put whose expected row is stored applies (insert expecting none, change expecting the row)", async () => {
        const store = await create();
        await store.write([{ op: "put", lease: lease(), expected: null }]);
        const expired = lease({ state: "expired", expiresAt: 1_700_000_700_000 });
        await store.write([{ op: "put", lease: expired, expected: lease() }]);
        const again = lease({ host6: "2001:db8::f", grantedAt: 1_700_000_800_000 });
        await store.write([{ op: "put", lease: again, expected: expired }]);
        expect(await store.loadAll()).toEqual([again]);
      });

      test("a put whose expected row is not stored rejects the batch with the rows stored now", async () => {
        const store = await create();
        const other = lease({ ipv4: 0xc0000203, host6: "2001:db8::b" });
        await store.write([put(lease()), put(other)]);
        // Another server renewed ::a meanwhile: expiring the old grant must not apply.
        const renewed = lease({ grantedAt: 1_700_000_300_000, expiresAt: 1_700_000_900_000 });
        await store.write([put(renewed)]);
        const batch: LeaseOp[] = [
          { op: "put", lease: { ...other, state: "released" }, expected: other },
          { op: "put", lease: lease({ state: "expired" }), expected: lease() },
        ];
        const error = await store.write(batch).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(LeaseConflictError);
        expect((error as LeaseConflictError).rows).toContainEqual(renewed);
        expect(await store.loadAll()).toEqual([renewed, other]); // nothing applied
      });

      test("a lapse put whose expected row is gone is skipped and reported; the rest of the batch applies", async () => {
        const store = await create();
        const other = lease({ ipv4: 0xc0000203, host6: "2001:db8::b" });
        const gone = lease({ ipv4: 0xc0000205, host6: "2001:db8::c" });
        await store.write([put(lease()), put(other), put(gone)]);
        // Another server expired ::a first, and ::c's row vanished.
        const theirs = lease({ state: "expired", expiresAt: 1_700_000_650_000 });
        await store.write([put(theirs), { op: "delete", key: leaseKey(gone.ipv4, 0) }]);
        const fresh = lease({ ipv4: 0xc0000204, host6: "2001:db8::d" });
        const ours = { ...other, state: "expired" as const, expiresAt: 1_700_000_700_000 };
        const outcome = await store.write([
          { op: "put", lease: lease({ state: "expired" }), expected: lease(), lapse: true },
          { op: "put", lease: ours, expected: other, lapse: true },
          { op: "put", lease: { ...gone, state: "expired" }, expected: gone, lapse: true },
          { op: "put", lease: fresh, expected: null },
        ]);
        expect(outcome?.skipped).toEqual(
          new Map<number, Lease | undefined>([
            [leaseKey(lease().ipv4, 0), theirs],
            [leaseKey(gone.ipv4, 0), undefined],
          ]),
        );
        expect(await store.loadAll()).toEqual([theirs, ours, fresh]);
        // A later put of the batch on a skipped key still compares: a conflict, nothing applied.
        const error = await store
          .write([
            { op: "put", lease: lease({ state: "expired" }), expected: lease(), lapse: true },
            {
              op: "put",
              lease: lease({ host6: "2001:db8::e" }),
              expected: lease({ state: "expired" }),
            },
          ])
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(LeaseConflictError);
        expect(await store.loadAll()).toEqual([theirs, ours, fresh]);
        // A shared store numbers each op that wrote, in order (WriteOutcome.generations); a
        // store with one writer numbers none.
        const [a, b, c, d] = outcome?.generations ?? [];
        if (store.shared) {
          expect([a, c]).toEqual([undefined, undefined]);
          expect(d).toBeGreaterThan(b!);
        } else expect(outcome?.generations).toBeUndefined();
        // None skipped: nothing to report.
        const none = await store.write([
          { op: "put", lease: { ...fresh, state: "released" }, expected: fresh, lapse: true },
        ]);
        expect(none?.skipped).toBeUndefined();
        if (store.shared) expect(none?.generations?.[0]).toBeGreaterThan(d!);
        else expect(none).toBeUndefined();
      });

      test("an insert expecting no row loses to a row there, and to the host's active lease elsewhere", async () => {
        const store = await create();
        await store.write([put(lease())]);
        const taken = await store
          .write([{ op: "put", lease: lease({ host6: "2001:db8::e" }), expected: null }])
          .catch((e: unknown) => e);
        expect(taken).toBeInstanceOf(LeaseConflictError);
        expect((taken as LeaseConflictError).rows).toEqual([lease()]);
        const second = await store
          .write([{ op: "put", lease: lease({ ipv4: 0xc0000204 }), expected: null }])
          .catch((e: unknown) => e);
        expect(second).toBeInstanceOf(LeaseConflictError);
        expect((second as LeaseConflictError).rows).toContainEqual(lease());
        expect((second as LeaseConflictError).missing).toEqual([leaseKey(0xc0000204, 0)]);
        expect(await store.loadAll()).toEqual([lease()]);
      });
    }

    if (backend.reopen) {
      const reopen = backend.reopen;
      test("every row survives close and reopen", async () => {
        const store = await backend.create();
        const rows = Array.from({ length: 300 }, (_, i) =>
          lease({ ipv4: 0xc0000000 + i, host6: `2001:db8::${(i + 1).toString(16)}`, expiresAt: i }),
        );
        await store.write(rows.map(put));
        await store.write([{ op: "delete", key: keyOf(rows[7] as Lease) }]);
        const again = await reopen(store);
        open.push(again);
        expect(await again.loadAll()).toEqual(rows.filter((_, i) => i !== 7));
      });
    }
  });
}

leaseStoreConformance({ name: "memory", create: () => new MemoryLeaseStore(), cas: true });
// Shared: as several servers' engines on one store (it numbers its writes, as PostgreSQL).
leaseStoreConformance({
  name: "memory (shared)",
  create: () => new MemoryLeaseStore({ shared: true }),
  cas: true,
});

// A throwaway PostgreSQL (Debian's initdb + pg_ctl, Unix socket only), one database per store.
const pgBin = postgresBin();
let pg: Promise<PgServer> | undefined;
const pgServer = () => (pg ??= startPostgres());
afterAll(async () => {
  if (pg) await (await pg).stop();
});
if (pgBin) {
  const urls = new WeakMap<LeaseStore, string>();
  leaseStoreConformance({
    name: "postgres",
    cas: true,
    async create() {
      const url = await (await pgServer()).createDatabase();
      const store = await PostgresLeaseStore.open(url);
      urls.set(store, url);
      return store;
    },
    async reopen(store) {
      await store.close();
      return PostgresLeaseStore.open(urls.get(store) as string);
    },
    async fromSchema1(rows) {
      const url = await (await pgServer()).createDatabase();
      await postgresSchema1(url, rows);
      return PostgresLeaseStore.open(url);
    },
  });
} else {
  test.skip("postgres lease store (PostgreSQL not installed; scripts/test-deps.sh installs it)", () => {});
}
leaseStoreConformance({
  name: "sqlite",
  create: () => SqliteLeaseStore.open(freshPath()),
  async reopen(store) {
    await store.close();
    return SqliteLeaseStore.open((store as SqliteLeaseStore).path);
  },
  fromSchema1(rows) {
    const path = freshPath();
    sqliteSchema1(path, rows);
    // A read-only look (dstm lease ls --db) at the old file works before any server migrates it.
    const look = SqliteLeaseStore.openReadOnly(path);
    return look
      .loadAll()
      .then((seen) => {
        expect(seen).toEqual([...rows]);
        return look.close();
      })
      .then(() => SqliteLeaseStore.open(path));
  },
});

describe("SqliteLeaseStore only", () => {
  test("a second open of the same file fails: in use by another dstm server", async () => {
    const path = freshPath();
    const first = SqliteLeaseStore.open(path);
    try {
      expect(() => SqliteLeaseStore.open(path)).toThrow(
        `lease database ${path} is in use by another dstm server`,
      );
    } finally {
      await first.close();
    }
    const again = SqliteLeaseStore.open(path); // the lock went with close()
    await again.close();
  });

  test("another process cannot open a file a server holds", async () => {
    const path = freshPath();
    const held = SqliteLeaseStore.open(path);
    try {
      const script = `import { SqliteLeaseStore } from ${JSON.stringify(join(import.meta.dir, "../lib/lease/sqlite.ts"))};
        try { SqliteLeaseStore.open(${JSON.stringify(path)}); console.log("opened"); } catch (e) { console.log(e.message); }`;
      const child = Bun.spawnSync([process.execPath, "-e", script]);
      expect(child.stdout.toString()).toContain("is in use by another dstm server");
    } finally {
      await held.close();
    }
  });

  test("openReadOnly() reads a database a server holds and writes (WAL reader)", async () => {
    const path = freshPath();
    const held = SqliteLeaseStore.open(path);
    try {
      await held.write([put(lease())]);
      const reader = SqliteLeaseStore.openReadOnly(path);
      try {
        expect(await reader.loadAll()).toEqual([lease()]);
        // The server keeps writing while the reader is open, and the reader sees the commit.
        const second = lease({ ipv4: 0xc0000202, host6: "2001:db8::b" });
        await held.write([put(second)]);
        expect(await reader.loadAll()).toEqual([lease(), second]);
      } finally {
        await reader.close();
      }
      // Still the only server: the guard holds while readers come and go.
      expect(() => SqliteLeaseStore.open(path)).toThrow("is in use by another dstm server");
    } finally {
      await held.close();
    }
  });

  test("openReadOnly() reads a closed database and refuses writes", async () => {
    const path = freshPath();
    const store = SqliteLeaseStore.open(path);
    await store.write([put(lease())]);
    await store.close();
    const reader = SqliteLeaseStore.openReadOnly(path);
    expect(await reader.loadAll()).toEqual([lease()]);
    await expect(reader.write([put(lease())])).rejects.toBeInstanceOf(LeaseStoreError);
    await reader.close();
    const server = SqliteLeaseStore.open(path); // a reader left behind does not block a server
    expect(await server.loadAll()).toEqual([lease()]);
    await server.close();
  });

  test("a write that resolved survives a crash (process killed without close)", async () => {
    const path = freshPath();
    const script = `import { SqliteLeaseStore } from ${JSON.stringify(join(import.meta.dir, "../lib/lease/sqlite.ts"))};
      const store = SqliteLeaseStore.open(${JSON.stringify(path)});
      await store.write([{ op: "put", lease: ${JSON.stringify(lease())} }]);
      process.kill(process.pid, "SIGKILL");`;
    Bun.spawnSync([process.execPath, "-e", script]);
    const reader = SqliteLeaseStore.openReadOnly(path);
    expect(await reader.loadAll()).toEqual([lease()]);
    await reader.close();
    const server = SqliteLeaseStore.open(path);
    expect(await server.loadAll()).toEqual([lease()]);
    await server.close();
  });

  test("openReadOnly() of a missing file says so", () => {
    expect(() => SqliteLeaseStore.openReadOnly(join(dir(), "nope.db"))).toThrow(
      `lease database ${join(dir(), "nope.db")} does not exist`,
    );
  });

  test("a missing directory is named in the error", () => {
    const path = join(dir(), "no", "such", "leases.db");
    const error = _catch(() => SqliteLeaseStore.open(path));
    expect(error).toBeInstanceOf(LeaseStoreError);
    expect(error.message).toBe(
      `cannot create lease database ${path}: directory ${join(dir(), "no", "such")} does not exist; create it or give another --db`,
    );
  });

  test("an unwritable directory is named in the error", () => {
    const locked = join(dir(), "locked");
    mkdirSync(locked, { mode: 0o555 });
    chmodSync(locked, 0o555);
    const path = join(locked, "leases.db");
    if (process.getuid?.() !== 0) {
      expect(_catch(() => SqliteLeaseStore.open(path)).message).toBe(_unwritable(path, locked));
      return;
    }
    // root writes anywhere: try as nobody, with Bun and a bundle of the script in a 0755
    // directory (the checkout may be unreadable to nobody); `dir()` must be traversable.
    const kit = nobodyKit();
    if (typeof kit === "string") {
      console.warn(`[skip] unwritable directory as nobody: ${kit}`);
      return;
    }
    try {
      const source = join(kit.dir, "open_db.ts");
      writeFileSync(
        source,
        `import { SqliteLeaseStore } from ${JSON.stringify(join(import.meta.dir, "../lib/lease/sqlite.ts"))};
      try { SqliteLeaseStore.open(${JSON.stringify(path)}); console.log("opened"); } catch (e) { console.log(e.message); }`,
      );
      const script = kit.bundle(source);
      chmodSync(dir(), 0o711);
      const child = Bun.spawnSync([...AS_NOBODY, kit.bun, script], { cwd: kit.dir });
      chmodSync(dir(), 0o700);
      expect(child.stderr.toString()).toBe("");
      expect(child.stdout.toString().trim()).toBe(_unwritable(path, locked));
    } finally {
      kit.remove();
    }
  });

  test("a file that is not a database is refused, and left alone", async () => {
    const path = freshPath();
    const garbage = "this is not sqlite\n".repeat(300);
    writeFileSync(path, garbage);
    const error = _catch(() => SqliteLeaseStore.open(path));
    expect(error).toBeInstanceOf(LeaseStoreError);
    expect(error.message).toStartWith(`${path} is not a dstm lease database`);
    expect(error.message).not.toContain("\n");
    expect(await Bun.file(path).text()).toBe(garbage);
    expect(() => SqliteLeaseStore.openReadOnly(path)).toThrow("is not a dstm lease database");
  });

  test("a database from a newer dstm is refused", async () => {
    const path = freshPath();
    await SqliteLeaseStore.open(path).close();
    const bytes = new Uint8Array(await Bun.file(path).arrayBuffer());
    new DataView(bytes.buffer).setUint32(60, 99); // the header's user_version (sqlite.org/fileformat.html)
    writeFileSync(path, bytes);
    expect(() => SqliteLeaseStore.open(path)).toThrow("newer than this dstm understands");
  });
});

function _unwritable(path: string, directory: string): string {
  return `cannot write lease database ${path}: directory ${directory} is not writable by this user; fix the permissions or give another --db`;
}

function _catch(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a throw");
}
