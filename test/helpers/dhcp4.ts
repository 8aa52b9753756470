/**
 * The DHCPv4 message fixture of the tests and benches: `dhcp4Message` builds a message with
 * every header field zero except those given (RFC 2131 §2 layout), and `dhcp4o6Query` puts one
 * in a DHCPV4-QUERY (RFC 7341 §6.1); `dhcp4OfResponse` takes the one out of a server's
 * DHCPV4-RESPONSE. Pure: no I/O, so bench/ uses it too.
 *
 * @example
 * const discover = dhcp4Message(Dhcp4MessageType.DISCOVER, { parameterRequestList: [1, 3] });
 * ep.send(dhcp4o6Query(discover), "::1", 547);
 *
 * @module
 */
import {
  DHCP4_HTYPE_ETHERNET,
  type Dhcp4Message,
  Dhcp4MessageType,
  Dhcp4Op,
  type Dhcp4Options,
} from "../../lib/wire/dhcp4.ts";
import { Dhcp6MessageType, decodeDhcp4o6, encodeDhcp4o6 } from "../../lib/wire/dhcp4o6.ts";
import { Dhcp6RelayType, unwrapRelays } from "../../lib/wire/dhcp6_relay.ts";

/** A documentation-range MAC (RFC 7042 §2.1.2, 00-00-5E-10-xx-xx), locally administered. */
export const TEST_CHADDR: Uint8Array = Uint8Array.of(0x02, 0x00, 0x5e, 0x10, 0x00, 0x01);

/** The xid of a message unless one is given. */
export const TEST_XID = 0x3903f326;

/**
 * A DHCPv4 message of `type` with `options`: op BOOTREPLY for OFFER, ACK and NAK (sent by a
 * server), BOOTREQUEST otherwise; Ethernet, `TEST_CHADDR`, `TEST_XID`, every other header field
 * 0 unless `fields` gives it.
 */
export function dhcp4Message(
  type: Dhcp4MessageType,
  options: Partial<Dhcp4Options> = {},
  fields: Partial<Omit<Dhcp4Message, "options">> = {},
): Dhcp4Message {
  const reply =
    type === Dhcp4MessageType.OFFER ||
    type === Dhcp4MessageType.ACK ||
    type === Dhcp4MessageType.NAK;
  return {
    op: reply ? Dhcp4Op.BOOTREPLY : Dhcp4Op.BOOTREQUEST,
    htype: DHCP4_HTYPE_ETHERNET,
    hops: 0,
    xid: TEST_XID,
    secs: 0,
    flags: 0,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr: TEST_CHADDR,
    ...fields,
    options: { messageType: type, ...options },
  };
}

/** `dhcp4` in a DHCPV4-QUERY with `flags` (e.g. DHCP4O6_FLAG_UNICAST), encoded. */
export function dhcp4o6Query(dhcp4: Dhcp4Message, flags = 0): Uint8Array {
  return encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags, dhcp4 });
}

/**
 * The DHCPv4 message of a server's DHCPV4-RESPONSE (RFC 7341 §6.2), taken first out of every
 * RELAY-REPL around it (RFC 8415 §19.1.2) when `relayed`; throws on a malformed envelope.
 */
export function dhcp4OfResponse(answer: Uint8Array, relayed: boolean): Dhcp4Message {
  const inner = relayed
    ? unwrapRelays(answer, Dhcp6RelayType.RELAY_REPL)
    : { ok: true as const, value: { inner: answer } };
  if (!inner.ok) throw new Error(inner.error.message);
  const r = decodeDhcp4o6(inner.value.inner);
  if (!r.ok) throw new Error(r.error.message);
  return r.value.dhcp4;
}
