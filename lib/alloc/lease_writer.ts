/**
 * The allocation engine's write path (./engine.ts): decisions → memory → store.
 *
 * Each decision changes the memory index at once ({@link LeaseWriter.change}, ./lease_index.ts)
 * and goes to the {@link LeaseStore} through a {@link GroupCommitter}; the caller's promise
 * resolves only once the change is durable. If the write fails, every change not yet durable
 * is undone (and the batch gathering behind it dropped, since it was decided on top of the
 * failed one), so memory again equals the store, and the callers get `store-failed` — except
 * a host renewing its own stored lease, which gets that lease as stored, unextended (a full
 * disk must not cost hosts their addresses: docs/metrics.md "A full disk").
 *
 * On a store shared by several servers (docs/scale-out.md) each put names the row it expects
 * the store to hold (compare-and-set; a store with one writer, SQLite or an unshared memory
 * store, gets no `expected` row, so that the hot path keeps no map of submitted rows); a write another server won (LeaseConflictError) takes
 * in the rows that server stored, and {@link LeaseWriter.retry} decides again. The sweeper's
 * expiries are the exception ({@link LeaseWriter.expire}): one another server already did is
 * skipped by the store, not a conflict, so it never fails the allocations sharing its batch.
 *
 * @module
 */
import { GroupCommitter } from "../lease/group_commit.ts";
import { holderHash } from "../lease/holder_index.ts";
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  type LeaseStore,
  leaseHolder,
  leaseKey,
  sameLease,
} from "../lease/lease.ts";
import { failure as _fail, rowKey as _key } from "./engine_rows.ts";
import {
  CONFLICT_RETRIES,
  type EngineOutcome,
  type EngineResult,
  type ExpiredLeases,
  type Generations,
} from "./engine_types.ts";
import type { LeaseIndex } from "./lease_index.ts";
import type { LeaseTable } from "./lease_table.ts";

/** Results of writes another server won (retried by {@link LeaseWriter.retry}). */
const _conflicted = new WeakSet<EngineResult>();

export interface LeaseWriterHooks {
  /** Told about every failed store write (not about a write another server won). */
  readonly onStoreError?: (error: unknown) => void;
  /**
   * Told about every decision refused because its store write failed (each caller that gets
   * `store-failed`; a failed batch refuses all of its callers), for the refusal counters;
   * `kept`: a renewal answered with the lease the store holds, unextended ({@link LeaseWriter.apply}).
   */
  readonly onStoreRefused?: (error: unknown, kept: boolean) => void;
  /** Told once when a write succeeds after failed ones (the store writes again). */
  readonly onStoreRecovered?: () => void;
  /** Told about every row taken in from the store that changed this engine's view. */
  readonly onAbsorb?: (before: Lease | undefined, after: Lease | undefined) => void;
  /** Told when a write another server won was undone (due leases may have come in with it). */
  readonly onConflict: () => void;
}

/** Makes the changes of decisions durable, or undoes them (see the module doc). */
export class LeaseWriter {
  readonly #index: LeaseIndex;
  readonly #rows: LeaseTable;
  readonly #committer: GroupCommitter;
  readonly #hooks: LeaseWriterHooks;
  /** Keys with changes not yet durable → their durable row (undefined: none). */
  readonly #inflight = new Map<number, Lease | undefined>();
  /**
   * Keys with a put submitted and not yet durable → the last row submitted (what the store
   * will hold). Kept for a shared store only (the `expected` rows of {@link put}).
   */
  readonly #submitted = new Map<number, Lease>();
  /** The store is shared (`LeaseStore.shared`): puts carry their `expected` row. */
  readonly #shared: boolean;
  /** Writes another server won (LeaseConflictError), for metrics. */
  #conflicts = 0;
  /** Expiries the store skipped: another server had changed the lease first. */
  #lapsed = 0;
  /** Bumped by every rollback; callbacks of older changes then know they were undone. */
  #epoch = 0;
  /** A store write failed and none succeeded since (onStoreRecovered is due). */
  #failing = false;
  /** The store's rows are loaded (AllocationEngine.start): decisions may be made. */
  started = false;
  /** AllocationEngine.close was called: every new decision is refused. */
  closed = false;

  constructor(index: LeaseIndex, store: LeaseStore, hooks: LeaseWriterHooks) {
    this.#index = index;
    this.#rows = index.rows;
    this.#committer = new GroupCommitter(store);
    this.#hooks = hooks;
    this.#shared = store.shared === true;
  }

