/**
 * The lease table in PostgreSQL (Bun's built-in client, `import { SQL } from "bun"`), shared
 * by several `dstm server` processes serving the same pools at once (active-active).
 *
 * The database is the arbiter, not luck:
 * - `key` (ipv4 · 65536 + PSID) is the primary key: one row per address or port set.
 * - A partial UNIQUE index on `coalesce(identity, host6)` WHERE `state = 'active'`: one active
 *   lease per holder (the host, or the 4o6 client's identity; schema 2, migrated at open).
 * - Every put the engine sends carries the row it believes is stored (`expected`, a
 *   compare-and-set): an insert where it expects no row is `ON CONFLICT DO NOTHING` (any
 *   unique violation, key or host), a change of a row is an `UPDATE … WHERE` every field
 *   still equals the expected row. A put that finds another row makes the batch roll back
 *   and reject with {@link LeaseConflictError}, which carries the rows stored now; the
 *   engine takes them and decides again. So a slot handed to one host by one server can
 *   never be handed to another by a second server that had not seen it yet, and an expiry
 *   (active → expired, expecting the active row) happens exactly once: the second server's
 *   put no longer finds the active row.
 * - Write transactions take one advisory lock (`pg_advisory_xact_lock`): writes of all
 *   servers are serialized, so there are no deadlocks between batches and the change
 *   sequence commits in order.
 * - Every written row gets the next value of `dstm_leases_seq`; each commit sends
 *   `NOTIFY dstm_leases`. {@link PostgresLeaseStore.watch} listens and reads the rows whose
 *   sequence number is above the last it saw (and polls every second in case a notification
 *   was lost), so each server follows what the others decide: sticky re-allocation works
 *   whichever server answers, and a slot taken elsewhere is not offered here.
 *
 * A put without `expected` is a plain upsert (the {@link LeaseStore} contract, as SQLite).
 * Deletions are not seen by watchers (the engine never deletes: it ends a lease by a put of a
 * `released` or `expired` row); a delete still takes a `seq` for its generation.
 *
 * The schema and its migration are in ./postgres_schema.ts, the compare-and-set batch and the
 * read-back of a conflict in ./postgres_write.ts, the rows' decoding in ./postgres_rows.ts.
 *
 * @module
 */
import { SQL } from "bun";
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  type LeaseStore,
  LeaseStoreError,
  leaseKey,
  type Reservation,
  type ReservationOp,
  stringInterner,
  type WriteOutcome,
} from "./lease.ts";
import { whyUnreachable } from "./postgres_reach.ts";
import {
  COLUMNS,
  errorLine,
  leaseOfRow,
  leaseOfRowInterned,
  type PgLeaseRow,
  redactUrl,
  reservationOfRow,
  sqlState,
} from "./postgres_rows.ts";
import { CHANNEL, createSchema, WRITE_LOCK } from "./postgres_schema.ts";
import { CasMismatch, hasExpected, readConflict, writeBatch } from "./postgres_write.ts";

export { PG_SCHEMA_1, PG_SCHEMA_VERSION } from "./postgres_schema.ts";

/** How often a watcher polls for changes when no notification came (ms). */
const POLL_MS = 1000;

/** The PostgreSQL lease store. Open with {@link PostgresLeaseStore.open}. */
export class PostgresLeaseStore implements LeaseStore {
  readonly kind = "postgres";
  readonly shared = true;
  /** The URL without its password, for logs. */
  readonly where: string;
  readonly #sql: SQL;
  #closed = false;
  readonly #watchers = new Set<() => Promise<void>>();
  /** Each {@link watch}'s catch-up (see {@link caughtUp}). */
  readonly #catchUps = new Set<() => Promise<void>>();
  /** Each {@link watch}'s last `seq` given to its callback (see {@link watchedThrough}). */
  readonly #watchPoints = new Set<() => number | undefined>();
  private constructor(sql: SQL, where: string) {
    this.#sql = sql;
    this.where = where;
  }

