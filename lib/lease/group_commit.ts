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
 * written as usual. A store that numbers its writes (a shared store, `LeaseStore.shared`)
 * gives each op its generation ({@link WriteOutcome}); each submitter gets those of its own
 * ops, in the order it submitted them.
 *
 * A store whose transaction commits on the calling thread (`LeaseStore.commit`, SQLite) is
 * pipelined: once a batch is committed, the next may be committed while the first is made
 * durable (its fsync), so fsyncs follow each other without a transaction between them.
 * At most {@link UNSETTLED_MAX} committed batches wait for durability at once (each fsync
 * then covers about one batch: more would add transactions, not throughput). Batches still
 * commit, and settle, in submission order; every submitter is resolved only once its batch
 * is durable. A batch whose commit throws is rejected only after every batch committed
 * before it has settled: their changes are durable (or failed) before the engine undoes the
 * changes that are not (lib/alloc/lease_writer.ts).
 *
 * @module
 */
import type { LeaseOp, LeaseStore, WriteOutcome } from "./lease.ts";

interface _Batch {
  readonly ops: LeaseOp[];
  readonly promise: Promise<WriteOutcome | undefined>;
  readonly resolve: (outcome: WriteOutcome | undefined) => void;
  readonly reject: (error: unknown) => void;
}

/** Committed batches that may wait for durability at once (a pipelined store). */
export const UNSETTLED_MAX = 2;

/** Batches lease ops into as few `store.write()` calls as concurrency allows. */
export class GroupCommitter {
  readonly #store: LeaseStore;
  /** The store is shared: its outcome's generations are cut into each submitter's own. */
  readonly #numbered: boolean;
  /**
   * Shared store: for each write handed to the store whose submitters may not have taken its
   * result in yet, the store's `watchedThrough()` when it was handed over (undefined: the
   * watch had not read yet). See {@link watchedThrough}.
   */
  readonly #floors = new Set<{ readonly at: number | undefined }>();
  /** The batch gathering ops (not yet handed to the store). */
  #pending: _Batch | undefined;
  /** Settles (never rejects) when the write in flight has settled. */
  #inFlight: Promise<void> | undefined;
  #scheduled = false;
  readonly #stats = { batches: 0, ops: 0 };
  /** Pipelined store: committed batches not yet settled. */
  #unsettled = 0;
  /** Pipelined store: settles (never rejects) once the last committed batch has settled. */
  #lastSettled: Promise<void> = Promise.resolve();

  constructor(store: LeaseStore) {
    this.#store = store;
    this.#numbered = store.shared === true;
  }

  /** Writes handed to the store, and the ops they carried. */
  get stats(): { readonly batches: number; readonly ops: number } {
    return this.#stats;
  }

