/**
 * The DSTM protocol's transport on the client side: one UDP socket shared by any number of
 * concurrent transactions, matched by xid, with retransmission and exponential backoff (the
 * load generator runs many hosts on one; ./protocol.ts's DstmClient one transaction at a
 * time). Answers from anyone but the server, with an unknown xid, of the wrong type or (with a
 * key) without a valid signature are ignored and counted.
 *
 * @module
 */
import { KeyRing } from "../control/key_ring.ts";
import { canonicalIPv6 } from "../net/addr.ts";
import { bindUdp, type UdpEndpoint } from "../sys/udp.ts";
import { type AuthKey, ReplayGuard, signMessage, verifyMessage } from "../wire/auth.ts";
import { decodeMessage, encodeMessage } from "../wire/dstm.ts";
import { DSTM_PORT, type DstmMessage, MessageType, Status } from "../wire/dstm_types.ts";
import type { UnreachableExplainer } from "./unreachable_reason.ts";

/** What an ICMPv6 destination unreachable from the server's address most often means. */
export const UNREACHABLE_HINT =
  "most often port unreachable, nothing listens on the DSTM port there: is --server the DSTM server's address (not the TEP's), and is the server running?";

/** No valid answer after every retransmission. */
export class DstmTimeoutError extends Error {
  override name = "DstmTimeoutError";
}

export interface RetryPolicy {
  /** First timeout (ms); doubled after each try. Default 1000. */
  readonly initialMs: number;
  /** Ceiling of one timeout (ms). Default 8000. */
  readonly maxMs: number;
  /** Total transmissions. Default 4. */
  readonly tries: number;
}

export const DEFAULT_RETRY: RetryPolicy = { initialMs: 1000, maxMs: 8000, tries: 4 };

export interface TransportOptions {
  readonly server: string;
  readonly port?: number;
  /** Local address to send from (default `::`, the kernel picks). */
  readonly bind?: string;
  readonly key?: AuthKey;
  readonly retry?: Partial<RetryPolicy>;
  /** Called before each retransmission (attempt = 2, 3, …), e.g. to tell the user. */
  readonly onRetransmit?: (attempt: number, type: number) => void;
  /**
   * Told when the kernel reports an ICMPv6 error (destination unreachable: most often port
   * unreachable, nothing listens on the server's port there; RFC 4443 §3.1) for a message
   * sent while an exchange waits (`type`: the message type waiting), once per error. The exchange goes on
   * retransmitting (a server being started may answer the next try) unless `unreachableEnds`.
   */
  readonly onUnreachable?: (type: number, detail: string) => void;
  /**
   * An ICMPv6 destination unreachable for a message of an exchange ends that exchange at once
   * with {@link DstmTimeoutError} instead of waiting out its retries: nothing listens there
   * (RFC 4443 §3.1), so with another server to try (./failover.ts) it is down. Default false.
   */
  readonly unreachableEnds?: boolean;
  /**
   * Reads the ICMPv6 code of such an error (./unreachable_reason.ts): drained before each
   * send, asked when Bun reports the error. Without it, `detail` says what an unreachable
   * most often means ({@link UNREACHABLE_HINT}).
   */
  readonly explainUnreachable?: UnreachableExplainer;
  /** Told of each message sent (every try) and each answer accepted, e.g. for debug logs. */
  readonly onMessage?: (direction: "sent" | "received", message: DstmMessage, peer: string) => void;
  readonly now?: () => number;
}

interface Pending {
  readonly resolve: (answer: DstmMessage) => void;
  readonly expect: number;
  /** An unsigned NAK NOT_AUTHORISED came for it (not believed: see onDatagram). */
  unsignedRefusal?: boolean;
  /** An ICMPv6 error came back for a try of it (TransportOptions.onUnreachable): in words. */
  unreachable?: string;
  readonly type: number;
  /** Ends the current wait (TransportOptions.unreachableEnds). */
  wake?: () => void;
}

/**
 * A UDP socket shared by any number of concurrent transactions, matched by xid. Answers
 * from anyone but the server, with an unknown xid, of the wrong type or (with a key)
 * without a valid signature are ignored; `ignored` counts them.
 */
export class DstmTransport {
  readonly #endpoint: UdpEndpoint;
  readonly #server: string;
  readonly #port: number;
  readonly #keys: KeyRing;

