/**
 * The DSTM server's protocol step: one request datagram in, at most one answer out.
 *
 * Order of checks, each failure counted under its own name:
 * decode → (request types only) → authentication → source check → rate limit per source
 * prefix (./admission.ts: dropped, counted) → allocation engine (the lease cap per host
 * prefix answers POOL_EXHAUSTED, counted as `prefix-limit`; a host whose IPv6 address is a
 * TEP's, NOT_AUTHORISED, counted as `host6-is-tep`).
 * Every request that can be answered gets an answer: an ACK, or a NAK with a status code
 * (the paper's server stayed silent on errors, leaving clients to time out). Only input
 * that cannot be attributed to a transaction (no readable header) or that is itself an
 * answer is dropped silently, to avoid loops between servers.
 *
 * The answers themselves (ACK shapes, size-bounded NAKs, STATUS text, signing) are built in
 * ./handler_messages.ts.
 *
 * @module
 */
import type { AllocationEngine, EngineOutcome, EngineResult } from "../alloc/engine.ts";
import type { Logger } from "../control/log.ts";
import { logMessage } from "../control/message_log.ts";
import type { CounterSeries, Metrics } from "../control/metrics.ts";
import { WarnLimit } from "../control/warn_limit.ts";
import type { Lease } from "../lease/lease.ts";
import { canonicalIPv6, formatIPv4, parseIPv6 } from "../net/addr.ts";
import { type AuthKey, type ReplayGuard, type VerifyOutcome, verifyMessage } from "../wire/auth.ts";
import { type DstmDecodeError, decodeMessage, peekHeader } from "../wire/dstm.ts";
import { encodeAck, findOption } from "../wire/dstm_ack.ts";
import { type DstmMessage, MessageType, OptionCode, Status } from "../wire/dstm_types.ts";
import { type Admission, isAdmissionRefusal } from "./admission.ts";
import type { BindingSink, Host6Bytes } from "./binding_sink.ts";
import {
  ackFor,
  declareHandlerMetrics,
  encodeAnswer,
  isRequestType,
  isTepMessage,
  nakWithin,
  REASON_STATUS,
  STATUS_NAMES,
  TYPE_NAMES,
} from "./handler_messages.ts";
import { LeaseLines } from "./lease_line.ts";

export { declareHandlerMetrics };

export interface HandlerOptions {
  readonly engine: AllocationEngine;
  /** When set, every request must carry a valid AUTH option signed with one of these keys. */
  readonly keys?: ReadonlyMap<number, AuthKey>;
  readonly replayGuard?: ReplayGuard;
  /** Require the HOST_IPV6 option to equal the datagram's source address (default true). */
  readonly sourceCheck?: boolean;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
  /** Where bindings go (the TEPs); none in a server without TEP synchronisation. */
  readonly bindings?: BindingSink;
  /** Rate limit per source prefix and refusal accounting; none: every request goes on. */
  readonly admission?: Admission;
}

/** TEP addresses whose bytes the handler keeps at most (configured TEPs are far fewer). */
const TEP6_CACHE_MAX = 256;

export class DstmHandler {
  readonly #o: HandlerOptions;
  readonly #now: () => number;
  readonly #sourceCheck: boolean;
  /** Refusals anyone can trigger (malformed, unauthenticated, spoofed): logged rate-limited. */
  readonly #warn: WarnLimit;
  /** The engine's refusals (no-such-lease, address-in-use, …): info, but bounded too. */
  readonly #rejects: WarnLimit;
  /** TEP IPv6 address text → its 16 bytes, for the ACKs (a few TEPs; cleared past TEP6_CACHE_MAX). */
  readonly #tep6Bytes = new Map<string, Uint8Array>();
  /** The lease lines at info (./lease_line.ts). */
  readonly #leaseLines: LeaseLines;
  /** `dstm_messages_total` series by type × 256 + status, once counted (./handler.ts #count). */
  readonly #counted = new Map<number, CounterSeries>();

  constructor(options: HandlerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#warn = new WarnLimit(options.log, { now: this.#now });
    this.#rejects = new WarnLimit(options.log, { now: this.#now, perSecond: 50, burst: 200 });
    this.#sourceCheck = options.sourceCheck ?? true;
    this.#leaseLines = new LeaseLines(options.log);
    declareHandlerMetrics(options.metrics);
  }

