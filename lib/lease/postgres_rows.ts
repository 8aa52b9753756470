/**
 * Rows of the PostgreSQL lease database (./postgres.ts, schema in ./postgres_schema.ts) and
 * the leases and reservations they hold; the error texts the store reports.
 *
 * bigint columns come back as strings (or numbers): every field goes through `Number`.
 *
 * @module
 */
import { type Lease, type LeaseState, leaseOf, type Reservation, WHOLE_ADDRESS } from "./lease.ts";

/** The lease columns of `dstm_leases`, in the order of every INSERT. */
export const COLUMNS =
  "key, ipv4, psid_offset, psid_length, psid, host6, tep4, tep6, pool, state, granted_at, expires_at, identity";

/** One `dstm_leases` row as the client returns it ({@link COLUMNS}, and `seq` when selected). */
export interface PgLeaseRow {
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

/** The lease of `row` (one argument: usable as `rows.map(leaseOfRow)`). */
export function leaseOfRow(row: PgLeaseRow): Lease {
  return leaseOfRowInterned(row, _same);
}

function _same(text: string): string {
  return text;
}

/** The lease of `row`, its TEP, pool and state strings through `intern` (./lease.ts stringInterner). */
export function leaseOfRowInterned(row: PgLeaseRow, intern: (text: string) => string): Lease {
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

/** The reservation of a `dstm_reservations` row (`host6, ipv4, psid, created_at`). */
export function reservationOfRow(r: Record<string, string | number>): Reservation {
  return {
    host6: String(r.host6),
    ipv4: Number(r.ipv4),
    psid: Number(r.psid),
    createdAt: Number(r.created_at),
  };
}

/** The SQLSTATE of a PostgreSQL error (`23505`: unique violation), else undefined. */
export function sqlState(error: unknown): string | undefined {
  return (error as { errno?: unknown })?.errno as string | undefined;
}

/** The first line of an error's message. */
export function errorLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}

/** The URL with any password replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}
