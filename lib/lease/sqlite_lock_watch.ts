/**
 * The lock file of a running server deleted or replaced (./sqlite_lock.ts).
 *
 * The one-server-per-database guard is an exclusive lock on `.NAME.lock`. An operator who
 * deletes it ("a stale lock file") removes the guard: the server still holds its lock, on a
 * file no other process can open any more, and a second server started on the database
 * creates a new lock file, takes it, loads the leases and hands out the addresses the first
 * one hands out too (test/redteam_storage_files: 198.51.100.2 to two hosts). So the server
 * looks at the lock file's (dev, ino) every second (its expiry sweep) and, when it is not the
 * file it locked, takes a new lock file at once: the guard is back. When another server holds
 * the new one already, both have been running on one database: this one stops
 * ({@link LeaseDatabaseGoneError}, fatal), and the operator must check the leases.
 *
 * @module
 */
import { LeaseDatabaseGoneError, statOrUndefined } from "./sqlite_files.ts";
import { type DatabaseLock, lockDatabase } from "./sqlite_lock.ts";

/**
 * Undefined when `lock` is still the lock file at its path; else a new lock on a new lock
 * file (the caller releases the old one). Throws a fatal {@link LeaseDatabaseGoneError} when
 * another server holds the new lock file.
 */
export function relockIfGone(dbPath: string, lock: DatabaseLock): DatabaseLock | undefined {
  const now = statOrUndefined(lock.path);
  if (now !== undefined && now.dev === lock.id.dev && now.ino === lock.id.ino) return undefined;
  const what = now ? "replaced by another file" : "deleted";
  try {
    return lockDatabase(dbPath);
  } catch (error) {
    throw new LeaseDatabaseGoneError(
      `lease database ${dbPath}: its lock file ${lock.path} was ${what} while the server ran, and it cannot be taken again (${error instanceof Error ? error.message : String(error)}). Stopping: two servers on one database hand out the same addresses; stop the other one and check the leases (dstm lease ls)`,
    );
  }
}
