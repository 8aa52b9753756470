/**
 * The SQLite store's WAL fsync off the event loop (lib/lease/wal_sync.ts): callers share
 * syncs, a caller never rides a sync that began before it called, a failure is fatal.
 * The fsync is a fake the test completes by hand; the real one runs in
 * test/lease_durability.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DataSync, WalSync, WalSyncError } from "../lib/lease/wal_sync.ts";

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

  test("a failed fsync rejects its callers with a fatal WalSyncError; the next call syncs again", async () => {
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
    const b = wal.sync();
    expect(fake.pending.length).toBe(1);
    fake.pending.shift()!(null);
    await b;
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
