/**
 * The expiry sweeper: runs {@link AllocationEngine.sweep} every interval and, while a sweep
 * stops at its limits with due leases left (a crowd of overdue leases after a downtime), runs
 * the next slice right after one turn of the event loop, so that datagrams already received
 * are answered between slices: an answer waits for at most one slice (by default 100 leases
 * or 250 ms, Kea's max-reclaim-leases and max-reclaim-time), never for the whole crowd.
 *
 * Runs never overlap: a tick that comes while a run is going joins it.
 *
 * @module
 */
import type { Lease } from "../lease/lease.ts";
import type { AllocationEngine } from "./engine.ts";

export interface ReclaimerOptions {
  readonly engine: Pick<AllocationEngine, "sweep" | "reclaimPending">;
  /** Told about the leases of each slice once they are durably expired. */
  readonly onExpired: (leases: readonly Lease[]) => void;
  /** Told when a run needed more than one slice: leases reclaimed, slices, wall time (ms). */
  readonly onRun?: (summary: { leases: number; slices: number; ms: number }) => void;
  /**
   * Lets other work run between two slices; default one turn of the event loop
   * (`setImmediate`: received datagrams are handled first). Tests inject their own.
   */
  readonly between?: () => Promise<void>;
  /** Called before each run; a run is skipped when it returns false (e.g. the store vanished). */
  readonly beforeRun?: () => boolean;
}

/** Sweeps in bounded slices; see the module doc. */
export class Reclaimer {
  readonly #opts: ReclaimerOptions;
  #running: Promise<number> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  constructor(opts: ReclaimerOptions) {
    this.#opts = opts;
  }

  /** Sweeps every `intervalMs` (ms) until {@link stop}. */
  start(intervalMs: number): void {
    this.#timer = setInterval(() => void this.run(), intervalMs);
  }

  /**
   * Sweeps slice after slice until no due lease is left (or {@link stop}); resolves to the
   * number of leases reclaimed. A call while a run is going returns that run.
   */
  run(): Promise<number> {
    this.#running ??= this.#run().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Stops the timer and any run after its current slice; resolves when that run is over. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }

  async #run(): Promise<number> {
    const { engine, onExpired, onRun } = this.#opts;
    if (this.#opts.beforeRun && !this.#opts.beforeRun()) return 0;
    const between = this.#opts.between ?? _turn;
    const start = performance.now();
    let leases = 0;
    let slices = 0;
    while (!this.#stopped) {
      const expired = await engine.sweep();
      slices++;
      leases += expired.length;
      if (expired.length > 0) onExpired(expired);
      if (!engine.reclaimPending) break;
      await between();
    }
    if (slices > 1) onRun?.({ leases, slices, ms: performance.now() - start });
    return leases;
  }
}

function _turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