  /**
   * Queues `ops` for the next write. Resolves when the write that carries them has committed,
   * with the store's {@link WriteOutcome}: `skipped` of the whole batch (the `lapse` puts it
   * skipped, of every submitter: each looks for its own keys), and `generations` of this
   * call's `ops` only (`generations[i]`: of `ops[i]`). Rejects with the store's error if it
   * failed. All submitters of one batch share its fate.
   *
   * @example await committer.submit([{ op: "put", lease }]);
   */
  submit(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    let batch = this.#pending;
    if (batch === undefined) {
      batch = _newBatch();
      this.#pending = batch;
      this.#schedule();
    }
    const first = batch.ops.length;
    for (const op of ops) batch.ops.push(op);
    if (!this.#numbered) return batch.promise;
    return batch.promise.then((outcome) => _own(outcome, first, ops.length));
  }

  /**
   * Shared store: the point up to which every committed change (by any writer) is in the
   * caller's view — the store's `watchedThrough()` (the rows its watch gave), but never at or
   * above a write of this committer whose submitters have not taken its result in yet: at
   * most the watch's point when that write was handed to the store (each `seq` it takes is
   * above that point). The watch reads the table on its own connection and may deliver rows
   * past such a write's before the write's result comes back; the server's own grant reaches
   * its view of a TEP only then (lib/server/tep_sync.ts `install`). A snapshot cut at the
   * watch's point would claim that grant without holding its binding, and its BIND (a
   * generation at or below the cut) would be undone by the snapshot at the TEP; below it, the
   * TEP keeps it (docs/protocol.md, "Generations"). A write counts until one turn of the
   * event loop after it settled (its submitters' continuations have run by then). Undefined:
   * the store says none, or a write in flight was handed over before the watch's first read.
   */
  watchedThrough(): number | undefined {
    const watched = this.#store.watchedThrough?.();
    if (watched === undefined) return undefined;
    let least = watched;
    for (const floor of this.#floors) {
      if (floor.at === undefined) return undefined;
      if (floor.at < least) least = floor.at;
    }
    return least;
  }

  /**
   * Writes what is queued now, without waiting for the scheduled flush, and resolves once
   * everything submitted before the call has settled (failures go to their submitters).
   */
  async flush(): Promise<void> {
    while (this.#pending !== undefined || this.#inFlight !== undefined) {
      if (this.#inFlight === undefined) this.#run();
      if (this.#inFlight !== undefined) await this.#inFlight;
      else if (this.#pending !== undefined) await this.#lastSettled; // UNSETTLED_MAX reached
    }
    await this.#lastSettled;
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
    if (this.#unsettled >= UNSETTLED_MAX) return; // scheduled again when one settles
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#run();
    });
  }

  #run(): void {
    const batch = this.#pending;
    if (batch === undefined || this.#inFlight !== undefined) return;
    if (this.#store.commit !== undefined && this.#unsettled >= UNSETTLED_MAX) return;
    this.#pending = undefined;
    this.#stats.batches++;
    this.#stats.ops += batch.ops.length;
    if (this.#store.commit !== undefined) {
      this.#commit(batch);
      return;
    }
    // The watch's point now: every seq this write takes is above it (see watchedThrough).
    const floor = this.#numbered ? { at: this.#store.watchedThrough?.() } : undefined;
    if (floor) this.#floors.add(floor);
    let write: Promise<WriteOutcome | undefined>;
    try {
      write = this.#store.write(batch.ops);
    } catch (error) {
      write = Promise.reject(error);
    }
    this.#inFlight = write.then(
      (outcome) => this.#settle(batch, outcome, false, floor),
      (error: unknown) => this.#settle(batch, error, true, floor),
    );
  }

  /** A pipelined store: commits `batch` now; it settles once durable, in order. */
  #commit(batch: _Batch): void {
    let durable: Promise<void>;
    try {
      durable = (this.#store.commit as (ops: readonly LeaseOp[]) => Promise<void>).call(
        this.#store,
        batch.ops,
      );
    } catch (error) {
      // Nothing of it applied. The batches committed before it settle first, so that their
      // changes count as durable before the engine undoes what is not; nothing is committed
      // meanwhile (#inFlight), as after a failed write().
      this.#inFlight = this.#lastSettled.then(() => this.#settle(batch, error, true));
      return;
    }
    this.#unsettled++;
    // In order, whatever order the store's promises settle in: after the batch before.
    const before = this.#lastSettled;
    this.#lastSettled = durable.then(
      () => before.then(() => this.#durable(batch, undefined, false)),
      (error: unknown) => before.then(() => this.#durable(batch, error, true)),
    );
  }

  #durable(batch: _Batch, error: unknown, failed: boolean): void {
    if (failed) batch.reject(error);
    else batch.resolve(undefined); // a pipelined store (SQLite) has one writer: nothing skipped
    this.#unsettled--;
    if (this.#pending !== undefined) this.#schedule();
  }

  /** `result`: the error when `failed`, else the store's outcome; `floor`: the write's, if kept. */
  #settle(
    batch: _Batch,
    result: unknown,
    failed: boolean,
    floor?: { at: number | undefined },
  ): void {
    // Submitters' reactions are queued before the next write can start (that waits for
    // setImmediate), so each batch is fully settled before the next reaches the store.
    if (failed) batch.reject(result);
    else batch.resolve(result as WriteOutcome | undefined);
    // Kept until the submitters' continuations (a BIND into the TEPs' view) have run.
    if (floor) setImmediate(() => this.#floors.delete(floor));
    this.#inFlight = undefined;
    if (this.#pending !== undefined) this.#schedule();
  }
}

/** `outcome` with the generations of the `count` ops from `first` on (one submitter's). */
function _own(
  outcome: WriteOutcome | undefined,
  first: number,
  count: number,
): WriteOutcome | undefined {
  const all = outcome?.generations;
  if (all === undefined) return outcome;
  const generations = all.slice(first, first + count);
  return outcome?.skipped ? { skipped: outcome.skipped, generations } : { generations };
}

function _newBatch(): _Batch {
  const { promise, resolve, reject } = Promise.withResolvers<WriteOutcome | undefined>();
  // A batch whose submitters all went away must not become an unhandled rejection.
  promise.catch(() => {});
  return { ops: [], promise, resolve, reject };
}
