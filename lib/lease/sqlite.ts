/**
 * The lease table in an embedded SQLite database (bun:sqlite, https://bun.sh/docs/api/sqlite).
 *
 * One dstm server owns one database file: it holds the exclusive lock of a lock file beside
 * it (`.NAME.lock`, ./sqlite_lock.ts) from open to close, so a second server on the same file
 * fails at once instead of both handing out the same addresses. The database itself runs in
 * WAL mode with normal locking (a `-shm` index beside the `-wal`), so `sqlite3 FILE` and
 * `dstm lease ls --db FILE` read it while the server runs (WAL readers never block the
 * writer, https://sqlite.org/wal.html). Every commit is fsynced before `write()` resolves, so
 * the batch survives a crash or power loss: SQLite commits with `synchronous=NORMAL` and the
 * store fdatasyncs the WAL itself on the thread pool (./wal_sync.ts, which says why that is
 * as durable as FULL), so the event loop never waits for the disk. The allocation engine
 * batches concurrent changes (lib/lease/group_commit.ts), so that is one fsync per batch
 * (the write path, with multi-row upserts: ./sqlite_write.ts).
 *
 * The one-active-lease-per-holder rule is checked in memory before SQLite sees a batch
 * (./sqlite_holders.ts; it was a partial UNIQUE index, which ./sqlite_schema.ts drops from an
 * older file at open, with the other migrations); a put is an UPSERT on the key.
 *
 * The file is created mode 0600 (SQLite gives its `-wal` the database file's mode): every
 * lease names a host, and the control socket that shows them is root-only too.
 *
 * **A database that vanishes.** Deleting the file (and its WAL) under a running server loses
 * every lease while the server keeps an open, unlinked file: its commits reach no disk
 * anyone will read again, and a restart would start empty and hand out addresses still
 * leased. So each write first compares the (device, inode) of the path with the file opened
 * (and of the `-wal` with the one written), and fails with {@link LeaseDatabaseGoneError}
 * when either was removed or replaced; the server stops on it. At open, a database that is
 * missing or empty although a marker says dstm created one there ({@link createdMarkerPath}:
 * `.NAME.created` beside it, hidden so that `rm leases.db*` and `rm *` leave it) is refused
 * unless the caller says `newDb` (`dstm server --new-db`).
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { existsSync, statSync } from "node:fs";
import {
  type Lease,
  type LeaseOp,
  type LeaseState,
  type LeaseStore,
  LeaseStoreError,
  leaseOf,
  type PortSet,
  type Reservation,
  type ReservationOp,
  stringInterner,
  WHOLE_ADDRESS,
} from "./lease.ts";

import {
  createdMarkerPath,
  createPrivate,
  fileId,
  goneAtOpen,
  readMarker,
  type SqliteOpenOptions,
  walId,
  writeMarker,
} from "./sqlite_files.ts";
import { SqliteHolderGuard } from "./sqlite_holders.ts";
import { type DatabaseLock, lockDatabase } from "./sqlite_lock.ts";
import { relockIfGone } from "./sqlite_lock_watch.ts";
import { openError } from "./sqlite_open_error.ts";
import { guardReservations, loadReservations, RESERVATIONS_SCHEMA } from "./sqlite_reservations.ts";
import {
  COLUMNS,
  columnsOf,
  create,
  dropHolderIndex,
  migrate,
  SCHEMA_VERSION,
} from "./sqlite_schema.ts";
import { runError, SqliteBatchWriter } from "./sqlite_write.ts";
import { WAL_PAGES, WalCheckpointer, type WalCheckpointStats } from "./wal_checkpointer.ts";
import { WalSync, type WalSyncError } from "./wal_sync.ts";
import { WalTightener } from "./wal_tight.ts";

export { LeaseStoreError } from "./lease.ts";
export {
  createdMarkerPath,
  LeaseDatabaseGoneError,
  type SqliteOpenOptions,
} from "./sqlite_files.ts";

export { SCHEMA_VERSION } from "./sqlite_schema.ts";

/** The SQLite lease store. Open with {@link SqliteLeaseStore.open}. */
export class SqliteLeaseStore implements LeaseStore {
  readonly kind = "sqlite";
  readonly path: string;
  readonly #db: Database;
  readonly #readOnly: boolean;
  /** The columns to read: a read-only file of an older schema has no identity column. */
  #columns = COLUMNS;
  /** The write path (./sqlite_write.ts); absent for a read-only store. */
  #writer: SqliteBatchWriter | undefined;
  /** One active lease per holder, checked before each batch (./sqlite_holders.ts); undefined when read-only. */
  #holders: SqliteHolderGuard | undefined;
  /** Makes each commit durable off the event loop (undefined when read-only). */
  #walSync: WalSync | undefined;
  /** Keeps the WAL short after a commit found the disk full (./wal_tight.ts). */
  #tight: WalTightener | undefined;
  #closed = false;
  /** The one-server-per-file lock (./sqlite_lock.ts); absent for a read-only store. */
  #lock: DatabaseLock | undefined;
  /** Checkpoints the WAL off the event loop (./wal_checkpointer.ts); absent when read-only. */
  #checkpointer: WalCheckpointer | undefined;
  #checkpointFailure: string | undefined;
  #onCheckpointFailure: ((message: string) => void) | undefined;