  /**
   * Handles one datagram from `source`:`port`, sent to this server's address `local`;
   * resolves to the answer bytes, or null to stay silent.
   */
  handle(raw: Uint8Array, source: string, port = 0, local?: string): Promise<Uint8Array | null> {
    const answer = this.#handle(raw, source, port, local);
    // One promise less per request when the request and answer are not logged (not debug).
    if (!this.#o.log.enabled("debug")) return answer;
    return answer.then((bytes) => {
      this.#debug(raw, bytes, source);
      return bytes;
    });
  }

  /** `--log-level debug`: the request and its answer, one line each (the TEP channel logs its own). */
  #debug(raw: Uint8Array, answer: Uint8Array | null, source: string): void {
    const log = this.#o.log;
    const request = decodeMessage(raw);
    if (request.ok && isTepMessage(request.value.type)) return;
    const decoded = answer ? decodeMessage(answer) : undefined;
    const result = !decoded?.ok
      ? "dropped"
      : decoded.value.type === MessageType.NAK
        ? "nak"
        : "ack";
    if (request.ok) logMessage(log, "received", request.value, source, { result });
    else log.debug("message-received", { peer: source, result, reason: request.error.code });
    if (decoded?.ok) logMessage(log, "sent", decoded.value, source, { result });
  }

