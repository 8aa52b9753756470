/**
 * The compare-and-set write batch of the PostgreSQL lease store (./postgres.ts) and the
 * read-back that explains a conflict.
 *
 * Each put carries the row the engine believes is stored (`expected`):
 * - undefined: a plain upsert (the {@link LeaseOp} contract, as SQLite);
 * - null (no row expected): `INSERT … ON CONFLICT DO NOTHING`, so any unique violation, of the
 *   key or of the active holder, leaves it without a row;
 * - a row: `UPDATE … WHERE` every field still equals the expected row.
 * A compare-and-set put that touched no row throws {@link CasMismatch}: the transaction rolls
 * back whole, and the store answers with {@link readConflict}'s rows — unless the put is a
 * `lapse` one (the sweeper's expiry): its UPDATE changed nothing, so it is just skipped, the
 * rest commits, and the write reports its key and the row stored now (an expiry another
 * server already did is expected, not a conflict for the allocations in the same batch).
 *
 * @module
 */
import type { SQL, TransactionSQL } from "bun";
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  leaseHolder,
  leaseKey,
  type WriteOutcome,
} from "./lease.ts";
import {
  COLUMNS,
  errorLine,
  leaseOfRow,
  type PgLeaseRow,
  reservationOfRow,
} from "./postgres_rows.ts";
import { CHANNEL, WRITE_LOCK } from "./postgres_schema.ts";

/** Thrown inside the write transaction to roll it back when a compare-and-set failed. */
export class CasMismatch extends Error {}

/** True when a put of `ops` is a compare-and-set (carries `expected`). */
export function hasExpected(ops: readonly LeaseOp[]): boolean {
  return ops.some((op) => op.op === "put" && op.expected !== undefined);
}

/**
 * Inside the write transaction `tx`: takes the write lock (the servers' writes in order), applies
 * `ops` in order, throws {@link CasMismatch} when a compare-and-set put found another row (a
 * `lapse` put is skipped instead: reported with the row stored now), and notifies the watchers
 * ({@link CHANNEL}) at commit. Resolves with each op's generation ({@link WriteOutcome}): the
 * `seq` a put gave its row; for a delete that removed a row, a `seq` taken for it from the same
 * sequence (the row is gone, so watchers never see it, but a TEP can order the UNBIND it causes
 * against any later grant of the key: docs/protocol.md "Generations").
 */
export async function writeBatch(
  tx: TransactionSQL,
  ops: readonly LeaseOp[],
): Promise<WriteOutcome> {
  await tx`SELECT pg_advisory_xact_lock(${WRITE_LOCK})`;
  const results: Promise<unknown[]>[] = [];
  for (const op of ops) {
    if (op.op === "delete") {
      results.push(tx`DELETE FROM dstm_leases WHERE key = ${op.key}
        RETURNING key, nextval('dstm_leases_seq') AS seq`);
    } else results.push(_put(tx, op));
  }
  const settled = await Promise.all(results);
  let lapsed: number[] | undefined;
  const generations: (number | undefined)[] = new Array(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as LeaseOp;
    const row = settled[i]?.[0] as { seq?: string | number } | undefined;
    generations[i] = row?.seq === undefined ? undefined : Number(row.seq);
    if (op.op !== "put") continue;
    if (op.expected !== undefined && settled[i]?.length !== 1) {
      if (op.lapse !== true) throw new CasMismatch();
      lapsed ??= [];
      lapsed.push(leaseKey(op.lease.ipv4, op.lease.portSet.psid));
    }
  }
  await tx`SELECT pg_notify(${CHANNEL}, '')`;
  if (lapsed === undefined) return { generations };
  // What the other server stored under them (read under the write lock: current at commit).
  const rows = (await tx.unsafe(
    `SELECT ${COLUMNS} FROM dstm_leases WHERE key = ANY($1::bigint[])`,
    [tx.array(lapsed, "INT8")],
  )) as PgLeaseRow[];
  const skipped = new Map<number, Lease | undefined>(lapsed.map((key) => [key, undefined]));
  for (const row of rows) skipped.set(Number(row.key), leaseOfRow(row));
  return { skipped, generations };
}

