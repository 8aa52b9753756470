/**
 * The server's DHCPv4-over-DHCPv6 (RFC 7341) service: the standard successor of the DSTM
 * allocation step, answering 4o6 clients (dstm's own, or any RFC 7341 client) from the same
 * pools, leases and TEP bindings as the native protocol.
 *
 * The host is the source of the DHCPV4-QUERY (RFC 7341 §7: the client's IPv6 address is the
 * softwire's end), exactly as a native DSTM host is the source of its DISCOVER.
 *
 * - Admission first (./admission.ts): RFC 7341 has no authentication, so a server with keys
 *   answers only sources inside `--dhcp4o6-allow` (or every source with `--dhcp4o6-open`);
 *   every source prefix is rate-limited. Refused queries get no answer.
 * - DISCOVER → the engine allocates (sticky, held in memory only, bound at the TEP with the
 *   ACK) → OFFER with the lease time the ACK will grant. The offer is held for OFFER_SECONDS,
 *   so an abandoned one frees itself. A host that holds a committed lease is offered that
 *   lease with its existing expiry (RFC 2131 §4.3.1): an OFFER never shortens or replaces it.
 * - REQUEST (selecting: server id + requested address; init-reboot: requested address;
 *   renewing/rebinding: ciaddr) → the engine renews for the full lease time → ACK, or NAK.
 *   A REQUEST naming another server declines our offer, whatever address it asks for
 *   (RFC 2131 §4.3.2): an offer never committed is freed; a committed lease is kept.
 * - RELEASE → the engine releases; no answer (RFC 2131 §4.4.6).
 * - DECLINE (RFC 2131 §4.3.3) → the address the host holds and names in option 50 is taken
 *   from it and held unavailable for the decline probation (default 24 h, as Kea's
 *   `decline-probation-period`), counted and logged at warn; no answer.
 * - INFORM (RFC 2131 §4.3.5) → an ACK with the server's parameters, no address, no lease time.
 * - Relays (RFC 8415 §19): a RELAY-FORW is opened down to the DHCPV4-QUERY it carries (relays
 *   nest); the host is the innermost relay's peer-address, and the answer goes back as the
 *   RELAY-REPL chain (hop-count, link-address, peer-address and interface-id echoed) to the
 *   relay that sent it. With `--dhcp4o6-allow` the relay's address must be inside the list
 *   too; the rate limit counts the host's prefix, not the relay's.
 * - A link-local source (what a DHCPv6 client sends from) is a host like any other: its
 *   address without the zone names it; the answer goes to the address with its zone.
 * - `identity` (./dhcp4o6_identity.ts): `source` keys leases by IPv6 address; `client-id` and
 *   `chaddr` key them by client, as Kea does: the identity is the lease's holder, stored with
 *   it, so two clients behind one IPv6 address hold a lease each, and a client's lease moves
 *   (its TEP binding with it) to the address it REQUESTs from.
 * - Links (./dhcp4o6_link.ts, RFC 8415 §13.1): when pools name the IPv6 links they serve, a
 *   DISCOVER / REQUEST gets an address only from the pools of the query's link (the innermost
 *   relay's link-address, else the source's prefix or the receiving interface); a query whose
 *   link no pool serves is refused (`no-pool-for-link`, counted, logged at warn, rate-limited).
 * A shared pool's leases carry OPTION_V4_PORTPARAMS (159, RFC 7618).
 * With `--log-level debug`, each datagram and its answer is a `message-received` /
 * `message-sent` line (./dhcp4o6_debug.ts).
 *
 * @module
 */
