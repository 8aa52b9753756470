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
 * - DECLINE and INFORM are counted and ignored.
 * A shared pool's leases carry OPTION_V4_PORTPARAMS (159, RFC 7618).
 *
 * @module
 */
import type { AllocationEngine, EngineResult } from "../alloc/engine.ts";
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import type { Lease } from "../lease/lease.ts";
import { canonicalIPv6, formatIPv4 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";
import {
  type Dhcp4Message,
  Dhcp4MessageType,
  Dhcp4Op,
  type Dhcp4Options,
  dhcp4MessageTypeName,
} from "../wire/dhcp4.ts";
import {
  Dhcp6MessageType,
  Dhcp6OptionCode,
  decodeDhcp4o6,
  decodeDhcp6,
  encodeDhcp4o6,
  encodeDhcp6,
  peekDhcp6MessageType,
} from "../wire/dhcp4o6.ts";
import type { Admission } from "./admission.ts";
import type { BindingSink } from "./tep_sync.ts";

/** How long an offered address is held before the client's REQUEST (s). */
export const OFFER_SECONDS = 60;

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
}

export class Dhcp4o6Handler {
  readonly #o: Dhcp4o6Options;
  /** DUID-UUID (RFC 6355) naming this server in DHCPv6 replies; new per start. */
  readonly #duid = Uint8Array.from([0, 4, ...crypto.getRandomValues(new Uint8Array(16))]);

  constructor(options: Dhcp4o6Options) {
    this.#o = options;
    options.metrics.counter(
      "dstm_dhcp4o6_messages_total",
      "DHCPv4-over-DHCPv6 queries, by DHCPv4 message type and result",
    );
  }

  /** One datagram from `source` (port 546 normally); resolves to the answer or null. */
  async handle(raw: Uint8Array, source: string): Promise<Uint8Array | null> {
    if (this.#o.admission && !this.#o.admission.admit("dhcp4o6", source)) return null;
    if (peekDhcp6MessageType(raw) === Dhcp6MessageType.INFORMATION_REQUEST)
      return this.#information(raw);
    const decoded = decodeDhcp4o6(raw);
    if (!decoded.ok || decoded.value.type !== Dhcp6MessageType.DHCPV4_QUERY) {
      this.#count("invalid", decoded.ok ? "not-a-query" : `malformed-${decoded.error.code}`);
      return null;
    }
    const query = decoded.value.dhcp4;
    const host6 = canonicalIPv6(source);
    if (!host6) return null;
    const type = query.options.messageType;
    const name = dhcp4MessageTypeName(type).toLowerCase();
    const { engine } = this.#o;
    switch (type) {
      case Dhcp4MessageType.DISCOVER: {
        const result = await engine.discover(host6, {
          hint: query.options.requestedIp || undefined,
          leaseTime: OFFER_SECONDS,
          // An OFFER is not an ACK: it need not be on disk (the ACK is).
          persist: false,
        });
        // The TEP gets the binding with the ACK, not for an offer the client may not take.
        if (!result.ok) {
          // RFC 2131 §4.3.1: no address, no OFFER (a NAK is not a DISCOVER's answer).
          this.#count(name, result.reason);
          if (result.reason === "prefix-limit") this.#refusedPrefix(host6);
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
          await engine.withdrawOffer(host6);
          return null;
        }
        if (!address) return this.#nak(query, name, "no address requested");
        // The REQUEST after an OFFER renews the offered lease, but for the host (and its TEP) it is new.
        const first = engine.isOffer(engine.lookupHost(host6));
        const result = await engine.request(host6, address);
        if (!(await this.#installed(result, host6, result.ok && first)))
          return this.#nak(query, name, "TEP unavailable");
        if (!result.ok) {
          if (result.reason === "prefix-limit") this.#refusedPrefix(host6);
          return this.#nak(query, name, result.message);
        }
        this.#count(name, "ack");
        this.#log(result.outcome === "renewed" && !first ? "renew" : "allocate", result.lease);
        return this.#reply(query, Dhcp4MessageType.ACK, result.lease);
      }
      case Dhcp4MessageType.RELEASE: {
        const result = await engine.release(host6, query.ciaddr);
        this.#count(name, result.ok ? "released" : result.reason);
        if (result.ok) {
          this.#o.bindings?.remove(result.lease);
          this.#log("release", result.lease);
        }
        return null;
      }
      default:
        this.#count(name, "ignored");
        return null;
    }
  }

  /**
   * RFC 7341 §6: a client learns where 4o6 servers are from OPTION_DHCP4_O_DHCP6_SERVER (88)
   * in a DHCPv6 REPLY to its INFORMATION-REQUEST. We name ourselves (or, listening on any
   * address, send the empty list: "use ff02::1:2", where we listen too).
   */
  #information(raw: Uint8Array): Uint8Array | null {
    const decoded = decodeDhcp6(raw);
    if (!decoded.ok || !(decoded.value.oro ?? []).includes(Dhcp6OptionCode.DHCP4_O_DHCP6_SERVER)) {
      this.#count(
        "information-request",
        decoded.ok ? "no-option-88" : `malformed-${decoded.error.code}`,
      );
      return null;
    }
    this.#count("information-request", "reply");
    return encodeDhcp6({
      type: Dhcp6MessageType.REPLY,
      xid: decoded.value.xid,
      clientId: decoded.value.clientId,
      serverId: this.#duid,
      dhcp4o6Servers: this.#o.address && this.#o.address !== "::" ? [this.#o.address] : [],
    });
  }

  /** Installs a new binding at the TEP; on failure gives the address back. True when usable. */
  async #installed(result: EngineResult, host6: string, offered: boolean): Promise<boolean> {
    const sink = this.#o.bindings;
    if (!sink || !result.ok) return true;
    const isNew = offered || result.outcome === "allocated" || result.outcome === "reused";
    const ok = isNew
      ? await sink.install(result.lease)
      : ((await sink.pending(result.lease)) ?? true);
    if (!ok && isNew) await this.#o.engine.release(host6, result.lease.ipv4);
    return ok;
  }

