/**
 * The PostgreSQL lease database's schema, its version (kept in `dstm_meta`) and the
 * migration that brings a database made by an older dstm up to it (./postgres.ts).
 *
 * - 1: the lease table (key = ipv4 · 65536 + PSID), the change sequence `dstm_leases_seq`,
 *   the reservations and the trigger that refuses an active lease on a slot reserved for
 *   another host; one active lease per `host6` (a partial UNIQUE index).
 * - 2: column `identity` (NULL, or the 4o6 client's identity, lib/lease/lease.ts); one active
 *   lease per holder: UNIQUE on `coalesce(identity, host6)` for active rows.
 *
 * Every statement is idempotent (`IF NOT EXISTS`, `OR REPLACE`): {@link createSchema} runs
 * them all at every open, inside the open's transaction, under the write lock.
 *
 * @module
 */
import type { TransactionSQL } from "bun";
import { LeaseStoreError } from "./lease.ts";

/** Version of the schema below, kept in dstm_meta. */
export const PG_SCHEMA_VERSION = 2;

/** pg_advisory_xact_lock key of dstm's writes ("DSTM" in ASCII). */
export const WRITE_LOCK = 0x4453544d;
/** The NOTIFY channel of every committed write (./postgres.ts follows it). */
export const CHANNEL = "dstm_leases";

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

/**
 * Inside the open's transaction `tx`: takes the write lock, creates what is missing, migrates
 * an older schema and records {@link PG_SCHEMA_VERSION}. Throws a {@link LeaseStoreError}
 * naming `where` (the URL without its password) when the database belongs to a newer dstm.
 */
export async function createSchema(tx: TransactionSQL, where: string): Promise<void> {
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
}
