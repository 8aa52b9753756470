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
 * - A link-local source (what a DHCPv6 client sends from): the lease's host6 is its address
 *   without the zone, but in `source` mode its holder is that address on its link, named
 *   alike whether it came directly or through a relay of that link (./dhcp4o6_identity.ts,
 *   ./dhcp4o6_link_names.ts), since two links may each have an fe80::10; the answer goes to
 *   the address with its zone.
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
 * This file is the DHCPv6 side (relays, admission, the link, INFORMATION-REQUEST, the
 * DHCPV4-QUERY's decoding); the DHCPv4 server it carries, from the client's identity and
 * link to the OFFER, ACK or NAK, is ./dhcp4o6_query.ts.
 *
 * @module
 */
import type { LogFields } from "../control/log.ts";
import { canonicalIPv6 } from "../net/addr.ts";
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
import { handleLogged, noteDhcp4o6Holder } from "./dhcp4o6_debug.ts";
import { linkLocalHolder } from "./dhcp4o6_identity.ts";
import { informationAnswer } from "./dhcp4o6_information.ts";
import type { LinkChoice, LinkSelector } from "./dhcp4o6_link.ts";
import type { LinkNames } from "./dhcp4o6_link_names.ts";
import { countDhcp4o6, Dhcp4QueryHandler, type Dhcp4QueryOptions } from "./dhcp4o6_query.ts";

export { DECLINE_PROBATION_SECONDS, OFFER_SECONDS } from "./dhcp4o6_query.ts";

/** The service's settings: the DHCPv4 server's (./dhcp4o6_query.ts), and the DHCPv6 side's. */
export interface Dhcp4o6Options extends Dhcp4QueryOptions {
  /** The address the service listens on (named in option 88), `::` for any. */
  readonly address?: string;
  readonly now?: () => number;
  /** Allow list, rate limit and refusal accounting; none: every query goes on. */
  readonly admission?: Admission;
  /** The pools of each link (./dhcp4o6_link.ts), read per query (a reload replaces it); none: every pool. */
  readonly links?: () => LinkSelector | undefined;
  /**
   * The links the server knows (its interfaces' prefixes, `--dhcp4o6-link-prefix`), naming a
   * link-local client's link alike however its query came (./dhcp4o6_link_names.ts); none:
   * only what each packet says.
   */
  readonly linkNames?: LinkNames;
}

export class Dhcp4o6Handler {
  readonly #o: Dhcp4o6Options;
  /** DUID-UUID (RFC 6355) naming this server in DHCPv6 replies; new per start. */
  readonly #duid = Uint8Array.from([0, 4, ...crypto.getRandomValues(new Uint8Array(16))]);
  /** `type reason` of a dropped datagram → when last logged, and how many since were not. */
  readonly #dropLogged = new Map<string, { at: number; suppressed: number }>();
  /** The DHCPv4 message inside each DHCPV4-QUERY (RFC 2131). */
  readonly #queries: Dhcp4QueryHandler;

  constructor(options: Dhcp4o6Options) {
    this.#o = options;
    this.#queries = new Dhcp4QueryHandler(options, (type, reason, fields) =>
      this.#drop(type, reason, fields),
    );
    options.metrics.counter(
      "dstm_dhcp4o6_messages_total",
      "DHCPv4-over-DHCPv6 queries, by DHCPv4 message type and result",
      ["type", "result"],
    );
  }

  /**
   * One datagram from `source` (a client on port 546, or a relay on 547; a link-local source
   * with its `%zone`); resolves to the answer for `source` (a RELAY-REPL for a relay) or null.
   */
  handle(raw: Uint8Array, source: string): Promise<Uint8Array | null> {
    // Without debug, straight on: no closure, no wrapper promise per datagram.
    if (!this.#o.log.enabled("debug")) return this.#handle(raw, source);
    return handleLogged(this.#o.log, raw, source, () => this.#handle(raw, source));
  }

  async #handle(raw: Uint8Array, source: string): Promise<Uint8Array | null> {
    let relays: readonly Dhcp6RelayMessage[] = [];
    let payload = raw;
    const zone = source.indexOf("%");
    let host = zone < 0 ? source : source.slice(0, zone);
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
    // A link-local host is one only on its link: its link goes into its holder key, in
    // `source` mode (the other modes hold a lease by the DHCPv4 client: dhcp4Identity).
    const holder =
      (this.#o.identity ?? "source") === "source"
        ? linkLocalHolder(host6, relays, source, this.#o.linkNames)
        : null;
    if (holder !== null) noteDhcp4o6Holder(holder);
    const answer = await this.#answer(payload, host6, link, holder);
    if (answer === null) return null;
    if (relays.length > 0)
      this.#o.metrics.inc("dstm_dhcp4o6_messages_total", {
        type: "relay-repl",
        result: `hops-${relays.length}`,
      });
    return wrapRelayReply(relays, answer);
  }

  /**
   * The answer to one client message from `host6` (canonical, no zone) on `link`, or null;
   * `linkLocal`: the holder key of a link-local host (./dhcp4o6_identity.ts), else null.
   */
  #answer(
    raw: Uint8Array,
    host6: string,
    link: LinkChoice | undefined,
    linkLocal: string | null,
  ): Promise<Uint8Array | null> | Uint8Array | null {
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
    return this.#queries.answer(decoded.value.dhcp4, host6, link, raw.length, linkLocal);
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
        detail:
          "a REPLY longer than its request goes only to a link-local source (RFC 8415 §14.1: a client asks ff02::1:2 from its link-local address); have the client send from it, or give it this server's address (docs/security.md)",
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

  #count(type: string, result: string): void {
    countDhcp4o6(this.#o.metrics, type, result);
  }
}
