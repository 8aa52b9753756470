/**
 * The DHCPv4 side of the DHCPv4-over-DHCPv6 client (RFC 7341 §6, RFC 2131): the messages it
 * builds, the DHCPV4-RESPONSEs it takes, and what an ACK grants. No I/O, no state: the client
 * (./dhcp4o6_client.ts) keeps the binding and the socket (./dhcp4o6_transport.ts).
 *
 * - {@link dhcp4Request}: a BOOTREQUEST with our chaddr and `secs` since the exchange began
 *   (RFC 2131 §4.1); {@link discoverMessage}, {@link selectingRequest},
 *   {@link renewalRequest} and {@link releaseMessage} fill in what each message carries
 *   (RFC 2131 table 5).
 * - {@link matchResponse}: the DHCPv4 message of a DHCPV4-RESPONSE for our xid and chaddr.
 * - {@link leaseOfAck}: an ACK as the client's binding (server id, responder, T1, T2;
 *   RFC 2131 §4.4.5) and as the {@link ClientLease} the DTI service uses.
 *
 * @module
 */
import { DHCP4_INFINITE_LEASE, type Dhcp4Message, Dhcp4MessageType } from "../wire/dhcp4.ts";
import { Dhcp6MessageType, decodeDhcp4o6, peekDhcp6MessageType } from "../wire/dhcp4o6.ts";
import { dhcp4Timers } from "./dhcp4_timers.ts";
import {
  DHCP4O6_MAX_REPORTED_LEASE,
  type Dhcp4o6Binding,
  type Dhcp4o6ClientOptions,
} from "./dhcp4o6_options.ts";
import type { ClientLease } from "./protocol.ts";

export {
  type Dhcp4o6Sender,
  dhcp4Request,
  discoverMessage,
  releaseMessage,
  renewalRequest,
  selectingRequest,
} from "../wire/dhcp4_requests.ts";

/** A DHCPv4 answer and the IPv6 address of the server (or relay) that sent it. */
export interface Dhcp4o6Reply {
  readonly dhcp4: Dhcp4Message;
  readonly from: string;
}

/**
 * The DHCPv4 message of `payload` if it is a DHCPV4-RESPONSE (RFC 7341 §6.2) with `xid` and
 * `chaddr` that passes `accept`, else null (undecodable, another message, another client).
 */
export function matchResponse(
  payload: Uint8Array,
  xid: number,
  chaddr: Uint8Array,
  accept: (m: Dhcp4Message) => boolean,
): Dhcp4Message | null {
  if (peekDhcp6MessageType(payload) !== Dhcp6MessageType.DHCPV4_RESPONSE) return null;
  const r = decodeDhcp4o6(payload);
  // The response's flags mean nothing (Kea copies the query's): not looked at.
  if (!r.ok || r.value.dhcp4.xid !== xid) return null;
  const m = r.value.dhcp4;
  return sameBytes(m.chaddr, chaddr) && accept(m) ? m : null;
}

/** A NAK, or an ACK that grants an address. */
export function isAckOrNak(m: Dhcp4Message): boolean {
  const type = m.options.messageType;
  return type === Dhcp4MessageType.NAK || (type === Dhcp4MessageType.ACK && m.yiaddr !== 0);
}

/**
 * What the ACK in `reply` grants at `now` (ms since the epoch): the client's binding and the
 * lease it reports. The lease time (s) is capped at {@link DHCP4O6_MAX_REPORTED_LEASE}
 * (infinite included); T1 and T2 are the server's, or RFC 2131 §4.4.5's defaults (0.5 and
 * 0.875 of the lease) when it sent none. An ACK without a server id keeps
 * `previousServerId` (a renewal's ACK may omit it). A port set with a PSID length of 0 is a
 * whole address: reported as none.
 */
export function leaseOfAck(
  reply: Dhcp4o6Reply,
  now: number,
  previousServerId: number | undefined,
  options: Pick<Dhcp4o6ClientOptions, "host6" | "tep6" | "tep4">,
): { binding: Dhcp4o6Binding; lease: ClientLease } {
  const m = reply.dhcp4;
  const granted = m.options.leaseTime ?? DHCP4O6_MAX_REPORTED_LEASE;
  const leaseTime =
    granted === DHCP4_INFINITE_LEASE
      ? DHCP4O6_MAX_REPORTED_LEASE
      : Math.min(granted, DHCP4O6_MAX_REPORTED_LEASE);
  const { t1, t2 } = dhcp4Timers(leaseTime, m.options.renewalTime, m.options.rebindingTime);
  const binding: Dhcp4o6Binding = {
    ipv4: m.yiaddr,
    serverId: m.options.serverId ?? previousServerId ?? 0,
    responder: reply.from,
    leaseTime,
    t1,
    t2,
    obtainedAt: now,
  };
  const portSet = m.options.portParams;
  const lease: ClientLease = {
    ipv4: m.yiaddr,
    host6: options.host6,
    tep6: options.tep6,
    tep4: options.tep4,
    portSet: portSet && portSet.psidLength > 0 ? portSet : undefined,
    leaseTime,
    obtainedAt: now,
    expiresAt: now + leaseTime * 1000,
    renewAt: now + t1 * 1000,
  };
  return { binding, lease };
}

/** A random DHCPv4 transaction id (RFC 2131 §4.1: chosen by the client). */
export function randomXid(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
