/**
 * The server's lease lines at info: `allocate`, `renew`, `release`, each with the lease's
 * ipv4, ports (a shared address), host6, tep6, pool, expires (not on release) and
 * sticky=true (a host given back its previous address). Written as text straight from the
 * lease where the logger writes text (the same bytes `log.info(event, fields)` writes: checked
 * by test/handler_lease_line.test.ts), since at tens of thousands of leases a second the
 * fields object and its walk cost more than the decision.
 *
 * @module
 */
import { IsoTime, type Logger, textValue } from "../control/log.ts";
import type { Lease } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";

/** See the module comment. One per handler. */
export class LeaseLines {
  readonly #log: Logger;
  /** The `expires` of lease lines (most leases granted in one second expire in one second). */
  readonly #expires = new IsoTime();
  /** The (TEP, pool) of the last lease line and their ` tep6=… pool=…` text. */
  #tep6Of: string | undefined;
  #poolOf: string | undefined;
  #tepPoolText = "";

  constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * Logs the line of `lease` for the engine's `outcome` (allocated, reused, renewed, or a
   * release); nothing below info.
   */
  log(outcome: string, lease: Lease): void {
    // The line's fields cost more than the decision at high rates: built only when logged.
    if (!this.#log.enabled("info")) return;
    const event =
      outcome === "allocated" || outcome === "reused"
        ? "allocate"
        : outcome === "renewed"
          ? "renew"
          : "release";
    if (this.#log.format === "text") {
      this.#log.logText("info", event, this.#text(event, outcome, lease));
      return;
    }
    this.#log.info(event, {
      ipv4: formatIPv4(lease.ipv4),
      ports: lease.portSet.psidLength === 0 ? undefined : formatPortSet(lease.portSet),
      host6: lease.host6,
      tep6: lease.tep6,
      pool: lease.pool,
      expires: event === "release" ? undefined : this.#expires.format(lease.expiresAt),
      sticky: outcome === "reused" ? true : undefined,
    });
  }

  /**
   * The fields of a lease line as `log.info(event, {ipv4, ports, host6, tep6, pool, expires,
   * sticky})` writes them in the text format (the same bytes), without the fields object:
   * only the strings a configuration or a host chose go through `textValue`, the TEP's and
   * pool's once per (TEP, pool).
   */
  #text(event: string, outcome: string, lease: Lease): string {
    const p = lease.portSet;
    let text =
      p.psidLength === 0
        ? ` ipv4=${formatIPv4(lease.ipv4)} host6=${textValue(lease.host6)}`
        : ` ipv4=${formatIPv4(lease.ipv4)} ports=${formatPortSet(p)} host6=${textValue(lease.host6)}`;
    if (lease.tep6 !== this.#tep6Of || lease.pool !== this.#poolOf) {
      this.#tep6Of = lease.tep6;
      this.#poolOf = lease.pool;
      this.#tepPoolText = ` tep6=${textValue(lease.tep6)} pool=${textValue(lease.pool)}`;
    }
    text += this.#tepPoolText;
    if (event !== "release") text += ` expires=${this.#expires.format(lease.expiresAt)}`;
    return outcome === "reused" ? `${text} sticky=true` : text;
  }
}
