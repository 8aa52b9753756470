/**
 * The server's end of the server ⇄ TEP control channel (docs/protocol.md "TEP
 * synchronisation", docs/security.md): what goes out, and which incoming datagrams count as
 * coming from a TEP.
 *
 * Everything the server sends to a TEP (BIND, UNBIND, SNAPSHOT) leaves from the server's
 * listening socket, so the TEP can check the source port as well as the address, and goes
 * only to a **configured** TEP (a pool's `--tep` address) at its control port. A datagram of
 * a TEP's kind (SYNC, BIND_ACK, NAK) is accepted only when
 *
 * 1. its source address is a configured TEP (else `unknown-tep`: no state is created, no
 *    answer is sent, whatever TEP_IPV6 it names);
 * 2. its source port is the TEPs' control port (else `wrong-port`);
 * 3. a SYNC names that same TEP in TEP_IPV6 (else `tep6-mismatch`);
 * 4. with a TEP key (`--tep-key`), it carries a valid MAC in the `tep` domain, fresh and not a
 *    replay (else `auth-<outcome>`): a message signed with a host key never passes. The key
 *    file's first key signs; each of its keys verifies, and after a reload the keys it
 *    dropped still verify for `--key-overlap` ({@link TepChannel.rotateKeys}). A message whose
 *    MAC fails the TEP keys but verifies with one of the server's host keys (`--key`) is a TEP
 *    given the host key file instead of the TEP key: refused as `auth-host-key`, and the
 *    `tep-reject` line says so and what to give the TEP;
 * 5. an answer matches a BIND/UNBIND in flight to that TEP (else `unexpected-answer`).
 *
 * Each refusal is counted in `dstm_tep_refused_total{reason}` and logged at warn,
 * rate-limited.
 *
 * @module
 */
import { KeyRing } from "../control/key_ring.ts";
import type { Logger } from "../control/log.ts";
import { logMessage } from "../control/message_log.ts";
import type { Metrics } from "../control/metrics.ts";
import { WarnLimit } from "../control/warn_limit.ts";
import { canonicalIPv6, parseIPv6 } from "../net/addr.ts";
import { type AuthKey, ReplayGuard, signMessage, verifyMessage } from "../wire/auth.ts";
import { encodeMessage } from "../wire/dstm.ts";
import { type DstmMessage, MessageType } from "../wire/dstm_types.ts";
import { RepeatedWarn } from "./repeated_warn.ts";

export interface TepChannelOptions {
  /** IPv6 addresses of the configured TEPs (the pools' `--tep`). */
  readonly teps: Iterable<string>;
  /** UDP port of every TEP's control endpoint (default 4608). */
  readonly port: number;
  /** Server ⇄ TEP keys (`--tep-key`); the first signs. Empty: the channel is unauthenticated. */
  readonly keys: readonly AuthKey[];
  /**
   * The hosts' keys (`--key`) in force, never accepted here: only to recognise a TEP that signs
   * with one (it was given the host key file instead of the TEP key), for the log.
   */
  readonly hostKeys?: () => Iterable<AuthKey>;
  /** Sends from the server's listening socket, from the address `source` when given. */
  readonly send: (data: Uint8Array, address: string, port: number, source?: string) => boolean;
  /** Source address for every TEP (`--tep-source`, or a listen address that is not `::`). */
  readonly source?: string;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
}

/** Retransmission of BIND / UNBIND: `tries` sends, `intervalMs` apart. */
export interface ExchangeRetry {
  readonly tries: number;
  readonly intervalMs: number;
  /**
   * Asked before each retransmission: false ends the exchange (it resolves null) instead.
   * For a message the state has moved past meanwhile (an UNBIND of a binding bound again).
   */
  readonly keepGoing?: () => boolean;
}

interface InFlight {
  readonly tep6: string;
  readonly resolve: (answer: DstmMessage | null) => void;
}

export class TepChannel {
  readonly #o: TepChannelOptions;
  readonly #teps: ReadonlySet<string>;
  /** `--tep-key`: the first key signs; a reload replaces them (./reload.ts, with an overlap). */
  readonly #keys: KeyRing;
  /** TEPs already told about in {@link #signedButUnchecked}. */
  readonly #toldSigned = new Set<string>();
  readonly #guard: ReplayGuard;
  /** Nonces of messages found signed with a host key (a guard apart: nothing is accepted). */
  readonly #hostKeyGuard = new ReplayGuard();
  readonly #inFlight = new Map<number, InFlight>();
  readonly #sources = new Map<string, string>();
  readonly #warn: WarnLimit;
  /** `tep-reject` of one reason, type and sender: once a minute (a TEP with another key SYNCs every 2 s). */
  readonly #repeats: RepeatedWarn;
  #xid = (Math.random() * 2 ** 32) >>> 0;
  #closed = false;

