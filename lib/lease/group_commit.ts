/**
 * Group commit: many concurrent lease changes, one durable write.
 *
 * A durable write costs an fsync (milliseconds on most disks), a lease change a few
 * microseconds. The committer gathers every op submitted before the next flush into one
 * `store.write()`, so a burst of DISCOVERs costs one fsync instead of one each. A flush is
 * scheduled with `setImmediate` when the first op of a batch arrives; while a write is in
 * flight, new ops gather for the next one. Writes never overlap, so batches reach the store
 * in submission order and settle in that order.
 *
 * If a write rejects, every submitter of that batch gets the rejection; later batches are
 * written as usual.
 *
 * @module
 */
import type { LeaseOp, LeaseStore } from "./lease.ts";

interface _Batch {
  readonly ops: LeaseOp[];
  readonly promise: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Batches lease ops into as few `store.write()` calls as concurrency allows. */
export class GroupCommitter {
  readonly #store: LeaseStore;
  /** The batch gathering ops (not yet handed to the store). */
  #pending: _Batch | undefined;
  /** Settles (never rejects) when the write in flight has settled. */
  #inFlight: Promise<void> | undefined;
  #scheduled = false;
  readonly #stats = { batches: 0, ops: 0 };

  constructor(store: LeaseStore) {
    this.#store = store;
  }

  /** Writes handed to the store, and the ops they carried. */
  get stats(): { readonly batches: number; readonly ops: number } {
    return this.#stats;
  }

  /**
   * Queues `ops` for the next write. Resolves when the write that carries them has committed,
   * rejects with the store's error if it failed. All submitters of one batch share its fate.
   *
   * @example await committer.submit([{ op: "put", lease }]);
   */
  submit(ops: readonly LeaseOp[]): Promise<void> {
    let batch = this.#pending;
    if (batch === undefined) {
      batch = _newBatch();
      this.#pending = batch;
      this.#schedule();
    }
    for (const op of ops) batch.ops.push(op);
    return batch.promise;
  }

  /**
   * Writes what is queued now, without waiting for the scheduled flush, and resolves once
   * everything submitted before the call has settled (failures go to their submitters).
   */
  async flush(): Promise<void> {
    while (this.#pending !== undefined || this.#inFlight !== undefined) {
      if (this.#inFlight === undefined) this.#run();
      await this.#inFlight;
    }
  }

  /**
   * Rejects every submitter of the batch still gathering (not yet handed to the store) with
   * `error` and drops its ops. Returns how many ops were dropped. The allocation engine uses
   * it after a failed write: ops decided on top of the failed changes must not reach the store.
   */
  abortPending(error: unknown): number {
    const batch = this.#pending;
    if (batch === undefined) return 0;
    this.#pending = undefined;
    batch.reject(error);
    return batch.ops.length;
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight !== undefined) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#run();
    });
  }

  #run(): void {
    const batch = this.#pending;
    if (batch === undefined || this.#inFlight !== undefined) return;
    this.#pending = undefined;
    this.#stats.batches++;
    this.#stats.ops += batch.ops.length;
    let write: Promise<void>;
    try {
      write = this.#store.write(batch.ops);
    } catch (error) {
      write = Promise.reject(error);
    }
    this.#inFlight = write.then(
      () => this.#settle(batch, undefined, false),
      (error: unknown) => this.#settle(batch, error, true),
    );
  }

  #settle(batch: _Batch, error: unknown, failed: boolean): void {
    // Submitters' reactions are queued before the next write can start (that waits for
    // setImmediate), so each batch is fully settled before the next reaches the store.
    if (failed) batch.reject(error);
    else batch.resolve();
    this.#inFlight = undefined;
    if (this.#pending !== undefined) this.#schedule();
  }
}

function _newBatch(): _Batch {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  // A batch whose submitters all went away must not become an unhandled rejection.
  promise.catch(() => {});
  return { ops: [], promise, resolve, reject };
}
