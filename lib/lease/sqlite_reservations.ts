/**
 * Reservations and paged reads in the SQLite lease database (./sqlite.ts): the
 * `reservations` table (one row per host, a UNIQUE slot), created beside `leases` in every
 * database a server opens. Adding a table keeps schema version 1: an older dstm reading the
 * file ignores it.
 *
 * @module
 */
import type { Database } from "bun:sqlite";
import {
  LeaseConflictError,
  LeaseStoreError,
  leaseKey,
  type Reservation,
  type ReservationOp,
} from "./lease.ts";

/**
 * Creates the reservations table when missing (inside the caller's write transaction). The
 * triggers that refuse an active lease on a slot reserved for another host are made by
 * {@link guardReservations}, only while a reservation exists.
 */
export const RESERVATIONS_SCHEMA = `
CREATE TABLE IF NOT EXISTS reservations (
  host6 TEXT PRIMARY KEY,
  key INTEGER NOT NULL UNIQUE,
  ipv4 INTEGER NOT NULL,
  psid INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
`;

/** The triggers refusing an active lease on a slot reserved for another host. */
const RESERVATION_TRIGGERS = `
CREATE TRIGGER IF NOT EXISTS leases_reserved_insert BEFORE INSERT ON leases
WHEN NEW.state = 'active' AND EXISTS
  (SELECT 1 FROM reservations r WHERE r.key = NEW.key AND r.host6 <> NEW.host6)
BEGIN SELECT RAISE(ABORT, 'dstm: the slot is reserved for another host'); END;
CREATE TRIGGER IF NOT EXISTS leases_reserved_update BEFORE UPDATE ON leases
WHEN NEW.state = 'active' AND EXISTS
  (SELECT 1 FROM reservations r WHERE r.key = NEW.key AND r.host6 <> NEW.host6)
BEGIN SELECT RAISE(ABORT, 'dstm: the slot is reserved for another host'); END;
`;

const DROP_RESERVATION_TRIGGERS = `
DROP TRIGGER IF EXISTS leases_reserved_insert;
DROP TRIGGER IF EXISTS leases_reserved_update;
`;

/**
 * Makes the reservation triggers exist exactly while the reservations table has a row; call
 * it inside the write transaction that changed the table (and at open). A trigger runs as a
 * sub-program for every row written, its WHEN clause included: 1–2 µs of the 5–6 µs a
 * lease upsert costs (issue 12 item 5), paid by every allocation of a server with no
 * reservation at all. The guarantee stands: no transaction can commit a reservation without
 * the triggers, so from the commit that adds the first reservation on, every lease write is
 * checked by the database, as before.
 */
export function guardReservations(db: Database): void {
  const any = db.query("SELECT 1 FROM reservations LIMIT 1").get() !== null;
  db.run(any ? RESERVATION_TRIGGERS : DROP_RESERVATION_TRIGGERS);
}

/** Every reservation in key order; none when the table does not exist (an older database). */
export function loadReservations(db: Database): Reservation[] {
  const exists = db
    .query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reservations'")
    .get();
  if (!exists) return [];
  const rows = db
    .query("SELECT host6, ipv4, psid, created_at FROM reservations ORDER BY key")
    .values();
  return rows.map(([host6, ipv4, psid, createdAt]) => ({
    host6: String(host6),
    ipv4: Number(ipv4),
    psid: Number(psid),
    createdAt: Number(createdAt),
  }));
}

/** Applies one change in its own (fsynced) transaction; a slot reserved for another host throws. */
export function writeReservation(db: Database, path: string, op: ReservationOp): void {
  if (op.op === "delete") {
    db.transaction(() => {
      db.query("DELETE FROM reservations WHERE host6 = ?").run(op.host6);
      guardReservations(db);
    })();
    return;
  }
  const r = op.reservation;
  const key = leaseKey(r.ipv4, r.psid);
  try {
    db.transaction(() => {
      const holder = db
        .query("SELECT host6 FROM leases WHERE key = ? AND state = 'active'")
        .get(key) as { host6: string } | null;
      if (holder && holder.host6 !== r.host6)
        throw new LeaseConflictError(`slot ${key} is leased to ${holder.host6}`);
      db.query("DELETE FROM reservations WHERE host6 = ?").run(r.host6);
      db.query(
        "INSERT INTO reservations (host6, key, ipv4, psid, created_at) VALUES (?, ?, ?, ?, ?)",
      ).run(r.host6, key, r.ipv4, r.psid, r.createdAt);
      db.run(RESERVATION_TRIGGERS);
    })();
  } catch (error) {
    const code = String((error as { code?: unknown } | null)?.code ?? "");
    if (code.startsWith("SQLITE_CONSTRAINT")) {
      throw new LeaseStoreError(`lease database ${path}: slot ${key} is reserved for another host`);
    }
    throw error;
  }
}
