/**
 * The SQLite lease store's write path (lib/lease/sqlite.ts): a batch of lease changes in one
 * transaction (WAL; made durable by the store, ./wal_sync.ts), after checking that the database file
 * and its WAL at the path are still the ones opened (./sqlite_files.ts).
 *
 * Consecutive puts go to SQLite {@link UPSERT_ROWS} at a time, as one multi-row `INSERT …
 * ON CONFLICT (key) DO UPDATE` (https://sqlite.org/lang_upsert.html): SQLite applies the rows
 * of a VALUES list one after the other, exactly as that many one-row statements would (a row
 * may update one inserted before it in the same list), at about half the cost per row (one
 * statement step and one binding call instead of sixteen). A failing row fails the whole
 * batch either way: its transaction is rolled back.
 *
 * @module
 */
import type { Database, Statement } from "bun:sqlite";
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  LeaseStoreError,
  leaseKey,
  type ReservationOp,
} from "./lease.ts";
import {
  type FileId,
  goneWhileOpen,
  sameFile,
  shmGoneWhileOpen,
  shmId,
  statOrUndefined,
  walId,
} from "./sqlite_files.ts";
import type { SqliteHolderGuard } from "./sqlite_holders.ts";
import { writeReservation } from "./sqlite_reservations.ts";
import { COLUMNS } from "./sqlite_schema.ts";

/** An SQLite error while the store is open: SQLite's words, and which file. */
export function runError(path: string, error: unknown): Error {
  if (error instanceof LeaseStoreError || error instanceof LeaseConflictError) return error;
  // The cause keeps SQLite's result code (SQLITE_FULL…) for the failure's reason (./store_fault.ts).
  return new LeaseStoreError(`lease database ${path}: ${firstLine(error)}`, { cause: error });
}

/** The first line of an error's message. */
export function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "";
}

/** Rows one multi-row upsert carries at most (13 parameters each). */
export const UPSERT_ROWS = 16;
const COLUMN_COUNT = 13;

/** Writes batches into the store's open database. One writer per connection. */
export class SqliteBatchWriter {
  readonly #db: Database;
  readonly #path: string;
  readonly #identity: FileId | undefined;
  #walIdentity: FileId | undefined;
  /** (dev, ino) of the WAL index (`-shm`) as opened (./sqlite_files.ts shmGoneWhileOpen). */
  readonly #shmIdentity: FileId | undefined;
  readonly #begin: Statement;
  readonly #commit: Statement;
  readonly #rollback: Statement;
  readonly #remove: Statement;
  /** The upsert of n rows at index n − 1, prepared on first use. */
  readonly #upserts: (Statement | undefined)[] = [];
  /** The parameters of one upsert statement, reused. */
  readonly #params: (string | number | null)[][] = [];
  /** One active lease per holder, checked before SQLite sees a batch (./sqlite_holders.ts). */
  readonly #holders: SqliteHolderGuard | undefined;

  /**
   * `identity` / `walIdentity`: (dev, ino) of the database file and its WAL as the store
   * opened them (the WAL's is learnt at the first commit when not known yet).
   */
  constructor(
    db: Database,
    path: string,
    identity: FileId | undefined,
    walIdentity: FileId | undefined,
    holders?: SqliteHolderGuard,
  ) {
    this.#db = db;
    this.#holders = holders;
    this.#path = path;
    this.#identity = identity;
    this.#walIdentity = walIdentity;
    this.#shmIdentity = shmId(path);
    this.#begin = db.prepare("BEGIN");
    this.#commit = db.prepare("COMMIT");
    this.#rollback = db.prepare("ROLLBACK");
    this.#remove = db.prepare("DELETE FROM leases WHERE key = ?");
  }

  /** (dev, ino) of the WAL as last checked; undefined until a commit made one. */
  get walIdentity(): FileId | undefined {
    return this.#walIdentity;
  }