  /**
   * Connects to `url` (`postgres://user@host:port/db`, `?path=DIR` for a Unix socket
   * directory), creates the schema if missing and checks its version. Throws a
   * {@link LeaseStoreError} with a one-line message when the server cannot be reached or the
   * database belongs to a newer dstm.
   *
   * @example const store = await PostgresLeaseStore.open("postgres://dstm@db.example/dstm");
   */
  static async open(url: string, opts: { max?: number } = {}): Promise<PostgresLeaseStore> {
    const where = redactUrl(url);
    const sql = new SQL(url, { max: opts.max ?? 4, connectionTimeout: 10, onclose: () => {} });
    try {
      await sql.begin((tx) => createSchema(tx, where));
    } catch (error) {
      await sql.close({ timeout: 0 }).catch(() => {});
      if (error instanceof LeaseStoreError) throw error;
      // Bun says "Failed to connect" for a name that does not resolve, a closed port and a
      // black hole alike: ask again step by step and say which.
      const code = (error as { code?: unknown })?.code;
      const why = code === "ERR_POSTGRES_CONNECTION_REFUSED" ? await whyUnreachable(url) : "";
      throw new LeaseStoreError(
        `cannot open lease database ${where}: ${errorLine(error)}${why ? ` (${why})` : ""}`,
      );
    }
    return new PostgresLeaseStore(sql, where);
  }

  /**
   * The database's wall clock (ms since the Unix epoch, `clock_timestamp()`): the one time
   * every server sharing the store takes for the stored `grantedAt` / `expiresAt`
   * (lib/alloc/engine.ts `start`). Rejects with {@link LeaseStoreError} when it cannot be read.
   */
  async clockMs(): Promise<number> {
    this.#check();
    try {
      const rows = (await this
        .#sql`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`) as {
        ms: number | string;
      }[];
      return Number(rows[0]?.ms);
    } catch (error) {
      throw this.#error(error);
    }
  }