  /** Whether requests are signed (a key was given). */
  get signed(): boolean {
    return this.#keys.signing !== undefined;
  }
  readonly #guard = new ReplayGuard();
  readonly #retry: RetryPolicy;
  readonly #onRetransmit: ((attempt: number, type: number) => void) | undefined;
  readonly #onMessage: TransportOptions["onMessage"];
  readonly #now: () => number;
  readonly #pending = new Map<number, Pending>();
  /** Ends the waits of exchanges in progress (close). */
  readonly #wakers = new Set<() => void>();
  #closed = false;
  #nextXid = (Math.random() * 0x100000000) >>> 0;
  ignored = 0;
  retransmissions = 0;
  /** ICMPv6 errors (destination unreachable) for messages sent to the server. */
  unreachable = 0;
  readonly #onUnreachable: TransportOptions["onUnreachable"];
  readonly #unreachableEnds: boolean;
  readonly #explain: UnreachableExplainer | undefined;

  private constructor(endpoint: UdpEndpoint, options: TransportOptions) {
    this.#endpoint = endpoint;
    this.#server = options.server;
    this.#port = options.port ?? DSTM_PORT;
    this.#keys = new KeyRing(options.key);
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#onRetransmit = options.onRetransmit;
    this.#onUnreachable = options.onUnreachable;
    this.#unreachableEnds = options.unreachableEnds ?? false;
    this.#explain = options.explainUnreachable;
    this.#onMessage = options.onMessage;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Binds a UDP socket on `options.bind` (default `::`, any address) and an ephemeral port, for
   * exchanges with `options.server`:`options.port` (default 4607, DSTM_PORT). With
   * `options.key`, every request is signed and every answer must carry a valid AUTH option.
   * Retransmission follows `options.retry` (timeouts in ms, doubled after each try; defaults
   * 1000 ms first, 8000 ms ceiling, 4 tries). Rejects with a UdpBindError (one-line message,
   * e.g. an address not on this host) when the socket cannot be bound. Close it with `close()`.
   *
   * @example const transport = await DstmTransport.open({ server: "2001:db8::53", retry: { tries: 3 } });
   */
  static async open(options: TransportOptions): Promise<DstmTransport> {
    let transport: DstmTransport | undefined;
    const endpoint = await bindUdp(
      options.bind ?? "::",
      0,
      (data, address, port) => transport?.onDatagram(data, address, port),
      { onAsyncError: () => transport?.onAsyncError() },
    );
    transport = new DstmTransport(endpoint, options);
    return transport;
  }

  /** Local address and port of the socket. */
  get local(): { address: string; port: number } {
    return { address: this.#endpoint.address, port: this.#endpoint.port };
  }

  /**
   * Sends `message` (its xid is assigned here) and resolves with the matching answer of type
   * `expect` or NAK; rejects with DstmTimeoutError after the last try, or once `withinMs`
   * (ms, e.g. the time left of the lease a REQUEST renews: RFC 2131 §4.4.5, stop using the
   * address at its expiry) has passed, whichever comes first: no wait goes past it.
   */
  async exchange(
    message: Omit<DstmMessage, "xid">,
    expect: number,
    retry: Partial<RetryPolicy> = {},
    withinMs?: number,
  ): Promise<DstmMessage> {
    const policy = { ...this.#retry, ...retry };
    const endAt = withinMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + withinMs;
    let tries = 0;
    const xid = this.#nextXid;
    this.#nextXid = (this.#nextXid + 1) >>> 0;
    let pending: Pending | undefined;
    const answer = new Promise<DstmMessage>((resolve) => {
      pending = { resolve, expect, type: message.type };
      this.#pending.set(xid, pending);
    });
    let timeout = policy.initialMs;
    try {
      for (let attempt = 0; attempt < policy.tries; attempt++) {
        // Timers may fire a little early: under 1 ms left is no time for an answer.
        if (this.#closed || performance.now() >= endAt - 1) break;
        if (pending?.unreachable && this.#unreachableEnds) break;
        // Each try is signed afresh: a retransmitted signed message would be a replay.
        const key = this.#keys.signing;
        const bytes = key
          ? signMessage({ ...message, xid }, key, this.#now())
          : encodeMessage({ ...message, xid });
        if (attempt > 0) {
          this.retransmissions++;
          this.#onRetransmit?.(attempt + 1, message.type);
        }
        this.#explain?.drain();
        this.#endpoint.send(bytes, this.#server, this.#port);
        tries++;
        this.#onMessage?.("sent", { ...message, xid } as DstmMessage, this.#server);
        // ±10% jitter so that many clients restarted together do not retransmit in lockstep.
        const wait = Math.min(timeout * (0.9 + Math.random() * 0.2), endAt - performance.now());
        let timer: ReturnType<typeof setTimeout> | undefined;
        let wake: (() => void) | undefined;
        const result = await Promise.race([
          answer,
          new Promise<null>((resolve) => {
            timer = setTimeout(() => resolve(null), wait);
            wake = () => resolve(null);
            this.#wakers.add(wake);
            if (pending) pending.wake = wake;
          }),
        ]);
        clearTimeout(timer);
        if (wake) this.#wakers.delete(wake);
        if (pending) pending.wake = undefined;
        if (result) return result;
        timeout = Math.min(timeout * 2, policy.maxMs);
      }
    } finally {
      this.#pending.delete(xid);
    }
    if (pending?.unsignedRefusal) {
      throw new DstmTimeoutError(
        `no signed answer from DSTM server [${this.#server}]:${this.#port} after ${policy.tries} tries, only an unsigned NAK NOT_AUTHORISED (from the server or anyone on the link): is the key the server's?`,
      );
    }
    const after = `after ${tries} ${tries === 1 ? "try" : "tries"}`;
    if (pending?.unreachable) {
      throw new DstmTimeoutError(
        `no answer from DSTM server [${this.#server}]:${this.#port} ${after}, only ${pending.unreachable}`,
      );
    }
    if (this.#closed)
      throw new DstmTimeoutError(
        `no answer from DSTM server [${this.#server}]:${this.#port} before the socket was closed`,
      );
    if (tries < policy.tries)
      throw new DstmTimeoutError(
        `no answer from DSTM server [${this.#server}]:${this.#port} within ${Math.round(withinMs ?? 0)} ms (${after})`,
      );
    throw new DstmTimeoutError(
      `no answer from DSTM server [${this.#server}]:${this.#port} ${after}; is it running and reachable?`,
    );
  }

  /**
   * The kernel reported an ICMP error for an earlier send (Bun says no more; the socket sends
   * only to the server, so it is about the server's address): counted, each waiting exchange
   * marked, and told (with the type of a waiting message). Not while nothing waits (a late error).
   */
  onAsyncError(): void {
    if (this.#pending.size === 0) return;
    this.unreachable++;
    const detail =
      this.#explain?.explain(this.local, this.#server, this.#port) ??
      `ICMPv6 destination unreachable from the server's address: ${UNREACHABLE_HINT}`;
    let type: number | undefined;
    for (const pending of this.#pending.values()) {
      pending.unreachable = detail;
      type ??= pending.type;
    }
    if (type !== undefined) this.#onUnreachable?.(type, detail);
    if (this.#unreachableEnds) for (const pending of this.#pending.values()) pending.wake?.();
  }

  onDatagram(data: Uint8Array, address: string, port: number): void {
    if (port !== this.#port || !sameAddress(address, this.#server)) {
      this.ignored++;
      return;
    }
    const decoded = decodeMessage(data);
    if (!decoded.ok) {
      this.ignored++;
      return;
    }
    const message = decoded.value;
    const pending = this.#pending.get(message.xid);
    if (!pending || (message.type !== pending.expect && message.type !== MessageType.NAK)) {
      this.ignored++;
      return;
    }
    if (this.#keys.signing) {
      const outcome = verifyMessage(
        data.subarray(0, decoded.offset),
        message,
        this.#keys.accepted,
        this.#guard,
        this.#now(),
      );
      // An unsigned NAK NOT_AUTHORISED is how a server says it could not verify us. Anyone
      // who sees the xid on the link can send one, so it is believed only for a DISCOVER
      // (nothing to lose); for a REQUEST or RELEASE it is remembered and the exchange goes on,
      // ending in DstmTimeoutError (the lease is kept until it expires), saying so.
      const unsignedAuthNak =
        outcome === "missing" &&
        message.type === MessageType.NAK &&
        message.status === Status.NOT_AUTHORISED;
      if (unsignedAuthNak && pending.expect !== MessageType.DISCOVER_ACK) {
        pending.unsignedRefusal = true;
        this.ignored++;
        return;
      }
      if (outcome !== "ok" && !unsignedAuthNak) {
        this.ignored++;
        return;
      }
    }
    this.#pending.delete(message.xid);
    this.#onMessage?.("received", message, address);
    pending.resolve(message);
  }

  /**
   * Reload: signs with `key` from now on; answers signed with the key it replaces are still
   * accepted for `overlapMs` (lib/control/key_ring.ts). Returns the replaced key, if it overlaps.
   */
  rotateKey(key: AuthKey, overlapMs: number): AuthKey | undefined {
    return this.#keys.rotate(key, overlapMs);
  }

  /** Closes the socket; an exchange still waiting stops at once with DstmTimeoutError (no timer is left). */
  close(): void {
    this.#closed = true;
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
    this.#keys.close();
    this.#endpoint.close();
  }
}

function sameAddress(a: string, b: string): boolean {
  return a === b || (canonicalIPv6(a) ?? a) === (canonicalIPv6(b) ?? b);
}
