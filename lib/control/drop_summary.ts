/**
 * The data plane's refusals, logged: a TEP or client drops packets in its Workers (no binding,
 * a spoofed source, a port outside the set, malformed, too big, ECN, NAPT without a port …)
 * and counts each by reason (lib/tunnel/counters.ts, `dstm_tep_packets_total` and the
 * client's counters, docs/metrics.md); a line per packet is impossible at line rate. So the
 * main thread looks at the drop counters every interval (default 10 s) and, when any grew,
 * writes one line at warn — `data-drops interval-s=10 decap-drop-spoofed-source=12 …` — with
 * how many of each reason were dropped since the last look. One line per interval at most:
 * rate-limited by construction, whatever an attacker sends.
 *
 * @module
 */
import type { LogFields, Logger } from "./log.ts";

/** What {@link DropSummary} needs: the counters by name now, and where to write. */
export interface DropSummaryOptions {
  /** Counter name → value (monotonic); the names containing `-drop-` are the refusals. */
  readonly counters: () => Record<string, number>;
  readonly log: Logger;
  /** How often to look, ms. Default 10,000. */
  readonly intervalMs?: number;
}

/** See the module comment. */
export class DropSummary {
  readonly #o: DropSummaryOptions;
  #last: Record<string, number>;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(options: DropSummaryOptions) {
    this.#o = options;
    this.#last = options.counters();
  }

  /** Looks every interval until {@link stop} (the timer does not keep the process alive). */
  start(): void {
    this.#timer = setInterval(() => this.check(), this.#o.intervalMs ?? 10_000);
    this.#timer.unref?.();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Logs the drops since the last check, if any, and returns them (reason → count); callable
   * by tests.
   */
  check(): Record<string, number> {
    const now = this.#o.counters();
    const grew: LogFields = {};
    const out: Record<string, number> = {};
    for (const [name, value] of Object.entries(now)) {
      if (!name.includes("-drop-")) continue;
      const delta = value - (this.#last[name] ?? 0);
      if (delta > 0) {
        grew[name] = delta;
        out[name] = delta;
      }
    }
    this.#last = now;
    if (Object.keys(out).length > 0)
      this.#o.log.warn("data-drops", {
        "interval-s": Math.round((this.#o.intervalMs ?? 10_000) / 1000),
        ...grew,
      });
    return out;
  }
}