  constructor(options: TepChannelOptions) {
    this.#o = options;
    this.#teps = new Set([...options.teps].map((t) => canonicalIPv6(t) ?? t));
    this.#keys = new KeyRing();
    if (options.keys.length > 0) this.#keys.replace(options.keys, 0);
    this.#warn = new WarnLimit(options.log, { now: options.now });
    this.#repeats = new RepeatedWarn(this.#warn, { now: options.now });
    // Nothing stamped before this start: what the previous run accepted cannot be replayed.
    this.#guard = new ReplayGuard({ notBefore: (options.now ?? Date.now)() });
    options.metrics.counter(
      "dstm_tep_refused_total",
      "Datagrams refused on the server-TEP channel (not from a configured TEP, bad MAC, ...), by reason",
      ["reason"],
    );
  }

  /** True when the channel is authenticated (a TEP key is configured). */
  get authenticated(): boolean {
    return this.#keys.signing !== undefined;
  }

  /**
   * Reload of `--tep-key` (lib/server/reload.ts): the file's first key signs from now on and
   * each of its keys is accepted at once; keys it no longer holds are still accepted from the
   * TEPs for `overlapMs`. Returns those keys. Only an authenticated channel rotates.
   */
  rotateKeys(
    keys: readonly AuthKey[],
    overlapMs: number,
    onRetired?: (keys: readonly AuthKey[]) => void,
  ): AuthKey[] {
    if (!this.#keys.signing) throw new Error("this server runs without --tep-key");
    return this.#keys.replace(keys, overlapMs, onRetired);
  }

  /** The configured TEP addresses (canonical). */
  get teps(): ReadonlySet<string> {
    return this.#teps;
  }

  /**
   * Sends to `tep6` from `source` from now on: the server address its accepted SYNC arrived at
   * (a multihomed server must use the address the TEP knows as `--server`). Only configured
   * TEPs are kept, so this map is bounded by the configuration.
   */
  setSource(tep6: string, source: string): void {
    if (this.#teps.has(tep6)) this.#sources.set(tep6, source);
  }

  /** Signs (with a TEP key) or encodes `message` and sends it to `tep6`'s control port. */
  send(tep6: string, message: DstmMessage): boolean {
    logMessage(this.#o.log, "sent", message, tep6);
    const key = this.#keys.signing;
    const bytes = key
      ? // MAC-ed with the TEP's address: it verifies at that TEP only (docs/protocol.md).
        signMessage(message, key, this.#o.now(), undefined, "tep", parseIPv6(tep6) ?? undefined)
      : encodeMessage(message);
    return this.#o.send(bytes, tep6, this.#o.port, this.#o.source ?? this.#sources.get(tep6));
  }

  /**
   * Sends `message` to `tep6` with a fresh xid, resending (signed afresh each time: a resent
   * signed message would be a replay) until the TEP answers; resolves with its BIND_ACK or NAK,
   * or null after the last try.
   */
  exchange(
    tep6: string,
    message: Omit<DstmMessage, "xid">,
    retry: ExchangeRetry,
  ): Promise<DstmMessage | null> {
    if (this.#closed) return Promise.resolve(null);
    this.#xid = (this.#xid + 1) >>> 0;
    const xid = this.#xid;
    return new Promise((resolve) => {
      let tries = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (answer: DstmMessage | null) => {
        clearTimeout(timer);
        this.#inFlight.delete(xid);
        resolve(answer);
      };
      const attempt = () => {
        if (this.#closed || tries >= retry.tries) return finish(null);
        if (tries > 0 && retry.keepGoing && !retry.keepGoing()) return finish(null);
        tries++;
        this.send(tep6, { ...message, xid } as DstmMessage);
        timer = setTimeout(attempt, retry.intervalMs);
      };
      this.#inFlight.set(xid, { tep6, resolve: finish });
      attempt();
    });
  }

  /**
   * Checks a SYNC, BIND_ACK or NAK that arrived at the server socket (`raw`: exactly the
   * message's bytes). An answer is delivered to its exchange; an accepted SYNC is returned
   * with the TEP it comes from; anything refused returns null.
   */
  receive(
    raw: Uint8Array,
    message: DstmMessage,
    from: string,
    port: number,
  ): { tep6: string; sync: DstmMessage } | null {
    const tep6 = canonicalIPv6(from) ?? from;
    if (!this.#teps.has(tep6)) return this.#refuse("unknown-tep", message, from, port);
    if (port !== this.#o.port) return this.#refuse("wrong-port", message, from, port);
    const isSync = message.type === MessageType.SYNC;
    if (isSync && (canonicalIPv6(message.tep6 ?? "") ?? "") !== tep6)
      return this.#refuse("tep6-mismatch", message, from, port);
    if (this.#keys.signing) {
      const outcome = verifyMessage(
        raw,
        message,
        this.#keys.accepted,
        this.#guard,
        this.#o.now(),
        "tep",
      );
      if (outcome !== "ok") {
        const hostKey =
          outcome === "bad-mac" || outcome === "unknown-key"
            ? this.#hostKeySigned(raw, message)
            : undefined;
        if (hostKey !== undefined)
          return this.#refuse("auth-host-key", message, from, port, hostKeyDetail(hostKey));
        return this.#refuse(`auth-${outcome}`, message, from, port);
      }
    } else if (message.auth !== undefined) this.#signedButUnchecked(tep6, message);
    logMessage(this.#o.log, "received", message, from);
    if (isSync) return { tep6, sync: message };
    const pending = this.#inFlight.get(message.xid);
    if (!pending || pending.tep6 !== tep6)
      return this.#refuse("unexpected-answer", message, from, port);
    pending.resolve(message);
    return null;
  }

  /**
   * Why `tep6` may not have answered a BIND / UNBIND, for the `tep-unreachable` warning: when
   * it signs its SYNCs and this server has no `--tep-key`, it refused what was sent
   * (unsigned, `drop-auth-missing` at the TEP) rather than missed it; otherwise the usual
   * causes, keys first (a TEP with a key it does not share drops the server's messages
   * without a word: only its SYNCs show the mismatch, as `tep-reject reason=auth-…` here).
   */
  noAnswerHint(tep6: string): string {
    if (!this.#keys.signing && this.#toldSigned.has(tep6))
      return "the TEP refused them: it signs its messages (it runs with --key) and this server has no --tep-key, so it drops every unsigned BIND/UNBIND/SNAPSHOT from here (drop-auth-missing in its log); give the server tep-key with the TEP's key file";
    return this.#keys.signing
      ? "is it running and reachable, and does its --key match this server's --tep-key? (a TEP whose key differs drops the server's messages; its SYNCs then show here as tep-reject reason=auth-bad-mac)"
      : "is it running and reachable? (a TEP started with --key drops this server's unsigned messages: give the server the same tep-key)";
  }

  /** Gives up every exchange in flight (they resolve null). */
  close(): void {
    this.#closed = true;
    this.#keys.close();
    for (const pending of [...this.#inFlight.values()]) pending.resolve(null);
  }

  /**
   * A TEP signs its messages but this server has no `--tep-key`: the TEP, which checks, will
   * refuse every BIND and SNAPSHOT from here (`drop-auth-missing` in its log), so BINDs time
   * out. Said once per TEP (warn), counted per message.
   */
  #signedButUnchecked(tep6: string, message: DstmMessage): void {
    this.#o.metrics.inc("dstm_tep_messages_total", { kind: "signed_unchecked" });
    if (this.#toldSigned.has(tep6)) return;
    this.#toldSigned.add(tep6);
    this.#warn.warn("tep-key-missing", {
      tep6,
      "key-id": message.auth?.keyId,
      detail:
        "this TEP signs its messages but this server has no --tep-key: the TEP refuses the server's BIND and SNAPSHOT; give the server --tep-key with the TEP's key",
    });
  }

  /**
   * The id of the host key (`--key`) `raw` is signed with in the `tep` domain, if one: the
   * TEP holds the hosts' key file where the TEP key belongs.
   */
  #hostKeySigned(raw: Uint8Array, message: DstmMessage): number | undefined {
    const keyId = message.auth?.keyId;
    const hostKey = [...(this.#o.hostKeys?.() ?? [])].find((k) => k.id === keyId);
    if (hostKey === undefined) return undefined;
    const outcome = verifyMessage(
      raw,
      message,
      new Map([[hostKey.id, hostKey]]),
      this.#hostKeyGuard,
      this.#o.now(),
      "tep",
    );
    // A matching MAC: past it only freshness is checked (stale, replayed still mean signed with it).
    return outcome === "bad-mac" || outcome === "unknown-key" ? undefined : hostKey.id;
  }

  #refuse(reason: string, message: DstmMessage, from: string, port: number, detail?: string): null {
    this.#o.metrics.inc("dstm_tep_refused_total", { reason });
    const type =
      message.type === MessageType.SYNC
        ? "sync"
        : message.type === MessageType.NAK
          ? "nak"
          : "bind_ack";
    this.#repeats.warn(`${reason}|${type}|${from}|${port}`, "tep-reject", {
      reason,
      type,
      from,
      port,
      tep6: message.tep6,
      detail:
        detail ??
        (reason.startsWith("auth-") && this.#teps.has(canonicalIPv6(from) ?? from)
          ? "a configured TEP whose messages fail the TEP key: does its --key match this server's tep-key?"
          : undefined),
    });
    return null;
  }
}

/** What `tep-reject reason=auth-host-key` says: the mix-up, and the fix. */
function hostKeyDetail(keyId: number): string {
  return `this TEP signs with the hosts' key (this server's --key, key id ${keyId}), not the server-TEP key: give the TEP a copy of this server's --tep-key file as its --key (the hosts hold --key, so a TEP must never trust it)`;
}