  /** The engine refused a new lease: the host's prefix holds as many as one prefix may. */
  #refusedPrefix(host6: string): void {
    this.#o.admission?.refused("dhcp4o6", "prefix-limit", { host6 });
  }

  /** An OFFER or ACK of `lease`, for `seconds` (default: the time the lease has left). */
  #reply(query: Dhcp4Message, type: Dhcp4MessageType, lease: Lease, seconds?: number): Uint8Array {
    if (seconds === undefined) {
      seconds = Math.max(1, Math.round(this.#o.engine.remainingMs(lease) / 1000));
    }
    const options: Dhcp4Options = {
      messageType: type,
      serverId: this.#o.serverId,
      leaseTime: seconds,
      renewalTime: Math.floor(seconds / 2),
      rebindingTime: Math.floor((seconds * 7) / 8),
      subnetMask: 0xffffffff,
      portParams: lease.portSet.psidLength > 0 ? lease.portSet : undefined,
    };
    return this.#encode(query, { yiaddr: lease.ipv4, options });
  }

  #nak(query: Dhcp4Message, name: string, message: string): Uint8Array {
    this.#count(name, "nak");
    return this.#encode(query, {
      yiaddr: 0,
      options: {
        messageType: Dhcp4MessageType.NAK,
        serverId: this.#o.serverId,
        message: message.slice(0, 200) || "refused",
      },
    });
  }

  #encode(query: Dhcp4Message, answer: { yiaddr: number; options: Dhcp4Options }): Uint8Array {
    return encodeDhcp4o6({
      type: Dhcp6MessageType.DHCPV4_RESPONSE,
      flags: 0,
      dhcp4: {
        op: Dhcp4Op.BOOTREPLY,
        htype: query.htype,
        hops: 0,
        xid: query.xid,
        secs: 0,
        flags: query.flags,
        ciaddr: query.ciaddr,
        yiaddr: answer.yiaddr,
        siaddr: 0,
        giaddr: query.giaddr,
        chaddr: query.chaddr,
        options: answer.options,
      },
    });
  }

  #count(type: string, result: string): void {
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
