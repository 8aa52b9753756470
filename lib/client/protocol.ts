/**
 * The client side of the DSTM protocol: DISCOVER, REQUEST (renew / reuse) and RELEASE with
 * retransmission and exponential backoff. Used by `dstm client`, `dstm ping4`, the tests
 * and the load generator.
 *
 * One transaction at a time per client object keeps the state obvious; a process that needs
 * many concurrent hosts (the load generator) creates many transactions on one socket with
 * {@link DstmTransport} (./transport.ts, re-exported here for its many importers).
 *
 * @module
 */
import { formatIPv4 } from "../net/addr.ts";
import type { AuthKey } from "../wire/auth.ts";
import { statusName } from "../wire/dstm.ts";
import { type DstmMessage, MessageType, Status, type WirePortSet } from "../wire/dstm_types.ts";
import type { DstmTransport, RetryPolicy } from "./transport.ts";

export {
  DEFAULT_RETRY,
  DstmTimeoutError,
  DstmTransport,
  type RetryPolicy,
  type TransportOptions,
  UNREACHABLE_HINT,
} from "./transport.ts";

/** What the server granted. */
export interface ClientLease {
  readonly ipv4: number;
  readonly host6: string;
  readonly tep6: string;
  readonly tep4?: number;
  readonly portSet?: WirePortSet;
  /** Seconds granted by the last ACK. */
  readonly leaseTime: number;
  /**
   * Local clock (ms) the lease time counts from: when the request the last ACK answered was
   * first sent (RFC 2131 §4.4.1 and §4.4.5, so the client's expiry is never after the
   * server's), native and DHCPv4-over-DHCPv6 alike (the 4o6 REBINDING REQUEST has an xid of
   * its own, so its ACK counts from it: lib/client/dhcp4o6_renewal.ts). Renew at T1 from
   * obtainedAt (half the lease when the server gave none).
   */
  readonly obtainedAt: number;
  /** Local clock (ms) when the lease ends: stop using the address then (RFC 2131 §4.4.5). */
  readonly expiresAt: number;
  /**
   * DISCOVER_ACK with EXISTING_LEASE (docs/protocol.md): the host held this lease before the
   * DISCOVER, so the requester did not create it (e.g. a running `dstm client` did).
   */
  readonly existing?: boolean;
  /** Local clock (ms) when renewing starts, if the protocol says (DHCPv4: T1, option 58). */
  readonly renewAt?: number;
}

/** The server answered with a NAK. */
export class DstmRefusedError extends Error {
  override name = "DstmRefusedError";
  /** `signed`: whether the refused request carried an AUTH option (false: no --key given). */
  constructor(
    readonly status: Status,
    readonly statusText: string,
    signed?: boolean,
  ) {
    const hint = refusalHint(status, statusText, signed);
    // A hint that says the server's reason in full replaces it: the server's copy is often cut
    // to the request's size ("HOST_IPV6 must be the address…"; lib/server/handler_messages.ts).
    const shown = statusText && !restatesReason(hint) ? ` (${statusText})` : "";
    super(`server refused: ${statusName(status)}${shown}${hint}`);
  }
}

/**
 * Whether `hint` (from {@link refusalHint}) says in full what the server's reason says, cut or
 * not: a missing signature, or HOST_IPV6 not the request's source. The key hints (unknown key
 * id, another secret) add to the server's text instead.
 */
function restatesReason(hint: string): boolean {
  return (
    hint.startsWith("; the server requires signed requests") ||
    hint.startsWith("; HOST_IPV6 must be")
  );
}

/**
 * What the user can do about a refusal, as a suffix for its message ("" when nothing useful):
 * a server that requires signed requests (docs/protocol.md, Authentication) answers an
 * unsigned one with NOT_AUTHORISED "authentication failed: missing".
 */
export function refusalHint(status: number, statusText: string, signed?: boolean): string {
  if (status !== Status.NOT_AUTHORISED) return "";
  // The server shortens its text to keep a NAK no longer than the request (docs/security.md),
  // cut at a word with "…": an unsigned request's refusal may say only "authentication…" or
  // less; what we sent tells.
  if (
    _says(statusText, "authentication failed: missing") ||
    (signed === false && _says(statusText, "authentication"))
  )
    return "; the server requires signed requests: give --key FILE with the server's key";
  if (_says(statusText, "HOST_IPV6 must"))
    return "; HOST_IPV6 must be the address the request is sent from (--host6 an address of this host), unless the server runs with --no-source-check";
  if (_says(statusText, "authentication failed: unknown-key"))
    return "; --key FILE does not hold a key this server knows";
  if (_says(statusText, "authentication failed: bad-mac"))
    return "; --key FILE holds another secret than the server's for that key id";
  return "";
}

/**
 * Whether a server's STATUS text says `phrase`: it starts with it, or it was cut ("…", at least
 * 4 characters left) within it.
 */
function _says(statusText: string, phrase: string): boolean {
  if (statusText.startsWith(phrase)) return true;
  if (!statusText.endsWith("…")) return false;
  const head = statusText.slice(0, -1);
  return head.length >= 4 && phrase.startsWith(head);
}

