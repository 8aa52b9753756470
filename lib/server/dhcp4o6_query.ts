/**
 * The DHCPv4 server inside the DHCPv4-over-DHCPv6 service (./dhcp4o6.ts): the DHCPv4 message
 * a DHCPV4-QUERY carries (RFC 7341 §6.2), from the host `host6`, in, its answer out.
 *
 * - Who the client is (./dhcp4o6_identity.ts) and which pools its link may use
 *   (./dhcp4o6_link.ts, RFC 8415 §13.1): a DISCOVER / REQUEST on a link no pool serves is
 *   refused (`no-pool-for-link`); a keyed client's lease held at another host prefix is not
 *   acted on from here (`other-prefix`, ./dhcp4o6_roam.ts).
 * - DISCOVER → OFFER (RFC 2131 §4.3.1), REQUEST → ACK or NAK (§4.3.2), RELEASE (§4.4.6) and
 *   DECLINE (§4.3.3) → no answer, INFORM → parameters only (§4.3.5).
 *
 * Every outcome is counted in `dstm_dhcp4o6_messages_total{type,result}`; leases granted,
 * renewed, moved and released are logged at info.
 *
 * @module
 */
import type { ClientScope } from "../alloc/client_scope.ts";
import type { AllocationEngine, EngineResult } from "../alloc/engine.ts";
import type { LogFields, Logger } from "../control/log.ts";
import type { CounterSeries, Metrics } from "../control/metrics.ts";
import type { Lease } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";
import { type Dhcp4Message, Dhcp4MessageType, dhcp4MessageTypeName } from "../wire/dhcp4.ts";
import { type Admission, isAdmissionRefusal } from "./admission.ts";
import type { BindingSink } from "./binding_sink.ts";
import { noteDhcp4o6Result } from "./dhcp4o6_debug.ts";
import { type Dhcp4o6IdentityMode, dhcp4Identity } from "./dhcp4o6_identity.ts";
import type { LinkChoice } from "./dhcp4o6_link.ts";
import { informReply, leaseReply, nakReply } from "./dhcp4o6_reply.ts";
import { mayActFor } from "./dhcp4o6_roam.ts";

/** How long an offered address is held before the client's REQUEST (s). */
export const OFFER_SECONDS = 60;
/** How long a declined address stays unavailable by default (s): Kea's decline-probation-period. */
export const DECLINE_PROBATION_SECONDS = 86_400;

/** What the DHCPv4 server uses of the service's options (./dhcp4o6.ts Dhcp4o6Options). */
export interface Dhcp4QueryOptions {
  readonly engine: AllocationEngine;
  readonly bindings?: BindingSink;
  /** DHCPv4 server identifier (option 54): an IPv4 address naming this server. */
  readonly serverId: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Refusal accounting of the lease caps (prefix-limit, site-limit) and host6-is-tep; none: not counted there. */
  readonly admission?: Admission;
  /** How long a DECLINEd address stays unavailable (s); default DECLINE_PROBATION_SECONDS. */
  readonly declineProbation?: number;
  /** Who a client is (./dhcp4o6_identity.ts); default `source`, the IPv6 address. */
  readonly identity?: Dhcp4o6IdentityMode;
  /** Host prefix (bits) within which a keyed lease may follow its client (./dhcp4o6_roam.ts); default 64. */
  readonly hostPrefixLength?: number;
}

/** The scope of a client keyed by its IPv6 address on any link: the common case, made once. */
const NO_SCOPE: ClientScope = Object.freeze({});

/** `dstm_dhcp4o6_messages_total`'s `type` label of each DHCPv4 message type (lower case). */
const _TYPE_LABELS: readonly (string | undefined)[] = Array.from({ length: 9 }, (_, t) =>
  t === 0 ? undefined : dhcp4MessageTypeName(t).toLowerCase(),
);

/** A refused datagram, counted and logged at warn, rate-limited (./dhcp4o6.ts). */
export type Dhcp4o6Drop = (type: string, reason: string, fields: LogFields) => void;

