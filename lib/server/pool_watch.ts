/**
 * Warns before a pool runs out (docs/metrics.md, "Logs"): `WARN pool-filling` when a pool's
 * used share (active + blocked, of its leasable units) reaches `--pool-warn-percent` (default
 * 90), `WARN pool-exhausted` when nothing is left, each once per crossing; both are re-armed,
 * with `pool-recovered` at info, only when the pool has fallen 5 points below the threshold
 * (hysteresis: a pool hovering at the threshold says so once, not at every lease). The
 * per-request refusals (NAK POOL_EXHAUSTED) stay counted in `dstm_messages_total` and logged
 * at info, rate-limited, as before.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";

/** Default `--pool-warn-percent`. */
export const POOL_WARN_PERCENT = 90;
/** Points below the threshold a pool must fall to before it is warned about again. */
export const POOL_WARN_HYSTERESIS = 5;

/** One pool's units now (lib/alloc/engine.ts `stats()`). */
export interface PoolFill {
  readonly pool: string;
  readonly size: number;
  readonly free: number;
}

type Said = "filling" | "exhausted";

export class PoolWatch {
  readonly #log: Logger;
  #percent: number;
  readonly #said = new Map<string, Said>();

  constructor(log: Logger, percent = POOL_WARN_PERCENT) {
    this.#log = log;
    this.#percent = percent;
  }

  /** The threshold in percent (1–100); a reload may change it. */
  get percent(): number {
    return this.#percent;
  }

  set percent(value: number) {
    this.#percent = value;
  }

  /** Compares each pool's fill with the threshold; logs each crossing once. Cheap: O(pools). */
  check(pools: readonly PoolFill[]): void {
    for (const p of pools) {
      if (p.size === 0) continue;
      const used = p.size - p.free;
      const percent = (used * 100) / p.size;
      const said = this.#said.get(p.pool);
      const fields = {
        pool: p.pool,
        "used-percent": Math.floor(percent),
        used,
        size: p.size,
        "warn-percent": this.#percent,
      };
      if (p.free <= 0) {
        if (said === "exhausted") continue;
        this.#said.set(p.pool, "exhausted");
        this.#log.warn("pool-exhausted", {
          ...fields,
          detail: "every address (or port set) is leased: new hosts get NAK POOL_EXHAUSTED",
        });
      } else if (percent >= this.#percent) {
        if (said !== undefined) continue;
        this.#said.set(p.pool, "filling");
        this.#log.warn("pool-filling", fields);
      } else if (said !== undefined && percent < this.#percent - POOL_WARN_HYSTERESIS) {
        this.#said.delete(p.pool);
        this.#log.info("pool-recovered", fields);
      }
    }
  }
}