  /** A refusal when the engine is not started or already closed, else undefined. */
  refuse(): Promise<EngineResult> | undefined {
    if (this.closed) return _fail("store-failed", "the allocation engine is shut down");
    if (!this.started) {
      return Promise.reject(new Error("AllocationEngine.start() has not been called"));
    }
    return undefined;
  }

  /**
   * The hot path: one changed row. `renewal`: the host's renewal of its own lease; when its
   * write fails (a full disk), the answer is the lease the store still holds for the host,
   * unextended ({@link #stored}), instead of `store-failed`.
   */
  apply(key: number, lease: Lease, outcome: EngineOutcome, renewal = false): Promise<EngineResult> {
    this.change(key, lease);
    const epoch = this.#epoch;
    return this.#committer.submit([this.put(key, lease)]).then(
      (written): EngineResult => {
        this.#durable(key, lease);
        if (this.#failing) this.#recovered();
        return { ok: true, lease, outcome, generation: written?.generations?.[0] };
      },
      (error: unknown) =>
        renewal ? this.#stored(epoch, error, key, lease) : this.#failed(epoch, error),
    );
  }

  /**
   * A renewal of `lease` (key `key`) whose write failed: the host's lease as the store holds
   * it, when it is durable, active, the same host's, not an offer, and has at least a second
   * left — the ACK then gives the time left, not a new lease time (nothing is acknowledged
   * that is not stored: docs/metrics.md "A full disk"). A host whose renewal cannot be stored
   * keeps its address until the stored expiry, and a host restarting gets its lease back.
   * Else, or on a fatal failure or a write another server won, `store-failed`.
   */
  #stored(epoch: number, error: unknown, key: number, lease: Lease): EngineResult {
    // The rollback (by the batch's first failed callback) first: memory is the store again.
    const failed = this.#failed(epoch, error, false);
    const row = this.#rows.get(key);
    const keep =
      !(error instanceof LeaseConflictError) &&
      (error as { fatal?: unknown } | null)?.fatal !== true &&
      row !== undefined &&
      row.state === "active" &&
      row.host6 === lease.host6 &&
      row.identity === lease.identity &&
      !this.#inflight.has(key) &&
      !this.#index.offers.has(row) &&
      this.#index.remainingMs(row) >= 1000;
    if (error instanceof LeaseConflictError) return failed;
    this.#tellRefused(error, keep);
    return keep && row ? { ok: true, lease: row, outcome: "renewed" } : failed;
  }

  /**
   * The hot path's twin: `end` (already changed in memory) and a new lease in one batch;
   * `ended` is told of `end` with its generation once the batch is committed.
   */
  apply2(
    endKey: number,
    end: Lease,
    key: number,
    lease: Lease,
    outcome: EngineOutcome,
    ended?: (end: Lease, generation: number | undefined) => void,
  ): Promise<EngineResult> {
    this.change(key, lease);
    const ops: LeaseOp[] = [this.put(endKey, end), this.put(key, lease)];
    const success = (generations: Generations): EngineResult => {
      ended?.(end, generations?.[0]);
      return { ok: true, lease, outcome, generation: generations?.[1] };
    };
    return this.persist(ops, [endKey, key], [end, lease], success, (failure) => failure);
  }

  /**
   * The sweeper's slice: `leases` (the `expired` rows of `keys`, already in memory) written in
   * one batch, each put `lapse` (lib/lease/lease.ts): resolves to the leases this write
   * expired, each exactly once across servers. A lease another server changed first (expired,
   * or renewed through it) is skipped by the store, not a conflict: the allocations in the
   * same batch commit, it is left out of the result (the other server counted it), and memory
   * takes the row stored now. Resolves to none when the write fails (rolled back as any).
   * With each expiry its generation (a shared store; {@link ExpiredLeases}).
   */
  expire(keys: readonly number[], leases: readonly Lease[]): Promise<ExpiredLeases> {
    const ops: LeaseOp[] = [];
    for (let i = 0; i < keys.length; i++) {
      ops.push(this.put(keys[i] as number, leases[i] as Lease, true));
    }
    const epoch = this.#epoch;
    return this.#committer.submit(ops).then(
      (outcome) => {
        const skipped = outcome?.skipped;
        const numbered = outcome?.generations;
        const expired: Lease[] = [];
        const generations: (number | undefined)[] | undefined = numbered && [];
        for (let i = 0; i < keys.length; i++) {
          const key = keys[i] as number;
          const lease = leases[i] as Lease;
          if (skipped?.has(key)) {
            const op = ops[i] as Extract<LeaseOp, { op: "put" }>;
            this.#lapse(key, lease, op.expected ?? undefined, skipped.get(key));
          } else {
            this.#durable(key, lease);
            expired.push(lease);
            generations?.push(numbered?.[i]);
          }
        }
        if (this.#failing) this.#recovered();
        return { leases: expired, generations };
      },
      (error: unknown): ExpiredLeases => {
        this.#failed(epoch, error);
        return { leases: [], generations: undefined };
      },
    );
  }

  /**
   * The expiry `lease` of `key` was skipped: the store holds `stored` (another server's row),
   * not `before`. Memory takes `stored`, unless a later change of the key is pending: that one
   * expected `lease`, so it conflicts, and its rollback brings `stored` back.
   */
  #lapse(key: number, lease: Lease, before: Lease | undefined, stored: Lease | undefined): void {
    this.#lapsed++;
    if (this.#shared && this.#submitted.get(key) === lease) this.#submitted.delete(key);
    if (this.#rows.get(key) !== lease) {
      this.#inflight.set(key, stored);
      return;
    }
    this.#inflight.delete(key);
    this.#index.setRow(key, stored);
    // `before` (active) is what this server's view held: the expiry never reached it.
    this.#tellAbsorbed(before, stored);
  }

  /**
   * Shared store: the cut of a snapshot taken now — every committed change up to it is in
   * memory and has been told to its callers ({@link GroupCommitter.watchedThrough}).
   */
  watchedThrough(): number | undefined {
    return this.#committer.watchedThrough();
  }

  /** Changes memory now, remembering the durable row for a rollback. */
  change(key: number, lease: Lease): void {
    if (!this.#inflight.has(key)) this.#inflight.set(key, this.#rows.get(key));
    this.#index.setRow(key, lease);
  }

  /**
   * Writes several changed rows in one batch; resolves `success(generations)` (of each op of
   * `ops`, in order: {@link Generations}), or `failed()` when the write fails.
   */
  persist<T>(
    ops: LeaseOp[],
    keys: number[],
    leases: Lease[],
    success: (generations: Generations) => T,
    failed: (result: EngineResult) => T,
  ): Promise<T> {
    const epoch = this.#epoch;
    return this.#committer.submit(ops).then(
      (outcome) => {
        for (let i = 0; i < keys.length; i++) this.#durable(keys[i] as number, leases[i] as Lease);
        if (this.#failing) this.#recovered();
        return success(outcome?.generations);
      },
      (error: unknown) => failed(this.#failed(epoch, error)),
    );
  }

  #recovered(): void {
    this.#failing = false;
    try {
      this.#hooks.onStoreRecovered?.();
    } catch {
      // a failing logger must not break the engine
    }
  }

  /** `lease` of `key` is durable; if a later change of the key is pending, it is now the rollback point. */
  #durable(key: number, lease: Lease): void {
    if (this.#shared && this.#submitted.get(key) === lease) this.#submitted.delete(key);
    if (this.#rows.get(key) === lease) this.#inflight.delete(key);
    else this.#inflight.set(key, lease);
  }

  /**
   * The put of `lease` (already in memory) with the row the store holds under `key` when the
   * put reaches it: the last row submitted for the key, else the durable row (the one an
   * offer kept in memory only replaced). A shared store checks it (compare-and-set); `lapse`:
   * skips it instead of failing the batch when that row is no longer stored ({@link expire}).
   * A store with one writer gets neither (it has nothing to compare with), but the holder's
   * hash (`LeaseOp.holderHash`): the index's #setRow has just hashed that holder, whose hash
   * holderHash keeps (the SQLite store's holder table would hash it again).
   */
  put(key: number, lease: Lease, lapse = false): LeaseOp {
    if (!this.#shared) return { op: "put", lease, holderHash: holderHash(leaseHolder(lease)) };
    const expected = this.#submitted.has(key)
      ? this.#submitted.get(key)
      : this.#inflight.has(key)
        ? this.#inflight.get(key)
        : this.#rows.get(key);
    this.#submitted.set(key, lease);
    if (lapse) return { op: "put", lease, expected: expected ?? null, lapse };
    return { op: "put", lease, expected: expected ?? null };
  }

  /** `tell`: tell onStoreRefused (not when the caller answers otherwise, #stored). */
  #failed(epoch: number, error: unknown, tell = true): EngineResult {
    this.#rollback(epoch, error);
    const message = `lease store write failed: ${error instanceof Error ? error.message : String(error)}`;
    const result: EngineResult = { ok: false, reason: "store-failed", message };
    if (error instanceof LeaseConflictError) _conflicted.add(result);
    else if (tell) this.#tellRefused(error, false);
    return result;
  }

  #tellRefused(error: unknown, kept: boolean): void {
    try {
      this.#hooks.onStoreRefused?.(error, kept);
    } catch {
      // a failing counter must not turn a store-failed answer into a rejection
    }
  }

  /**
   * Runs a decision; when another server won the write (the rows it wrote are in memory
   * now), decides again, up to {@link CONFLICT_RETRIES} times, after a random wait of up to
   * 2^i ms (i = the retry, at most 64 ms): one conflicting op fails its whole group-commit
   * batch, so two busy servers retrying at once would meet again in their next batches; the
   * jitter lets one batch land first (exponential backoff with full jitter).
   */
  /**
   * `result` as a write another server won: {@link retry} decides again (the engine's
   * reclaim on allocation, when its slice freed nothing because another server's write won).
   */
  conflicted(result: EngineResult): EngineResult {
    const copy = { ...result };
    _conflicted.add(copy);
    return copy;
  }

  async retry(decide: () => Promise<EngineResult>): Promise<EngineResult> {
    let result = await decide();
    for (let i = 0; i < CONFLICT_RETRIES && _conflicted.has(result); i++) {
      if (this.closed) break;
      const waitMs = Math.random() * Math.min(64, 2 ** i);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      if (this.closed) break;
      result = await decide();
    }
    return result;
  }

  /**
   * Takes in rows the store holds now (written by another server, or by this one): each
   * replaces the row of its key in memory, unless this engine has a change of that key not
   * yet durable (its write then succeeds, or fails and brings the stored row back).
   */
  absorb(rows: readonly Lease[]): void {
    if (!this.started) return;
    for (const row of rows) {
      const key = _key(row);
      const before = this.#rows.get(key);
      if (this.#inflight.has(key) || sameLease(before, row)) continue;
      this.#index.setRow(key, row);
      this.#tellAbsorbed(before, row);
    }
  }

  #tellAbsorbed(before: Lease | undefined, after: Lease | undefined): void {
    try {
      this.#hooks.onAbsorb?.(before, after);
    } catch {
      // a failing listener must not break the engine's view
    }
  }

  /** Writes another server won so far (each made this engine take the stored rows and decide again). */
  get conflicts(): number {
    return this.#conflicts;
  }

  /** Expiries skipped so far because another server had changed the lease first ({@link expire}). */
  get lapsed(): number {
    return this.#lapsed;
  }

  /** Store writes so far and the ops they carried (ops/batches is the group-commit factor). */
  get stats(): { readonly batches: number; readonly ops: number } {
    return this.#committer.stats;
  }

  /** Resolves when every change submitted so far is settled. */
  flush(): Promise<void> {
    return this.#committer.flush();
  }

  /** Undoes every change not yet durable, once per failure (the first failed callback does it). */
  #rollback(epoch: number, error: unknown): void {
    if (epoch !== this.#epoch) return;
    this.#epoch++;
    this.#committer.abortPending(error);
    for (const [key, durable] of this.#inflight) this.#index.setRow(key, durable);
    this.#inflight.clear();
    this.#submitted.clear();
    if (error instanceof LeaseConflictError) {
      this.#takeConflict(error);
      return; // not a store failure: the shared store decided (counted by conflicts)
    }
    this.#failing = true;
    this.tellStoreError(error);
  }

  /**
   * Tells the store-error listener about a failed write (the server logs it and stops on a
   * fatal one: a failed WAL fsync, a vanished database), unless another server won the write
   * (LeaseConflictError: not a failure). A failing listener is ignored. For the lease writes
   * here and the reservation writes of ./engine_admin.ts alike.
   */
  tellStoreError(error: unknown): void {
    if (error instanceof LeaseConflictError) return;
    try {
      this.#hooks.onStoreError?.(error);
    } catch {
      // a failing logger must not turn a store-failed answer into a rejection
    }
  }

  /** Another server changed these rows first: take them as they are stored now. */
  #takeConflict(error: LeaseConflictError): void {
    const index = this.#index;
    this.#conflicts++;
    this.absorb(error.rows);
    // A slot reserved at another server, not yet heard of here: learn it now, so that the
    // retry does not pick it again (each retry would conflict on it the same way).
    for (const r of error.reservations) {
      const before = index.reservations.ofHost(r.host6);
      const other = index.reservations.ofKey(leaseKey(r.ipv4, r.psid));
      if (other && other.host6 !== r.host6) index.reservations.delete(other.host6);
      index.reservations.set(r);
      if (before) index.settleSlot(before.ipv4, before.psid);
      index.settleSlot(r.ipv4, r.psid);
    }
    for (const key of error.missing) {
      const before = this.#rows.get(key);
      if (!before) continue;
      index.setRow(key, undefined);
      this.#tellAbsorbed(before, undefined);
    }
    this.#hooks.onConflict();
  }
}
