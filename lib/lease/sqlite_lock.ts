/**
 * One dstm server per SQLite lease database, without locking readers out.
 *
 * The lease database runs in WAL mode with normal (shared) locking, so `sqlite3 leases.db`
 * and `dstm lease ls --db leases.db` read it while the server writes
 * (https://sqlite.org/wal.html: readers do not block the writer, nor it them). The guard
 * against a second server on the same file is a **lock file** beside it, `.NAME.lock`
 * (hidden, like the created marker, so `rm leases.db*` keeps it): a tiny SQLite database
 * the server holds with `locking_mode=EXCLUSIVE` and a write, i.e. an exclusive POSIX lock
 * (SQLite's unix VFS, fcntl byte-range locks, also between two connections of one process)
 * for as long as it runs. A second server's write to it fails with SQLITE_BUSY at once; the
 * kernel drops the lock when the holder exits, even by SIGKILL, so no stale lock survives a
 * crash. The lock file is created 0600; it holds one row (the holder's pid and start time).
 *
 * Do not delete the lock file while a server runs: a second server could then start on the
 * same database.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { basename, dirname, join } from "node:path";
import { LeaseStoreError } from "./lease.ts";
import { createPrivate } from "./sqlite_files.ts";

/** The lock file of the lease database at `path`: `.NAME.lock` in the same directory. */
export function lockFilePath(path: string): string {
  return join(dirname(path), `.${basename(path)}.lock`);
}

/** A held lock; {@link release} gives it back (closing the lock database). */
export interface DatabaseLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the exclusive lock of the lease database at `path`, creating the lock file (0600) if
 * needed. Throws {@link LeaseStoreError} "in use by another dstm server" when another store
 * (this process or another) holds it; any other failure is rethrown for the caller to word.
 */
export function lockDatabase(path: string): DatabaseLock {
  const lockPath = lockFilePath(path);
  createPrivate(lockPath);
  const db = new Database(lockPath, { create: true, readwrite: true });
  try {
    db.run("PRAGMA busy_timeout = 0");
    db.run("PRAGMA locking_mode = EXCLUSIVE");
    // No journal file beside it: the one row is rewritten at each start, nothing to recover.
    db.run("PRAGMA journal_mode = MEMORY");
    db.run("BEGIN IMMEDIATE");
    db.run("CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, since TEXT NOT NULL)");
    db.run("DELETE FROM holder");
    db.run("INSERT INTO holder (pid, since) VALUES (?, ?)", [
      process.pid,
      new Date().toISOString(),
    ]);
    // Exclusive locking mode keeps the exclusive lock this write took until close().
    db.run("COMMIT");
  } catch (error) {
    try {
      db.close();
    } catch {}
    const code = String((error as { code?: unknown } | null)?.code ?? "");
    if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
      throw new LeaseStoreError(
        `lease database ${path} is in use by another dstm server (it holds ${lockPath}); stop it or give this one another --db`,
      );
    }
    throw error;
  }
  let held = true;
  return {
    path: lockPath,
    release() {
      if (!held) return;
      held = false;
      try {
        db.close();
      } catch {
        // closing releases the lock; a failure here leaves nothing to do
      }
    },
  };
}
