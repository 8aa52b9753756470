/**
 * Lease databases as dstm made them before schema 2 (the identity column): the exact schema-1
 * statements of lib/lease/sqlite.ts and lib/lease/postgres.ts, for the migration tests of
 * test/lease_conformance.test.ts.
 */
import { Database } from "bun:sqlite";
import { SQL } from "bun";
import { type Lease, leaseKey } from "../../lib/lease/lease.ts";

const SQLITE_SCHEMA_1 = `
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

const PG_SCHEMA_1 = [
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
  `INSERT INTO dstm_meta (version) VALUES (1)`,
];

const values = (l: Lease) => [
  leaseKey(l.ipv4, l.portSet.psid),
  l.ipv4,
  l.portSet.offset,
  l.portSet.psidLength,
  l.portSet.psid,
  l.host6,
  l.tep4,
  l.tep6,
  l.pool,
  l.state,
  l.grantedAt,
  l.expiresAt,
];

/** Creates the SQLite file `path` at schema 1 (user_version 1) holding `rows`. */
export function sqliteSchema1(path: string, rows: readonly Lease[]): void {
  const db = new Database(path, { create: true });
  db.run(SQLITE_SCHEMA_1);
  db.run("PRAGMA user_version = 1");
  const insert = db.prepare("INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (const row of rows) insert.run(...values(row));
  insert.finalize();
  db.close();
}

/** Creates the dstm tables at schema 1 in the (empty) PostgreSQL database `url`, holding `rows`. */
export async function postgresSchema1(url: string, rows: readonly Lease[]): Promise<void> {
  const sql = new SQL(url, { max: 1 });
  try {
    for (const statement of PG_SCHEMA_1) await sql.unsafe(statement);
    for (const row of rows) {
      await sql.unsafe(
        "INSERT INTO dstm_leases VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, nextval('dstm_leases_seq'))",
        values(row),
      );
    }
  } finally {
    await sql.close();
  }
}
