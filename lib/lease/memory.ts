/**
 * A lease store that keeps its rows in a Map: for `--db memory`, tests, and as the reference
 * the SQLite store is checked against (test/lease_conformance.test.ts runs both).
 *
 * It enforces the whole {@link LeaseStore} contract, including the one-active-lease-per-host
 * rule, atomic batches and the `expected` row of a put (compare-and-set, as the shared
 * PostgreSQL store does), so code that passes against it does not break on SQLite or
 * PostgreSQL.
 *
 * @module
 */
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  type LeaseStore,
  LeaseStoreError,
  leaseHolder,
  leaseKey,
  type Reservation,
  type ReservationOp,
  sameLease,
  type WriteOutcome,
} from "./lease.ts";

/** Rows in memory; nothing survives the process. */
export class MemoryLeaseStore implements LeaseStore {
  readonly kind = "memory";
  /**
   * With `{ shared: true }`, several engines may use this one store at once, as several
   * servers share one PostgreSQL database: the tests' model of active-active.
   */
  readonly shared: boolean;
  readonly #watchers = new Set<(rows: Lease[]) => void>();
  readonly #rows = new Map<number, Lease>();
  /** holder (leaseHolder: identity, else host6) → key of its active lease. */
  readonly #activeByHost = new Map<string, number>();
  /** host6 → reservation. */
  readonly #reservations = new Map<string, Reservation>();
  readonly #reservationWatchers = new Set<(all: Reservation[]) => void>();
  /** Shared: the last generation handed out (one per op that wrote, as PostgreSQL's `seq`). */
  #seq = 0;
  #closed = false;

  constructor(opts: { shared?: boolean } = {}) {
    this.shared = opts.shared === true;
  }

  /** Shared stores: tells `onRows` (one turn of the event loop later) the rows each write put. */
  watch(onRows: (rows: Lease[]) => void): () => Promise<void> {
    this.#watchers.add(onRows);
    return () => {
      this.#watchers.delete(onRows);
      return Promise.resolve();
    };
  }

