/**
 * Which datagrams the TEP's control plane (control.ts) takes from its DSTM servers
 * (docs/security.md): one from a configured server's address *and* port that decodes, is a
 * BIND, UNBIND, SNAPSHOT or SYNC and, with a key (the server ⇄ TEP key, never the hosts'),
 * carries a MAC in the `tep` domain for this TEP that is fresh and not a replay. Everything
 * else is dropped, counted in `dstm_tep_control_total` by reason and logged at warn,
 * rate-limited.
 *
 * A key mix-up shows as every message of a server failing authentication from the start: a
 * TEP given the hosts' key file (the server's `--key`) instead of the server's `--tep-key`
 * file (`drop-auth-bad-mac` or `-unknown-key`), or a server without `--tep-key`
 * (`drop-auth-missing`). While nothing from that server has passed since start, such a
 * refusal is logged as `key-mismatch` with the likely cause and the fix, at most once a
 * minute per server (the `reject` line of other refusals says only the reason).
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

/** `key-mismatch` of one server at most this often (ms). */
export const KEY_MISMATCH_REPEAT_MS = 60_000;

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
  /** Servers a message has passed from since start (a key mix-up is then ruled out). */
  readonly #passed = new Set<string>();
  /** When `key-mismatch` was last said, by server. */
  readonly #mismatchSaidAt = new Map<string, number>();

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
    const server = canonicalIPv6(address) ?? address;
    if (!o.servers.includes(server)) return this.#refused("any", "drop-not-server", address, port);
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
      if (outcome !== "ok") {
        const result = `drop-auth-${outcome}`;
        const cause = mixUpCause(outcome);
        if (cause === undefined || this.#passed.has(server))
          return this.#refused(kind, result, address, port);
        return this.#mismatch(kind, result, server, port, cause);
      }
    }
    this.#passed.add(server);
    o.metrics.inc("dstm_tep_control_total", { kind, result: "ok" });
    return { message, kind };
  }

  /**
   * Counts a refused datagram of `server`, nothing of which has passed since start, and says
   * the likely key mix-up `cause` (warn, at most once a minute per server, rate-limited).
   */
  #mismatch(kind: string, result: string, server: string, port: number, cause: string): undefined {
    this.#o.metrics.inc("dstm_tep_control_total", { kind, result });
    const now = this.#o.now();
    const said = this.#mismatchSaidAt.get(server);
    if (said !== undefined && now - said < KEY_MISMATCH_REPEAT_MS) return undefined;
    this.#mismatchSaidAt.set(server, now);
    this.#o.warn.warn("key-mismatch", { server, port, reason: result, type: kind, detail: cause });
    return undefined;
  }

  /** Counts a refused datagram and logs it at warn (rate-limited). */
  #refused(kind: string, result: string, address: string, port: number): undefined {
    this.#o.metrics.inc("dstm_tep_control_total", { kind, result });
    this.#o.warn.warn("reject", { reason: result, type: kind, from: address, port });
    return undefined;
  }
}

/**
 * The likely key mix-up behind an authentication failure of every message of a server, in
 * words naming the options, or undefined (stale, replayed: a clock or a replay, not a key).
 */
function mixUpCause(outcome: string): string | undefined {
  switch (outcome) {
    case "bad-mac":
    case "unknown-key":
      return "no message from this server has passed this TEP's key since start: this TEP's --key is not the server's --tep-key file (was the hosts' key file, the server's --key, given instead?); give this TEP a copy of the server's --tep-key file as its --key";
    case "missing":
      return "every message from this server since start is unsigned: the server has no --tep-key, and this TEP (with --key) takes only signed ones; give the server --tep-key with this TEP's key file (never the hosts' --key)";
    default:
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
