/**
 * The SQLite lease table's schema, its version (`PRAGMA user_version`) and the migrations
 * that bring a file made by an older dstm up to it (lib/lease/sqlite.ts).
 *
 * - 1: the lease table; one active lease per `host6` (a partial UNIQUE index).
 * - 2: column `identity` (NULL, or the 4o6 client's identity, lib/lease/lease.ts); one active
 *   lease per holder (`coalesce(identity, host6)`), so two DHCPv4 clients behind one IPv6
 *   address hold a lease each and one client never holds two.
 *
 * The holder rule was a partial UNIQUE index on `coalesce(identity, host6)` until dstm
 * checked it in memory before each batch (./sqlite_holders.ts: the index cost a WAL page per
 * lease once hosts' addresses are random). A writable open drops that index
 * ({@link dropHolderIndex}); the version stays 2, since nothing a reader or an older dstm
 * relies on changed: an older dstm opening the file again still keeps the rule in its engine.
 *
 * A migration runs inside the open's write transaction: it applies whole or not at all.
 *
 * @module
 */
import type { Database } from "bun:sqlite";

/** Version of the schema below, kept in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 2;

/**
 * The active-lease-per-holder index that dstm before session 15 kept (schema 2), and that a
 * writable open now drops ({@link dropHolderIndex}); tests build such files from it.
 */
export const HOLDER_INDEX =
  "CREATE UNIQUE INDEX leases_active_holder ON leases (coalesce(identity, host6)) WHERE state = 'active'";

/**
 * Schema 1, as dstm 1 created it (kept as it was: a new database is created at schema 1 and
 * migrated, so the migration runs on every new file too, and the tests build old files from it).
 */
export const SCHEMA_1 = `
CREATE TABLE leases (
  key INTEGER PRIMARY KEY,
  ipv4 INTEGER NOT NULL,
  psid_offset INTEGER NOT NULL,
  psid_length INTEGER NOT NULL,
  psid INTEGER NOT NULL,
  host6 TEXT NOT NULL,
  tep4 INTEGER NOT NULL,
  tep6 TEXT NOT NULL,
  pool TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active', 'released', 'expired')),
  granted_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX leases_active_host ON leases (host6) WHERE state = 'active';
`;

/** Creates the tables of a new database at {@link SCHEMA_VERSION}, inside the caller's transaction. */
export function create(db: Database): void {
  db.run(SCHEMA_1);
  migrate(db, 1);
}

/** Every column, in the order `_toLease` reads them. */
export const COLUMNS =
  "key, ipv4, psid_offset, psid_length, psid, host6, tep4, tep6, pool, state, granted_at, expires_at, identity";

/** What a read-only open of a schema-1 file selects (no identity column there: NULL). */
export const COLUMNS_V1 =
  "key, ipv4, psid_offset, psid_length, psid, host6, tep4, tep6, pool, state, granted_at, expires_at, NULL";

/** The columns to select from a database at `version`. */
export function columnsOf(version: number): string {
  return version >= 2 ? COLUMNS : COLUMNS_V1;
}

/**
 * Brings a database at `version` (1 ≤ version < SCHEMA_VERSION) up to SCHEMA_VERSION, inside
 * the caller's transaction. Every row keeps its data; old rows get identity NULL (their host
 * is the holder, as before).
 */
export function migrate(db: Database, version: number): void {
  if (version < 2) {
    db.run("ALTER TABLE leases ADD COLUMN identity TEXT");
    db.run("DROP INDEX IF EXISTS leases_active_host");
  }
  db.run(`PRAGMA user_version = ${SCHEMA_VERSION}`);
}

/**
 * Drops the holder index of an older dstm's file, inside the caller's write transaction: the
 * store checks the rule itself (./sqlite_holders.ts). Once, at the first writable open.
 */
export function dropHolderIndex(db: Database): void {
  db.run("DROP INDEX IF EXISTS leases_active_holder");
}
