/**
 * DHCPv4-over-DHCPv6 (RFC 7341): the DHCPV4-QUERY / DHCPV4-RESPONSE envelope around a DHCPv4
 * message: `encodeDhcp4o6` / `decodeDhcp4o6` / `dhcp4o6EncodingLength`, same shape as
 * `dhcp4.ts`. docs/dhcp4o6.md describes the exchange.
 *
 * The DHCPv6 pieces live beside it and are re-exported here, so `./dhcp4o6.ts` stays the one
 * import for 4o6: ./dhcp6_types.ts (ports, types, codes, errors), ./dhcp6.ts (the plain
 * DHCPv6 messages a 4o6 client needs to learn its 4o6 servers: INFORMATION-REQUEST and
 * REPLY), ./dhcp6_options.ts (the typed options, `dhcp6OptionCodecs`). Relay messages are
 * ./dhcp6_relay.ts. Decoding never throws; encoding throws `RangeError` on a value it could
 * not decode back. A DHCPv6 message has no length field: it is the whole UDP payload, or the
 * `length` bytes given to the decoder.
 *
 * @module
 */

import { readU24, writeU16 } from "../net/bytes.ts";
import { encodeTarget, fail } from "./codec.ts";
import { Dhcp4Op, decodeDhcp4, dhcp4EncodingLength, encodeDhcp4 } from "./dhcp4.ts";
import {
  CLIENT_ID_SPEC,
  checkDhcp6Options,
  checkDhcp6Range,
  dhcp6OptionsLength,
  ENVELOPE_SPECS,
  ENVELOPE_SPECS_BY_CODE,
  isUintUpTo,
  putDhcp6Option,
  putDhcp6Unknown,
  readDhcp6Options,
  SERVER_ID_SPEC,
  SERVERS_SPEC,
} from "./dhcp6_options.ts";
import {
  type Dhcp4o6Message,
  type Dhcp6Decoded,
  Dhcp6OptionCode,
  dhcp6MessageTypeName,
} from "./dhcp6_types.ts";

export { decodeDhcp6, dhcp6EncodingLength, encodeDhcp6 } from "./dhcp6.ts";
export { dhcp6OptionCodecs } from "./dhcp6_options.ts";
export * from "./dhcp6_types.ts";

/**
 * Decodes a DHCPV4-QUERY or DHCPV4-RESPONSE from the `length` bytes at `offset` (by default
 * the rest of `buf`, i.e. the UDP payload), including the DHCPv4 message it carries. Never
 * throws. Faults of the inner message come back as `bad-dhcpv4-msg` with the DHCPv4 error in
 * `error.dhcp4`. The flags are returned as sent; act on them only in a query.
 *
 * @example
 * const r = decodeDhcp4o6(payload);
 * if (r.ok && r.value.type === Dhcp6MessageType.DHCPV4_RESPONSE) handle(r.value.dhcp4);
 */
export function decodeDhcp4o6(
  buf: Uint8Array,
  offset = 0,
  length = buf.length - offset,
): Dhcp6Decoded<Dhcp4o6Message> {
  const bad = checkDhcp6Range(buf, offset, length);
  if (bad !== undefined) return bad;
  const type = buf[offset]!;
  if (type !== 20 && type !== 21) {
    const name = dhcp6MessageTypeName(type);
    return fail("bad-msg-type", `${name} is not DHCPV4-QUERY (20) or DHCPV4-RESPONSE (21)`);
  }
  // The message itself collects the envelope's options (no copy of them afterwards).
  const fields: Record<string, unknown> = { type, flags: readU24(buf, offset + 1) };
  const msg87: number[] = [];
  const end = offset + length;
  const error = readDhcp6Options(buf, offset, end, ENVELOPE_SPECS_BY_CODE, fields, msg87);
  if (error !== undefined) return { ok: false, error };
  if (msg87.length === 0) {
    return fail(
      "missing-option",
      `${dhcp6MessageTypeName(type)} carries no OPTION_DHCPV4_MSG (87)`,
    );
  }
  const inner = decodeDhcp4(buf, msg87[0], msg87[1]);
  if (!inner.ok) {
    const message = `OPTION_DHCPV4_MSG: ${inner.error.code}: ${inner.error.message}`;
    return { ok: false, error: { code: "bad-dhcpv4-msg", message, dhcp4: inner.error } };
  }
  // RFC 7341 §6: a query carries what a client sends, a response what a server sends.
  const op = type === 20 ? Dhcp4Op.BOOTREQUEST : Dhcp4Op.BOOTREPLY;
  if (inner.value.op !== op) {
    return fail(
      "bad-direction",
      `${dhcp6MessageTypeName(type)} carries a DHCPv4 op ${inner.value.op}`,
    );
  }
  fields.dhcp4 = inner.value;
  return { ok: true, value: fields as unknown as Dhcp4o6Message, offset: end };
}