  private constructor(path: string, db: Database, readOnly: boolean) {
    this.path = path;
    this.#db = db;
    this.#readOnly = readOnly;
  }

  /**
   * Opens (creating if needed) the lease database at `path` for a server, and locks it for
   * as long as it stays open. Throws a {@link LeaseStoreError} with a one-line message when
   * the directory is missing or not writable, the file is not a lease database, or another
   * dstm server holds it.
   *
   * @example const store = SqliteLeaseStore.open("/var/lib/dstm/leases.db");
   */
  static open(path: string, options: SqliteOpenOptions = {}): SqliteLeaseStore {
    let db: Database | undefined;
    let lock: DatabaseLock | undefined;
    const marker = createdMarkerPath(path);
    const created = readMarker(marker);
    try {
      const existed = existsSync(path);
      if (!existed && created !== undefined && !options.newDb) throw goneAtOpen(path, created);
      // The guard first: a second server stops here, before it touches the database.
      lock = lockDatabase(path);
      if (!existed) createPrivate(path);
      db = new Database(path, { create: true, readwrite: true });
      // Readers (sqlite3, lease ls --db) may briefly hold a lock while they open the WAL index.
      db.run("PRAGMA busy_timeout = 250");
      db.run("PRAGMA journal_mode = WAL");
      db.run("PRAGMA synchronous = FULL");
      db.run("BEGIN IMMEDIATE");
      const version = _userVersion(db);
      if (version === 0 && existed && created !== undefined && !options.newDb)
        throw goneAtOpen(path, created, "is empty");
      _checkVersion(path, version);
      if (version === 0) create(db);
      else if (version < SCHEMA_VERSION) migrate(db, version);
      dropHolderIndex(db);
      db.run(RESERVATIONS_SCHEMA);
      guardReservations(db);
      db.run("COMMIT");
      // The schema above was committed under FULL (on disk before the marker says the file
      // exists); lease writes are made durable by the store's own WAL sync (./wal_sync.ts).
      db.run("PRAGMA synchronous = NORMAL");
      // Checkpoints run on a Worker of their own, not in this connection's COMMITs on the
      // event loop (./wal_checkpointer.ts); this connection checkpoints only past WAL_PAGES,
      // where it finds most frames copied already (the bound on the WAL under load).
      db.run(`PRAGMA wal_autocheckpoint = ${options.checkpoint?.walPages ?? WAL_PAGES}`);
      if (created === undefined || (version === 0 && options.newDb)) writeMarker(marker, path);
      const store = new SqliteLeaseStore(path, db, false);
      store.#lock = lock;
      const wal = walId(path);
      store.#holders = new SqliteHolderGuard(db, path);
      store.#writer = new SqliteBatchWriter(db, path, fileId(statSync(path)), wal, store.#holders);
      store.#tight = new WalTightener(db, path, options.checkpoint?.walPages ?? WAL_PAGES);
      store.#walSync = new WalSync(path, options.datasync);
      // The fsync's descriptor now, on the WAL SQLite opened (./wal_sync.ts).
      if (wal) store.#walSync.open(wal);
      store.#onCheckpointFailure = options.onCheckpointFailure;
      store.#checkpointer = WalCheckpointer.start(path, {
        ...options.checkpoint,
        onFailure: (message) => store.#checkpointerFailed(message),
      });
      return store;
    } catch (error) {
      try {
        db?.close();
      } catch {}
      lock?.release();
      throw openError(path, error, false);
    }
  }

  /**
   * Opens an existing lease database read-only, for `dstm lease ls --db PATH`, also while a
   * server runs and writes it (a WAL reader: it sees the last committed state).
   */
  static openReadOnly(path: string): SqliteLeaseStore {
    if (!existsSync(path)) {
      throw new LeaseStoreError(`lease database ${path} does not exist; check the --db path`);
    }
    let db: Database | undefined;
    try {
      db = new Database(path, { readonly: true });
      db.run("PRAGMA busy_timeout = 2000");
      const version = _userVersion(db);
      _checkVersion(path, version);
      const store = new SqliteLeaseStore(path, db, true);
      store.#columns = columnsOf(version);
      return store;
    } catch (error) {
      try {
        db?.close();
      } catch {}
      throw openError(path, error, true);
    }
  }

  /**
   * Every row in key order. Read in pages of {@link LOAD_PAGE_ROWS} (by key, the primary key),
   * so a million rows never sit in SQLite's result arrays at once; the TEP, pool and state
   * strings are shared among the rows ({@link stringInterner}).
   */
  loadAll(): Promise<Lease[]> {
    if (this.#closed) return Promise.reject(_closed(this.path));
    try {
      // A row's TEP and pool come back as NULL when they equal the previous row's, its state
      // as a number: no string made per row for them (each a small allocation freed at once,
      // interleaved with the host strings that stay: holes in the heap, a million times).
      const columns = this.#columns.replace("tep6, pool, state", LOAD_REPEATED_COLUMNS);
      const page = this.#db.query(
        `SELECT ${columns} FROM leases WHERE key > ?1 ORDER BY key LIMIT ${LOAD_PAGE_ROWS}`,
      );
      const intern = stringInterner();
      const out: Lease[] = [];
      let tep6 = "";
      let pool = "";
      for (let after = -1; ; ) {
        // NULL stands for the value passed for this page (the last one the previous page had).
        const [pageTep6, pagePool] = [tep6, pool];
        const rows = page.values(after, pageTep6, pagePool);
        for (const row of rows) {
          if (row[7] === null) row[7] = pageTep6;
          else tep6 = String(row[7]);
          if (row[8] === null) row[8] = pagePool;
          else pool = String(row[8]);
          if (typeof row[9] === "number") row[9] = LOAD_STATES[row[9]] as LeaseState;
          out.push(_toLease(this.path, row, intern));
        }
        if (rows.length < LOAD_PAGE_ROWS) break;
        after = Number((rows[rows.length - 1] as unknown[])[0]);
      }
      // The holder guard learns the active rows from this read, the first time (./sqlite_holders.ts).
      this.#holders?.load(out);
      return Promise.resolve(out);
    } catch (error) {
      return Promise.reject(runError(this.path, error));
    }
  }

  /** Up to `limit` rows with a key above `afterKey`, in key order: one page for `lease ls --db`. */
  rowsAfter(afterKey: number, limit: number): Lease[] {
    if (this.#closed) throw _closed(this.path);
    const rows = this.#db
      .query(`SELECT ${COLUMNS} FROM leases WHERE key > ? ORDER BY key LIMIT ?`)
      .values(afterKey, limit);
    return rows.map((row) => _toLease(this.path, row));
  }

  /** Every stored reservation, in key order. */
  loadReservations(): Promise<Reservation[]> {
    if (this.#closed) return Promise.reject(_closed(this.path));
    try {
      return Promise.resolve(loadReservations(this.#db));
    } catch (error) {
      return Promise.reject(runError(this.path, error));
    }
  }

  /** Applies one reservation change in its own transaction; resolves once it is on disk. */
  writeReservation(op: ReservationOp): Promise<void> {
    return this.#writing((writer) => writer.reservation(op));
  }

  /**
   * Applies `ops` in one transaction; resolves once it is committed and on disk (the WAL
   * fsynced, ./wal_sync.ts). Fails with {@link LeaseDatabaseGoneError} when the database file
   * or its WAL is no longer the one opened, checked before each write (./sqlite_write.ts),
   * and with a fatal {@link WalSyncError} when the fsync fails.
   */
  write(ops: readonly LeaseOp[]): Promise<undefined> {
    // One writer: nothing is ever skipped (it resolves to undefined).
    return this.#writing((writer) => writer.write(ops)) as Promise<undefined>;
  }

  /**
   * {@link write} in two steps (LeaseStore.commit): the transaction now — throws its error,
   * or the store's sticky WAL sync failure, with nothing applied — and a promise that resolves
   * once the WAL is fsynced (./wal_sync.ts): the ACKs of its leases wait for that.
   */
  commit(ops: readonly LeaseOp[]): Promise<void> {
    if (this.#closed) throw _closed(this.path);
    const writer = this.#writer;
    if (writer === undefined)
      throw new LeaseStoreError(`lease database ${this.path} is open read-only`);
    const walSync = this.#walSync as WalSync;
    if (walSync.failure) throw walSync.failure;
    try {
      writer.write(ops);
    } catch (error) {
      this.#tight?.afterFailure(error);
      throw runError(this.path, error);
    }
    this.#tight?.afterCommit();
    return walSync.sync();
  }

  #writing(write: (writer: SqliteBatchWriter) => void): Promise<void> {
    if (this.#closed) return Promise.reject(_closed(this.path));
    const writer = this.#writer;
    if (writer === undefined) {
      return Promise.reject(new LeaseStoreError(`lease database ${this.path} is open read-only`));
    }
    const walSync = this.#walSync as WalSync;
    // After a failed fsync nothing more is committed: no lease may become visible (to a
    // restart, to `lease ls`) that no fsync vouches for (./wal_sync.ts, sticky failure).
    if (walSync.failure) return Promise.reject(walSync.failure);
    try {
      write(writer);
    } catch (error) {
      this.#tight?.afterFailure(error);
      return Promise.reject(runError(this.path, error));
    }
    this.#tight?.afterCommit();
    return walSync.sync();
  }

  /**
   * Throws {@link LeaseDatabaseGoneError} when the database file, its WAL or -shm at the path
   * is no longer the file this store opened (deleted, or replaced by another file), or when
   * its lock file was and another server holds the new one; says `lock-file-restored` when
   * it took a new lock file (./sqlite_lock_watch.ts). A server calls it every second.
   */
  verify(): "lock-file-restored" | undefined {
    if (this.#closed) return undefined;
    this.#writer?.checkFiles();
    // The lock file deleted or replaced: a new one at once (./sqlite_lock_watch.ts).
    const fresh = this.#lock && relockIfGone(this.path, this.#lock);
    if (!fresh) return undefined;
    this.#lock?.release();
    this.#lock = fresh;
    return "lock-file-restored";
  }

  /**
   * Stops the WAL checkpointer (./wal_checkpointer.ts), then finalizes the statements and
   * closes the database (the last connection: it checkpoints and deletes the WAL) and
   * releases the lock.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#checkpointer?.stop();
    this.#writer?.finalize();
    this.#holders?.finalize();
    this.#walSync?.close();
    try {
      this.#db.close();
    } catch (error) {
      throw runError(this.path, error);
    } finally {
      // After the database: no second server may start before this one's last checkpoint.
      this.#lock?.release();
    }
  }

  /**
   * The checkpointer's Worker could not start or failed: this connection checkpoints again
   * as SQLite does by default (every 1,000 WAL pages), so the WAL stays bounded.
   */
  #checkpointerFailed(message: string): void {
    this.#checkpointFailure = message;
    if (this.#closed) return;
    this.#tight?.setUsual(1000);
    this.#onCheckpointFailure?.(message);
  }

  /**
   * The WAL checkpointer's counts (./wal_checkpointer.ts); `failure` says why it stopped on
   * its own, and then this connection checkpoints again. Zeros for a read-only store.
   */
  get checkpoints(): WalCheckpointStats {
    const stats = this.#checkpointer?.stats ?? { runs: 0, frames: 0 };
    const failure = this.#checkpointFailure;
    return failure === undefined ? stats : { ...stats, failure };
  }

  /** fsyncs of the WAL so far (./wal_sync.ts): every write resolves after one that began after its commit. */
  get syncs(): number {
    return this.#walSync?.syncs ?? 0;
  }

  /** True for a store opened with {@link SqliteLeaseStore.openReadOnly}. */
  get readOnly(): boolean {
    return this.#readOnly;
  }
}

function _userVersion(db: Database): number {
  const row = db.query("PRAGMA user_version").get() as { user_version: number } | null;
  return row?.user_version ?? 0;
}

function _checkVersion(path: string, version: number): void {
  if (version > SCHEMA_VERSION) {
    throw new LeaseStoreError(
      `lease database ${path} has schema version ${version}, newer than this dstm understands (${SCHEMA_VERSION}); upgrade dstm`,
    );
  }
}

const STATES: ReadonlySet<string> = new Set(["active", "released", "expired"]);

/** Rows one read of {@link SqliteLeaseStore.loadAll} takes from SQLite. */
const LOAD_PAGE_ROWS = 16_384;
/**
 * loadAll's TEP, pool and state columns: NULL when the same as ?2 / ?3 (the page's values), a
 * state as its index in LOAD_STATES (an unknown one as stored: _toLease refuses it).
 */
const LOAD_REPEATED_COLUMNS =
  "CASE WHEN tep6 = ?2 THEN NULL ELSE tep6 END, CASE WHEN pool = ?3 THEN NULL ELSE pool END, " +
  "CASE state WHEN 'active' THEN 0 WHEN 'released' THEN 1 WHEN 'expired' THEN 2 ELSE state END";
const LOAD_STATES: readonly LeaseState[] = ["active", "released", "expired"];

function _toLease(path: string, row: unknown[], intern: (text: string) => string = String): Lease {
  const [
    ,
    ipv4,
    offset,
    psidLength,
    psid,
    host6,
    tep4,
    tep6,
    pool,
    state,
    grantedAt,
    expiresAt,
    id,
  ] = row;
  if (typeof state !== "string" || !STATES.has(state)) {
    throw new LeaseStoreError(`lease database ${path} has a row with unknown state ${state}`);
  }
  const portSet: PortSet =
    offset === 0 && psidLength === 0 && psid === 0
      ? WHOLE_ADDRESS
      : { offset: Number(offset), psidLength: Number(psidLength), psid: Number(psid) };
  return leaseOf(
    Number(ipv4),
    portSet,
    String(host6),
    Number(tep4),
    intern(String(tep6)),
    intern(String(pool)),
    intern(state) as LeaseState,
    Number(grantedAt),
    Number(expiresAt),
    id === null || id === undefined ? undefined : String(id),
  );
}

function _closed(path: string): LeaseStoreError {
  return new LeaseStoreError(`lease database ${path} is closed`);
}
