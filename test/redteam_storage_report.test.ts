/**
 * What the server says and counts about failed lease store writes (lib/server/store_failures.ts,
 * lib/lease/store_fault.ts), without a disk: a full disk under load fails hundreds of batches a
 * second, and each used to be one ERROR line; the cause is named by its errno. And the
 * switch that keeps the WAL short after a full disk (lib/lease/wal_tight.ts).
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { LeaseStoreError } from "../lib/lease/lease.ts";
import { LeaseDatabaseGoneError } from "../lib/lease/sqlite_files.ts";
import { type DatabaseLock, lockDatabase } from "../lib/lease/sqlite_lock.ts";
import { relockIfGone } from "../lib/lease/sqlite_lock_watch.ts";
import { storeFaultOf } from "../lib/lease/store_fault.ts";
import { WalSyncError } from "../lib/lease/wal_sync.ts";
import { TIGHT_WAL_PAGES, WalTightener } from "../lib/lease/wal_tight.ts";
import { STORE_WARN_EVERY_MS, StoreFailureReport } from "../lib/server/store_failures.ts";
import { waitUntil } from "./helpers/wait.ts";

/** An SQLite error as bun:sqlite throws it, wrapped as the store does (cause kept). */
function sqliteError(code: string, message: string): LeaseStoreError {
  const cause = Object.assign(new Error(message), { code });
  return new LeaseStoreError(`lease database /x/leases.db: ${message}`, { cause });
}

test("storeFaultOf: SQLite result codes, errnos, the store's fatal errors, messages", () => {
  expect(storeFaultOf(sqliteError("SQLITE_FULL", "database or disk is full"))).toBe("disk-full");
  expect(storeFaultOf(Object.assign(new Error("x"), { code: "ENOSPC" }))).toBe("disk-full");
  expect(storeFaultOf(sqliteError("SQLITE_READONLY", "attempt to write a readonly database"))).toBe(
    "read-only",
  );
  expect(storeFaultOf(sqliteError("SQLITE_IOERR_WRITE", "disk I/O error"))).toBe("io-error");
  expect(storeFaultOf(sqliteError("SQLITE_IOERR_SHMSIZE", "disk I/O error"))).toBe("disk-full");
  expect(storeFaultOf(sqliteError("SQLITE_BUSY", "database is locked"))).toBe("busy");
  expect(storeFaultOf(new LeaseDatabaseGoneError("gone"))).toBe("gone");
  expect(storeFaultOf(new WalSyncError("fsync failed"))).toBe("sync-failed");
  expect(storeFaultOf(new Error("lease database x: database or disk is full"))).toBe("disk-full");
  expect(storeFaultOf(new Error("something else"))).toBe("other");
});

