/**
 * The plain DHCPv6 messages (RFC 8415) a 4o6 client needs to find its 4o6 servers: SOLICIT,
 * ADVERTISE, REQUEST, REPLY and INFORMATION-REQUEST (RFC 7341 §5: an INFORMATION-REQUEST whose
 * ORO asks for option 88, and the REPLY naming the servers), with the options of
 * ./dhcp6_options.ts. The 4o6 envelope is ./dhcp4o6.ts; relay messages ./dhcp6_relay.ts.
 *
 * Same shape as `dhcp4.ts`: `encodeDhcp6` / `decodeDhcp6` / `dhcp6EncodingLength`. Decoding
 * never throws; encoding throws `RangeError` on a value it could not decode back. A DHCPv6
 * message has no length field: it is the whole UDP payload, or the `length` bytes given.
 *
 * @module
 */
import { readU24, writeU16 } from "../net/bytes.ts";
import { encodeTarget, fail } from "./codec.ts";
import {
  checkDhcp6Options,
  checkDhcp6Range,
  DHCP6_SPECS,
  DHCP6_SPECS_BY_CODE,
  type Dhcp6Fields,
  type Dhcp6OptionKey,
  dhcp6OptionName,
  dhcp6OptionsLength,
  isUintUpTo,
  putDhcp6Option,
  putDhcp6Unknown,
  readDhcp6Options,
} from "./dhcp6_options.ts";
import {
  type Dhcp6Decoded,
  type Dhcp6Message,
  Dhcp6MessageType,
  dhcp6MessageTypeName,
} from "./dhcp6_types.ts";

/** RFC 8415 §16: which identifiers each message must carry (and SOLICIT must not). */
const _REQUIRED: Record<number, readonly Dhcp6OptionKey[]> = {
  1: ["clientId"],
  2: ["serverId", "clientId"],
  3: ["clientId", "serverId"],
  7: ["serverId"],
  11: [],
};

/**
 * Decodes a SOLICIT, ADVERTISE, REQUEST, REPLY or INFORMATION-REQUEST from the `length`
 * bytes at `offset` (by default the rest of `buf`). Never throws. Relay messages and the 4o6
 * envelope (use `decodeDhcp4o6`) are `bad-msg-type`. RFC 8415 §16 identifiers are enforced:
 * SOLICIT needs a client id and must not carry a server id, ADVERTISE both, REQUEST both,
 * REPLY a server id.
 *
 * @example
 * const r = decodeDhcp6(payload);
 * const servers = r.ok && r.value.type === Dhcp6MessageType.REPLY ? r.value.dhcp4o6Servers : undefined;
 */
export function decodeDhcp6(
  buf: Uint8Array,
  offset = 0,
  length = buf.length - offset,
): Dhcp6Decoded<Dhcp6Message> {
  const bad = checkDhcp6Range(buf, offset, length);
  if (bad !== undefined) return bad;
  const type = buf[offset]!;
  const required = _REQUIRED[type];
  if (required === undefined) {
    const hint = type === 20 || type === 21 ? "; decode it with decodeDhcp4o6" : "";
    return fail("bad-msg-type", `${dhcp6MessageTypeName(type)} is not supported${hint}`);
  }
  const fields: Record<string, unknown> = {};
  const end = offset + length;
  const error = readDhcp6Options(buf, offset, end, DHCP6_SPECS_BY_CODE, fields, null);
  if (error !== undefined) return { ok: false, error };
  for (const key of required) {
    if (fields[key] === undefined) {
      return fail(
        "missing-option",
        `${dhcp6MessageTypeName(type)} without ${dhcp6OptionName(key)}`,
      );
    }
  }
  if (type === Dhcp6MessageType.SOLICIT && fields.serverId !== undefined) {
    return fail("option-not-allowed", "SOLICIT with OPTION_SERVERID");
  }
  const value = { type, xid: readU24(buf, offset + 1), ...fields };
  return { ok: true, value: value as Dhcp6Message, offset: end };
}

/** Bytes `encodeDhcp6` writes: 4 of header and each option. */
export function dhcp6EncodingLength(msg: Dhcp6Message): number {
  return 4 + dhcp6OptionsLength(msg, DHCP6_SPECS);
}

/**
 * Encodes a plain DHCPv6 message into `buf` at `offset` (a new buffer when omitted); options
 * in code order (client id, server id, ORO, elapsed time, 4o6 servers) then `unknown`. Throws
 * `RangeError` on what `decodeDhcp6` would refuse or when `buf` is too small.
 *
 * @example
 * const ask = encodeDhcp6({ type: 11, xid: 0x5a17e0, clientId: duid, oro: [88], elapsedTime: 0 });
 */
export function encodeDhcp6(msg: Dhcp6Message, buf?: Uint8Array, offset = 0): Uint8Array {
  const required = _REQUIRED[msg.type];
  if (required === undefined) throw new RangeError(`type ${msg.type} is not 1, 2, 3, 7 or 11`);
  if (!isUintUpTo(msg.xid, 0xffffff)) throw new RangeError(`xid ${msg.xid} is not 24 bits`);
  checkDhcp6Options(msg, DHCP6_SPECS, -1);
  for (const key of required) {
    if (msg[key] === undefined)
      throw new RangeError(`${dhcp6MessageTypeName(msg.type)} requires ${key}`);
  }
  if (msg.type === Dhcp6MessageType.SOLICIT && msg.serverId !== undefined) {
    throw new RangeError("SOLICIT must not carry serverId");
  }
  const out = encodeTarget(buf, offset, dhcp6EncodingLength(msg), dhcp6MessageTypeName(msg.type));
  out[0] = msg.type;
  out[1] = msg.xid >>> 16;
  writeU16(out, 2, msg.xid);
  let p = 4;
  for (const spec of DHCP6_SPECS)
    p = putDhcp6Option(out, p, spec, (msg as unknown as Dhcp6Fields)[spec.key]);
  putDhcp6Unknown(out, p, msg.unknown);
  return out;
}
