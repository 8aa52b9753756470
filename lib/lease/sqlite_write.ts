/**
 * The SQLite lease store's write path (lib/lease/sqlite.ts), run on the store's writer Worker
 * (./sqlite_writer_worker.ts): a batch of lease changes (encoded, ./sqlite_batch.ts) in one
 * transaction (WAL; made durable by the store, ./wal_sync.ts), after checking that the
 * database file and its WAL at the path are still the ones opened ({@link SqliteFileCheck},
 * ./sqlite_files.ts).
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
import { LeaseConflictError, LeaseStoreError, type ReservationOp } from "./lease.ts";
import { BATCH_NUMS, BATCH_STATES, BatchNum, type EncodedBatch } from "./sqlite_batch.ts";
import {
  type FileId,
  goneWhileOpen,
  sameFile,
  shmGoneWhileOpen,
  shmId,
  statOrUndefined,
  walId,
} from "./sqlite_files.ts";
import { writeReservation } from "./sqlite_reservations.ts";
import { COLUMNS } from "./sqlite_schema.ts";

/** An SQLite error while the store is open: SQLite's words, and which file. */
export function runError(path: string, error: unknown): Error {
  if (error instanceof LeaseStoreError || error instanceof LeaseConflictError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "SQLITE_CONSTRAINT_UNIQUE") {
    return new LeaseStoreError(
      `lease database ${path}: a host would hold two active leases (${firstLine(error)})`,
      { cause: error },
    );
  }
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

/**
 * The database-gone check (lib/lease/sqlite.ts): the database file, its WAL and its WAL index
 * (`-shm`) at the path are still the files opened.
 */
export class SqliteFileCheck {
  readonly #path: string;
  readonly #identity: FileId | undefined;
  #walIdentity: FileId | undefined;
  /** (dev, ino) of the WAL index (`-shm`) as opened (./sqlite_files.ts shmGoneWhileOpen). */
  readonly #shmIdentity: FileId | undefined;

  /**
   * `identity` / `walIdentity` / `shmIdentity`: (dev, ino) of the database file, its WAL and
   * its `-shm` as the store opened them (the WAL's is learnt by {@link learnWal} when not
   * known yet; the `-shm`'s is read now when not given).
   */
  constructor(
    path: string,
    identity: FileId | undefined,
    walIdentity: FileId | undefined,
    shmIdentity: FileId | undefined = shmId(path),
  ) {
    this.#path = path;
    this.#identity = identity;
    this.#walIdentity = walIdentity;
    this.#shmIdentity = shmIdentity;
  }

  /** (dev, ino) of the WAL as last checked; undefined until a commit made one. */
  get walIdentity(): FileId | undefined {
    return this.#walIdentity;
  }

  /** (dev, ino) of the `-shm` as opened. */
  get shmIdentity(): FileId | undefined {
    return this.#shmIdentity;
  }

  /** After a commit: the WAL's (dev, ino), when not known yet. */
  learnWal(): void {
    this.#walIdentity ??= walId(this.#path);
  }

  /**
   * Throws LeaseDatabaseGoneError when the database file, its WAL or its WAL index (-shm) at
   * the path is no longer the file opened (deleted, or replaced by another file). Three stat() calls.
   */
  check(): void {
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
}

/** Writes batches into the store's open database. One writer per connection. */
export class SqliteBatchWriter {
  readonly #db: Database;
  readonly #path: string;
  readonly #files: SqliteFileCheck;
  readonly #begin: Statement;
  readonly #commit: Statement;
  readonly #rollback: Statement;
  readonly #remove: Statement;
  /** The upsert of n rows at index n − 1, prepared on first use. */
  readonly #upserts: (Statement | undefined)[] = [];
  /** The parameters of one upsert statement, reused. */
  readonly #params: (string | number | null)[][] = [];

  /** `files`: the files as the store opened them, checked before each write. */
  constructor(db: Database, path: string, files: SqliteFileCheck) {
    this.#db = db;
    this.#path = path;
    this.#files = files;
    this.#begin = db.prepare("BEGIN");
    this.#commit = db.prepare("COMMIT");
    this.#rollback = db.prepare("ROLLBACK");
    this.#remove = db.prepare("DELETE FROM leases WHERE key = ?");
  }

  /**
   * Applies the ops of `batch` in order in one transaction; returns once it is committed (not
   * yet fsynced: the store syncs the WAL, ./wal_sync.ts). Throws LeaseDatabaseGoneError when
   * the file or its WAL was removed or replaced, else SQLite's error (the transaction rolled
   * back, nothing of the batch stored).
   */
  write(batch: EncodedBatch): void {
    this.#files.check();
    const { n: count, nums } = batch;
    this.#begin.run();
    try {
      for (let at = 0, s = 0; at < count; ) {
        if (nums[at * BATCH_NUMS + BatchNum.PUT] === 0) {
          this.#remove.run(nums[at * BATCH_NUMS + BatchNum.KEY] as number);
          at++;
          continue;
        }
        let n = 1;
        while (
          n < UPSERT_ROWS &&
          at + n < count &&
          nums[(at + n) * BATCH_NUMS + BatchNum.PUT] === 1
        )
          n++;
        s = this.#upsert(batch, at, n, s);
        at += n;
      }
      this.#commit.run();
      this.#files.learnWal();
    } catch (error) {
      if (this.#db.inTransaction) this.#rollback.run();
      throw error;
    }
  }

  /**
   * Upserts the `n` puts at rows `at…` of `batch` with one statement; `s`: where the first
   * one's strings start in `batch.text`. Returns where the strings after the last one's start.
   */
  #upsert(batch: EncodedBatch, at: number, n: number, s: number): number {
    let statement = this.#upserts[n - 1];
    let params = this.#params[n - 1];
    if (statement === undefined || params === undefined) {
      statement = this.#db.prepare(_upsertSql(n));
      params = new Array(n * COLUMN_COUNT).fill(null);
      this.#upserts[n - 1] = statement;
      this.#params[n - 1] = params;
    }
    const { nums, text } = batch;
    for (let i = 0, j = 0, r = at * BATCH_NUMS; i < n; i++, r += BATCH_NUMS) {
      const host6 = s + (nums[r + BatchNum.HOST6_LEN] as number);
      const tep6 = host6 + (nums[r + BatchNum.TEP6_LEN] as number);
      const pool = tep6 + (nums[r + BatchNum.POOL_LEN] as number);
      const identityLength = nums[r + BatchNum.IDENTITY_LEN] as number;
      params[j++] = nums[r + BatchNum.KEY] as number;
      params[j++] = nums[r + BatchNum.IPV4] as number;
      params[j++] = nums[r + BatchNum.OFFSET] as number;
      params[j++] = nums[r + BatchNum.PSID_LENGTH] as number;
      params[j++] = nums[r + BatchNum.PSID] as number;
      params[j++] = text.slice(s, host6);
      params[j++] = nums[r + BatchNum.TEP4] as number;
      params[j++] = text.slice(host6, tep6);
      params[j++] = text.slice(tep6, pool);
      params[j++] = BATCH_STATES[nums[r + BatchNum.STATE] as number] as string;
      params[j++] = nums[r + BatchNum.GRANTED_AT] as number;
      params[j++] = nums[r + BatchNum.EXPIRES_AT] as number;
      params[j++] = identityLength < 0 ? null : text.slice(pool, pool + identityLength);
      s = identityLength < 0 ? pool : pool + identityLength;
    }
    // The array itself, not spread: bun:sqlite binds its elements in order, without 13 × n arguments.
    statement.run(params);
    return s;
  }

  /** Applies one reservation change in its own transaction (./sqlite_reservations.ts). */
  reservation(op: ReservationOp): void {
    this.#files.check();
    writeReservation(this.#db, this.#path, op);
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
