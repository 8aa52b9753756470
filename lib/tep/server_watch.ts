/**
 * Whether one of the TEP's DSTM servers hears it (one watch per `--server`). The server answers every SYNC with its own
 * (docs/protocol.md, "TEP synchronisation"), so a TEP that has heard nothing from its server
 * for 3 SYNC periods knows the server (or the path to it) is gone: it says so once at warn
 * (`server-unreachable`), keeps forwarding with the bindings it holds, and says
 * `server-reachable` (warn) when the server is heard again. Counted in
 * `dstm_tep_server_disconnects_total`, shown in `dstm_tep_server_connected`.
 *
 * @module
 */
import type { Metrics } from "../control/metrics.ts";
import type { WarnLimit } from "../control/warn_limit.ts";

export interface ServerWatchOptions {
  readonly server: string;
  readonly port: number;
  /** SYNC period (ms). */
  readonly intervalMs: number;
  readonly warn: WarnLimit;
  readonly metrics: Metrics;
  readonly now: () => number;
  /** The TEP signs with a key (`--key`): the warning then names a key mismatch as a cause. */
  readonly keyed?: boolean;
}

export class ServerWatch {
  readonly #o: ServerWatchOptions;
  /** When the server was last heard (ms); the start time at first. */
  #heardAt: number;
  #down = false;

  constructor(options: ServerWatchOptions) {
    this.#o = options;
    this.#heardAt = options.now();
    const m = options.metrics;
    m.gauge(
      "dstm_tep_server_connected",
      "1 while the DSTM server answers this TEP's SYNC (heard within 3 SYNC periods), else 0",
    );
    m.counter(
      "dstm_tep_server_disconnects_total",
      "Times the DSTM server went unheard for 3 SYNC periods",
    );
    m.onCollect(() =>
      m.set("dstm_tep_server_connected", { server: options.server }, this.#down ? 0 : 1),
    );
  }

  /** The server watched, whether it is heard now and how long ago it last was (s). */
  status(): { server: string; connected: boolean; lastHeardS: number } {
    return {
      server: this.#o.server,
      connected: !this.#down,
      lastHeardS: Math.max(0, Math.round((this.#o.now() - this.#heardAt) / 1000)),
    };
  }

  /** Whether the server is reported unreachable now. */
  get down(): boolean {
    return this.#down;
  }

  /** Called each SYNC period: reports the server unreachable once it has been silent 3 periods. */
  check(): void {
    const silent = this.#o.now() - this.#heardAt;
    if (this.#down || silent < 3 * this.#o.intervalMs) return;
    this.#down = true;
    this.#o.metrics.inc("dstm_tep_server_disconnects_total", { server: this.#o.server });
    this.#o.warn.warn("server-unreachable", {
      server: this.#o.server,
      port: this.#o.port,
      "silent-s": Math.round(silent / 1000),
      detail: `no answer to SYNC for 3 periods: ${
        this.#o.keyed
          ? "is dstm server running there, and does this TEP's --key match its --tep-key? A key mismatch looks exactly like this (the server refuses every SYNC: tep-reject reason=auth-bad-mac in its log, or reason=auth-host-key when this TEP was given the hosts' key file, the server's --key, instead of its --tep-key file)"
          : "is dstm server running there, and has it no tep-key? (a server with tep-key refuses a TEP without --key: tep-reject reason=auth-missing in its log)"
      }; the bindings held are kept, none can change meanwhile`,
    });
  }

  /** An accepted message from the server arrived. */
  heard(): void {
    const now = this.#o.now();
    if (this.#down) {
      this.#down = false;
      this.#o.warn.warn("server-reachable", {
        server: this.#o.server,
        port: this.#o.port,
        "down-s": Math.round((now - this.#heardAt) / 1000),
      });
    }
    this.#heardAt = now;
  }
}
