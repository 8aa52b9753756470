/**
 * The engine's two clocks. Leases are stored with wall-clock times (`grantedAt`, `expiresAt`,
 * ms since the epoch): that is what a restart, `dstm lease ls` and another server can read.
 * While the engine runs, though, a lease ends on the **monotonic** clock: its deadline is
 * set once, when the engine first sees the lease (granted, renewed or loaded), to
 * monotonic now + (`expiresAt` − wall now), and never moves after. A step of the wall
 * clock (NTP stepping, an operator's `date -s`) then neither expires leases early nor keeps
 * them late; it is only reported, when wall − monotonic moved by more than `stepMs`.
 *
 * A restart has only the stored wall-clock times: a server restarted after a step takes them
 * as they are. The rows loaded at start all get their deadline from the one offset (wall −
 * monotonic) taken at the load ({@link LeaseClock.markLoad}): `expiresAt` − that offset,
 * computed when asked, so a million loaded leases need no deadline kept each (the engine says
 * which rows are still the loaded ones: ./lease_table.ts).
 *
 * @module
 */
import type { Lease } from "../lease/lease.ts";

export interface LeaseClockOptions {
  /** Wall clock, ms since the epoch. */
  now: () => number;
  /** Monotonic clock, ms from any origin. */
  monotonic: () => number;
  /** How far wall − monotonic may move between two checks before it counts as a step (ms). */
  stepMs?: number;
  /** Told of each step (ms; + forward). */
  onStep?: (stepMs: number) => void;
}

export class LeaseClock {
  readonly now: () => number;
  readonly monotonic: () => number;
  readonly #stepMs: number;
  readonly #onStep: ((stepMs: number) => void) | undefined;
  /** Monotonic deadline (ms) of each active lease object. */
  readonly #deadline = new WeakMap<Lease, number>();
  /** wall − monotonic at the last check. */
  #offset: number;
  /** wall − monotonic when the store's rows were loaded. */
  #loadOffset = 0;

  constructor(options: LeaseClockOptions) {
    this.now = options.now;
    this.monotonic = options.monotonic;
    this.#stepMs = options.stepMs ?? 2000;
    this.#onStep = options.onStep;
    this.#offset = this.now() - this.monotonic();
  }

  /**
   * Takes wall − monotonic now as the offset the next {@link check} compares with: after the
   * wall clock was deliberately moved (the engine took the shared database's clock), which is
   * no step to report.
   */
  rebase(): void {
    this.#offset = this.now() - this.monotonic();
  }

  /** Takes wall − monotonic now as the offset of the rows loaded at start (`loaded` below). */
  markLoad(): void {
    this.#loadOffset = this.now() - this.monotonic();
  }

  /**
   * The monotonic deadline of `lease`, set from its `expiresAt` the first time it is asked;
   * `loaded`: a row loaded at start (its deadline comes from the load's offset, kept nowhere).
   */
  deadlineOf(lease: Lease, loaded = false): number {
    if (loaded) return lease.expiresAt - this.#loadOffset;
    let deadline = this.#deadline.get(lease);
    if (deadline === undefined) {
      deadline = this.monotonic() + (lease.expiresAt - this.now());
      this.#deadline.set(lease, deadline);
    }
    return deadline;
  }

  /** True when `deadline` is the deadline of `lease` (an expiry queue entry still current). */
  isDeadline(lease: Lease, deadline: number, loaded = false): boolean {
    if (loaded) return lease.expiresAt - this.#loadOffset === deadline;
    return this.#deadline.get(lease) === deadline;
  }

  /** Time left (ms) of a lease with a deadline; else its `expiresAt` − wall now. */
  remainingMs(lease: Lease, loaded = false): number {
    if (loaded) return lease.expiresAt - this.#loadOffset - this.monotonic();
    const deadline = this.#deadline.get(lease);
    return deadline === undefined ? lease.expiresAt - this.now() : deadline - this.monotonic();
  }

  /** Reports a step of the wall clock since the last check; returns monotonic now (ms). */
  check(): number {
    const mono = this.monotonic();
    const offset = this.now() - mono;
    if (Math.abs(offset - this.#offset) > this.#stepMs) this.#onStep?.(offset - this.#offset);
    this.#offset = offset;
    return mono;
  }
}
