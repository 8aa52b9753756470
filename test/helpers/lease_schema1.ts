/**
 * Lease databases as dstm made them before schema 2 (the identity column), from the schema-1
 * statements the stores keep (lib/lease/sqlite_schema.ts, lib/lease/postgres.ts), for the
 * migration tests of test/lease_conformance.test.ts.
 */
import { Database } from "bun:sqlite";
import { SQL } from "bun";
import { type Lease, leaseKey } from "../../lib/lease/lease.ts";
import { PG_SCHEMA_1 } from "../../lib/lease/postgres.ts";
import { SCHEMA_1 as SQLITE_SCHEMA_1 } from "../../lib/lease/sqlite_schema.ts";

/** A row's values in schema 1's column order. */
const values = ({ portSet: p, ...l }: Lease) => [
  ...[leaseKey(l.ipv4, p.psid), l.ipv4, p.offset, p.psidLength, p.psid, l.host6, l.tep4],
  ...[l.tep6, l.pool, l.state, l.grantedAt, l.expiresAt],
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
    await sql.unsafe("INSERT INTO dstm_meta (version) VALUES (1)");
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
