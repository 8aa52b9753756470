/**
 * Rate-limited warnings for refusals an attacker can trigger at line rate (forged control
 * messages, SYNC floods): without a limit, every forged datagram would cost a log line and
 * disk (400,000 SYNCs once wrote 44 MB of log). Counters still count every refusal; the log
 * shows the first ones and then at most `perSecond` a second, each emitted line carrying
 * `suppressed=N`, the number of warnings dropped since the previous line.
 *
 * @module
 */
import type { LogFields, Logger } from "./log.ts";

export interface WarnLimitOptions {
  /** Lines per second once the burst is spent (default 5). */
  readonly perSecond?: number;
  /** Lines that may be written at once (default 20). */
  readonly burst?: number;
  /** Clock in ms (default Date.now). */
  readonly now?: () => number;
}

/**
 * A token bucket in front of `Logger.warn`.
 *
 * @example
 * const warn = new WarnLimit(log);
 * warn.warn("reject", { reason: "unknown-tep", from }); // logged, or counted in `suppressed`
 */
export class WarnLimit {
  readonly #log: Logger;
  readonly #rate: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last = Number.NaN;
  #suppressed = 0;

  constructor(log: Logger, options: WarnLimitOptions = {}) {
    this.#log = log;
    this.#rate = options.perSecond ?? 5;
    this.#burst = options.burst ?? 20;
    this.#now = options.now ?? Date.now;
    this.#tokens = this.#burst;
  }

  /** Warnings dropped since the last line written. */
  get suppressed(): number {
    return this.#suppressed;
  }

  /** Writes `event` at warn level if the bucket has a token; otherwise counts it. */
  warn(event: string, fields: LogFields): void {
    this.#write("warn", event, fields);
  }

  /**
   * Writes `event` at info level if the bucket has a token; otherwise counts it (routine
   * refusals an unauthenticated sender can cause at will, e.g. the engine's NAKs).
   */
  info(event: string, fields: LogFields): void {
    this.#write("info", event, fields);
  }

  /**
   * For a caller whose fields cost something to build (a warning per lease): true when a
   * {@link warn} or {@link info} now would be dropped, and then counts it as dropped (the
   * caller skips the call and builds no fields); false when the next one will be written.
   *
   * @example if (!limit.drop()) limit.warn("tep-bind-deferred", { ipv4: formatIPv4(v4) });
   */
  drop(): boolean {
    this.#refill();
    if (this.#tokens >= 1) return false;
    this.#suppressed++;
    return true;
  }

  /** Adds the tokens earned since the last call. */
  #refill(): void {
    const now = this.#now();
    if (Number.isNaN(this.#last)) this.#last = now;
    if (now > this.#last) {
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) * this.#rate) / 1000);
      this.#last = now;
    }
  }

  #write(level: "warn" | "info", event: string, fields: LogFields): void {
    this.#refill();
    if (this.#tokens < 1) {
      this.#suppressed++;
      return;
    }
    this.#tokens -= 1;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    this.#log[level](event, suppressed > 0 ? { ...fields, suppressed } : fields);
  }
}
