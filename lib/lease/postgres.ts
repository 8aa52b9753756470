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
 * Deletions are not seen by watchers (the engine never deletes).
 *
 * @module
 */
import { SQL } from "bun";
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  type LeaseState,
  type LeaseStore,
  LeaseStoreError,
  leaseHolder,
  leaseKey,
  leaseOf,
  type Reservation,
  type ReservationOp,
  stringInterner,
  WHOLE_ADDRESS,
} from "./lease.ts";

/** Version of the schema below, kept in dstm_meta. */
export const PG_SCHEMA_VERSION = 2;

/** pg_advisory_xact_lock key of dstm's writes ("DSTM" in ASCII). */
const WRITE_LOCK = 0x4453544d;
const CHANNEL = "dstm_leases";
/** How often a watcher polls for changes when no notification came (ms). */
const POLL_MS = 1000;

/** Schema 1, as dstm 1 created it (tests build old databases from it). */
export const PG_SCHEMA_1: readonly string[] = [
  `CREATE SEQUENCE IF NOT EXISTS dstm_leases_seq`,
  `CREATE TABLE IF NOT EXISTS dstm_leases (
    key bigint PRIMARY KEY,
    ipv4 bigint NOT NULL CHECK (ipv4 BETWEEN 0 AND 4294967295),
    psid_offset integer NOT NULL,
    psid_length integer NOT NULL,
    psid integer NOT NULL,
    host6 text NOT NULL,
    tep4 bigint NOT NULL,
    tep6 text NOT NULL,
    pool text NOT NULL,
    state text NOT NULL CHECK (state IN ('active', 'released', 'expired')),
    granted_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    seq bigint NOT NULL,
    CHECK (key = ipv4 * 65536 + psid)
  )`,
  `CREATE UNIQUE INDEX IF NOT EXISTS dstm_leases_active_host ON dstm_leases (host6) WHERE state = 'active'`,
  `CREATE INDEX IF NOT EXISTS dstm_leases_seq_idx ON dstm_leases (seq)`,
  `CREATE TABLE IF NOT EXISTS dstm_meta (version integer NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS dstm_reservations (
    host6 text PRIMARY KEY,
    key bigint NOT NULL UNIQUE,
    ipv4 bigint NOT NULL,
    psid integer NOT NULL,
    created_at bigint NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('dstm_leases_seq')
  )`,
  // A server that has not learned of a reservation yet cannot hand its slot to another host:
  // the row is refused as a unique violation, so its compare-and-set batch conflicts.
  `CREATE OR REPLACE FUNCTION dstm_reserved_check() RETURNS trigger AS $$
  BEGIN
    IF NEW.state = 'active' AND EXISTS (SELECT 1 FROM dstm_reservations r
        WHERE r.key = NEW.key AND r.host6 <> NEW.host6) THEN
      RAISE EXCEPTION 'dstm: slot % is reserved for another host', NEW.key
        USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
  END $$ LANGUAGE plpgsql`,
  `DROP TRIGGER IF EXISTS dstm_leases_reserved ON dstm_leases`,
  `CREATE TRIGGER dstm_leases_reserved BEFORE INSERT OR UPDATE ON dstm_leases
    FOR EACH ROW EXECUTE FUNCTION dstm_reserved_check()`,
];

/**
 * Schema 2 on top of schema 1 (idempotent: it migrates a schema-1 database and creates a new
 * one); schema 1's host index is never built only to be dropped.
 */
const SCHEMA = [
  ...PG_SCHEMA_1.filter((statement) => !statement.includes("dstm_leases_active_host")),
  // The 4o6 client's identity, and one active lease per holder, coalesce(identity, host6),
  // instead of per host6 (lib/lease/lease.ts).
  `ALTER TABLE dstm_leases ADD COLUMN IF NOT EXISTS identity text`,
  `DROP INDEX IF EXISTS dstm_leases_active_host`,
  `CREATE UNIQUE INDEX IF NOT EXISTS dstm_leases_active_holder ON dstm_leases ((coalesce(identity, host6))) WHERE state = 'active'`,
];

const COLUMNS =
  "key, ipv4, psid_offset, psid_length, psid, host6, tep4, tep6, pool, state, granted_at, expires_at, identity";