import type { ClientScope } from "../alloc/client_scope.ts";
import type { AllocationEngine, EngineResult } from "../alloc/engine.ts";
import type { LogFields, Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import type { Lease } from "../lease/lease.ts";
import { canonicalIPv6, formatIPv4 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";
import { type Dhcp4Message, Dhcp4MessageType, dhcp4MessageTypeName } from "../wire/dhcp4.ts";
import {
  Dhcp6MessageType,
  decodeDhcp4o6,
  dhcp6MessageTypeName,
  peekDhcp6MessageType,
} from "../wire/dhcp4o6.ts";
import {
  type Dhcp6RelayMessage,
  Dhcp6RelayType,
  unwrapRelays,
  wrapRelayReply,
} from "../wire/dhcp6_relay.ts";
import type { Admission } from "./admission.ts";
import type { BindingSink } from "./binding_sink.ts";
import { handleLogged, noteDhcp4o6Result } from "./dhcp4o6_debug.ts";
import { type Dhcp4o6IdentityMode, dhcp4Identity } from "./dhcp4o6_identity.ts";
import { informationAnswer } from "./dhcp4o6_information.ts";
import type { LinkChoice, LinkSelector } from "./dhcp4o6_link.ts";
import { informReply, leaseReply, nakReply } from "./dhcp4o6_reply.ts";
import { mayActFor } from "./dhcp4o6_roam.ts";

/** How long an offered address is held before the client's REQUEST (s). */
export const OFFER_SECONDS = 60;
/** How long a declined address stays unavailable by default (s): Kea's decline-probation-period. */
export const DECLINE_PROBATION_SECONDS = 86_400;

export interface Dhcp4o6Options {
  readonly engine: AllocationEngine;
  readonly bindings?: BindingSink;
  /** DHCPv4 server identifier (option 54): an IPv4 address naming this server. */
  readonly serverId: number;
  /** The address the service listens on (named in option 88), `::` for any. */
  readonly address?: string;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
  /** Allow list, rate limit and refusal accounting; none: every query goes on. */
  readonly admission?: Admission;
  /** How long a DECLINEd address stays unavailable (s); default DECLINE_PROBATION_SECONDS. */
  readonly declineProbation?: number;
  /** Who a client is (./dhcp4o6_identity.ts); default `source`, the IPv6 address. */
  readonly identity?: Dhcp4o6IdentityMode;
  /** The pools of each link (./dhcp4o6_link.ts), read per query (a reload replaces it); none: every pool. */
  readonly links?: () => LinkSelector | undefined;
  /** Host prefix (bits) within which a keyed lease may follow its client (./dhcp4o6_roam.ts); default 64. */
  readonly hostPrefixLength?: number;
}

export class Dhcp4o6Handler {
  readonly #o: Dhcp4o6Options;
  /** DUID-UUID (RFC 6355) naming this server in DHCPv6 replies; new per start. */
  readonly #duid = Uint8Array.from([0, 4, ...crypto.getRandomValues(new Uint8Array(16))]);
  /** `type reason` of a dropped datagram → when last logged, and how many since were not. */
  readonly #dropLogged = new Map<string, { at: number; suppressed: number }>();

  constructor(options: Dhcp4o6Options) {
    this.#o = options;
    options.metrics.counter(
      "dstm_dhcp4o6_messages_total",
      "DHCPv4-over-DHCPv6 queries, by DHCPv4 message type and result",
    );
  }

  /**
   * One datagram from `source` (a client on port 546, or a relay on 547; a link-local source
   * with its `%zone`); resolves to the answer for `source` (a RELAY-REPL for a relay) or null.
   */
  handle(raw: Uint8Array, source: string): Promise<Uint8Array | null> {
    return handleLogged(this.#o.log, raw, source, () => this.#handle(raw, source));
  }

  async #handle(raw: Uint8Array, source: string): Promise<Uint8Array | null> {
    let relays: readonly Dhcp6RelayMessage[] = [];
    let payload = raw;
    let host = source.split("%", 1)[0]!;
    if (peekDhcp6MessageType(raw) === Dhcp6RelayType.RELAY_FORW) {
      const opened = unwrapRelays(raw);
      if (!opened.ok) {
        this.#drop("relay-forw", `malformed-${opened.error.code}`, {
          from: source,
          detail: opened.error.message,
        });
        return null;
      }
      // A relay outside --dhcp4o6-allow could claim any host's address as peer-address.
      if (this.#o.admission && !this.#o.admission.allowsRelay(host)) return null;
      relays = opened.value.relays;
      payload = opened.value.inner;
      // RFC 8415 §19.1.1: the innermost relay heard the client; its peer-address is the host.
      host = relays.at(-1)!.peerAddress;
    }
    const host6 = canonicalIPv6(host);
    if (!host6) {
      this.#drop("invalid", "bad-source", { from: source, host });
      return null;
    }
    if (this.#o.admission && !this.#o.admission.admit("dhcp4o6", host6)) return null;
    const link = this.#o.links?.()?.choose(relays, source);
    const answer = await this.#answer(payload, host6, link);
    if (answer === null) return null;
    if (relays.length > 0)
      this.#o.metrics.inc("dstm_dhcp4o6_messages_total", {
        type: "relay-repl",
        result: `hops-${relays.length}`,
      });
    return wrapRelayReply(relays, answer);
  }

  /** The answer to one client message from `host6` (canonical, no zone) on `link`, or null. */
  async #answer(
    raw: Uint8Array,
    host6: string,
    link: LinkChoice | undefined,
  ): Promise<Uint8Array | null> {
    if (peekDhcp6MessageType(raw) === Dhcp6MessageType.INFORMATION_REQUEST)
      return this.#information(raw, host6);
    const decoded = decodeDhcp4o6(raw);
    if (!decoded.ok || decoded.value.type !== Dhcp6MessageType.DHCPV4_QUERY) {
      const reason = decoded.ok ? "not-a-query" : `malformed-${decoded.error.code}`;
      this.#drop("invalid", reason, {
        from: host6,
        detail: decoded.ok ? dhcp6MessageTypeName(decoded.value.type) : decoded.error.message,
      });
      return null;
    }
    const query = decoded.value.dhcp4;
    const type = query.options.messageType;
    const name = dhcp4MessageTypeName(type).toLowerCase();
    const { engine } = this.#o;
    const key = dhcp4Identity(this.#o.identity ?? "source", query);
    // Keyed modes: the client is the lease's holder (stored with it), not its IPv6 address.
    const scope: ClientScope = {
      ...(key === null ? {} : { identity: key }),
      ...(link?.ok ? { pools: link.pools } : {}),
    };
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
      // ./dhcp4o6_roam.ts: an identity is no secret; its lease follows it within its prefix only.
      const held = engine.lookupHost(host6, scope);
      if (held && !mayActFor(held.host6, host6, this.#o.hostPrefixLength)) {
        this.#drop(name, "other-prefix", { host6, held: held.host6, ipv4: formatIPv4(held.ipv4) });
        return type === Dhcp4MessageType.REQUEST
          ? this.#nak(query, name, "this client's lease is held at another IPv6 prefix", raw.length)
          : null;
      }
    }
    switch (type) {
      case Dhcp4MessageType.DISCOVER: {
        // A client that holds a committed lease (at this or, keyed, another address) is
        // offered it as it is, with the time it has left (the engine returns it unchanged).
        const result = await engine.discover(host6, {
          hint: query.options.requestedIp || undefined,
          leaseTime: OFFER_SECONDS,
          // An OFFER is not an ACK: it need not be on disk (the ACK is).
          persist: false,
          ...scope,
        });
        // The TEP gets the binding with the ACK, not for an offer the client may not take.
        if (!result.ok) {
          // RFC 2131 §4.3.1: no address, no OFFER (a NAK is not a DISCOVER's answer).
          this.#count(name, result.reason);
          this.#refusedCap(result.reason, host6);
          return null;
        }
        this.#count(name, "offer");
        // Offer what the ACK will grant; a committed lease with the time it has left.
        const lease = result.lease;
        const seconds = engine.isOffer(lease)
          ? engine.grantSeconds()
          : Math.max(1, Math.round(engine.remainingMs(lease) / 1000));
        return this.#reply(query, Dhcp4MessageType.OFFER, lease, seconds);
      }
      case Dhcp4MessageType.REQUEST: {
        const address = query.ciaddr || query.options.requestedIp || 0;
        if (query.options.serverId !== undefined && query.options.serverId !== this.#o.serverId) {
          // RFC 2131 §4.3.2: the client chose another server, so it declined our offer,
          // whichever address it asks the other server for. A committed lease stays.
          this.#count(name, "other-server");
          await engine.withdrawOffer(host6, scope);
          return null;
        }
        if (!address) return this.#nak(query, name, "no address requested", raw.length);
        const before = engine.lookupHost(host6, scope);
        // The REQUEST after an OFFER renews the offered lease, but for the host (and its TEP) it is new.
        const first = engine.isOffer(before);
        // RFC 2131 §4.2 (keyed modes): the lease is the client's, not its IPv6 address's: the
        // engine moves it, and the TEP binding is installed again for the new address.
        const moved = before !== undefined && before.host6 !== host6 && before.ipv4 === address;
        const result = await engine.request(host6, address, scope);
        if (!(await this.#installed(result, host6, result.ok && (first || moved), scope)))
          return this.#nak(query, name, "TEP unavailable", raw.length);
        if (!result.ok) {
          this.#refusedCap(result.reason, host6);
          return this.#nak(query, name, result.message, raw.length);
        }
        if (moved) {
          this.#count(name, "moved");
          this.#log("move", before);
        }
        this.#count(name, "ack");
        this.#log(result.outcome === "renewed" && !first ? "renew" : "allocate", result.lease);
        return this.#reply(query, Dhcp4MessageType.ACK, result.lease);
      }
      case Dhcp4MessageType.RELEASE: {
        const result = await engine.release(host6, query.ciaddr, scope);
        this.#count(name, result.ok ? "released" : result.reason);
        if (result.ok) {
          this.#o.bindings?.remove(result.lease);
          this.#log("release", result.lease);
        }
        return null;
      }
      case Dhcp4MessageType.DECLINE:
        return this.#decline(query, host6, scope);
      case Dhcp4MessageType.INFORM: {
        // RFC 2131 §4.3.5: parameters only; no yiaddr, no lease time, ciaddr echoed.
        this.#count(name, "ack");
        return informReply(query, this.#o.serverId);
      }
      default:
        this.#count(name, "ignored");
        return null;
    }
  }

  /**
   * RFC 2131 §4.3.3: the client found the address in use. Only the host's own address (offered
   * or leased, named in option 50) can be declined, so no host can take another's away.
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
    this.#o.bindings?.remove(held ?? { ...result.lease, host6 });
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
   * RFC 7341 §6: a client learns where 4o6 servers are from OPTION_DHCP4_O_DHCP6_SERVER (88)
   * in a DHCPv6 REPLY to its INFORMATION-REQUEST. We name ourselves (or, listening on any
   * address, send the empty list: "use ff02::1:2", where we listen too); never a REPLY longer
   * than the request to an off-link source (./dhcp4o6_information.ts).
   */
  #information(raw: Uint8Array, host6: string): Uint8Array | null {
    const answer = informationAnswer(raw, host6, this.#duid, this.#o.address);
    if ("reply" in answer) {
      this.#count("information-request", "reply");
      return answer.reply;
    }
    if (answer.refused === "answer-too-long") {
      this.#drop("information-request", answer.refused, {
        from: host6,
        request: raw.length,
        reply: answer.replyBytes,
      });
    } else this.#count("information-request", answer.refused);
    return null;
  }

  /**
   * A refused datagram: counted (`type`, `reason`) and logged at warn,
   * at most once per 10 s per reason, with how many were not logged.
   */
  #drop(type: string, reason: string, fields: LogFields): void {
    this.#count(type, reason);
    const now = performance.now();
    const last = this.#dropLogged.get(reason);
    if (last && now - last.at < 10_000) {
      last.suppressed++;
      return;
    }
    this.#o.log.warn("reject", {
      reason,
      protocol: "dhcp4o6",
      ...fields,
      "not-logged": last?.suppressed || undefined,
    });
    this.#dropLogged.set(reason, { at: now, suppressed: 0 });
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
      ? await sink.install(result.lease)
      : ((await sink.pending(result.lease)) ?? true);
    if (!ok && isNew) await this.#o.engine.release(host6, result.lease.ipv4, scope);
    return ok;
  }

  /** The engine refused a new lease: the host's prefix or site holds as many as it may. */
  #refusedCap(reason: string, host6: string): void {
    if (reason === "prefix-limit" || reason === "site-limit")
      this.#o.admission?.refused("dhcp4o6", reason, { host6 });
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
    noteDhcp4o6Result(result);
    this.#o.metrics.inc("dstm_dhcp4o6_messages_total", { type, result });
  }

  #log(event: string, lease: Lease): void {
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
