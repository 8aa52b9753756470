/**
 * The SQLite store's one-active-lease-per-holder rule (the LeaseStore contract,
 * lib/lease/lease.ts; holder: `leaseHolder`, the 4o6 identity or else the IPv6 address),
 * checked in memory before a batch reaches SQLite, instead of by a partial UNIQUE index on
 * `coalesce(identity, host6)` (schema 2's, which a writable open drops: ./sqlite_schema.ts
 * dropHolderIndex; the version stays 2).
 *
 * Why: an index keyed by the holder's text is cheap only while hosts arrive in the order of
 * their addresses, as a load generator's do. Real hosts' addresses are random (SLAAC and
 * privacy interface identifiers, RFC 8981), so each new lease dirtied another index page: a
 * 4 KiB WAL frame per lease at COMMIT. With random addresses the server's main thread spent
 * about 30 µs per native allocation instead of about 17 (docs/benchmarks.md, session 15).
 *
 * How: a {@link HashKeyTable} of (32-bit keyed hash of the holder, key) for every active
 * row, 24–48 bytes a lease (the table between a quarter and a half full). A put of an active row for
 * holder H under key K conflicts when the table has an entry of H's hash under another key
 * whose row is active and H's — read from the batch itself when an earlier op of the batch
 * wrote that key, else from the database (one indexed read by primary key, needed only when
 * a hash matches under another key: a true conflict, a stale entry, or a hash collision). A
 * renewal (H under K again) and a new holder (no entry of its hash) read nothing.
 *
 * Batches are all or nothing: {@link SqliteHolderGuard.check} applies a batch's changes to
 * the table as it checks them and keeps how to undo them; the store calls
 * {@link SqliteHolderGuard.commit} once SQLite committed, {@link SqliteHolderGuard.rollback}
 * when the check or SQLite failed. An entry left behind by a change the table did not see (a
 * row that changed holder without a release written) is found stale at its first read and
 * taken out. The table is filled from the file at each start, and a file holding two active
 * rows for one holder is refused then ({@link SqliteHolderGuard.load}); the store's lock keeps
 * other dstm servers out, not `sqlite3`, whose writes while the server runs the table does not
 * see (test/rt20_duplicate_file.test.ts).
 *
 * @module
 */
import type { Database, Statement } from "bun:sqlite";
import { formatIPv4 } from "../net/addr.ts";
import { HashKeyTable, holderHash } from "./holder_index.ts";
import {
  keyIpv4,
  keyPsid,
  type Lease,
  type LeaseOp,
  LeaseStoreError,
  leaseHolder,
  leaseKey,
} from "./lease.ts";

/** Undo steps: an entry added, an entry taken out. */
const ADDED = 0;
const REMOVED = 1;
const NO_OPS: readonly LeaseOp[] = [];

/** See the module doc. */
export class SqliteHolderGuard {
  readonly #path: string;
  readonly #table = new HashKeyTable();
  /** The active holder of a key, as stored: `SELECT … WHERE key = ?` (the primary key). */
  readonly #activeHolder: Statement;
  /** The batch being checked, and the index of the op being checked. */
  #ops: readonly LeaseOp[] = NO_OPS;
  #at = 0;
  /** How to undo the batch's changes: (kind, hash, key) triples, kind {@link ADDED} or {@link REMOVED}. */
  readonly #undo: number[] = [];
  /** The key and holder the current probe looks for (no closure per probe). */
  #key = 0;
  #holder = "";
  #hash = 0;
  /** #holds stopped the probe at a stale entry (not at a conflict). */
  #stale = false;
  readonly #otherKeyOfHolder = (key: number) => key !== this.#key && this.#holds(key);
  readonly #sameKey = (key: number) => key === this.#key;
  /** For {@link load}: another key whose stored active row is #holder's. */
  readonly #otherKeySameHolder = (key: number) =>
    key !== this.#key && this.#stored(key) === this.#holder;
  /** Reads of a row the table needed (for the tests' and the docstring's claim). */
  reads = 0;