  /**
   * Applies `ops` in order in one transaction; returns once it is committed (not yet fsynced: the store syncs the WAL, ./wal_sync.ts).
   * Throws LeaseDatabaseGoneError when the file or its WAL was removed or replaced, a
   * LeaseStoreError when a put would give a holder a second active lease (./sqlite_holders.ts),
   * else SQLite's error (the transaction rolled back, nothing of the batch stored).
   */
  write(ops: readonly LeaseOp[]): void {
    this.checkFiles();
    const holders = this.#holders;
    if (holders) {
      holders.ensureLoaded(this.#db);
      holders.check(ops);
    }
    try {
      this.#apply(ops);
    } catch (error) {
      holders?.rollback();
      throw error;
    }
    holders?.commit();
  }

  /** The transaction of {@link write}. */
  #apply(ops: readonly LeaseOp[]): void {
    this.#begin.run();
    try {
      for (let at = 0; at < ops.length; ) {
        const op = ops[at] as LeaseOp;
        if (op.op === "delete") {
          this.#remove.run(op.key);
          at++;
          continue;
        }
        let n = 1;
        while (n < UPSERT_ROWS && at + n < ops.length && ops[at + n]?.op === "put") n++;
        this.#upsert(ops, at, n);
        at += n;
      }
      this.#commit.run();
      this.#walIdentity ??= walId(this.#path);
    } catch (error) {
      if (this.#db.inTransaction) this.#rollback.run();
      throw error;
    }
  }

  /** Upserts the `n` puts at `ops[at…]` with one statement. */
  #upsert(ops: readonly LeaseOp[], at: number, n: number): void {
    let statement = this.#upserts[n - 1];
    let params = this.#params[n - 1];
    if (statement === undefined || params === undefined) {
      statement = this.#db.prepare(_upsertSql(n));
      params = new Array(n * COLUMN_COUNT).fill(null);
      this.#upserts[n - 1] = statement;
      this.#params[n - 1] = params;
    }
    for (let i = 0, j = 0; i < n; i++) {
      const l = (ops[at + i] as { readonly lease: Lease }).lease;
      const p = l.portSet;
      params[j++] = leaseKey(l.ipv4, p.psid);
      params[j++] = l.ipv4;
      params[j++] = p.offset;
      params[j++] = p.psidLength;
      params[j++] = p.psid;
      params[j++] = l.host6;
      params[j++] = l.tep4;
      params[j++] = l.tep6;
      params[j++] = l.pool;
      params[j++] = l.state;
      params[j++] = l.grantedAt;
      params[j++] = l.expiresAt;
      params[j++] = l.identity ?? null;
    }
    // The array itself, not spread: bun:sqlite binds its elements in order, without 13 × n arguments.
    statement.run(params);
  }

  /** Applies one reservation change in its own transaction (./sqlite_reservations.ts). */
  reservation(op: ReservationOp): void {
    this.checkFiles();
    writeReservation(this.#db, this.#path, op);
  }

  /**
   * Throws LeaseDatabaseGoneError when the database file, its WAL or its WAL index (-shm) at
   * the path is no longer the file opened (deleted, or replaced by another file). Three stat() calls.
   */
  checkFiles(): void {
    const now = statOrUndefined(this.#path);
    if (this.#identity && !sameFile(this.#identity, now))
      throw goneWhileOpen(this.#path, this.#path, now);
    if (this.#walIdentity) {
      const wal = `${this.#path}-wal`;
      const walNow = statOrUndefined(wal);
      if (!sameFile(this.#walIdentity, walNow)) throw goneWhileOpen(this.#path, wal, walNow);
    }
    if (this.#shmIdentity) {
      const shmNow = statOrUndefined(`${this.#path}-shm`);
      if (!sameFile(this.#shmIdentity, shmNow)) throw shmGoneWhileOpen(this.#path, shmNow);
    }
  }

  /** Finalizes the statements (the caller closes the database). */
  finalize(): void {
    for (const s of [this.#begin, this.#commit, this.#rollback, this.#remove, ...this.#upserts])
      s?.finalize();
  }
}

/** The upsert of `rows` rows: a put replaces the row of its key, every column. */
function _upsertSql(rows: number): string {
  const row = `(${new Array(COLUMN_COUNT).fill("?").join(", ")})`;
  return `INSERT INTO leases (${COLUMNS}) VALUES ${new Array(rows).fill(row).join(", ")}
    ON CONFLICT (key) DO UPDATE SET ipv4 = excluded.ipv4, psid_offset = excluded.psid_offset,
      psid_length = excluded.psid_length, psid = excluded.psid, host6 = excluded.host6,
      tep4 = excluded.tep4, tep6 = excluded.tep6, pool = excluded.pool, state = excluded.state,
      granted_at = excluded.granted_at, expires_at = excluded.expires_at,
      identity = excluded.identity`;
}
