/**
 * The expiry sweeper: runs {@link AllocationEngine.reclaim} (the sweep) every interval and, while a sweep
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
import type { AllocationEngine, Generations } from "./engine.ts";

export interface ReclaimerOptions {
  readonly engine: Pick<AllocationEngine, "reclaim" | "reclaimPending">;
  /**
   * Told about the leases of each slice once they are durably expired, with the generation of
   * each expiry (`generations[i]`: of `leases[i]`; undefined: the store numbers no writes),
   * which their UNBINDs carry (docs/protocol.md, "Generations").
   */
  readonly onExpired: (leases: readonly Lease[], generations: Generations) => void;
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
  /** Told the size of the next slice once it is durably expired ({@link sliceNow}). */
  #sliceWaiters: ((leases: number) => void)[] = [];

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

  /**
   * A pool has no free slot while leases are overdue (a DISCOVER would be refused before the
   * next tick): reclaim now. Starts a run unless one is going, and resolves to the number of
   * leases the next slice freed (0 when stopped or when the run ended without a slice), once
   * they are durably expired and told to `onExpired`. Kea does the same on allocation: an
   * expired lease not yet reclaimed is reused rather than refusing the client.
   */
  sliceNow(): Promise<number> {
    if (this.#stopped) return Promise.resolve(0);
    const next = new Promise<number>((resolve) => this.#sliceWaiters.push(resolve));
    void this.run();
    return next;
  }

  /** Stops the timer and any run after its current slice; resolves when that run is over. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }

  async #run(): Promise<number> {
    const { engine, onExpired, onRun } = this.#opts;
    const between = this.#opts.between ?? _turn;
    const start = performance.now();
    let leases = 0;
    let slices = 0;
    /** Leases the last slice freed: what a waiter that came during it is told at the end. */
    let last = 0;
    try {
      if (this.#opts.beforeRun && !this.#opts.beforeRun()) return 0;
      while (!this.#stopped) {
        // Waiters from before this slice's sweep: this slice is the one they wait for.
        const waiting = this.#takeWaiters();
        last = 0;
        try {
          const expired = await engine.reclaim();
          last = expired.leases.length;
          slices++;
          leases += last;
          if (last > 0) onExpired(expired.leases, expired.generations);
        } finally {
          for (const resolve of waiting) resolve(last);
        }
        if (!engine.reclaimPending) break;
        await between();
      }
    } finally {
      // Asked for while the last slice was being written (it took what was due), or after a
      // stop or a skipped run: told the last slice's count, never left waiting.
      for (const resolve of this.#takeWaiters()) resolve(last);
    }
    if (slices > 1) onRun?.({ leases, slices, ms: performance.now() - start });
    return leases;
  }

  #takeWaiters(): ((leases: number) => void)[] {
    const waiting = this.#sliceWaiters;
    if (waiting.length > 0) this.#sliceWaiters = [];
    return waiting;
  }
}

function _turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
