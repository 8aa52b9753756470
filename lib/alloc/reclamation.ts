/**
 * Lease reclamation for the allocation engine (./engine.ts): the active leases whose time is
 * up, taken from the expiry queue of ./lease_index.ts in bounded slices and made `expired`
 * durably through ./lease_writer.ts. ./reclaimer.ts runs the slices.
 *
 * @module
 */
import type { Lease } from "../lease/lease.ts";
import { leaseInState as _copy, reclaimLimit as _limit } from "./engine_rows.ts";
import { type ExpiredLeases, RECLAIM_DEFAULTS } from "./engine_types.ts";
import type { LeaseIndex } from "./lease_index.ts";
import type { LeaseWriter } from "./lease_writer.ts";

/** A sweep that expired nothing (shared: never changed). */
const _NONE: ExpiredLeases = Object.freeze({ leases: [], generations: undefined });

/** Expires due leases in bounded slices (see the module doc). */
export class Reclamation {
  readonly #index: LeaseIndex;
  readonly #writer: LeaseWriter;
  readonly #now: () => number;
  readonly #maxLeases: number;
  readonly #maxMs: number;
  /** Due leases were left by the last sweep (it stopped at its count or time limit). */
  #pending = false;

  /**
   * `maxLeases` (leases) and `maxMs` (ms) bound one sweep (0: no limit; default
   * {@link RECLAIM_DEFAULTS}); throws RangeError unless each is a whole number ≥ 0.
   */
  constructor(
    index: LeaseIndex,
    writer: LeaseWriter,
    now: () => number,
    maxLeases: number | undefined,
    maxMs: number | undefined,
  ) {
    this.#index = index;
    this.#writer = writer;
    this.#now = now;
    this.#maxLeases = _limit(maxLeases, RECLAIM_DEFAULTS.maxLeases, "leases");
    this.#maxMs = _limit(maxMs, RECLAIM_DEFAULTS.maxMs, "ms");
  }

  /** True when the last {@link sweep} stopped at a limit with due leases left. */
  get pending(): boolean {
    return this.#pending;
  }

  /** Due leases may have come in (rows taken from a shared store): sweep again soon. */
  markPending(): void {
    this.#pending = true;
  }

  /**
   * AllocationEngine.reclaim: marks due leases expired (durably) and returns them with the
   * generation of each expiry ({@link ExpiredLeases}), at most `maxLeases`, picking for at
   * most `maxMs`. O(k log n) for k leases reclaimed among n.
   */
  sweep(): Promise<ExpiredLeases> {
    this.#pending = false;
    if (!this.#writer.started || this.#writer.closed) return Promise.resolve(_NONE);
    const now = this.#now();
    const due = this.#due();
    if (due.length === 0) return Promise.resolve(_NONE);
    // Every lease of this slice is freed at `now`: in key order, each one goes to the tail of
    // its free list at once (in heap order, each insertion walked the list: O(k²)).
    due.sort((a, b) => a - b);
    const writer = this.#writer;
    const rows = this.#index.rows;
    const expired: Lease[] = [];
    const keys: number[] = [];
    for (let i = 0; i < due.length; i++) {
      const key = due[i] as number;
      // A key can be in the heap twice with one deadline (renewed within the same ms).
      if (i > 0 && due[i - 1] === key) continue;
      keys.push(key);
      const lease = _copy(rows.get(key) as Lease, "expired", now);
      writer.change(key, lease);
      expired.push(lease);
    }
    // Those another server expired first are left out (expired once, counted there).
    return writer.expire(keys, expired);
  }

  /**
   * The keys of the active rows whose monotonic deadline has passed, taken off the expiry
   * queue, up to the limits (then {@link pending} is set). Time is up on the monotonic clock,
   * so a step of the wall clock expires nothing early (it is reported: ./lease_clock.ts).
   */
  #due(): number[] {
    const index = this.#index;
    const mono = index.clock.check();
    const maxLeases = this.#maxLeases || Number.POSITIVE_INFINITY;
    const deadline = this.#maxMs ? performance.now() + this.#maxMs : 0;
    const due: number[] = [];
    const heap = index.expiry;
    while (heap.size > 0 && heap.topTime() <= mono) {
      if (due.length >= maxLeases || (deadline && performance.now() >= deadline)) {
        this.#pending = true;
        break;
      }
      const key = heap.topKey();
      const time = heap.topTime();
      heap.pop();
      const row = index.rows.get(key);
      // renewed or freed since
      if (row?.state !== "active" || !index.isDeadline(key, row, time)) continue;
      due.push(key);
    }
    return due;
  }

  /**
   * True when an active lease's deadline has passed on the monotonic clock (a sweep would
   * expire it now). Drops stale entries (renewed or freed leases) off the top of the queue
   * as it looks, like {@link nextExpiry}. O(1) apart from those.
   */
  hasDue(): boolean {
    const index = this.#index;
    const heap = index.expiry;
    while (heap.size > 0) {
      const key = heap.topKey();
      const row = index.rows.get(key);
      if (row?.state === "active" && index.isDeadline(key, row, heap.topTime())) {
        return heap.topTime() <= index.clock.monotonic();
      }
      heap.pop();
    }
    return false;
  }

  /** The stored expiry (wall clock, ms) of the active lease the sweeper expires next, or null. */
  nextExpiry(): number | null {
    const index = this.#index;
    const heap = index.expiry;
    while (heap.size > 0) {
      const row = index.rows.get(heap.topKey());
      if (row?.state === "active" && index.isDeadline(heap.topKey(), row, heap.topTime())) {
        return row.expiresAt;
      }
      heap.pop();
    }
    return null;
  }
}