/** Bytes `encodeDhcp4o6` writes: 4 of header, 4 + the DHCPv4 message, and each option. */
export function dhcp4o6EncodingLength(msg: Dhcp4o6Message): number {
  return 8 + dhcp4EncodingLength(msg.dhcp4) + dhcp6OptionsLength(msg, ENVELOPE_SPECS);
}

/**
 * Encodes a DHCPV4-QUERY or DHCPV4-RESPONSE into `buf` at `offset` (a new buffer when
 * omitted); options in code order: client id, server id, DHCPv4 message, 4o6 servers, then
 * `unknown`. Throws `RangeError` on a wrong type, flags over 24 bits, a DHCPv4 message
 * `encodeDhcp4` refuses or of the wrong direction (BOOTREPLY in a query), an invalid typed
 * option, an unknown option reusing a typed code or 87, or a `buf` too small.
 *
 * @example
 * const query = encodeDhcp4o6({ type: 20, flags: renewing ? DHCP4O6_FLAG_UNICAST : 0, dhcp4 });
 */
export function encodeDhcp4o6(msg: Dhcp4o6Message, buf?: Uint8Array, offset = 0): Uint8Array {
  const { type, flags, dhcp4 } = msg;
  if (type !== 20 && type !== 21) throw new RangeError(`type ${type} is not 20 or 21`);
  if (!isUintUpTo(flags, 0xffffff)) throw new RangeError(`flags ${flags} is not 24 bits`);
  const op = type === 20 ? Dhcp4Op.BOOTREQUEST : Dhcp4Op.BOOTREPLY;
  if (dhcp4?.op !== op) throw new RangeError(`${dhcp6MessageTypeName(type)} must carry op ${op}`);
  checkDhcp6Options(msg, ENVELOPE_SPECS, Dhcp6OptionCode.DHCPV4_MSG);
  const innerLength = dhcp4EncodingLength(dhcp4);
  if (innerLength > 0xffff) throw new RangeError(`${innerLength}-byte DHCPv4 message`);
  const out = encodeTarget(buf, offset, dhcp4o6EncodingLength(msg), dhcp6MessageTypeName(type));
  // The DHCPv4 message goes first: encodeDhcp4 checks it before writing a byte, so a
  // refused message leaves `buf` untouched.
  const clientIdLength = msg.clientId === undefined ? 0 : 4 + msg.clientId.length;
  const at87 = 4 + clientIdLength + (msg.serverId === undefined ? 0 : 4 + msg.serverId.length);
  encodeDhcp4(dhcp4, out, at87 + 4);
  out[0] = type;
  out[1] = flags >>> 16;
  writeU16(out, 2, flags);
  let p = putDhcp6Option(out, 4, CLIENT_ID_SPEC, msg.clientId);
  p = putDhcp6Option(out, p, SERVER_ID_SPEC, msg.serverId);
  writeU16(out, p, Dhcp6OptionCode.DHCPV4_MSG);
  writeU16(out, p + 2, innerLength);
  p = putDhcp6Option(out, p + 4 + innerLength, SERVERS_SPEC, msg.dhcp4o6Servers);
  putDhcp6Unknown(out, p, msg.unknown);
  return out;
}