  /** Every row in key order. */
  async loadAll(): Promise<Lease[]> {
    this.#check();
    try {
      const rows = (await this.#sql.unsafe(
        `SELECT ${COLUMNS} FROM dstm_leases ORDER BY key`,
      )) as PgLeaseRow[];
      const intern = stringInterner();
      return rows.map((row) => leaseOfRowInterned(row, intern));
    } catch (error) {
      throw this.#error(error);
    }
  }

  /**
   * Applies `ops` in one transaction (after the others servers' writes: advisory lock);
   * resolves once committed. Rejects with {@link LeaseConflictError} when a put's `expected`
   * row is not the stored one, with {@link LeaseStoreError} on any other failure (a second
   * active lease for a host in a plain put, the database unreachable); nothing applied then.
   * A `lapse` put whose expected row is not stored is skipped, not a conflict: the rest
   * commits, and the result names its key and the row stored now. The result also gives each
   * op's generation (`generations[i]`, the `seq` of its write, {@link WriteOutcome}): numbered
   * under the write lock, so in the commit order of every server — what a TEP orders BIND and
   * UNBIND by (docs/protocol.md, "Generations").
   */
  async write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    this.#check();
    if (ops.length === 0) return undefined;
    try {
      return await this.#sql.begin((tx) => writeBatch(tx, ops));
    } catch (error) {
      if (error instanceof CasMismatch || (hasExpected(ops) && sqlState(error) === "23505")) {
        throw await readConflict(this.#sql, ops);
      }
      if (sqlState(error) === "23505") {
        throw new LeaseStoreError(
          errorLine(error).includes("reserved")
            ? `lease database ${this.where}: ${errorLine(error)}`
            : `lease database ${this.where}: a host would hold two active leases (${errorLine(error)})`,
        );
      }
      throw this.#error(error);
    }
  }

  /**
   * The `seq` up to which every committed change has been given to the {@link watch}
   * callbacks (the least over them; the rows of `loadAll` after the watch started hold the
   * changes up to its first read); undefined before a watch's first read, or with none.
   */
  watchedThrough(): number | undefined {
    let least: number | undefined;
    for (const point of this.#watchPoints) {
      const seen = point();
      if (seen === undefined) return undefined;
      least = least === undefined ? seen : Math.min(least, seen);
    }
    return least;
  }

  /** Every stored reservation, in key order. */
  async loadReservations(): Promise<Reservation[]> {
    this.#check();
    try {
      const rows = (await this.#sql`SELECT host6, ipv4, psid, created_at
        FROM dstm_reservations ORDER BY key`) as Record<string, string | number>[];
      return rows.map(reservationOfRow);
    } catch (error) {
      throw this.#error(error);
    }
  }

  /** Applies one reservation change in its own transaction; a slot reserved for another host rejects. */
  async writeReservation(op: ReservationOp): Promise<void> {
    this.#check();
    try {
      await this.#sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${WRITE_LOCK})`;
        if (op.op === "delete") {
          await tx`DELETE FROM dstm_reservations WHERE host6 = ${op.host6}`;
          await tx`SELECT pg_notify(${CHANNEL}, '')`;
          return;
        }
        const r = op.reservation;
        const key = leaseKey(r.ipv4, r.psid);
        const held = (await tx`SELECT ${tx.unsafe(COLUMNS)} FROM dstm_leases
          WHERE key = ${key} AND state = 'active' AND host6 <> ${r.host6}`) as PgLeaseRow[];
        if (held.length > 0) {
          const row = leaseOfRow(held[0] as PgLeaseRow);
          throw new LeaseConflictError(`slot ${key} is leased to ${row.host6}`, [row]);
        }
        await tx`DELETE FROM dstm_reservations WHERE host6 = ${r.host6}`;
        await tx`INSERT INTO dstm_reservations (host6, key, ipv4, psid, created_at)
          VALUES (${r.host6}, ${key}, ${r.ipv4}, ${r.psid}, ${r.createdAt})`;
        await tx`SELECT pg_notify(${CHANNEL}, '')`;
      });
    } catch (error) {
      if (error instanceof LeaseConflictError) throw error;
      if (sqlState(error) === "23505") {
        throw new LeaseStoreError(
          `lease database ${this.where}: that slot is reserved for another host`,
        );
      }
      throw this.#error(error);
    }
  }

  /**
   * Calls `onChange` with every reservation whenever they changed (their highest `seq` or
   * their count moved): on each NOTIFY, and every second in case one was lost.
   */
  watchReservations(onChange: (all: Reservation[]) => void): () => Promise<void> {
    let last = "";
    let running = false;
    let stopped = false;
    const sql = this.#sql;
    const poll = async (): Promise<void> => {
      if (running || stopped || this.#closed) return;
      running = true;
      try {
        const top = (await sql`SELECT coalesce(max(seq), 0) AS seq, count(*) AS n
          FROM dstm_reservations`) as { seq: string; n: string }[];
        const version = `${top[0]?.seq}/${top[0]?.n}`;
        if (version !== last) {
          const all = await this.loadReservations();
          last = version;
          if (!stopped) onChange(all);
        }
      } catch {
        // the database is away: the next notification or poll tries again
      } finally {
        running = false;
      }
    };
    return this.#follow(poll, () => {
      stopped = true;
    });
  }

  /** Runs `poll` on each NOTIFY and every {@link POLL_MS} until the returned function is called. */
  #follow(poll: () => Promise<void>, stopping: () => void, ready?: Promise<void>) {
    const subscription = this.#sql.listen(CHANNEL, () => void poll()).catch(() => undefined);
    const timer = setInterval(() => void poll(), POLL_MS);
    const stop = async () => {
      stopping();
      clearInterval(timer);
      this.#watchers.delete(stop);
      await ready;
      const s = await subscription;
      await s?.unlisten().catch(() => {});
    };
    this.#watchers.add(stop);
    return stop;
  }

  /**
   * Calls `onRows` with every row changed (by any server) after the call, oldest change
   * first: on each NOTIFY of a commit, and every second in case one was lost. The returned
   * function stops it.
   */
  watch(onRows: (rows: Lease[]) => void): () => Promise<void> {
    let last: number | undefined;
    let running = false;
    let again = false;
    let stopped = false;
    /** Callers of {@link caughtUp} waiting for a read that starts after they asked. */
    let waiting: (() => void)[] = [];
    const sql = this.#sql;
    /** One read of the rows above `last`; true when a full page came (more to read). */
    const pass = async (): Promise<boolean> => {
      if (last === undefined) {
        const top = (await sql`SELECT coalesce(max(seq), 0) AS seq FROM dstm_leases`) as {
          seq: string;
        }[];
        last = Number(top[0]?.seq ?? 0);
        return false;
      }
      const rows = (await sql.unsafe(
        `SELECT ${COLUMNS}, seq FROM dstm_leases WHERE seq > $1 ORDER BY seq LIMIT 10000`,
        [last],
      )) as PgLeaseRow[];
      if (rows.length === 0) return false;
      last = Number(rows[rows.length - 1]?.seq);
      if (!stopped) onRows(rows.map(leaseOfRow));
      return rows.length === 10000;
    };
    const poll = async (): Promise<void> => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      let asked: (() => void)[] = [];
      let failed = false;
      try {
        do {
          again = false;
          // Those who asked before this read started are answered when it ends.
          for (const resolve of asked) resolve();
          asked = waiting;
          waiting = [];
          if (stopped || this.#closed) return;
          if (await pass()) again = true;
        } while (again || waiting.length > 0);
      } catch {
        // the database is away: the next notification or poll tries again, and who waits
        // for a read now is answered at once (with what this server has)
        failed = true;
      } finally {
        running = false;
        // Read (or failed, or stopped): nobody waits longer than this read.
        for (const resolve of asked) resolve();
        if (failed || stopped || this.#closed) {
          for (const resolve of waiting) resolve();
          waiting = [];
        }
      }
    };
    const ready = poll();
    /** `last`, once the rows up to it were given to `onRows`. */
    const watched = (): number | undefined => last;
    this.#watchPoints.add(watched);
    const catchUp = (): Promise<void> =>
      new Promise<void>((resolve) => {
        if (stopped || this.#closed) return resolve();
        waiting.push(resolve);
        if (!running) void poll();
      });
    const stop = this.#follow(
      poll,
      () => {
        stopped = true;
        this.#catchUps.delete(catchUp);
        this.#watchPoints.delete(watched);
      },
      ready,
    );
    this.#catchUps.add(catchUp);
    return stop;
  }

  /**
   * Resolves once every {@link watch} callback has been given the rows committed before the
   * call (one read of the rows above the last seen sequence number, after the call), or that
   * read failed (the database is away: then at once after it). Never rejects. A server
   * calls it before it judges a TEP's SYNC against its view (lib/server/tep_sync.ts): the
   * other servers' grants that TEP already holds must be in that view.
   */
  async caughtUp(): Promise<void> {
    await Promise.all([...this.#catchUps].map((catchUp) => catchUp()));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    for (const stop of [...this.#watchers]) await stop();
    this.#closed = true;
    await this.#sql.close({ timeout: 5 });
  }

  #check(): void {
    if (this.#closed) throw new LeaseStoreError(`lease database ${this.where} is closed`);
  }

  #error(error: unknown): LeaseStoreError {
    if (error instanceof LeaseStoreError) return error;
    return new LeaseStoreError(`lease database ${this.where}: ${errorLine(error)}`);
  }
}

/** True for a `postgres://` or `postgresql://` URL (what `--db` takes for this store). */
export function isPostgresUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//i.test(text);
}
