/**
 * A refusal that repeats — the same reason, message type and sender — is logged once, then at
 * most once per `everyMs` (default 60 s), the line saying how many were left out meanwhile
 * (`suppressed-repeats=N`). A TEP whose `--key` differs from the server's `tep-key` sends a
 * SYNC every 2 s, each refused alike: before, every one was a `tep-reject` line (about 1,800
 * an hour, far under WarnLimit's rate); now one a minute. Lines of different kinds still go
 * through the caller's WarnLimit (a flood of different senders stays bounded by its rate),
 * and the counters still count every refusal.
 *
 * At most `maxKeys` (default 256) repeats are remembered: past that, a new key is not
 * remembered and goes straight to the WarnLimit.
 *
 * @module
 */
import type { LogFields } from "../control/log.ts";
import type { WarnLimit } from "../control/warn_limit.ts";

export interface RepeatedWarnOptions {
  /** Minimum ms between two lines of one key (default 60,000). */
  readonly everyMs?: number;
  /** Keys remembered at most (default 256). */
  readonly maxKeys?: number;
  /** Clock in ms (default Date.now). */
  readonly now?: () => number;
}

/**
 * @example
 * const repeats = new RepeatedWarn(new WarnLimit(log));
 * repeats.warn(`${reason}|${from}`, "tep-reject", { reason, from }); // once a minute per key
 */
export class RepeatedWarn {
  readonly #warn: WarnLimit;
  readonly #everyMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #seen = new Map<string, { nextAt: number; suppressed: number }>();

  constructor(warn: WarnLimit, options: RepeatedWarnOptions = {}) {
    this.#warn = warn;
    this.#everyMs = options.everyMs ?? 60_000;
    this.#maxKeys = options.maxKeys ?? 256;
    this.#now = options.now ?? Date.now;
  }

  /** Writes `event` (through the WarnLimit) unless `key` was written less than `everyMs` ago. */
  warn(key: string, event: string, fields: LogFields): void {
    const now = this.#now();
    const seen = this.#seen.get(key);
    if (seen && now < seen.nextAt) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    if (seen) {
      seen.nextAt = now + this.#everyMs;
      seen.suppressed = 0;
    } else {
      if (this.#seen.size >= this.#maxKeys) this.#forgetExpired(now);
      if (this.#seen.size < this.#maxKeys)
        this.#seen.set(key, { nextAt: now + this.#everyMs, suppressed: 0 });
    }
    this.#warn.warn(
      event,
      suppressed > 0
        ? { ...fields, "suppressed-repeats": suppressed, "every-s": this.#everyMs / 1000 }
        : fields,
    );
  }

  #forgetExpired(now: number): void {
    for (const [key, seen] of this.#seen) if (now >= seen.nextAt) this.#seen.delete(key);
  }
}
