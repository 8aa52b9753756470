/**
 * The DHCPv4 requests a client sends (RFC 2131 §4.1, §4.3, table 5), as messages to encode:
 * DISCOVER, the SELECTING REQUEST, a RENEWING/REBINDING REQUEST and RELEASE. Pure data; the
 * DHCPv4-over-DHCPv6 client (lib/client/dhcp4o6_messages.ts) sends them, and the server's
 * warm-up (lib/server/warm_up.ts) sends the same ones to its twins.
 *
 * @module
 */
import {
  DHCP4_HTYPE_ETHERNET,
  type Dhcp4Message,
  Dhcp4MessageType,
  Dhcp4Op,
  type Dhcp4Options,
} from "./dhcp4.ts";

/** Option 55: mask, routers, DNS, lease time, server id, T1, T2, port set (RFC 7618). */
export const DHCP4O6_PARAMETER_REQUEST_LIST: readonly number[] = [1, 3, 6, 51, 54, 58, 59, 159];

/**
 * A client's DHCPv4 message: BOOTREQUEST, `htype` 1 for a 6-byte chaddr (else 0), `secs` the
 * whole seconds since the exchange `started` (ms, clamped to 0–65535), `ciaddr` (0, or the
 * leased address when renewing, rebinding or releasing), and `options`.
 */
export function dhcp4Request(
  chaddr: Uint8Array,
  xid: number,
  elapsedMs: number,
  ciaddr: number,
  options: Dhcp4Options,
): Dhcp4Message {
  return {
    op: Dhcp4Op.BOOTREQUEST,
    htype: chaddr.length === 6 ? DHCP4_HTYPE_ETHERNET : 0,
    hops: 0,
    xid,
    secs: Math.min(0xffff, Math.max(0, Math.floor(elapsedMs / 1000))),
    flags: 0,
    ciaddr,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr,
    options,
  };
}

/** Who sends: the client hardware address (1–16 bytes) and client identifier (option 61). */
export interface Dhcp4o6Sender {
  readonly chaddr: Uint8Array;
  readonly clientId: Uint8Array;
}

/** DHCPDISCOVER: parameter request list, client id; no ciaddr (RFC 2131 table 5). */
export function discoverMessage(me: Dhcp4o6Sender, xid: number, elapsedMs: number): Dhcp4Message {
  return dhcp4Request(me.chaddr, xid, elapsedMs, 0, {
    messageType: Dhcp4MessageType.DISCOVER,
    parameterRequestList: DHCP4O6_PARAMETER_REQUEST_LIST,
    clientId: me.clientId,
  });
}

/**
 * The SELECTING DHCPREQUEST: the OFFER's address as requested IP (option 50) and its server
 * id (option 54), the OFFER's xid (RFC 2131 §4.3.2, table 5).
 */
export function selectingRequest(
  me: Dhcp4o6Sender,
  xid: number,
  elapsedMs: number,
  offered: number,
  serverId: number,
): Dhcp4Message {
  return dhcp4Request(me.chaddr, xid, elapsedMs, 0, {
    messageType: Dhcp4MessageType.REQUEST,
    requestedIp: offered,
    serverId,
    parameterRequestList: DHCP4O6_PARAMETER_REQUEST_LIST,
    clientId: me.clientId,
  });
}

/** A RENEWING or REBINDING DHCPREQUEST: `ciaddr` set, no server id, no requested IP (§4.3.2). */
export function renewalRequest(
  me: Dhcp4o6Sender,
  xid: number,
  elapsedMs: number,
  ipv4: number,
): Dhcp4Message {
  return dhcp4Request(me.chaddr, xid, elapsedMs, ipv4, {
    messageType: Dhcp4MessageType.REQUEST,
    parameterRequestList: DHCP4O6_PARAMETER_REQUEST_LIST,
    clientId: me.clientId,
  });
}

/** DHCPRELEASE: `ciaddr` and the server id (RFC 2131 §4.4.6, table 5). */
export function releaseMessage(
  me: Dhcp4o6Sender,
  xid: number,
  ipv4: number,
  serverId: number,
): Dhcp4Message {
  return dhcp4Request(me.chaddr, xid, 0, ipv4, {
    messageType: Dhcp4MessageType.RELEASE,
    serverId,
    clientId: me.clientId,
  });
}