  /** `db`: the store's open connection (schema current). Nothing is loaded until {@link load}. */
  constructor(db: Database, path: string) {
    this.#path = path;
    this.#activeHolder = db.prepare(
      "SELECT coalesce(identity, host6) AS holder FROM leases WHERE key = ? AND state = 'active'",
    );
  }

  /** Active rows known to the table. */
  get size(): number {
    return this.#table.size;
  }

  /** True once the table holds the stored active rows ({@link load} or {@link ensureLoaded}). */
  loaded = false;

  /**
   * Fills the table from the stored rows, unless it is {@link loaded}: the store's load at
   * start (lib/lease/sqlite.ts `loadAll`) gives every row it read (only the active ones count).
   * Throws as {@link #loadOne}, leaving the table not loaded.
   */
  load(rows: readonly Lease[]): void {
    if (this.loaded) return;
    let active = 0;
    for (const row of rows) if (row.state === "active") active++;
    this.reset();
    this.#table.reserve(active);
    for (const row of rows) {
      if (row.state !== "active") continue;
      this.#loadOne(leaseKey(row.ipv4, row.portSet.psid), leaseHolder(row));
    }
    this.loaded = true;
  }

  /**
   * Adds one stored active row. Throws a LeaseStoreError when `holder` already has an active
   * row under another key. No index refuses that in the file any more
   * (./sqlite_schema.ts dropHolderIndex), so `sqlite3` can write it while the server is
   * stopped; loaded as it is, every batch with a write of that holder would be refused, and
   * with it the other hosts' changes sharing the batch (lib/lease/group_commit.ts). An entry
   * of the same hash under another key costs one read of that key's row (a hash collision,
   * or the duplicate).
   */
  #loadOne(key: number, holder: string): void {
    const hash = holderHash(holder);
    this.#key = key;
    this.#holder = holder;
    const slot = this.#table.find(hash, this.#otherKeySameHolder);
    if (slot >= 0) {
      const other = this.#table.keyAt(slot);
      throw new LeaseStoreError(
        `lease database ${this.#path}: ${holder} holds two active leases (${_slotText(other)} and ${_slotText(key)}); expire one with no server running: sqlite3 ${this.#path} "UPDATE leases SET state = 'expired' WHERE key = ${other}"`,
      );
    }
    this.#table.add(hash, key);
  }

  /** Reads every stored active row into the table, unless a load did already. */
  ensureLoaded(db: Database): void {
    if (this.loaded) return;
    this.reset();
    const rows = db
      .query("SELECT key, coalesce(identity, host6) FROM leases WHERE state = 'active'")
      .values() as [number, string][];
    this.#table.reserve(rows.length);
    for (const [key, holder] of rows) this.#loadOne(Number(key), String(holder));
    this.loaded = true;
  }

  /**
   * Checks `ops` in order and records their changes; throws a LeaseStoreError (nothing of
   * the batch recorded) when a put would give a holder a second active row. Then the store
   * writes the batch and calls {@link commit} or {@link rollback}.
   */
  check(ops: readonly LeaseOp[]): void {
    this.#ops = ops;
    try {
      for (let i = 0; i < ops.length; i++) {
        this.#at = i;
        const op = ops[i] as LeaseOp;
        if (op.op === "delete") {
          // Rare (`lease del`): the row's holder is read, its entry taken out.
          const before = this.#activeHolderNow(op.key);
          if (typeof before === "string") this.#remove(holderHash(before), op.key);
          continue;
        }
        const lease = op.lease;
        const key = leaseKey(lease.ipv4, lease.portSet.psid);
        const holder = leaseHolder(lease);
        // The writer's hash of the holder when it gave one (LeaseOp.holderHash: the same keyed
        // hash, computed once per request instead of once in the engine and once here).
        const hash = op.holderHash ?? holderHash(holder);
        // Released or expired: the holder's entry under this key goes. (An entry of another
        // holder this key had is left stale: #holds finds it at its next read.)
        if (lease.state === "active") this.#put(key, holder, hash);
        else this.#remove(hash, key);
      }
    } catch (error) {
      this.rollback();
      throw error;
    } finally {
      this.#ops = NO_OPS;
    }
  }

  /** Forgets every row (a load starts over). */
  reset(): void {
    this.#table.clear();
    this.loaded = false;
  }

  /** Finalizes the prepared statement (the store closes the database next). */
  finalize(): void {
    this.#activeHolder.finalize();
  }

  /** The batch was committed: its changes stay. */
  commit(): void {
    this.#undo.length = 0;
  }

  /** The batch was not written: its changes are undone. */
  rollback(): void {
    const undo = this.#undo;
    for (let i = undo.length - 3; i >= 0; i -= 3) {
      const hash = undo[i + 1] as number;
      const key = undo[i + 2] as number;
      if (undo[i] === ADDED) {
        this.#key = key;
        const slot = this.#table.find(hash, this.#sameKey);
        if (slot >= 0) this.#table.removeAt(slot);
      } else {
        this.#table.add(hash, key);
      }
    }
    undo.length = 0;
  }

  /**
   * Records `holder` (of hash `hash`, {@link holderHash}) active under `key`; throws when it
   * is active under another key.
   */
  #put(key: number, holder: string, hash: number): void {
    this.#key = key;
    this.#holder = holder;
    this.#hash = hash;
    for (let from = -1; ; ) {
      this.#stale = false;
      const slot = this.#table.find(hash, this.#otherKeyOfHolder, from);
      if (slot < 0) break;
      if (!this.#stale) {
        throw new LeaseStoreError(
          `lease database ${this.#path}: a host would hold two active leases (${holder} holds key ${this.#table.keyAt(slot)}; release it first)`,
        );
      }
      // An entry of this hash whose row is no longer its holder's: out, and look on from
      // its slot (the backward shift may have moved a later entry into it).
      this.#undo.push(REMOVED, hash, this.#table.keyAt(slot));
      this.#table.removeAt(slot);
      from = slot;
    }
    this.#key = key;
    if (this.#table.find(hash, this.#sameKey) < 0) {
      this.#table.add(hash, key);
      this.#undo.push(ADDED, hash, key);
    }
  }

  /** Takes out the entry (`hash`, `key`), if there is one. */
  #remove(hash: number, key: number): void {
    this.#key = key;
    const slot = this.#table.find(hash, this.#sameKey);
    if (slot < 0) return;
    this.#table.removeAt(slot);
    this.#undo.push(REMOVED, hash, key);
  }

  /**
   * For the probe of #put (an entry of #holder's hash under another key): true when that
   * key's row is active and #holder's (a conflict). Its row active for another holder of the
   * same hash: that holder's entry, kept. Else the entry is stale (the row not active, or
   * active for a holder of another hash: it changed hands without the table seeing the
   * holder it had); #stale says so, and the probe stops there so #put takes it out.
   */
  #holds(key: number): boolean {
    const holder = this.#activeHolderNow(key);
    if (holder === this.#holder) return true;
    if (typeof holder === "string" && holderHash(holder) === this.#hash) return false;
    this.#stale = true;
    return true;
  }

  /**
   * The active holder of `key` as the batch has left it so far: its last op on the key
   * before the one being checked (a scan: only when a hash matches under another key, or a
   * delete), else as stored. Undefined: none.
   */
  #activeHolderNow(key: number): string | undefined {
    const ops = this.#ops;
    for (let i = this.#at - 1; i >= 0; i--) {
      const op = ops[i] as LeaseOp;
      if (op.op === "delete") {
        if (op.key === key) return undefined;
        continue;
      }
      const l = op.lease;
      if (leaseKey(l.ipv4, l.portSet.psid) !== key) continue;
      return l.state === "active" ? leaseHolder(l) : undefined;
    }
    return this.#stored(key);
  }

  /** The stored active holder of `key`, or undefined (no row, or not active). */
  #stored(key: number): string | undefined {
    this.reads++;
    const row = this.#activeHolder.get(key) as { holder: string } | null;
    return row?.holder;
  }
}

/** A lease key as text: `198.51.100.1` (whole address) or `198.51.100.1 psid 3`. */
function _slotText(key: number): string {
  const ipv4 = keyIpv4(key);
  const psid = keyPsid(key);
  return psid === 0 ? formatIPv4(ipv4) : `${formatIPv4(ipv4)} psid ${psid}`;
}
