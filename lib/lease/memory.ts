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
  leaseKey,
  sameLease,
} from "./lease.ts";

/** Rows in memory; nothing survives the process. */
export class MemoryLeaseStore implements LeaseStore {
  readonly kind = "memory";
  readonly #rows = new Map<number, Lease>();
  /** host6 → key of that host's active lease. */
  readonly #activeByHost = new Map<string, number>();
  #closed = false;

  /** Every row in key order. */
  loadAll(): Promise<Lease[]> {
    if (this.#closed) return Promise.reject(_closed());
    const keys = [...this.#rows.keys()].sort((a, b) => a - b);
    return Promise.resolve(keys.map((key) => this.#rows.get(key) as Lease));
  }

  /**
   * Applies `ops` in order; on the first violation undoes the ones already applied and
   * rejects, so a batch is all or nothing (as one SQLite transaction is).
   */
  write(ops: readonly LeaseOp[]): Promise<void> {
    if (this.#closed) return Promise.reject(_closed());
    const undo: [number, Lease | undefined][] = [];
    try {
      for (const op of ops) {
        const key = op.op === "put" ? leaseKey(op.lease.ipv4, op.lease.portSet.psid) : op.key;
        const next = op.op === "put" ? op.lease : undefined;
        if (op.op === "put" && op.expected !== undefined) {
          const stored = this.#rows.get(key);
          if (!sameLease(stored, op.expected)) {
            throw new LeaseConflictError(
              `key ${key} holds another row than the writer expected`,
              stored ? [stored] : [],
              stored ? [] : [key],
            );
          }
        }
        if (next?.state === "active") {
          const held = this.#activeByHost.get(next.host6);
          if (held !== undefined && held !== key && op.op === "put" && op.expected !== undefined) {
            // Compare-and-set: the writer did not know of the host's lease (another server's).
            const stored = this.#rows.get(key);
            throw new LeaseConflictError(
              `host ${next.host6} already holds an active lease (key ${held})`,
              [this.#rows.get(held) as Lease, ...(stored ? [stored] : [])],
              stored ? [] : [key],
            );
          }
          if (held !== undefined && held !== key) {
            throw new LeaseStoreError(
              `host ${next.host6} already holds an active lease (key ${held}); release it first`,
            );
          }
        }
        undo.push([key, this.#rows.get(key)]);
        this.#set(key, next);
      }
    } catch (error) {
      for (let i = undo.length - 1; i >= 0; i--) {
        const [key, previous] = undo[i] as [number, Lease | undefined];
        this.#set(key, previous);
      }
      return Promise.reject(error);
    }
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #set(key: number, next: Lease | undefined): void {
    const old = this.#rows.get(key);
    if (old?.state === "active" && this.#activeByHost.get(old.host6) === key) {
      this.#activeByHost.delete(old.host6);
    }
    if (next === undefined) {
      this.#rows.delete(key);
      return;
    }
    this.#rows.set(key, next);
    if (next.state === "active") this.#activeByHost.set(next.host6, key);
  }
}

function _closed(): LeaseStoreError {
  return new LeaseStoreError("lease store is closed");
}
