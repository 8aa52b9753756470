/**
 * `--log-level debug` for DHCPv4-over-DHCPv6 (RFC 7341), as ./message_log.ts is for the native
 * protocol: one `message-received` / `message-sent` line per DHCPv6 message, on the server and
 * on the 4o6 client, with what the message says:
 *
 * - `dhcp6-type`: the DHCPv6 message type (`DHCPV4-QUERY`, `DHCPV4-RESPONSE`,
 *   `INFORMATION-REQUEST`, `REPLY`); a relayed message's is the innermost one, with
 *   `relay-hops` (how many RELAY-FORW / RELAY-REPL wrap it, RFC 8415 §19), `link` (the
 *   innermost relay's link-address, unless unspecified) and `host6` (its peer-address: the
 *   client);
 * - `dhcp4-type`, `xid` (the DHCPv4 message's, RFC 2131 §2), `chaddr` and `client-id` (hex:
 *   the client's identity, RFC 2131 §4.2), `ipv4` (yiaddr, else ciaddr, else the requested
 *   address, option 50), `lease-time-s` (option 51, s) and, in a NAK, `reason` (option 56);
 * - for DHCPv6-only messages, `xid` (the DHCPv6 transaction id);
 * - `peer` (who sent it / where it goes) and the caller's `extra` fields (the server's
 *   `host6`, `result` and `reason`). A message that does not decode gets `malformed`.
 *
 * Nothing is decoded unless debug is on.
 *
 * @example
 * logDhcp4o6Message(log, "sent", answer, "2001:db8:1::10", { result: "offer" });
 * // DEBUG message-sent dhcp6-type=DHCPV4-RESPONSE dhcp4-type=OFFER xid=7 chaddr=02005e100001 ipv4=192.0.2.10 lease-time-s=3600 peer=2001:db8:1::10 result=offer
 *
 * @module
 */
import { formatIPv4 } from "../net/addr.ts";
import { Dhcp4MessageType, dhcp4MessageTypeName } from "../wire/dhcp4.ts";
import {
  Dhcp6MessageType,
  decodeDhcp4o6,
  decodeDhcp6,
  dhcp6MessageTypeName,
  peekDhcp6MessageType,
} from "../wire/dhcp4o6.ts";
import { Dhcp6RelayType, unwrapRelays } from "../wire/dhcp6_relay.ts";
import type { LogFields, Logger } from "./log.ts";

/** The fields of the DHCPv6 datagram `raw` worth a debug line (see the module docs). */
export function dhcp4o6MessageFields(raw: Uint8Array): LogFields {
  let inner = raw;
  const fields: LogFields = {};
  const outer = peekDhcp6MessageType(raw);
  if (outer === Dhcp6RelayType.RELAY_FORW || outer === Dhcp6RelayType.RELAY_REPL) {
    const opened = unwrapRelays(raw, outer);
    if (!opened.ok)
      return { "dhcp6-type": dhcp6MessageTypeName(outer), malformed: opened.error.code };
    const relays = opened.value.relays;
    inner = opened.value.inner;
    fields["relay-hops"] = relays.length;
    const innermost = relays.at(-1);
    if (innermost && innermost.linkAddress !== "::") fields.link = innermost.linkAddress;
    // RFC 8415 §19.1.1: the innermost relay's peer-address is the client.
    if (innermost) fields.host6 = innermost.peerAddress;
  }
  const type = peekDhcp6MessageType(inner);
  if (type === null) return { ...fields, malformed: "truncated" };
  fields["dhcp6-type"] = dhcp6MessageTypeName(type);
  if (type === Dhcp6MessageType.DHCPV4_QUERY || type === Dhcp6MessageType.DHCPV4_RESPONSE) {
    const decoded = decodeDhcp4o6(inner);
    if (!decoded.ok) return { ...fields, malformed: decoded.error.code };
    const m = decoded.value.dhcp4;
    const o = m.options;
    const address = m.yiaddr || m.ciaddr || o.requestedIp || 0;
    return {
      ...fields,
      "dhcp4-type": dhcp4MessageTypeName(o.messageType),
      xid: m.xid,
      chaddr: _hex(m.chaddr),
      "client-id": o.clientId ? _hex(o.clientId) : undefined,
      ipv4: address ? formatIPv4(address) : undefined,
      "lease-time-s": o.leaseTime,
      reason: o.messageType === Dhcp4MessageType.NAK ? o.message : undefined,
    };
  }
  const decoded = decodeDhcp6(inner);
  if (!decoded.ok) return { ...fields, malformed: decoded.error.code };
  return { ...fields, xid: decoded.value.xid };
}

/**
 * Logs the DHCPv6 datagram `raw` at debug as `message-received` (from `peer`) or
 * `message-sent` (to `peer`), with `extra` fields (e.g. `result`); nothing is decoded unless
 * debug is on.
 */
export function logDhcp4o6Message(
  log: Logger | undefined,
  direction: "received" | "sent",
  raw: Uint8Array,
  peer: string,
  extra: LogFields = {},
): void {
  if (!log?.enabled("debug")) return;
  log.debug(`message-${direction}`, { ...dhcp4o6MessageFields(raw), peer, ...extra });
}

function _hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}
