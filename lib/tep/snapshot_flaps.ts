/**
 * Whether a TEP's DSTM servers agree on its bindings. Several `--server`s are meant to share
 * one lease database (docs/scale-out.md): each SNAPSHOT from any of them then carries the
 * same set. Servers with separate databases each hold only their own leases, so each finds the
 * TEP's digest wrong at every SYNC and replaces the table with its own: SNAPSHOTs come from
 * the servers in turn, each removing the other's bindings (docs/protocol.md, "TEP
 * synchronisation"). That alternation is what this watch looks for.
 *
 * A SNAPSHOT applied from server X right after one from another server Y (within
 * {@link FLAP_WINDOW_PERIODS} SYNC periods) is a flap. {@link FLAP_LIMIT} flaps in a row
 * mean the servers disagree: said once at warn (`servers-disagree`, naming them) and shown in
 * `dstm_tep_servers_disagree` 1. One server's SNAPSHOTs, or none for the window, end the
 * alternation: `servers-agree` at info, the gauge back to 0. Every flap is counted in
 * `dstm_tep_snapshot_flaps_total`. A single catch-up SNAPSHOT (a restarted TEP, a lost
 * UNBIND) is never a flap run.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";

/** SYNC periods within which a SNAPSHOT from another server counts as a flap. */
export const FLAP_WINDOW_PERIODS = 3;
/** Flaps in a row that mean the servers disagree. */
export const FLAP_LIMIT = 3;

export interface SnapshotFlapOptions {
  /** SYNC period (ms). */
  readonly intervalMs: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Clock (ms). */
  readonly now: () => number;
}

export class SnapshotFlapWatch {
  readonly #o: SnapshotFlapOptions;
  #last: { server: string; at: number } | undefined;
  #run = 0;
  /** The servers of the current run of flaps. */
  readonly #servers = new Set<string>();
  #disagree = false;

  constructor(options: SnapshotFlapOptions) {
    this.#o = options;
    const m = options.metrics;
    m.counter(
      "dstm_tep_snapshot_flaps_total",
      "SNAPSHOTs applied right after one from another server (servers that disagree on the bindings)",
    );
    m.gauge(
      "dstm_tep_servers_disagree",
      "1 while the TEP's servers replace each other's bindings in turn (separate lease databases?), else 0",
    );
    m.onCollect(() => m.set("dstm_tep_servers_disagree", {}, this.#disagree ? 1 : 0));
  }

  /** Whether the servers are reported to disagree now. */
  get disagree(): boolean {
    return this.#disagree;
  }

  /** A SNAPSHOT from `server` (canonical address) was applied now. */
  applied(server: string): void {
    const now = this.#o.now();
    const window = FLAP_WINDOW_PERIODS * this.#o.intervalMs;
    const last = this.#last;
    this.#last = { server, at: now };
    if (!last || now - last.at > window || last.server === server) {
      this.#settle();
      return;
    }
    this.#o.metrics.inc("dstm_tep_snapshot_flaps_total", {});
    this.#run++;
    this.#servers.add(last.server).add(server);
    if (this.#run >= FLAP_LIMIT && !this.#disagree) {
      this.#disagree = true;
      this.#o.log.warn("servers-disagree", {
        servers: [...this.#servers].sort().join(","),
        snapshots: this.#run + 1,
        detail:
          "the servers replace each other's bindings in turn: every --server of a TEP must share one lease database (docs/scale-out.md)",
      });
    }
  }

  /** Called every SYNC period: a quiet window ends a run of flaps. */
  tick(): void {
    const last = this.#last;
    if (last && this.#o.now() - last.at > FLAP_WINDOW_PERIODS * this.#o.intervalMs) this.#settle();
  }

  #settle(): void {
    this.#run = 0;
    this.#servers.clear();
    if (!this.#disagree) return;
    this.#disagree = false;
    this.#o.log.info("servers-agree", { detail: "no more SNAPSHOTs from servers in turn" });
  }
}
