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
 * same database. The server looks every second (./sqlite_lock_watch.ts) and takes a new lock
 * file at once; a second server that started in between makes it stop.
 *
 * The lock file must be the server's own: a regular file (not a symbolic link), owned by the
 * server's user, with one link. Anything else is refused before it is opened — a local user
 * who can write the database's directory could otherwise plant a link to any path (which the
 * server, as root, would create or write) or a file of their own that they keep locked, so
 * that no server ever starts (docs/security.md, "The lease database"). The file opened is
 * checked again to be the one inspected (no swap between the check and the open).
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { lstatSync, type Stats, statSync } from "node:fs";
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
  /** (dev, ino) of the lock file locked (./sqlite_lock_watch.ts: deleted or replaced since?). */
  readonly id: { readonly dev: number; readonly ino: number };
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
  const checked = ownLockFile(path, lockPath);
  const db = new Database(lockPath, { create: true, readwrite: true });
  let id = { dev: 0, ino: 0 };
  try {
    const opened = statSync(lockPath);
    id = { dev: opened.dev, ino: opened.ino };
    if (checked && (opened.dev !== checked.dev || opened.ino !== checked.ino))
      throw new LeaseStoreError(
        `lease database ${path}: its lock file ${lockPath} was replaced while it was being opened; keep the database in a directory only the dstm service can write`,
      );
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
    if (error instanceof LeaseStoreError) throw error;
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
    id,
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

/**
 * The lock file's status when it is the server's own: a regular file (lstat: a symbolic link
 * is refused, never followed), owned by this process's effective user, with one link.
 * Undefined when it could not be created (a missing or unwritable directory: SQLite's open
 * then says so in the usual words). Throws {@link LeaseStoreError} naming what is wrong.
 */
function ownLockFile(path: string, lockPath: string): Stats | undefined {
  let st: Stats;
  try {
    st = lstatSync(lockPath);
  } catch {
    return undefined;
  }
  const refuse = (what: string) =>
    new LeaseStoreError(
      `lease database ${path}: its lock file ${lockPath} ${what}; remove it, and keep the database in a directory only the dstm service can write`,
    );
  if (st.isSymbolicLink()) throw refuse("is a symbolic link");
  if (!st.isFile()) throw refuse("is not a regular file");
  const euid = process.geteuid?.();
  if (euid !== undefined && st.uid !== euid)
    throw refuse(`is owned by uid ${st.uid}, not by this server's user (uid ${euid})`);
  if (st.nlink !== 1) throw refuse(`has ${st.nlink} hard links`);
  return st;
}