  /** Every row in key order. */
  loadAll(): Promise<Lease[]> {
    if (this.#closed) return Promise.reject(_closed());
    const keys = [...this.#rows.keys()].sort((a, b) => a - b);
    return Promise.resolve(keys.map((key) => this.#rows.get(key) as Lease));
  }

  /**
   * Applies `ops` in order; on the first violation undoes the ones already applied and
   * rejects, so a batch is all or nothing (as one SQLite transaction is) — but a `lapse` put
   * whose expected row is not stored is skipped and reported, as PostgreSQL does. A shared
   * store also numbers each op that wrote ({@link WriteOutcome.generations}: 1, 2, … for this
   * store's life, as PostgreSQL's `seq`); an unshared one (one server) numbers nothing.
   */
  write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    if (this.#closed) return Promise.reject(_closed());
    const undo: [number, Lease | undefined][] = [];
    let conflict: string | undefined;
    let skipped: Map<number, Lease | undefined> | undefined;
    const applied: Lease[] = [];
    const generations: (number | undefined)[] | undefined = this.shared
      ? new Array(ops.length)
      : undefined;
    const seq = this.#seq;
    try {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i] as LeaseOp;
        const key = op.op === "put" ? leaseKey(op.lease.ipv4, op.lease.portSet.psid) : op.key;
        const next = op.op === "put" ? op.lease : undefined;
        if (op.op === "put" && op.expected !== undefined) {
          const stored = this.#rows.get(key);
          if (!sameLease(stored, op.expected)) {
            if (op.lapse === true) {
              skipped ??= new Map();
              skipped.set(key, stored);
              continue;
            }
            conflict = `key ${key} holds another row than the writer expected`;
            break;
          }
        }
        if (next?.state === "active") {
          const reserved = this.#reservedFor(key);
          if (reserved !== undefined && reserved !== next.host6) {
            const message = `key ${key} is reserved for ${reserved}`;
            if (op.op === "put" && op.expected !== undefined) {
              conflict = message;
              break;
            }
            throw new LeaseStoreError(message);
          }
          const held = this.#activeByHost.get(leaseHolder(next));
          if (held !== undefined && held !== key && op.op === "put" && op.expected !== undefined) {
            // Compare-and-set: the writer did not know of the host's lease (another server's).
            conflict = `host ${leaseHolder(next)} already holds an active lease (key ${held})`;
            break;
          }
          if (held !== undefined && held !== key) {
            throw new LeaseStoreError(
              `host ${leaseHolder(next)} already holds an active lease (key ${held}); release it first`,
            );
          }
        }
        const before = this.#rows.get(key);
        undo.push([key, before]);
        this.#set(key, next);
        if (next) applied.push(next);
        if (generations && (next || before)) generations[i] = ++this.#seq;
      }
      if (conflict) throw new LeaseConflictError(conflict);
    } catch (error) {
      for (let i = undo.length - 1; i >= 0; i--) {
        const [key, previous] = undo[i] as [number, Lease | undefined];
        this.#set(key, previous);
      }
      this.#seq = seq;
      return Promise.reject(conflict ? this.#conflict(conflict, ops) : error);
    }
    if (this.#watchers.size > 0) {
      setImmediate(() => {
        for (const watcher of this.#watchers) watcher(applied);
      });
    }
    if (generations) return Promise.resolve(skipped ? { skipped, generations } : { generations });
    return Promise.resolve(skipped && { skipped });
  }

  /**
   * As PostgreSQL reports it: the rows stored now under the batch's keys and for its hosts,
   * and the reservations of its keys.
   */
  #conflict(message: string, ops: readonly LeaseOp[]): LeaseConflictError {
    const rows: Lease[] = [];
    const missing: number[] = [];
    const reservations: Reservation[] = [];
    for (const op of ops) {
      const key = op.op === "put" ? leaseKey(op.lease.ipv4, op.lease.portSet.psid) : op.key;
      const reservedFor = this.#reservedFor(key);
      const reservation =
        reservedFor === undefined ? undefined : this.#reservations.get(reservedFor);
      if (reservation) reservations.push(reservation);
      const row = this.#rows.get(key);
      if (row) rows.push(row);
      else missing.push(key);
      const held = op.op === "put" ? this.#activeByHost.get(leaseHolder(op.lease)) : undefined;
      if (held !== undefined && held !== key) rows.push(this.#rows.get(held) as Lease);
    }
    return new LeaseConflictError(message, rows, missing, reservations);
  }

  /** Every reservation in key order. */
  loadReservations(): Promise<Reservation[]> {
    if (this.#closed) return Promise.reject(_closed());
    const all = [...this.#reservations.values()];
    all.sort((a, b) => leaseKey(a.ipv4, a.psid) - leaseKey(b.ipv4, b.psid));
    return Promise.resolve(all);
  }

  /** Adds, replaces or removes a host's reservation; one slot, one host. */
  writeReservation(op: ReservationOp): Promise<void> {
    if (this.#closed) return Promise.reject(_closed());
    if (op.op === "delete") {
      if (this.#reservations.delete(op.host6)) this.#tellReservations();
      return Promise.resolve();
    }
    const r = op.reservation;
    const row = this.#rows.get(leaseKey(r.ipv4, r.psid));
    if (row?.state === "active" && row.host6 !== r.host6) {
      return Promise.reject(
        new LeaseConflictError(`slot ${leaseKey(r.ipv4, r.psid)} is leased to ${row.host6}`, [row]),
      );
    }
    for (const other of this.#reservations.values()) {
      if (other.host6 !== r.host6 && other.ipv4 === r.ipv4 && other.psid === r.psid) {
        return Promise.reject(
          new LeaseStoreError(`slot ${leaseKey(r.ipv4, r.psid)} is reserved for ${other.host6}`),
        );
      }
    }
    this.#reservations.set(r.host6, r);
    this.#tellReservations();
    return Promise.resolve();
  }

  /** Shared stores: tells `onChange` (one turn of the event loop later) every reservation after each change. */
  watchReservations(onChange: (all: Reservation[]) => void): () => Promise<void> {
    this.#reservationWatchers.add(onChange);
    return () => {
      this.#reservationWatchers.delete(onChange);
      return Promise.resolve();
    };
  }

  #tellReservations(): void {
    if (this.#reservationWatchers.size === 0) return;
    setImmediate(() => {
      void this.loadReservations().then(
        (all) => {
          for (const watcher of this.#reservationWatchers) watcher(all);
        },
        () => {},
      );
    });
  }

  /** The host a key is reserved for, if any. */
  #reservedFor(key: number): string | undefined {
    if (this.#reservations.size === 0) return undefined;
    for (const r of this.#reservations.values())
      if (leaseKey(r.ipv4, r.psid) === key) return r.host6;
    return undefined;
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #set(key: number, next: Lease | undefined): void {
    const old = this.#rows.get(key);
    if (old?.state === "active" && this.#activeByHost.get(leaseHolder(old)) === key) {
      this.#activeByHost.delete(leaseHolder(old));
    }
    if (next === undefined) {
      this.#rows.delete(key);
      return;
    }
    this.#rows.set(key, next);
    if (next.state === "active") this.#activeByHost.set(leaseHolder(next), key);
  }
}

function _closed(): LeaseStoreError {
  return new LeaseStoreError("lease store is closed");
}
