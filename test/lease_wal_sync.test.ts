/**
 * The SQLite store's WAL fsync off the event loop (lib/lease/wal_sync.ts): callers share
 * syncs, a caller never rides a sync that began before it called, a failure is fatal.
 * The fsync is a fake the test completes by hand; the real one runs in
 * test/lease_durability.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { fdatasync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { type DataSync, WalSync, WalSyncError } from "../lib/lease/wal_sync.ts";
import { startEngine } from "./helpers/engine.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0).reverse()) c();
});

/** A database path whose `-wal` exists. */
function dbWithWal(): string {
  const dir = mkdtempSync(join(tmpdir(), "dstm-walsync-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, "leases.db");
  writeFileSync(`${db}-wal`, "");
  return db;
}

/** A fake fdatasync: each call waits until the test completes it. */
function fakeSync(): { sync: DataSync; pending: ((error: Error | null) => void)[] } {
  const pending: ((error: Error | null) => void)[] = [];
  return { sync: (_fd, done) => pending.push(done), pending };
}

/** Lets promise reactions run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("WalSync", () => {
  test("a caller during a running sync waits for the next one; callers then share it", async () => {
    const fake = fakeSync();
    const wal = new WalSync(dbWithWal(), fake.sync);
    cleanup.push(() => wal.close());
    const done: string[] = [];
    const a = wal.sync().then(() => done.push("a"));
    const b = wal.sync().then(() => done.push("b"));
    const c = wal.sync().then(() => done.push("c"));
    expect(fake.pending.length).toBe(1);
    fake.pending.shift()!(null);
    await a;
    await settle();
    expect(done).toEqual(["a"]); // b and c called after the first sync began
    expect(fake.pending.length).toBe(1); // one sync for both of them
    fake.pending.shift()!(null);
    await Promise.all([b, c]);
    expect(done).toEqual(["a", "b", "c"]);
    expect(wal.syncs).toBe(2);
    // Idle again: the next call starts a sync at once.
    const d = wal.sync();
    expect(fake.pending.length).toBe(1);
    fake.pending.shift()!(null);
    await d;
    expect(wal.syncs).toBe(3);
  });

  test("a failed fsync rejects its callers with a fatal WalSyncError, and every later call too, without another fsync", async () => {
    const fake = fakeSync();
    const path = dbWithWal();
    const wal = new WalSync(path, fake.sync);
    cleanup.push(() => wal.close());
    const a = wal.sync();
    fake.pending.shift()!(new Error("EIO: i/o error"));
    const error = await a.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WalSyncError);
    expect((error as WalSyncError).fatal).toBe(true);
    expect((error as Error).message).toContain(`fsync of ${path}-wal failed: EIO`);
    expect(wal.failure).toBe(error as WalSyncError);
    // Linux reports a writeback error once: a second fdatasync would return 0 although the
    // pages it lost are gone. So no second fsync is asked, and the caller never resolves.
    const b = wal.sync().then(
      () => "resolved",
      (e: unknown) => e,
    );
    await settle();
    expect(fake.pending.length).toBe(0);
    expect(await b).toBe(error);
    expect(wal.syncs).toBe(1);
  });

  test("callers waiting for the next sync when the running one fails are refused, not synced again", async () => {
    const fake = fakeSync();
    const wal = new WalSync(dbWithWal(), fake.sync);
    cleanup.push(() => wal.close());
    const a = wal.sync();
    // b and c committed while a's fsync ran: their frames may share a page whose writeback failed.
    const b = wal.sync();
    const c = wal.sync();
    fake.pending.shift()!(new Error("EIO: i/o error"));
    await expect(a).rejects.toBeInstanceOf(WalSyncError);
    await expect(b).rejects.toBeInstanceOf(WalSyncError);
    await expect(c).rejects.toBeInstanceOf(WalSyncError);
    expect(fake.pending.length).toBe(0);
    expect(wal.syncs).toBe(1);
  });

  test("no caller resolves on a sync that began before its call (random interleavings)", async () => {
    for (let round = 0; round < 50; round++) {
      const started: number[] = []; // per fsync: the call count when it began
      const pending: ((error: Error | null) => void)[] = [];
      let calls = 0;
      const wal = new WalSync(dbWithWal(), (_fd, done) => {
        started.push(calls);
        pending.push(done);
      });
      const finished: number[] = []; // per call: fsyncs completed when it resolved
      let completed = 0;
      const callsMade: Promise<void>[] = [];
      const syncOfCall: number[] = [];
      for (let step = 0; step < 40; step++) {
        if (Math.random() < 0.6 || pending.length === 0) {
          const call = calls++;
          syncOfCall[call] = -1;
          callsMade.push(
            wal.sync().then(() => {
              finished[call] = completed;
            }),
          );
        } else {
          pending.shift()!(null);
          completed++;
        }
        if (Math.random() < 0.5) await settle();
      }
      for (
        let spin = 0;
        spin < 1000 &&
        (pending.length > 0 || finished.filter((f) => f !== undefined).length < calls);
        spin++
      ) {
        await settle();
        if (pending.length > 0) {
          pending.shift()!(null);
          completed++;
        }
      }
      await Promise.all(callsMade);
      // Call i resolved after `finished[i]` fsyncs had completed; one of those must have begun
      // after the call (its `started` value, the calls made before it began, is > i).
      for (let call = 0; call < calls; call++) {
        const covering = started.slice(0, finished[call]).some((before) => before > call);
        expect({ round, call, covering }).toEqual({ round, call, covering: true });
      }
      wal.close();
    }
  });

  test("close() during a sync keeps the descriptor until the sync and the one queued behind it returned", async () => {
    const fake = fakeSync();
    const wal = new WalSync(dbWithWal(), fake.sync);
    const fds = () => readdirSync("/proc/self/fd").length;
    const before = fds();
    const a = wal.sync();
    const b = wal.sync();
    expect(fds()).toBe(before + 1);
    wal.close();
    await expect(wal.sync()).rejects.toBeInstanceOf(WalSyncError);
    fake.pending.shift()!(null);
    await a;
    await settle();
    // b committed before close(): its fsync still runs, on the same descriptor.
    expect(fake.pending.length).toBe(1);
    expect(fds()).toBe(before + 1);
    fake.pending.shift()!(null);
    await b;
    expect(fds()).toBe(before);
  });

  test("a missing WAL and a closed syncer reject with a WalSyncError", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dstm-walsync-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const wal = new WalSync(join(dir, "none.db"), fakeSync().sync);
    await expect(wal.sync()).rejects.toThrow(/cannot open .*none\.db-wal/);
    wal.close();
    await expect(wal.sync()).rejects.toBeInstanceOf(WalSyncError);
  });
});

describe("a failed WAL fsync under the allocation engine", () => {
  test("the lease is rolled back and refused, the error is fatal, and nothing decided afterwards is committed or granted", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dstm-walsync-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "leases.db");
    // The real fdatasync, except that the second call fails once, as Linux reports a
    // writeback error: once, after which fdatasync returns 0 again.
    let calls = 0;
    const datasync: DataSync = (fd, done) => {
      calls++;
      if (calls === 2) queueMicrotask(() => done(new Error("EIO: i/o error, fdatasync")));
      else fdatasync(fd, done);
    };
    const store = SqliteLeaseStore.open(path, { datasync });
    const errors: unknown[] = [];
    const { engine } = await startEngine([{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }], {
      store,
      onStoreError: (error) => errors.push(error),
    });
    const a = await engine.discover("2001:db8:5::a");
    expect(a.ok).toBe(true);
    const b = await engine.discover("2001:db8:5::b");
    expect(b).toMatchObject({ ok: false, reason: "store-failed" });
    expect(errors.length).toBe(1);
    expect(errors[0]).toBeInstanceOf(WalSyncError);
    expect((errors[0] as WalSyncError).fatal).toBe(true); // lib/server/server.ts stops on it
    // Rolled back in memory: b holds nothing, a still its lease.
    const hosts = () => [...engine.rows()].filter((r) => r.state === "active").map((r) => r.host6);
    expect(hosts()).toEqual(["2001:db8:5::a"]);
    // A decision after the failure (a request already past the server's gate): the old
    // WalSync ran a new fdatasync, which returned 0, and the lease was granted.
    const c = await engine.discover("2001:db8:5::c");
    expect(c).toMatchObject({ ok: false, reason: "store-failed" });
    expect(hosts()).toEqual(["2001:db8:5::a"]);
    await expect(
      store.writeReservation({
        op: "put",
        reservation: { host6: "2001:db8:5::d", ipv4: 0xc6336405, psid: 0, createdAt: 1 },
      }),
    ).rejects.toBeInstanceOf(WalSyncError);
    expect(calls).toBe(2); // no fsync after the failed one
    await engine.close();
    await store.close();
    // On disk: a, and b's row (committed before its fsync failed; its host got no ACK and the
    // row expires like any other; a restart holds the address for b, never for two hosts);
    // nothing of c or d.
    const after = SqliteLeaseStore.openReadOnly(path);
    try {
      const rows = await after.loadAll();
      expect(rows.map((r) => r.host6).sort()).toEqual(["2001:db8:5::a", "2001:db8:5::b"]);
      expect(await after.loadReservations()).toEqual([]);
    } finally {
      await after.close();
    }
  });

  test("a reservation whose fsync fails is refused and reported as a store error (the server stops on it), like a lease", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dstm-walsync-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "leases.db");
    const datasync: DataSync = (_fd, done) =>
      queueMicrotask(() => done(new Error("EIO: i/o error, fdatasync")));
    const store = SqliteLeaseStore.open(path, { datasync });
    const errors: unknown[] = [];
    const { engine } = await startEngine([{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }], {
      store,
      onStoreError: (error) => errors.push(error),
    });
    const result = await engine.reserve({
      host6: "2001:db8:5::e",
      ipv4: 0xc6336402,
      psid: 0,
      createdAt: 1,
    });
    expect(result).toMatchObject({ ok: false, reason: "store-failed" });
    // Before: only the administrator heard of it; the server kept answering on a store whose
    // disk state was unknown (and a deleted database, LeaseDatabaseGoneError, the same way).
    expect(errors.length).toBe(1);
    expect(errors[0]).toBeInstanceOf(WalSyncError);
    expect([...engine.reservations()]).toEqual([]);
    await engine.close();
    await store.close();
  });
});

describe("the WAL's fsync descriptor", () => {
  test("is open from the store's open, on the WAL SQLite writes: a write with every other descriptor taken still commits and syncs", () => {
    const dir = mkdtempSync(join(tmpdir(), "dstm-walsync-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const db = join(dir, "leases.db");
    const root = join(import.meta.dir, "..");
    // A child with few descriptors: it opens the store, takes every descriptor left, writes.
    const script = join(dir, "exhaust.ts");
    writeFileSync(
      script,
      `import { openSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { SqliteLeaseStore } from ${JSON.stringify(join(root, "lib/lease/sqlite.ts"))};
import { WHOLE_ADDRESS } from ${JSON.stringify(join(root, "lib/lease/lease.ts"))};
const db = ${JSON.stringify(db)};
const store = SqliteLeaseStore.open(db);
const wal = readdirSync("/proc/self/fd")
  .filter((fd) => { try { return readlinkSync("/proc/self/fd/" + fd) === db + "-wal"; } catch { return false; } })
  .map((fd) => statSync("/proc/self/fd/" + fd).ino);
const hog = [];
for (let i = 0; i < 100000; i++) {
  try { hog.push(openSync("/dev/null", "r")); } catch { break; }
}
const lease = { ipv4: 0xc6336401, portSet: WHOLE_ADDRESS, host6: "2001:db8:6::1", tep4: 0xc0000201,
  tep6: "2001:db8::1", pool: "p", state: "active", grantedAt: 1, expiresAt: 2 };
let result;
try { await store.write([{ op: "put", lease }]); result = "ok"; } catch (e) { result = String(e.message); }
console.log(JSON.stringify({ wal, walNow: statSync(db + "-wal").ino, hogged: hog.length, result, syncs: store.syncs }));
`,
    );
    const child = Bun.spawnSync(["prlimit", "--nofile=512", process.execPath, script]);
    const out = JSON.parse(child.stdout.toString().trim()) as {
      wal: number[];
      walNow: number;
      hogged: number;
      result: string;
      syncs: number;
    };
    expect(out.hogged).toBeGreaterThan(0); // the descriptors did run out
    // SQLite's descriptor and the fsync's, both on the WAL at the path, before any write.
    expect(out.wal).toEqual([out.walNow, out.walNow]);
    // Before, the fsync opened the WAL at the first write, after its commit: EMFILE, fatal.
    expect(out.result).toBe("ok");
    expect(out.syncs).toBe(1);
  });

  test("close() right after writes whose fsyncs are still out: the writes resolve, the leases are stored, no descriptor is left", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dstm-walsync-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const db = join(dir, "leases.db");
    const open = () =>
      readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(db);
        } catch {
          return false;
        }
      }).length;
    const store = SqliteLeaseStore.open(db);
    const lease = (n: number) => ({
      ipv4: 0xc6336400 + n,
      portSet: WHOLE_ADDRESS,
      host6: `2001:db8:7::${n}`,
      tep4: 0xc0000201,
      tep6: "2001:db8::1",
      pool: "p",
      state: "active" as const,
      grantedAt: 1,
      expiresAt: 2,
    });
    // The second write's fsync waits for the first's: both are out when close() comes.
    const writes = [1, 2].map((n) => store.write([{ op: "put", lease: lease(n) }]));
    await store.close();
    await Promise.all(writes);
    expect(open()).toBe(0);
    const after = SqliteLeaseStore.openReadOnly(db);
    try {
      expect((await after.loadAll()).map((r) => r.host6)).toEqual([
        "2001:db8:7::1",
        "2001:db8:7::2",
      ]);
    } finally {
      await after.close();
    }
    expect(open()).toBe(0);
  });
});
