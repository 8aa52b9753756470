/**
 * The files behind the SQLite lease store: created private (0600), watched for deletion or
 * replacement while open, and a marker that remembers a database was created, so a server
 * never starts empty over one that vanished (see lib/lease/sqlite.ts).
 *
 * @module
 */
import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  type Stats,
  statSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { LeaseStoreError } from "./lease.ts";
import type { WalCheckpointerOptions } from "./wal_checkpointer.ts";
import type { DataSync } from "./wal_sync.ts";

/**
 * The lease database was deleted or replaced while the store had it open, or is missing or
 * empty although dstm created it. Fatal: a server must stop rather than acknowledge leases
 * that no restart will find. The message says what happened and what to do.
 */
export class LeaseDatabaseGoneError extends LeaseStoreError {
  /** The server stops on this error (a plain LeaseStoreError only fails one write). */
  readonly fatal = true;
}

/** Options of {@link SqliteLeaseStore.open}. */
export interface SqliteOpenOptions {
  /**
   * Create an empty database even though the marker says one existed at this path (the
   * operator knows the old leases are gone or expired). Default false.
   */
  readonly newDb?: boolean;
  /**
   * The fdatasync(2) the store runs on its WAL before a write resolves (./wal_sync.ts).
   * Default node:fs `fdatasync`; a test passes a fake to make it fail.
   */
  readonly datasync?: DataSync;
  /**
   * The WAL checkpointer's interval (ms) and Worker module, and the WAL pages past which the
   * store's own connection checkpoints (./wal_checkpointer.ts); a test shortens them or
   * passes a failing Worker. Defaults: 100 ms, the real Worker, WAL_PAGES (4,096).
   */
  readonly checkpoint?: Pick<WalCheckpointerOptions, "intervalMs" | "workerUrl"> & {
    readonly walPages?: number;
  };
  /**
   * Called once, on the event loop, when the WAL checkpointer's Worker could not start or
   * failed (the store's own connection checkpoints again then); the server logs it at warn.
   */
  readonly onCheckpointFailure?: (message: string) => void;
}

/**
 * The marker recording that dstm created the database at `path`: `.NAME.created` in the
 * same directory (a hidden name, so `rm leases.db*` and `rm *` keep it). Its text is the
 * creation time and path.
 */
export function createdMarkerPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.created`);
}

export interface FileId {
  readonly dev: number;
  readonly ino: number;
}

export function fileId(stats: Stats): FileId {
  return { dev: stats.dev, ino: stats.ino };
}

export function statOrUndefined(path: string): Stats | undefined {
  return statSync(path, { throwIfNoEntry: false });
}

export function walId(path: string): FileId | undefined {
  const stats = statOrUndefined(`${path}-wal`);
  return stats ? fileId(stats) : undefined;
}

/** (dev, ino) of the WAL index (`PATH-shm`), undefined when there is none. */
export function shmId(path: string): FileId | undefined {
  const stats = statOrUndefined(`${path}-shm`);
  return stats ? fileId(stats) : undefined;
}

/**
 * The WAL index (`-shm`) was deleted or replaced while the server had it open. The next
 * `sqlite3` or `lease ls --db` would make a new one and rebuild it from the WAL, blind to
 * the server's later commits; its checkpoint could then copy stale frames and cut the WAL
 * under the server (a corrupt database and lost leases: test/redteam_storage_files). The
 * server stops before writing anything more; its database and WAL are whole.
 */
export function shmGoneWhileOpen(path: string, now: Stats | undefined): LeaseDatabaseGoneError {
  return new LeaseDatabaseGoneError(
    `lease database ${path}: ${path}-shm (its WAL index, which every connection shares) was ${now ? "replaced by another file" : "deleted"} while the server ran; a connection opened now would not see the server's commits. Stopping before writing more: the database and its WAL are whole; start the server again (never delete the -shm of a database in use)`,
  );
}

export function sameFile(id: FileId, now: Stats | undefined): boolean {
  return now !== undefined && now.dev === id.dev && now.ino === id.ino;
}

export function goneWhileOpen(
  path: string,
  file: string,
  now: Stats | undefined,
): LeaseDatabaseGoneError {
  return new LeaseDatabaseGoneError(
    `lease database ${path}: ${file} was ${now ? "replaced by another file" : "deleted"} while the server ran; no lease can be made durable. Stopping: restore the database from a backup, or start with --new-db once every lease granted has expired`,
  );
}

export function goneAtOpen(
  path: string,
  created: string,
  what = "is missing",
): LeaseDatabaseGoneError {
  return new LeaseDatabaseGoneError(
    `lease database ${path} ${what}, but dstm created it there (${created}); hosts may still hold leases from it. Restore it from a backup, or start with --new-db to begin empty once every lease granted has expired`,
  );
}

/** Creates the database file empty with mode 0600 (the umask can only take bits away). */
export function createPrivate(path: string): void {
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (error) {
    // Another process created it meanwhile, or the directory is missing or unwritable:
    // SQLite's open below reports that with the usual message.
    if ((error as { code?: string }).code === "EEXIST") return;
  }
}

/** The marker's text (when dstm created the database there), or undefined when there is none. */
export function readMarker(marker: string): string | undefined {
  try {
    return readFileSync(marker, "utf8").split("\n")[0]?.trim() || "marker present";
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOENT") return undefined;
    throw new LeaseStoreError(
      `cannot read ${marker} (it records that a lease database was created): ${code ?? (error instanceof Error ? error.message : String(error))}`,
    );
  }
}

/** Records, durably, that the database at `path` was created now. */
export function writeMarker(marker: string, path: string): void {
  const fd = openSync(marker, "w", 0o600);
  try {
    writeSync(fd, `created ${new Date().toISOString()} ${path}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    const dir = openSync(dirname(marker), "r");
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    // a directory that cannot be opened for fsync: the marker is written, durability best-effort
  }
}