/** The statement of one put (see the module's description); each returns the key and `seq` it wrote. */
function _put(tx: TransactionSQL, op: Extract<LeaseOp, { op: "put" }>): Promise<unknown[]> {
  const l = op.lease;
  const p = l.portSet;
  const key = leaseKey(l.ipv4, p.psid);
  const e = op.expected;
  if (e === undefined) {
    return tx`INSERT INTO dstm_leases (${tx.unsafe(COLUMNS)}, seq)
      VALUES (${key}, ${l.ipv4}, ${p.offset}, ${p.psidLength}, ${p.psid}, ${l.host6},
        ${l.tep4}, ${l.tep6}, ${l.pool}, ${l.state}, ${l.grantedAt}, ${l.expiresAt},
        ${l.identity ?? null}, nextval('dstm_leases_seq'))
      ON CONFLICT (key) DO UPDATE SET ipv4 = EXCLUDED.ipv4,
        psid_offset = EXCLUDED.psid_offset, psid_length = EXCLUDED.psid_length,
        psid = EXCLUDED.psid, host6 = EXCLUDED.host6, tep4 = EXCLUDED.tep4,
        tep6 = EXCLUDED.tep6, pool = EXCLUDED.pool, state = EXCLUDED.state,
        granted_at = EXCLUDED.granted_at, expires_at = EXCLUDED.expires_at,
        identity = EXCLUDED.identity, seq = EXCLUDED.seq
      RETURNING key, seq`;
  }
  if (e === null) {
    return tx`INSERT INTO dstm_leases (${tx.unsafe(COLUMNS)}, seq)
      VALUES (${key}, ${l.ipv4}, ${p.offset}, ${p.psidLength}, ${p.psid}, ${l.host6},
        ${l.tep4}, ${l.tep6}, ${l.pool}, ${l.state}, ${l.grantedAt}, ${l.expiresAt},
        ${l.identity ?? null}, nextval('dstm_leases_seq'))
      ON CONFLICT DO NOTHING
      RETURNING key, seq`;
  }
  const q = e.portSet;
  return tx`UPDATE dstm_leases SET ipv4 = ${l.ipv4}, psid_offset = ${p.offset},
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
    RETURNING key, seq`;
}

/**
 * The conflict error of a failed compare-and-set batch `ops`, with the rows stored now (by key,
 * and the active rows of the holders it would activate), the keys with no row, and the
 * reservations of those keys. Never rejects: a failed read-back still gives a conflict.
 */
export async function readConflict(sql: SQL, ops: readonly LeaseOp[]): Promise<LeaseConflictError> {
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
    const rows = (await sql.unsafe(
      `SELECT ${COLUMNS} FROM dstm_leases
       WHERE key = ANY($1::bigint[]) OR (state = 'active' AND coalesce(identity, host6) = ANY($2::text[]))
       ORDER BY seq`,
      [sql.array([...keys], "INT8"), sql.array([...hosts], "TEXT")],
    )) as PgLeaseRow[];
    const leases = rows.map(leaseOfRow);
    const found = new Set(leases.map((l) => leaseKey(l.ipv4, l.portSet.psid)));
    // A reservation made at another server refuses the slot (dstm_reserved_check): say which.
    const reserved = (await sql.unsafe(
      `SELECT host6, ipv4, psid, created_at FROM dstm_reservations WHERE key = ANY($1::bigint[])`,
      [sql.array([...keys], "INT8")],
    )) as Record<string, string | number>[];
    return new LeaseConflictError(
      `another server changed ${keys.size === 1 ? "this lease" : "one of these leases"} first`,
      leases,
      [...keys].filter((k) => !found.has(k)),
      reserved.map(reservationOfRow),
    );
  } catch (error) {
    return new LeaseConflictError(
      `another server changed a lease first (and reading it back failed: ${errorLine(error)})`,
    );
  }
}
