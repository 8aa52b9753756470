/**
 * What the server says and counts when a lease store write fails (docs/metrics.md,
 * "A full disk"):
 *
 * - `dstm_store_write_failures_total{reason}`: failed store writes (one batch of lease changes
 *   each), by cause ({@link StoreFault}: disk-full, read-only, io-error, busy, gone,
 *   sync-failed, other);
 * - `dstm_store_refused_total{reason}`: decisions refused because of them — each request that
 *   got NAK SERVER_ERROR (native) or no answer (DHCPv4-over-DHCPv6) instead of an ACK, each
 *   expiry sweep or `dstm lease` change not stored;
 * - `dstm_store_renewals_unextended_total{reason}`: renewals whose write failed, answered with
 *   the lease the store holds for the host, its expiry unchanged (lib/alloc/lease_writer.ts);
 * - a `store-failed` line at warn with `reason`, SQLite's words (`detail`), the error codes
 *   (`cause`) and a `hint` naming the errno (ENOSPC…): the first of each reason at once, then at
 *   most one per reason every {@link STORE_WARN_EVERY_MS}, saying how many were left out
 *   (`suppressed-repeats`) — a full disk under load fails hundreds of batches a second;
 * - a fatal failure (the database vanished, an fsync failed) at error, once: the server stops.
 * - `store-recovered` at info on the first write that succeeds after failures, with how many
 *   writes failed meanwhile; at most one per {@link STORE_WARN_EVERY_MS} (a later one says
 *   the failures since the last).
 *
 * @module
 */
import { causeOf, type Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import { WarnLimit } from "../control/warn_limit.ts";
import { STORE_FAULT_HINTS, type StoreFault, storeFaultOf } from "../lease/store_fault.ts";
import type { WalCheckpointStats } from "../lease/wal_checkpointer.ts";
import { RepeatedWarn } from "./repeated_warn.ts";

/** Least ms between two `store-failed` warnings of one reason. */
export const STORE_WARN_EVERY_MS = 10_000;

/** Counts and logs failed lease store writes (see the module doc). */
export class StoreFailureReport {
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #repeats: RepeatedWarn;
  readonly #now: () => number;
  /** Writes failed since the last `store-recovered` line (0: none). */
  #failing = 0;
  #lastFault: StoreFault | undefined;
  /** The last write failed (true) or succeeded (false). */
  #down = false;
  /** No `store-recovered` line before this time (ms); one is due by the timer when set. */
  #recoveredAfter = Number.NEGATIVE_INFINITY;
  #recoveredTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(log: Logger, metrics: Metrics, now: () => number = Date.now) {
    this.#log = log;
    this.#metrics = metrics;
    this.#now = now;
    this.#repeats = new RepeatedWarn(new WarnLimit(log, { now }), {
      everyMs: STORE_WARN_EVERY_MS,
      now,
    });
    metrics.counter(
      "dstm_store_write_failures_total",
      "Lease store writes (one batch of lease changes each) that failed, by cause (disk-full, read-only, io-error, busy, gone, sync-failed, other)",
      ["reason"],
    );
    metrics.counter(
      "dstm_store_refused_total",
      "Lease decisions refused because their store write failed (requests answered without an ACK, expiry sweeps not stored), by cause",
      ["reason"],
    );
    metrics.counter(
      "dstm_store_renewals_unextended_total",
      "Renewals whose store write failed, answered with the lease the store holds (its expiry unchanged), by cause",
      ["reason"],
    );
  }

  /** One failed write: counted, and logged (warn, rate-limited; error when `fatal`). */
  failed(error: unknown, fatal: boolean): void {
    const reason = storeFaultOf(error);
    this.#metrics.inc("dstm_store_write_failures_total", { reason });
    this.#failing++;
    this.#lastFault = reason;
    this.#down = true;
    const fields = {
      reason,
      detail: error instanceof Error ? error.message : String(error),
      cause: causeOf(error),
      hint: STORE_FAULT_HINTS[reason],
    };
    if (fatal) this.#log.error("store-failed", fields);
    else this.#repeats.warn(reason, "store-failed", fields);
  }

  /**
   * One decision whose write failed: refused, or (`kept`) a renewal answered with the lease
   * the store holds, unextended.
   */
  refused(error: unknown, kept = false): void {
    const name = kept ? "dstm_store_renewals_unextended_total" : "dstm_store_refused_total";
    this.#metrics.inc(name, { reason: storeFaultOf(error) });
  }

  /**
   * A write succeeded after failures: says that the store writes again (`store-recovered`),
   * at most once per {@link STORE_WARN_EVERY_MS} — a disk at the edge of full alternates —
   * and, when a line is held back, once that time is up if the store still writes then.
   */
  wrote(): void {
    this.#down = false;
    if (this.#failing === 0) return;
    const wait = this.#recoveredAfter - this.#now();
    if (wait <= 0) {
      clearTimeout(this.#recoveredTimer);
      this.#recoveredTimer = undefined;
      this.#recovered();
      return;
    }
    if (this.#recoveredTimer !== undefined) return;
    this.#recoveredTimer = setTimeout(() => {
      this.#recoveredTimer = undefined;
      if (!this.#down && this.#failing > 0) this.#recovered();
    }, wait);
    (this.#recoveredTimer as { unref?: () => void }).unref?.();
  }

  #recovered(): void {
    this.#log.info("store-recovered", {
      reason: this.#lastFault,
      "failed-writes": this.#failing,
      detail: "the lease store writes again; allocation resumed",
    });
    this.#failing = 0;
    this.#lastFault = undefined;
    this.#recoveredAfter = this.#now() + STORE_WARN_EVERY_MS;
  }
}

/**
 * The SQLite store's WAL checkpointer (lib/lease/wal_checkpointer.ts) in metrics, read on
 * each scrape: `dstm_wal_checkpoints_total` (PASSIVE checkpoints run) and
 * `dstm_wal_checkpoint_faults_total` (checkpoints that failed for want of space or a lock —
 * a full disk — and were tried again at the next interval).
 */
export function declareCheckpointMetrics(
  metrics: Metrics,
  checkpoints: () => WalCheckpointStats,
): void {
  metrics.counter("dstm_wal_checkpoints_total", "WAL checkpoints run by the checkpointer");
  metrics.counter(
    "dstm_wal_checkpoint_faults_total",
    "WAL checkpoints that failed for want of space or a lock (a full disk), tried again",
  );
  metrics.onCollect(() => {
    const stats = checkpoints();
    metrics.set("dstm_wal_checkpoints_total", {}, stats.runs);
    metrics.set("dstm_wal_checkpoint_faults_total", {}, stats.faults ?? 0);
  });
}