/** Counts one datagram in `dstm_dhcp4o6_messages_total{type,result}` and notes it for debug. */
export function countDhcp4o6(metrics: Metrics, type: string, result: string): void {
  noteDhcp4o6Result(result);
  // The series of each (type, result) kept after its first count: a property add per message.
  let byType = _series.get(metrics);
  if (byType === undefined) {
    byType = new Map();
    _series.set(metrics, byType);
  }
  let byResult = byType.get(type);
  if (byResult === undefined) {
    byResult = new Map();
    byType.set(type, byResult);
  }
  const series = byResult.get(result);
  if (series !== undefined) series.value++;
  else byResult.set(result, metrics.incSeries("dstm_dhcp4o6_messages_total", { type, result }));
}
const _series = new WeakMap<Metrics, Map<string, Map<string, CounterSeries>>>();

export class Dhcp4QueryHandler {
  readonly #o: Dhcp4QueryOptions;
  readonly #drop: Dhcp4o6Drop;

  constructor(options: Dhcp4QueryOptions, drop: Dhcp4o6Drop) {
    this.#o = options;
    this.#drop = drop;
  }

  /**
   * The answer to the DHCPv4 message `query` from `host6` (canonical, no zone) on `link`, or
   * null; `size`: the bytes of the client's DHCPv6 message (a NAK is never longer);
   * `linkLocal`: a link-local host's holder key in `source` mode (./dhcp4o6_identity.ts
   * linkLocalHolder), else null.
   */
  answer(
    query: Dhcp4Message,
    host6: string,
    link: LinkChoice | undefined,
    size: number,
    linkLocal: string | null = null,
  ): Promise<Uint8Array | null> | Uint8Array | null {
    // Not async: the answer's promise is the decision's own (no promise wrapping a promise).
    const type = query.options.messageType;
    const name = _TYPE_LABELS[type] ?? dhcp4MessageTypeName(type).toLowerCase();
    // Source mode: a link-local host's key names its link too (./dhcp4o6_identity.ts).
    const key = dhcp4Identity(this.#o.identity ?? "source", query) ?? linkLocal;
    // Keyed modes: the client is the lease's holder (stored with it), not its IPv6 address.
    const pools = link?.ok ? link.pools : undefined;
    const scope: ClientScope =
      key === null
        ? pools === undefined
          ? NO_SCOPE
          : { pools }
        : pools === undefined
          ? { identity: key }
          : { identity: key, pools };
    if (
      link?.ok === false &&
      (type === Dhcp4MessageType.DISCOVER || type === Dhcp4MessageType.REQUEST)
    ) {
      // RFC 8415 §13.1: the link decides where the client's address comes from; none serves it.
      this.#drop(name, "no-pool-for-link", {
        host6,
        link: link.link,
        detail: "no pool names this link and every pool names links (links = [...])",
      });
      return null;
    }
    if (key !== null && type !== Dhcp4MessageType.INFORM) {
      const refusal = this.#otherPrefix(query, name, host6, scope, size);
      if (refusal !== undefined) return refusal;
    }
    switch (type) {
      case Dhcp4MessageType.DISCOVER:
        return this.#discover(query, name, host6, scope);
      case Dhcp4MessageType.REQUEST:
        return this.#request(query, name, host6, scope, size);
      case Dhcp4MessageType.RELEASE:
        return this.#release(query, name, host6, scope);
      case Dhcp4MessageType.DECLINE:
        return this.#decline(query, host6, scope);
      case Dhcp4MessageType.INFORM:
        // RFC 2131 §4.3.5: parameters only; no yiaddr, no lease time, ciaddr echoed.
        this.#count(name, "ack");
        return informReply(query, this.#o.serverId);
      default:
        this.#count(name, "ignored");
        return null;
    }
  }