  async #handle(
    raw: Uint8Array,
    source: string,
    port: number,
    local: string | undefined,
  ): Promise<Uint8Array | null> {
    const decoded = decodeMessage(raw);
    if (!decoded.ok) return this.#malformed(raw, decoded.error, source);
    const request = decoded.value;
    // The message's own bytes (without what follows it in the datagram) are taken only where
    // they are read: a view of a received datagram costs its buffer (0.2-1 µs a request).
    const end = decoded.offset;
    if (this.#o.bindings !== undefined && isTepMessage(request.type)) {
      // The server ⇄ TEP channel (SYNC, BIND_ACK, NAK): checked against the configured TEPs
      // and the TEP key, never the host keys; never answered here (docs/security.md).
      this.#o.bindings.onTepMessage(raw.subarray(0, end), request, source, port, local);
      return null;
    }
    if (!isRequestType(request.type)) {
      this.#o.metrics.inc("dstm_dropped_total", { reason: "not-a-request" });
      return null;
    }
    const authentic = this.#o.keys
      ? this.#authenticate(raw.subarray(0, end), request, source)
      : "ok";
    if (authentic !== "ok") {
      this.#count(request.type, Status.NOT_AUTHORISED);
      return this.#within(
        raw.length,
        { type: MessageType.NAK, xid: request.xid, status: Status.NOT_AUTHORISED },
        `authentication failed: ${authentic}`,
      );
    }
    const key = this.#o.keys ? this.#o.keys.get(request.auth!.keyId) : undefined;
    const host6 = request.host6!;
    // `host6` is canonical text (formatted from the option's bytes): a `source` spelled the
    // same is its canonical form too, and needs no parse and format (0.3-0.5 µs); the socket
    // layers give canonical text, other spellings are canonicalized as before.
    if (this.#sourceCheck && source !== host6 && canonicalIPv6(source) !== host6) {
      return this.#sourceMismatch(raw.length, request, source, key);
    }
    if (this.#o.admission && !this.#o.admission.admit("native", source)) return null;
    const result = await this.#dispatch(request, host6);
    if (!result.ok) return this.#refuse(request, result, key);
    const answer = this.#grant(request, result, key, raw);
    if (answer instanceof Uint8Array) return answer;
    // Awaited, not returned: an async function resolving with a promise pays two more turns
    // of the microtask queue than one awaiting it (in 5 A/B pairs of bench/alloc_handler,
    // memory store at warn, 3.5-4.2 µs per request against 3.5-6.0).
    return await answer;
  }

  /**
   * A request that does not decode: NAK MALFORMED (UNSUPPORTED_VERSION for another version)
   * with the decoder's reason, when its header shows a request; dropped otherwise.
   */
  #malformed(raw: Uint8Array, error: DstmDecodeError, source: string): Uint8Array | null {
    const { metrics } = this.#o;
    const header = peekHeader(raw);
    if (!header || !isRequestType(header.type)) {
      metrics.inc("dstm_dropped_total", { reason: header ? "not-a-request" : "no-header" });
      return null;
    }
    metrics.inc("dstm_malformed_total", { error: error.code });
    this.#warn.warn("reject", {
      reason: "malformed",
      error: error.code,
      from: source,
      detail: error.message,
    });
    const status = error.code === "bad-version" ? Status.UNSUPPORTED_VERSION : Status.MALFORMED;
    this.#count(header.type, status);
    return this.#within(
      raw.length,
      { type: MessageType.NAK, xid: header.xid, status },
      error.message,
    );
  }

  /**
   * HOST_IPV6 is not the datagram's source: NAK NOT_AUTHORISED (no longer than the request's
   * `limit` bytes), counted and logged.
   */
  #sourceMismatch(
    limit: number,
    request: DstmMessage,
    source: string,
    key: AuthKey | undefined,
  ): Uint8Array | null {
    const host6 = request.host6!;
    this.#o.metrics.inc("dstm_auth_failures_total", { reason: "source-mismatch" });
    this.#count(request.type, Status.NOT_AUTHORISED);
    this.#warn.warn("reject", { reason: "source-mismatch", from: source, host6 });
    return this.#within(
      limit,
      { type: MessageType.NAK, xid: request.xid, status: Status.NOT_AUTHORISED },
      "HOST_IPV6 must be the address the request is sent from; a server with --no-source-check accepts other addresses",
      key,
    );
  }

  /** The engine refused: NAK with the status of its reason (the prefix limit via admission). */
  #refuse(
    request: DstmMessage,
    result: Extract<EngineResult, { ok: false }>,
    key: AuthKey | undefined,
  ): Uint8Array {
    const host6 = request.host6!;
    const status = REASON_STATUS[result.reason] ?? Status.SERVER_ERROR;
    this.#count(request.type, status);
    const fields = {
      reason: result.reason,
      type: TYPE_NAMES[request.type],
      host6,
      ipv4: request.host4 === undefined ? undefined : formatIPv4(request.host4),
    };
    if (isAdmissionRefusal(result.reason) && this.#o.admission) {
      this.#o.admission.refused("native", result.reason, fields);
    } else if (result.reason === "host6-is-tep") {
      this.#warn.warn("reject", fields);
    } else {
      this.#rejects.info("reject", fields);
    }
    return this.#answer(
      {
        type: MessageType.NAK,
        xid: request.xid,
        status,
        statusText: result.message,
        host6,
        host4: request.host4,
      },
      key,
    );
  }

  /**
   * The engine granted (or released): once the TEP has the binding (a new lease waits for its
   * BIND_ACK, a retransmission for the first copy's), the ACK; NAK TEP_UNAVAILABLE, with a new
   * lease taken back, when the TEP did not confirm. The ACK is made at once when nothing is
   * waited for (no TEP sink, a binding decided without an exchange, no install pending): no
   * async frame and no turn of the microtask queue per request then. The request's HOST_IPV6
   * bytes go to the sink with the text decoded from them (./binding_sink.ts Host6Bytes) and
   * into the ACK.
   */
  #grant(
    request: DstmMessage,
    result: Extract<EngineResult, { ok: true }>,
    key: AuthKey | undefined,
    raw: Uint8Array,
  ): Uint8Array | Promise<Uint8Array> {
    const host6: Host6Bytes = {
      text: request.host6!,
      bytes: raw,
      offset: findOption(raw, 0, OptionCode.HOST_IPV6),
    };
    const sink = this.#o.bindings;
    if (sink === undefined) return this.#granted(request, result, key, host6);
    const isNew = result.outcome === "allocated" || result.outcome === "reused";
    // A retransmission that arrives while the first copy waits for the TEP waits for it too.
    const installed = isNew
      ? sink.install(result.lease, result.generation, host6)
      : (sink.pending(result.lease) ?? true);
    if (installed === true) return this.#granted(request, result, key, host6);
    return this.#grantOnceInstalled(request, result, key, host6, isNew, installed);
  }

  /** {@link #grant} once `installed` has settled: the ACK, or NAK TEP_UNAVAILABLE. */
  async #grantOnceInstalled(
    request: DstmMessage,
    result: Extract<EngineResult, { ok: true }>,
    key: AuthKey | undefined,
    host6Bytes: Host6Bytes,
    isNew: boolean,
    installed: boolean | Promise<boolean>,
  ): Promise<Uint8Array> {
    if (await installed) return this.#granted(request, result, key, host6Bytes);
    // The TEP does not have the binding: the host could not use the address, so take it back.
    const host6 = request.host6!;
    const lease = result.lease;
    if (isNew) await this.#o.engine.release(host6, lease.ipv4);
    this.#count(request.type, Status.TEP_UNAVAILABLE);
    this.#o.log.warn("reject", {
      reason: "tep-unavailable",
      host6,
      tep6: lease.tep6,
      ipv4: formatIPv4(lease.ipv4),
    });
    return this.#answer(
      {
        type: MessageType.NAK,
        xid: request.xid,
        status: Status.TEP_UNAVAILABLE,
        statusText: `TEP ${lease.tep6} did not confirm the binding`,
        host6,
      },
      key,
    );
  }

  /** The TEP has the binding (or none is kept): counted, logged, the ACK. */
  #granted(
    request: DstmMessage,
    result: Extract<EngineResult, { ok: true }>,
    key: AuthKey | undefined,
    host6: Host6Bytes,
  ): Uint8Array {
    const lease = result.lease;
    if (this.#o.bindings && result.outcome === "released")
      this.#o.bindings.remove(lease, result.generation, host6);
    this.#count(request.type, Status.SUCCESS);
    this.#leaseLines.log(result.outcome, lease);
    if (key === undefined) return this.#ack(request, host6, lease, result.outcome);
    return this.#answer(ackFor(request, lease, result.outcome, this.#o.engine), key);
  }

  /**
   * The unsigned ACK of a grant, written straight into its bytes (lib/wire/dstm_ack.ts): the
   * bytes `ackFor` + `encodeMessage` make, with the request's HOST_IPV6 bytes (`host6`)
   * copied and the TEP's parsed once per TEP.
   */
  #ack(request: DstmMessage, host6: Host6Bytes, lease: Lease, outcome: EngineOutcome): Uint8Array {
    const raw = host6.bytes;
    const host6At = host6.offset;
    if (request.type === MessageType.RELEASE) {
      return encodeAck(
        MessageType.RELEASE_ACK,
        request.xid,
        lease.ipv4,
        raw,
        host6At,
        null,
        0,
        0,
        undefined,
        0,
        false,
      );
    }
    let tep6 = this.#tep6Bytes.get(lease.tep6);
    if (tep6 === undefined) {
      const parsed = parseIPv6(lease.tep6);
      if (parsed === null)
        return this.#answer(ackFor(request, lease, outcome, this.#o.engine), undefined);
      if (this.#tep6Bytes.size >= TEP6_CACHE_MAX) this.#tep6Bytes.clear();
      this.#tep6Bytes.set(lease.tep6, parsed);
      tep6 = parsed;
    }
    const discover = request.type === MessageType.DISCOVER;
    return encodeAck(
      discover ? MessageType.DISCOVER_ACK : MessageType.REQUEST_ACK,
      request.xid,
      lease.ipv4,
      raw,
      host6At,
      tep6,
      0,
      lease.tep4,
      lease.portSet.psidLength === 0 ? undefined : lease.portSet,
      // On the engine's monotonic clock, as ackFor (./handler_messages.ts).
      Math.max(1, Math.round(this.#o.engine.remainingMs(lease) / 1000)),
      discover && outcome === "renewed",
    );
  }

  /** With keys configured, checks the request's signature; counts and logs a failure. */
  #authenticate(raw: Uint8Array, request: DstmMessage, source: string): VerifyOutcome {
    if (!this.#o.keys) return "ok";
    const outcome = verifyMessage(raw, request, this.#o.keys, this.#o.replayGuard!, this.#now());
    if (outcome !== "ok") {
      this.#o.metrics.inc("dstm_auth_failures_total", { reason: outcome });
      this.#warn.warn("reject", {
        reason: "auth",
        auth: outcome,
        from: source,
        type: TYPE_NAMES[request.type],
        host6: request.host6,
      });
    }
    return outcome;
  }

  #dispatch(request: DstmMessage, host6: string): Promise<EngineResult> {
    const { engine } = this.#o;
    switch (request.type) {
      case MessageType.DISCOVER:
        return engine.discover(host6, { hint: request.host4, leaseTime: request.leaseTime });
      case MessageType.REQUEST:
        return engine.request(host6, request.host4!, { leaseTime: request.leaseTime });
      default:
        return engine.release(host6, request.host4!);
    }
  }

  /** See ./handler_messages.ts nakWithin: never longer than the request's `limit` bytes. */
  #within(limit: number, nak: DstmMessage, text: string, key?: AuthKey): Uint8Array | null {
    return nakWithin(limit, nak, text, key, this.#now, this.#o.metrics);
  }

  #answer(message: DstmMessage, key: AuthKey | undefined): Uint8Array {
    return encodeAnswer(message, key, this.#now);
  }

  #count(type: number, status: Status): void {
    // The series of each (type, status) kept from its first count: no label key per request.
    const at = type * 256 + status;
    const series = this.#counted.get(at);
    if (series !== undefined) {
      series.value++;
      return;
    }
    const labels = {
      type: TYPE_NAMES[type] ?? String(type),
      result: status === Status.SUCCESS ? "ack" : `nak_${STATUS_NAMES[status]}`,
    };
    this.#counted.set(at, this.#o.metrics.incSeries("dstm_messages_total", labels));
  }
}
