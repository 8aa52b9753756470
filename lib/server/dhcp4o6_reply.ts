/**
 * The 4o6 server's answers, built as RFC 2131 Table 3 says (split from ./dhcp4o6.ts, which
 * decides what to answer): each a DHCPV4-RESPONSE (RFC 7341 §6) around a BOOTREPLY.
 *
 * - `op` 2, `htype`, `xid`, `flags` (broadcast bit), `giaddr` and `chaddr` from the query;
 *   `hops`, `secs`, `siaddr` 0; `ciaddr` 0 in an OFFER and a NAK, the query's in an ACK.
 * - The client identifier (61) returned unaltered when the query had one (RFC 6842).
 * - OFFER / ACK of a lease: lease time (51), T1 (58) = ½, T2 (59) = ⅞ of it, server id (54),
 *   mask /32 (the address is the host's alone, reached through the tunnel), and for a shared
 *   address OPTION_V4_PORTPARAMS (159, RFC 7618).
 * - ACK to INFORM (§4.3.5): server id and mask, no `yiaddr`, no lease time, no T1/T2.
 * - NAK: server id and a message (56), no lease time.
 *
 * @module
 */
import type { Lease } from "../lease/lease.ts";
import { type Dhcp4Message, Dhcp4MessageType } from "../wire/dhcp4.ts";
import { type Dhcp4ReplyOptions, encodeDhcp4Response } from "../wire/dhcp4o6_response.ts";

/** An OFFER or ACK of `lease` for `seconds` (s), from `serverId`. */
export function leaseReply(
  query: Dhcp4Message,
  type: Dhcp4MessageType,
  lease: Lease,
  seconds: number,
  serverId: number,
): Uint8Array {
  return bootReply(query, lease.ipv4, {
    messageType: type,
    serverId,
    leaseTime: seconds,
    renewalTime: Math.floor(seconds / 2),
    rebindingTime: Math.floor((seconds * 7) / 8),
    subnetMask: 0xffffffff,
    portParams: lease.portSet.psidLength > 0 ? lease.portSet : undefined,
  });
}

/** The ACK to an INFORM: parameters only. */
export function informReply(query: Dhcp4Message, serverId: number): Uint8Array {
  return bootReply(query, 0, {
    messageType: Dhcp4MessageType.ACK,
    serverId,
    subnetMask: 0xffffffff,
  });
}

/**
 * A NAK saying `message` (cut to 200 characters, and further so that the NAK is at most
 * `maxBytes` long: no reflection amplification, docs/security.md; without room for one
 * character, no message). Never shorter than a NAK without a message.
 */
export function nakReply(
  query: Dhcp4Message,
  serverId: number,
  message: string,
  maxBytes = Number.POSITIVE_INFINITY,
): Uint8Array {
  const text = message.slice(0, 200) || "refused";
  const nak = (m: string | undefined) =>
    bootReply(query, 0, { messageType: Dhcp4MessageType.NAK, serverId, message: m });
  const full = nak(text);
  if (full.length <= maxBytes) return full;
  const room = text.length - (full.length - maxBytes);
  return room >= 1 ? nak(text.slice(0, room)) : nak(undefined);
}

/**
 * The DHCPV4-RESPONSE carrying the BOOTREPLY to `query` (RFC 2131 Table 3, RFC 6842), written
 * in one pass (lib/wire/dhcp4o6_response.ts).
 */
export function bootReply(
  query: Dhcp4Message,
  yiaddr: number,
  options: Dhcp4ReplyOptions,
): Uint8Array {
  const type = options.messageType;
  const zeroCiaddr = type === Dhcp4MessageType.OFFER || type === Dhcp4MessageType.NAK;
  return encodeDhcp4Response(query, zeroCiaddr ? 0 : query.ciaddr, yiaddr, options);
}
