/**
 * Which datagrams the TEP's control plane (control.ts) takes from its DSTM servers
 * (docs/security.md): one from a configured server's address *and* port that decodes, is a
 * BIND, UNBIND, SNAPSHOT or SYNC and, with a key (the server ⇄ TEP key, never the hosts'),
 * carries a MAC in the `tep` domain for this TEP that is fresh and not a replay. Everything
 * else is dropped, counted in `dstm_tep_control_total` by reason and logged at warn,
 * rate-limited.
 *
 * @module
 */
import type { KeyRing } from "../control/key_ring.ts";
import type { Metrics } from "../control/metrics.ts";
import type { WarnLimit } from "../control/warn_limit.ts";
import { canonicalIPv6, parseIPv6 } from "../net/addr.ts";
import { ReplayGuard, verifyMessage } from "../wire/auth.ts";
import { decodeMessage } from "../wire/dstm.ts";
import { type DstmMessage, MessageType } from "../wire/dstm_types.ts";

/** The kinds of message a server sends a TEP (the `kind` label of the control counters). */
export type ControlKind = "bind" | "unbind" | "snapshot" | "sync";

/** A server's message the gate let through. */
export interface AcceptedMessage {
  readonly message: DstmMessage;
  readonly kind: ControlKind;
}

export interface ControlGateOptions {
  /** The servers' addresses, canonical. */
  readonly servers: readonly string[];
  /** The port every server sends from (its listening port). */
  readonly port: number;
  /** This TEP's IPv6 address: MAC-ed into every server message for it. */
  readonly tep6: string;
  /** The server ⇄ TEP keys; without a signing key the channel is unauthenticated. */
  readonly keys: KeyRing;
  readonly warn: WarnLimit;
  readonly metrics: Metrics;
  readonly now: () => number;
}

/** See the module comment. One per TEP. */
export class ControlGate {
  readonly #o: ControlGateOptions;
  readonly #guard: ReplayGuard;
  /** This TEP's IPv6 address, 16 bytes. */
  readonly #audience: Uint8Array | undefined;

  constructor(options: ControlGateOptions) {
    this.#o = options;
    // Nothing stamped before this start: what was captured before a restart is refused.
    this.#guard = new ReplayGuard({ notBefore: options.now() });
    this.#audience = parseIPv6(options.tep6) ?? undefined;
  }

  /**
   * The server's message in `data` when it comes from a server's address and port, decodes,
   * is a BIND, UNBIND, SNAPSHOT or SYNC and (with a key) carries a valid fresh MAC; undefined
   * when refused (counted and logged).
   */
  accept(data: Uint8Array, address: string, port: number): AcceptedMessage | undefined {
    const o = this.#o;
    if (!o.servers.includes(canonicalIPv6(address) ?? address))
      return this.#refused("any", "drop-not-server", address, port);
    // The server sends every BIND/UNBIND/SNAPSHOT from its listening port: another port on
    // the server's address is another program (a local user), not the server.
    if (port !== o.port) return this.#refused("any", "drop-not-server-port", address, port);
    const decoded = decodeMessage(data);
    if (!decoded.ok) return this.#refused("any", "drop-malformed", address, port);
    const message = decoded.value;
    const kind = kindOf(message.type);
    if (kind === "other") return this.#refused(kind, "drop-unexpected", address, port);
    if (o.keys.signing) {
      const outcome = verifyMessage(
        data.subarray(0, decoded.offset),
        message,
        o.keys.accepted,
        this.#guard,
        o.now(),
        "tep",
        this.#audience,
      );
      if (outcome !== "ok") return this.#refused(kind, `drop-auth-${outcome}`, address, port);
    }
    o.metrics.inc("dstm_tep_control_total", { kind, result: "ok" });
    return { message, kind };
  }

  /** Counts a refused datagram and logs it at warn (rate-limited). */
  #refused(kind: string, result: string, address: string, port: number): undefined {
    this.#o.metrics.inc("dstm_tep_control_total", { kind, result });
    this.#o.warn.warn("reject", { reason: result, type: kind, from: address, port });
    return undefined;
  }
}

function kindOf(type: MessageType): ControlKind | "other" {
  switch (type) {
    case MessageType.BIND:
      return "bind";
    case MessageType.UNBIND:
      return "unbind";
    case MessageType.SNAPSHOT:
      return "snapshot";
    case MessageType.SYNC:
      return "sync";
    default:
      return "other";
  }
}