interface _Row {
  key: string | number;
  ipv4: string | number;
  psid_offset: number;
  psid_length: number;
  psid: number;
  host6: string;
  tep4: string | number;
  tep6: string;
  pool: string;
  state: string;
  granted_at: string | number;
  expires_at: string | number;
  identity: string | null;
  seq?: string | number;
}

/** Thrown inside the write transaction to roll it back when a compare-and-set failed. */
class _Mismatch extends Error {}

/** The PostgreSQL lease store. Open with {@link PostgresLeaseStore.open}. */
export class PostgresLeaseStore implements LeaseStore {
  readonly kind = "postgres";
  readonly shared = true;
  /** The URL without its password, for logs. */
  readonly where: string;
  readonly #sql: SQL;
  #closed = false;
  readonly #watchers = new Set<() => Promise<void>>();

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
    const where = _redact(url);
    const sql = new SQL(url, { max: opts.max ?? 4, connectionTimeout: 10, onclose: () => {} });
    try {
      await sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${WRITE_LOCK})`;
        for (const statement of SCHEMA) await tx.unsafe(statement);
        const rows = (await tx`SELECT version FROM dstm_meta`) as { version: number }[];
        if (rows.length === 0) {
          await tx`INSERT INTO dstm_meta (version) VALUES (${PG_SCHEMA_VERSION})`;
        } else if ((rows[0]?.version ?? 0) > PG_SCHEMA_VERSION) {
          throw new LeaseStoreError(
            `lease database ${where} has schema version ${rows[0]?.version}, newer than this dstm understands (${PG_SCHEMA_VERSION}); upgrade dstm`,
          );
        } else if ((rows[0]?.version ?? 0) < PG_SCHEMA_VERSION) {
          // Migrated by the IF NOT EXISTS statements of SCHEMA above.
          await tx`UPDATE dstm_meta SET version = ${PG_SCHEMA_VERSION}`;
        }
      });
    } catch (error) {
      await sql.close({ timeout: 0 }).catch(() => {});
      if (error instanceof LeaseStoreError) throw error;
      throw new LeaseStoreError(`cannot open lease database ${where}: ${_message(error)}`);
    }
    return new PostgresLeaseStore(sql, where);
  }

  /** Every row in key order. */
  async loadAll(): Promise<Lease[]> {
    this.#check();
    try {
      const rows = (await this.#sql.unsafe(
        `SELECT ${COLUMNS} FROM dstm_leases ORDER BY key`,
      )) as _Row[];
      const intern = stringInterner();
      return rows.map((row) => _toLeaseShared(row, intern));
    } catch (error) {
      throw this.#error(error);
    }
  }

  /**
   * Applies `ops` in one transaction (after the others servers' writes: advisory lock);
   * resolves once committed. Rejects with {@link LeaseConflictError} when a put's `expected`
   * row is not the stored one, with {@link LeaseStoreError} on any other failure (a second
   * active lease for a host in a plain put, the database unreachable); nothing applied then.
   */
  async write(ops: readonly LeaseOp[]): Promise<void> {
    this.#check();
    if (ops.length === 0) return;
    let cas = false;
    try {
      await this.#sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${WRITE_LOCK})`;
        const results: Promise<unknown[]>[] = [];
        for (const op of ops) {
          if (op.op === "delete") {
            results.push(tx`DELETE FROM dstm_leases WHERE key = ${op.key}`);
            continue;
          }
          const l = op.lease;
          const p = l.portSet;
          const key = leaseKey(l.ipv4, p.psid);
          const e = op.expected;
          if (e !== undefined) cas = true;
          if (e === undefined) {
            results.push(tx`INSERT INTO dstm_leases (${tx.unsafe(COLUMNS)}, seq)
              VALUES (${key}, ${l.ipv4}, ${p.offset}, ${p.psidLength}, ${p.psid}, ${l.host6},
                ${l.tep4}, ${l.tep6}, ${l.pool}, ${l.state}, ${l.grantedAt}, ${l.expiresAt},
                ${l.identity ?? null}, nextval('dstm_leases_seq'))
              ON CONFLICT (key) DO UPDATE SET ipv4 = EXCLUDED.ipv4,
                psid_offset = EXCLUDED.psid_offset, psid_length = EXCLUDED.psid_length,
                psid = EXCLUDED.psid, host6 = EXCLUDED.host6, tep4 = EXCLUDED.tep4,
                tep6 = EXCLUDED.tep6, pool = EXCLUDED.pool, state = EXCLUDED.state,
                granted_at = EXCLUDED.granted_at, expires_at = EXCLUDED.expires_at,
                identity = EXCLUDED.identity, seq = EXCLUDED.seq
              RETURNING key`);
          } else if (e === null) {
            results.push(tx`INSERT INTO dstm_leases (${tx.unsafe(COLUMNS)}, seq)
              VALUES (${key}, ${l.ipv4}, ${p.offset}, ${p.psidLength}, ${p.psid}, ${l.host6},
                ${l.tep4}, ${l.tep6}, ${l.pool}, ${l.state}, ${l.grantedAt}, ${l.expiresAt},
                ${l.identity ?? null}, nextval('dstm_leases_seq'))
              ON CONFLICT DO NOTHING
              RETURNING key`);
          } else {
            const q = e.portSet;
            results.push(tx`UPDATE dstm_leases SET ipv4 = ${l.ipv4}, psid_offset = ${p.offset},
                psid_length = ${p.psidLength}, psid = ${p.psid}, host6 = ${l.host6},
                tep4 = ${l.tep4}, tep6 = ${l.tep6}, pool = ${l.pool}, state = ${l.state},
                granted_at = ${l.grantedAt}, expires_at = ${l.expiresAt},
                identity = ${l.identity ?? null}, seq = nextval('dstm_leases_seq')
              WHERE key = ${key} AND ipv4 = ${e.ipv4} AND psid_offset = ${q.offset}
                AND psid_length = ${q.psidLength} AND psid = ${q.psid} AND host6 = ${e.host6}
                AND tep4 = ${e.tep4} AND tep6 = ${e.tep6} AND pool = ${e.pool}
                AND state = ${e.state} AND granted_at = ${e.grantedAt}
                AND expires_at = ${e.expiresAt}
                AND identity IS NOT DISTINCT FROM ${e.identity ?? null}
              RETURNING key`);
          }
        }
        const settled = await Promise.all(results);
        for (let i = 0; i < ops.length; i++) {
          const op = ops[i] as LeaseOp;
          if (op.op === "put" && op.expected !== undefined && settled[i]?.length !== 1) {
            throw new _Mismatch();
          }
        }
        await tx`SELECT pg_notify(${CHANNEL}, '')`;
      });
    } catch (error) {
      if (error instanceof _Mismatch || (cas && _sqlState(error) === "23505")) {
        throw await this.#conflict(ops);
      }
      if (_sqlState(error) === "23505") {
        throw new LeaseStoreError(
          _message(error).includes("reserved")
            ? `lease database ${this.where}: ${_message(error)}`
            : `lease database ${this.where}: a host would hold two active leases (${_message(error)})`,
        );
      }
      throw this.#error(error);
    }
  }

  /** Every stored reservation, in key order. */
  async loadReservations(): Promise<Reservation[]> {
    this.#check();
    try {
      const rows = (await this.#sql`SELECT host6, ipv4, psid, created_at
        FROM dstm_reservations ORDER BY key`) as Record<string, string | number>[];
      return rows.map((r) => ({
        host6: String(r.host6),
        ipv4: Number(r.ipv4),
        psid: Number(r.psid),
        createdAt: Number(r.created_at),
      }));
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
          WHERE key = ${key} AND state = 'active' AND host6 <> ${r.host6}`) as _Row[];
        if (held.length > 0) {
          const row = _toLease(held[0] as _Row);
          throw new LeaseConflictError(`slot ${key} is leased to ${row.host6}`, [row]);
        }
        await tx`DELETE FROM dstm_reservations WHERE host6 = ${r.host6}`;
        await tx`INSERT INTO dstm_reservations (host6, key, ipv4, psid, created_at)
          VALUES (${r.host6}, ${key}, ${r.ipv4}, ${r.psid}, ${r.createdAt})`;
        await tx`SELECT pg_notify(${CHANNEL}, '')`;
      });
    } catch (error) {
      if (error instanceof LeaseConflictError) throw error;
      if (_sqlState(error) === "23505") {
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
    const sql = this.#sql;
    const poll = async (): Promise<void> => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          if (stopped || this.#closed) return;
          if (last === undefined) {
            const top = (await sql`SELECT coalesce(max(seq), 0) AS seq FROM dstm_leases`) as {
              seq: string;
            }[];
            last = Number(top[0]?.seq ?? 0);
            continue;
          }
          const rows = (await sql.unsafe(
            `SELECT ${COLUMNS}, seq FROM dstm_leases WHERE seq > $1 ORDER BY seq LIMIT 10000`,
            [last],
          )) as _Row[];
          if (rows.length === 0) continue;
          last = Number(rows[rows.length - 1]?.seq);
          if (rows.length === 10000) again = true;
          if (!stopped) onRows(rows.map(_toLease));
        } while (again);
      } catch {
        // the database is away: the next notification or poll tries again
      } finally {
        running = false;
      }
    };
    const ready = poll();
    return this.#follow(
      poll,
      () => {
        stopped = true;
      },
      ready,
    );
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

  /** The conflict error of a failed compare-and-set batch, with the rows stored now. */
  async #conflict(ops: readonly LeaseOp[]): Promise<LeaseConflictError> {
    const keys = new Set<number>();
    const hosts = new Set<string>();
    for (const op of ops) {
      if (op.op === "delete") keys.add(op.key);
      else {
        keys.add(leaseKey(op.lease.ipv4, op.lease.portSet.psid));
        if (op.lease.state === "active") hosts.add(leaseHolder(op.lease));
      }
    }
    try {
      const rows = (await this.#sql.unsafe(
        `SELECT ${COLUMNS} FROM dstm_leases
         WHERE key = ANY($1::bigint[]) OR (state = 'active' AND coalesce(identity, host6) = ANY($2::text[]))
         ORDER BY seq`,
        [this.#sql.array([...keys], "INT8"), this.#sql.array([...hosts], "TEXT")],
      )) as _Row[];
      const leases = rows.map(_toLease);
      const found = new Set(leases.map((l) => leaseKey(l.ipv4, l.portSet.psid)));
      // A reservation made at another server refuses the slot (dstm_reserved_check): say which.
      const reserved = (await this.#sql.unsafe(
        `SELECT host6, ipv4, psid, created_at FROM dstm_reservations WHERE key = ANY($1::bigint[])`,
        [this.#sql.array([...keys], "INT8")],
      )) as Record<string, string | number>[];
      return new LeaseConflictError(
        `another server changed ${keys.size === 1 ? "this lease" : "one of these leases"} first`,
        leases,
        [...keys].filter((k) => !found.has(k)),
        reserved.map((r) => ({
          host6: String(r.host6),
          ipv4: Number(r.ipv4),
          psid: Number(r.psid),
          createdAt: Number(r.created_at),
        })),
      );
    } catch (error) {
      return new LeaseConflictError(
        `another server changed a lease first (and reading it back failed: ${_message(error)})`,
      );
    }
  }

  #error(error: unknown): LeaseStoreError {
    if (error instanceof LeaseStoreError) return error;
    return new LeaseStoreError(`lease database ${this.where}: ${_message(error)}`);
  }
}

/** True for a `postgres://` or `postgresql://` URL (what `--db` takes for this store). */
export function isPostgresUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//i.test(text);
}

function _toLease(row: _Row): Lease {
  return _toLeaseShared(row, _same);
}

function _same(text: string): string {
  return text;
}

/** The lease of `row`, its TEP, pool and state strings through `intern` (./lease.ts stringInterner). */
function _toLeaseShared(row: _Row, intern: (text: string) => string): Lease {
  const offset = Number(row.psid_offset);
  const psidLength = Number(row.psid_length);
  const psid = Number(row.psid);
  const portSet =
    offset === 0 && psidLength === 0 && psid === 0 ? WHOLE_ADDRESS : { offset, psidLength, psid };
  return leaseOf(
    Number(row.ipv4),
    portSet,
    row.host6,
    Number(row.tep4),
    intern(row.tep6),
    intern(row.pool),
    intern(row.state) as LeaseState,
    Number(row.granted_at),
    Number(row.expires_at),
    row.identity === null || row.identity === undefined ? undefined : row.identity,
  );
}

function _sqlState(error: unknown): string | undefined {
  return (error as { errno?: unknown })?.errno as string | undefined;
}

function _message(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}

/** The URL with any password replaced by `***`. */
function _redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}