  /**
   * ./dhcp4o6_roam.ts: an identity is no secret; its lease follows it within its prefix only.
   * The refusal when the keyed client's lease is held at another prefix (a NAK to a REQUEST,
   * else null: no answer); undefined when the query may go on.
   */
  #otherPrefix(
    query: Dhcp4Message,
    name: string,
    host6: string,
    scope: ClientScope,
    size: number,
  ): Uint8Array | null | undefined {
    const held = this.#o.engine.lookupHost(host6, scope);
    if (!held || mayActFor(held.host6, host6, this.#o.hostPrefixLength)) return undefined;
    this.#drop(name, "other-prefix", { host6, held: held.host6, ipv4: formatIPv4(held.ipv4) });
    return query.options.messageType === Dhcp4MessageType.REQUEST
      ? this.#nak(query, name, "this client's lease is held at another IPv6 prefix", size)
      : null;
  }

  /**
   * DISCOVER → OFFER (RFC 2131 §4.3.1) of what the ACK will grant, held for OFFER_SECONDS in
   * memory only. A client that holds a committed lease (at this or, keyed, another address)
   * is offered it as it is, with the time it has left: an OFFER never shortens or replaces
   * it. No address, no OFFER (a NAK is not a DISCOVER's answer).
   */
  async #discover(
    query: Dhcp4Message,
    name: string,
    host6: string,
    scope: ClientScope,
  ): Promise<Uint8Array | null> {
    const { engine } = this.#o;
    const hint = query.options.requestedIp || undefined;
    // An OFFER is not an ACK: it need not be on disk (the ACK is).
    const result = await engine.discover(
      host6,
      scope === NO_SCOPE
        ? { hint, leaseTime: OFFER_SECONDS, persist: false }
        : { hint, leaseTime: OFFER_SECONDS, persist: false, ...scope },
    );
    // The TEP gets the binding with the ACK, not for an offer the client may not take.
    if (!result.ok) {
      this.#count(name, result.reason);
      this.#refusedCap(result.reason, host6);
      return null;
    }
    this.#count(name, "offer");
    const lease = result.lease;
    const seconds = engine.isOffer(lease)
      ? engine.grantSeconds()
      : Math.max(1, Math.round(engine.remainingMs(lease) / 1000));
    return this.#reply(query, Dhcp4MessageType.OFFER, lease, seconds);
  }

  /**
   * REQUEST (selecting: server id + requested address; init-reboot: requested address;
   * renewing/rebinding: ciaddr) → the engine renews for the full lease time, the TEP gets a
   * new binding → ACK, or NAK. A REQUEST naming another server declines our offer, whatever
   * address it asks for (RFC 2131 §4.3.2): an offer never committed is freed, a committed
   * lease is kept; no answer.
   */
  async #request(
    query: Dhcp4Message,
    name: string,
    host6: string,
    scope: ClientScope,
    size: number,
  ): Promise<Uint8Array | null> {
    const { engine } = this.#o;
    const address = query.ciaddr || query.options.requestedIp || 0;
    if (query.options.serverId !== undefined && query.options.serverId !== this.#o.serverId) {
      this.#count(name, "other-server");
      await engine.withdrawOffer(host6, scope);
      return null;
    }
    if (!address) return this.#nak(query, name, "no address requested", size);
    const before = engine.lookupHost(host6, scope);
    // The REQUEST after an OFFER renews the offered lease, but for the host (and its TEP) it is new.
    const first = engine.isOffer(before);
    // RFC 2131 §4.2 (keyed modes): the lease is the client's, not its IPv6 address's: the
    // engine moves it, and the TEP binding is installed again for the new address.
    const moved = before !== undefined && before.host6 !== host6 && before.ipv4 === address;
    const result = await engine.request(host6, address, scope);
    if (!(await this.#installed(result, host6, result.ok && (first || moved), scope)))
      return this.#nak(query, name, "TEP unavailable", size);
    if (!result.ok) {
      if (result.reason === "store-failed") return this.#unstored(name, host6, address, result);
      this.#refusedCap(result.reason, host6);
      return this.#nak(query, name, result.message, size);
    }
    if (moved) {
      this.#count(name, "moved");
      this.#log("move", before);
    }
    this.#count(name, "ack");
    this.#log(result.outcome === "renewed" && !first ? "renew" : "allocate", result.lease);
    return this.#reply(query, Dhcp4MessageType.ACK, result.lease);
  }

  /** RELEASE → the engine releases, the TEP's binding goes; no answer (RFC 2131 §4.4.6). */
  async #release(
    query: Dhcp4Message,
    name: string,
    host6: string,
    scope: ClientScope,
  ): Promise<null> {
    const result = await this.#o.engine.release(host6, query.ciaddr, scope);
    this.#count(name, result.ok ? "released" : result.reason);
    if (result.ok) {
      this.#o.bindings?.remove(result.lease, result.generation);
      this.#log("release", result.lease);
    }
    return null;
  }

  /**
   * RFC 2131 §4.3.3: the client found the address in use. Only the host's own address (offered
   * or leased, named in option 50) can be declined, so no host can take another's away. It is
   * held unavailable for the decline probation, counted and logged at warn; no answer.
   */
  async #decline(query: Dhcp4Message, host6: string, scope: ClientScope): Promise<null> {
    const address = query.options.requestedIp ?? 0;
    if (query.options.serverId !== undefined && query.options.serverId !== this.#o.serverId) {
      this.#count("decline", "other-server");
      return null;
    }
    const seconds = this.#o.declineProbation ?? DECLINE_PROBATION_SECONDS;
    const held = this.#o.engine.lookupHost(host6, scope);
    const result = await this.#o.engine.decline(host6, address, seconds, scope);
    if (!result.ok) {
      this.#count("decline", result.reason);
      return null;
    }
    this.#count("decline", "declined");
    // The decline's write took the slot from the host: its generation orders this UNBIND.
    this.#o.bindings?.remove(held ?? { ...result.lease, host6 }, result.generation);
    this.#o.log.warn("declined", {
      protocol: "dhcp4o6",
      ipv4: formatIPv4(address),
      host6,
      until: new Date(result.lease.expiresAt).toISOString(),
      detail: "the host found this address in use: another machine has it (check the pool)",
    });
    return null;
  }

  /**
   * The lease could not be stored (a full disk, lib/lease/store_fault.ts): no answer, counted
   * as `store-failed` and logged at warn, rate-limited. Not a DHCPNAK: a NAK tells a renewing
   * client its address is wrong, and it stops using it at once (RFC 2131 §4.4.5, §3.2); the
   * stored lease is still the client's, until its stored expiry. Unanswered, the client
   * retransmits, then rebinds (§4.4.5) and keeps the address meanwhile; once the store
   * writes again, its next REQUEST is ACKed. A selecting client retransmits too.
   */
  #unstored(
    name: string,
    host6: string,
    address: number,
    result: Extract<EngineResult, { ok: false }>,
  ): null {
    this.#drop(name, "store-failed", {
      host6,
      ipv4: formatIPv4(address),
      detail: `${result.message}; not answered (a DHCPNAK would make the client drop its address), the client retries`,
    });
    return null;
  }

  /** Installs a new binding at the TEP; on failure gives the address back. True when usable. */
  async #installed(
    result: EngineResult,
    host6: string,
    offered: boolean,
    scope: ClientScope,
  ): Promise<boolean> {
    const sink = this.#o.bindings;
    if (!sink || !result.ok) return true;
    const isNew = offered || result.outcome === "allocated" || result.outcome === "reused";
    const ok = isNew
      ? await sink.install(result.lease, result.generation)
      : ((await sink.pending(result.lease)) ?? true);
    if (!ok && isNew) await this.#o.engine.release(host6, result.lease.ipv4, scope);
    return ok;
  }

  /**
   * The engine refused a lease: the host's prefix or site holds as many as it may, or the
   * host's IPv6 address is a TEP's (counted and logged by admission).
   */
  #refusedCap(reason: string, host6: string): void {
    if (isAdmissionRefusal(reason)) this.#o.admission?.refused("dhcp4o6", reason, { host6 });
  }

  /** An OFFER or ACK of `lease`, for `seconds` (default: the time the lease has left). */
  #reply(query: Dhcp4Message, type: Dhcp4MessageType, lease: Lease, seconds?: number): Uint8Array {
    const s = seconds ?? Math.max(1, Math.round(this.#o.engine.remainingMs(lease) / 1000));
    return leaseReply(query, type, lease, s, this.#o.serverId);
  }

  /** A NAK no longer than the query's `size` bytes when its message can be cut to fit. */
  #nak(query: Dhcp4Message, name: string, message: string, size: number): Uint8Array {
    this.#count(name, "nak");
    noteDhcp4o6Result("nak", message);
    return nakReply(query, this.#o.serverId, message, size);
  }

  #count(type: string, result: string): void {
    countDhcp4o6(this.#o.metrics, type, result);
  }

  #log(event: string, lease: Lease): void {
    // The line's fields cost more than the decision at high rates: built only when logged.
    if (!this.#o.log.enabled("info")) return;
    this.#o.log.info(event, {
      protocol: "dhcp4o6",
      ipv4: formatIPv4(lease.ipv4),
      ports: lease.portSet.psidLength === 0 ? undefined : formatPortSet(lease.portSet),
      host6: lease.host6,
      tep6: lease.tep6,
      expires: event === "release" ? undefined : new Date(lease.expiresAt).toISOString(),
    });
  }
}