/**
 * What the DSTM client service (lib/client/node.ts) needs from an allocation protocol: the
 * native DSTM protocol ({@link DstmClient}) or DHCPv4-over-DHCPv6 (RFC 7341).
 */
export interface LeaseClient {
  /** The host's IPv6 address: the tunnel's source. */
  readonly host6: string;
  /** A new lease (or the host's current one). Rejects with DstmRefusedError or DstmTimeoutError. */
  discover(): Promise<ClientLease>;
  /**
   * Renews the lease on `ipv4`. `withinMs`: give up (DstmTimeoutError) once that long has
   * passed (ms; the time left of the lease: RFC 2131 §4.4.5, stop using the address at its
   * expiry), however the protocol retries.
   */
  request(ipv4: number, options?: { withinMs?: number }): Promise<ClientLease>;
  /** Gives `ipv4` back; `withinMs`: wait about this long at most for the answer (at stop). */
  release(ipv4: number, options?: { withinMs?: number }): Promise<void>;
  /** Closes the sockets. */
  close(): void;
  /** Signs with `key` from now on (reload); the old key's answers pass for `overlapMs`. */
  rotateKey?(key: AuthKey, overlapMs: number): void;
}

/** One host's view: obtain, renew and release its lease. */
export class DstmClient {
  readonly #transport: DstmTransport;
  readonly #host6: string;
  readonly #now: () => number;

  constructor(transport: DstmTransport, host6: string, now: () => number = Date.now) {
    this.#transport = transport;
    this.#host6 = host6;
    this.#now = now;
  }

  get host6(): string {
    return this.#host6;
  }

  /** DSTM_DISCOVER: a new lease (or the host's current one). */
  async discover(options: { hint?: number; leaseTime?: number } = {}): Promise<ClientLease> {
    const sent = this.#now();
    const answer = await this.#transport.exchange(
      {
        type: MessageType.DISCOVER,
        host6: this.#host6,
        host4: options.hint,
        leaseTime: options.leaseTime,
      },
      MessageType.DISCOVER_ACK,
    );
    return this.#lease(answer, sent);
  }

  /**
   * DSTM_REQUEST: renew `ipv4`, or get it back after a restart. `withinMs`: no retransmission
   * and no wait past that (ms), e.g. the time left of the lease it renews.
   */
  async request(
    ipv4: number,
    options: { leaseTime?: number; withinMs?: number } = {},
  ): Promise<ClientLease> {
    const sent = this.#now();
    const answer = await this.#transport.exchange(
      { type: MessageType.REQUEST, host6: this.#host6, host4: ipv4, leaseTime: options.leaseTime },
      MessageType.REQUEST_ACK,
      {},
      options.withinMs,
    );
    return this.#lease(answer, sent);
  }

  /**
   * DSTM_RELEASE: give `ipv4` back. Resolves on RELEASE_ACK. `withinMs`: wait at most about
   * this long (two tries, the first after a third of it; e.g. at stop), instead of the
   * transport's retry policy.
   */
  async release(ipv4: number, options: { withinMs?: number } = {}): Promise<void> {
    const answer = await this.#transport.exchange(
      { type: MessageType.RELEASE, host6: this.#host6, host4: ipv4 },
      MessageType.RELEASE_ACK,
      options.withinMs === undefined ? {} : releaseRetry(options.withinMs),
    );
    if (answer.type === MessageType.NAK)
      throw new DstmRefusedError(
        answer.status ?? Status.SERVER_ERROR,
        answer.statusText ?? "",
        this.#transport.signed,
      );
  }

  /** The lease an answer grants, counted from `sent` (ms), when its request was first sent. */
  #lease(answer: DstmMessage, sent: number): ClientLease {
    if (answer.type === MessageType.NAK) {
      throw new DstmRefusedError(
        answer.status ?? Status.SERVER_ERROR,
        answer.statusText ?? "",
        this.#transport.signed,
      );
    }
    const now = sent;
    const leaseTime = answer.leaseTime!;
    return {
      ipv4: answer.host4!,
      host6: answer.host6!,
      tep6: answer.tep6!,
      tep4: answer.tep4,
      portSet: answer.portSet,
      leaseTime,
      obtainedAt: now,
      expiresAt: now + leaseTime * 1000,
      existing: answer.existingLease === true ? true : undefined,
    };
  }
}

/**
 * The retry policy of a RELEASE bounded to about `withinMs` (ms): two tries, waiting a third
 * and then two thirds of it (±10% jitter), e.g. 2000 ms: 667 ms + 1333 ms.
 */
export function releaseRetry(withinMs: number): RetryPolicy {
  const first = Math.max(1, Math.round(withinMs / 3));
  return { initialMs: first, maxMs: first * 2, tries: 2 };
}

/** One-line description of a lease for logs and the CLI. */
export function describeLease(lease: ClientLease): string {
  return `${formatIPv4(lease.ipv4)} via TEP ${lease.tep6} for ${lease.leaseTime}s`;
}