test("a full disk failing 500 batches: every one counted, one warn line naming ENOSPC per 10 s; store-recovered once, held back while the disk flaps", async () => {
  const lines: string[] = [];
  const sink = new Logger({ sink: (t) => lines.push(...t.trimEnd().split("\n")) });
  // The logger batches lines: each check looks at what it wrote so far.
  const log = sink;
  const seen = (pattern: RegExp) => {
    log.flush();
    return lines.filter((l) => pattern.test(l));
  };
  const metrics = new Metrics();
  let now = 1_000_000;
  const report = new StoreFailureReport(log, metrics, () => now);
  const full = sqliteError("SQLITE_FULL", "database or disk is full");
  for (let i = 0; i < 500; i++) {
    report.failed(full, false);
    report.refused(full);
    report.refused(full);
    now += 1;
  }
  expect(metrics.get("dstm_store_write_failures_total", { reason: "disk-full" })).toBe(500);
  expect(metrics.get("dstm_store_refused_total", { reason: "disk-full" })).toBe(1000);
  const warned = seen(/ WARN store-failed /);
  expect(warned).toHaveLength(1);
  expect(warned[0]).toMatch(
    /reason=disk-full detail=.*full.* cause=.*SQLITE_FULL.* hint="ENOSPC: /,
  );
  now += STORE_WARN_EVERY_MS;
  report.failed(full, false);
  expect(seen(/ WARN store-failed /)).toHaveLength(2);
  expect(lines.at(-1)).toMatch(/suppressed-repeats=499/);

  report.wrote();
  const recovered = () => seen(/ store-recovered /);
  expect(recovered()).toHaveLength(1);
  expect(recovered()[0]).toMatch(/reason=disk-full failed-writes=501 /);
  // Flapping within 10 s: no line per flip; one when the time is up, if it still writes then.
  report.failed(full, false);
  report.wrote();
  report.failed(full, false);
  report.wrote();
  expect(recovered()).toHaveLength(1);
  // Time up while still writing: the next success says it, with the failures since.
  now += STORE_WARN_EVERY_MS;
  report.failed(full, false);
  report.wrote();
  expect(recovered()).toHaveLength(2);
  expect(recovered()[1]).toMatch(/failed-writes=3 /);
  // A flip held back and nothing after it: a timer says it once the 10 s are up (30 ms left
  // by this clock here), if the store still writes then.
  now += STORE_WARN_EVERY_MS - 30;
  report.failed(full, false);
  report.wrote();
  expect(recovered()).toHaveLength(2);
  await waitUntil(() => recovered().length === 3, { what: "the held-back store-recovered" });
  expect(recovered()[2]).toMatch(/failed-writes=1 /);

  // Fatal: at error, every time (it happens once: the server stops).
  report.failed(new LeaseDatabaseGoneError("leases.db was deleted"), true);
  log.flush();
  expect(lines.at(-1)).toMatch(/ ERROR store-failed reason=gone /);
});

test("WalTightener: SQLITE_FULL keeps the WAL within 64 pages; back to the usual setting once the file system has room", () => {
  const dir = mkdtempSync(join(tmpdir(), "dstm-rttight-"));
  try {
    const db = new Database(join(dir, "t.db"));
    db.run("PRAGMA journal_mode = WAL");
    db.run("PRAGMA wal_autocheckpoint = 4096");
    const pages = () =>
      (db.query("PRAGMA wal_autocheckpoint").get() as { wal_autocheckpoint: number })
        .wal_autocheckpoint;
    let now = 0;
    const tight = new WalTightener(db, join(dir, "t.db"), 4096, () => now);
    tight.afterFailure(sqliteError("SQLITE_BUSY", "database is locked")); // not for want of space
    expect([tight.tight, pages()]).toEqual([false, 4096]);
    tight.afterFailure(
      Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" }),
    );
    expect([tight.tight, pages()]).toEqual([true, TIGHT_WAL_PAGES]);
    tight.setUsual(1000); // the checkpointer failed meanwhile: remembered, not applied while tight
    expect(pages()).toBe(TIGHT_WAL_PAGES);
    tight.afterCommit(); // looked less than a second ago
    expect(tight.tight).toBe(true);
    now += 1001; // /tmp has far more than ROOMY_BYTES free on a test machine
    tight.afterCommit();
    expect([tight.tight, pages()]).toEqual([false, 1000]);
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("relockIfGone: the same lock file → nothing; deleted → a new lock; deleted and taken by another server → fatal", () => {
  const dir = mkdtempSync(join(tmpdir(), "dstm-rtrelock-"));
  const held: DatabaseLock[] = [];
  try {
    const path = join(dir, "leases.db");
    const first = lockDatabase(path);
    held.push(first);
    expect(relockIfGone(path, first)).toBeUndefined();
    rmSync(first.path);
    const fresh = relockIfGone(path, first) as DatabaseLock;
    held.push(fresh);
    expect(fresh.id).not.toEqual(first.id);
    expect(() => lockDatabase(path)).toThrow(/in use by another dstm server/);
    // Deleted again, and another server (here: a second lock in this process) took the new file.
    rmSync(fresh.path);
    held.push(lockDatabase(path));
    let error: unknown;
    try {
      relockIfGone(path, fresh);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(LeaseDatabaseGoneError);
    expect((error as Error).message).toMatch(
      /lock file .* was replaced by another file while the server ran.*two servers on one database/,
    );
    expect(storeFaultOf(error)).toBe("gone");
  } finally {
    for (const lock of held) lock.release();
    rmSync(dir, { recursive: true, force: true });
  }
});
