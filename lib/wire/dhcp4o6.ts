/**
 * DHCPv4-over-DHCPv6 (RFC 7341): the DHCPV4-QUERY / DHCPV4-RESPONSE envelope around a DHCPv4
 * message, and the few DHCPv6 (RFC 8415) messages a 4o6 client needs to learn its 4o6 server
 * addresses (an INFORMATION-REQUEST whose ORO asks for option 88, and the REPLY).
 * docs/dhcp4o6.md describes the exchange.
 *
 * Same shape as `dhcp4.ts`: `encodeDhcp4o6`/`decodeDhcp4o6`/`dhcp4o6EncodingLength` for the
 * envelope, `encodeDhcp6`/`decodeDhcp6`/`dhcp6EncodingLength` for the plain DHCPv6 messages,
 * `dhcp6OptionCodecs` for the typed option values. Decoding never throws; encoding throws
 * `RangeError` on a value it could not decode back. A DHCPv6 message has no length field: it
 * is the whole UDP payload, or the `length` bytes given to the decoder.
 *
 * @module
 */

import { formatIPv6, parseIPv6 } from "../net/addr.ts";
import { readU16, readU24, writeU16 } from "../net/bytes.ts";
import type { Decoded, DecodeError, OptionCodec, RawOption } from "./codec.ts";
import { encodeTarget, validRange } from "./codec.ts";
import {
  type Dhcp4DecodeError,
  type Dhcp4Message,
  Dhcp4Op,
  decodeDhcp4,
  dhcp4EncodingLength,
  encodeDhcp4,
} from "./dhcp4.ts";

/** UDP port a DHCPv6 (and 4o6) client listens on and sends from. */
export const DHCP6_CLIENT_PORT = 546;
/** UDP port of DHCPv6 (and 4o6) servers and relays. */
export const DHCP6_SERVER_PORT = 547;
/** All_DHCP_Relay_Agents_and_Servers: where a 4o6 query goes without a server list. */
export const ALL_DHCP_RELAY_AGENTS_AND_SERVERS = "ff02::1:2";
/**
 * U flag of DHCPV4-QUERY (RFC 7341 §6.1): the top bit of the 24-bit flags, first byte 0x80.
 * Set when the DHCPv4 message would have been unicast over IPv4 (renewing, releasing).
 */
export const DHCP4O6_FLAG_UNICAST = 0x800000;

export const Dhcp6MessageType = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  REPLY: 7,
  INFORMATION_REQUEST: 11,
  DHCPV4_QUERY: 20,
  DHCPV4_RESPONSE: 21,
} as const;
/** The plain DHCPv6 messages `encodeDhcp6`/`decodeDhcp6` handle. */
export type Dhcp6MessageType = 1 | 2 | 3 | 7 | 11;
/** The two RFC 7341 envelope messages. */
export type Dhcp4o6MessageType = 20 | 21;

export const Dhcp6OptionCode = {
  CLIENTID: 1,
  SERVERID: 2,
  ORO: 6,
  ELAPSED_TIME: 8,
  DHCPV4_MSG: 87,
  DHCP4_O_DHCP6_SERVER: 88,
} as const;

/** Every reason `decodeDhcp4o6` or `decodeDhcp6` rejects a message. */
export const DHCP6_DECODE_ERROR_CODES = [
  "bad-offset",
  "truncated",
  "bad-msg-type",
  "truncated-option",
  "bad-option-length",
  "duplicate-option",
  "missing-option",
  "option-not-allowed",
  "bad-dhcpv4-msg",
  "bad-direction",
] as const;
export type Dhcp6DecodeErrorCode = (typeof DHCP6_DECODE_ERROR_CODES)[number];

/** Why a message was rejected; `dhcp4` is the inner fault of a `bad-dhcpv4-msg`. */
export interface Dhcp6DecodeError extends DecodeError<Dhcp6DecodeErrorCode> {
  readonly dhcp4?: Dhcp4DecodeError;
}

/** Result of a decode: the value and the offset just past it, or the reason it failed. */
export type Dhcp6Decoded<T> = Decoded<T, Dhcp6DecodeError>;

/** An option without a typed field, kept as it came (repeats kept, in order). */
export type Dhcp6RawOption = RawOption;

/** Options typed in both kinds of message. DUIDs are kept as raw bytes. */
export interface Dhcp6CommonOptions {
  /** OPTION_CLIENTID (1): the client's DUID, 3–130 bytes. */
  readonly clientId?: Uint8Array;
  /** OPTION_SERVERID (2): the server's DUID, 3–130 bytes. */
  readonly serverId?: Uint8Array;
  /**
   * OPTION_DHCP4_O_DHCP6_SERVER (88): IPv6 addresses of the 4o6 servers, canonical text.
   * An empty list (option length 0) means "send to ff02::1:2".
   */
  readonly dhcp4o6Servers?: readonly string[];
  /** Every other option, in order. */
  readonly unknown?: readonly Dhcp6RawOption[];
}

/** DHCPV4-QUERY (20) or DHCPV4-RESPONSE (21): no transaction id, the DHCPv4 xid serves. */
export interface Dhcp4o6Message extends Dhcp6CommonOptions {
  readonly type: Dhcp4o6MessageType;
  /** 24 bits; `DHCP4O6_FLAG_UNICAST` in a query. Kea echoes them in responses: ignore there. */
  readonly flags: number;
  /** OPTION_DHCPV4_MSG (87), required: BOOTREQUEST in a query, BOOTREPLY in a response. */
  readonly dhcp4: Dhcp4Message;
}

/** SOLICIT, ADVERTISE, REQUEST, REPLY or INFORMATION-REQUEST, with the options 4o6 needs. */
export interface Dhcp6Message extends Dhcp6CommonOptions {
  readonly type: Dhcp6MessageType;
  /** Transaction id, 24 bits. */
  readonly xid: number;
  /** OPTION_ORO (6): option codes requested, e.g. `[88]`. */
  readonly oro?: readonly number[];
  /** OPTION_ELAPSED_TIME (8): hundredths of a second since the exchange began, 0–65535. */
  readonly elapsedTime?: number;
}

/** The codec trio of one option's value (the bytes after code and length; ./codec.ts). */
export type Dhcp6OptionCodec<T> = OptionCodec<T, Dhcp6DecodeError>;

type _Key = "clientId" | "serverId" | "dhcp4o6Servers" | "oro" | "elapsedTime";

/** One typed option; `read` returns a string describing a bad length instead of a value. */
interface _Spec<T> {
  readonly code: number;
  readonly name: string;
  readonly key: _Key;
  check(value: T): void;
  size(value: T): number;
  write(value: T, buf: Uint8Array, at: number): void;
  read(buf: Uint8Array, at: number, len: number): T | string;
}

function _duidSpec(code: number, name: string, key: "clientId" | "serverId"): _Spec<Uint8Array> {
  return {
    code,
    name,
    key,
    check(v) {
      if (!(v instanceof Uint8Array) || v.length < 3 || v.length > 130) {
        throw new RangeError(`${key} must be a DUID of 3–130 bytes (RFC 8415 §11.1)`);
      }
    },
    size: (v) => v.length,
    write: (v, buf, at) => buf.set(v, at),
    read: (buf, at, len) =>
      len < 3 || len > 130 ? `${name} has length ${len}, expected 3–130` : buf.slice(at, at + len),
  };
}

const _SERVERS: _Spec<readonly string[]> = {
  code: 88,
  name: "OPTION_DHCP4_O_DHCP6_SERVER",
  key: "dhcp4o6Servers",
  check(v) {
    if (!Array.isArray(v) || v.length > 4095 || !v.every((a) => parseIPv6(a) !== null)) {
      throw new RangeError("dhcp4o6Servers must be a list of at most 4095 IPv6 addresses");
    }
  },
  size: (v) => 16 * v.length,
  write(v, buf, at) {
    for (let i = 0; i < v.length; i++) buf.set(parseIPv6(v[i]!)!, at + 16 * i);
  },
  read(buf, at, len) {
    if (len % 16 !== 0) return `OPTION_DHCP4_O_DHCP6_SERVER has length ${len}, not 16·n`;
    const list: string[] = [];
    for (let i = 0; i < len; i += 16) list.push(formatIPv6(buf, at + i));
    return list;
  },
};

const _ORO: _Spec<readonly number[]> = {
  code: 6,
  name: "OPTION_ORO",
  key: "oro",
  check(v) {
    if (!Array.isArray(v) || v.length > 32767 || !v.every((c) => _isUint(c, 0xffff))) {
      throw new RangeError("oro must be a list of 16-bit option codes");
    }
  },
  size: (v) => 2 * v.length,
  write(v, buf, at) {
    for (let i = 0; i < v.length; i++) writeU16(buf, at + 2 * i, v[i]!);
  },
  read(buf, at, len) {
    if (len % 2 !== 0) return `OPTION_ORO has odd length ${len}`;
    const codes: number[] = [];
    for (let i = 0; i < len; i += 2) codes.push(readU16(buf, at + i));
    return codes;
  },
};

const _ELAPSED_TIME: _Spec<number> = {
  code: 8,
  name: "OPTION_ELAPSED_TIME",
  key: "elapsedTime",
  check(v) {
    if (!_isUint(v, 0xffff)) throw new RangeError(`elapsedTime ${v} is not 0–65535`);
  },
  size: () => 2,
  write: (v, buf, at) => writeU16(buf, at, v),
  read: (buf, at, len) =>
    len === 2 ? readU16(buf, at) : `OPTION_ELAPSED_TIME has length ${len}, expected 2`,
};

const _CLIENT_ID = _duidSpec(1, "OPTION_CLIENTID", "clientId");
const _SERVER_ID = _duidSpec(2, "OPTION_SERVERID", "serverId");

function _codec<T>(spec: _Spec<T>): Dhcp6OptionCodec<T> {
  return {
    code: spec.code,
    name: spec.name,
    encodingLength: (value) => spec.size(value),
    encode(value, buf, offset = 0) {
      spec.check(value);
      const out = encodeTarget(buf, offset, spec.size(value), spec.name);
      spec.write(value, out, 0);
      return out;
    },
    decode(buf, offset = 0, length = buf.length - offset) {
      if (!validRange(buf, offset, length)) {
        return _fail("bad-offset", `offset ${offset}, length ${length} outside ${buf.length}`);
      }
      const r = spec.read(buf, offset, length);
      if (typeof r === "string") return _fail("bad-option-length", r);
      return { ok: true, value: r, offset: offset + length };
    },
  };
}

/** The codec trio of each typed DHCPv6 option, keyed like the message fields. */
export const dhcp6OptionCodecs = {
  clientId: _codec(_CLIENT_ID),
  serverId: _codec(_SERVER_ID),
  oro: _codec(_ORO),
  elapsedTime: _codec(_ELAPSED_TIME),
  dhcp4o6Servers: _codec(_SERVERS),
} as const;

/** Typed options of the envelope and of plain DHCPv6, in the order they are written. */
const _ENVELOPE_SPECS: readonly _Spec<unknown>[] = [_CLIENT_ID, _SERVER_ID, _SERVERS];
const _DHCP6_SPECS: readonly _Spec<unknown>[] = [
  _CLIENT_ID,
  _SERVER_ID,
  _ORO,
  _ELAPSED_TIME,
  _SERVERS,
];

/** RFC 8415 §16: which identifiers each message must carry (and SOLICIT must not). */
const _REQUIRED: Record<number, readonly _Key[]> = {
  1: ["clientId"],
  2: ["serverId", "clientId"],
  3: ["clientId", "serverId"],
  7: ["serverId"],
  11: [],
};
const _TYPE_NAMES: Record<number, string> = {
  1: "SOLICIT",
  2: "ADVERTISE",
  3: "REQUEST",
  7: "REPLY",
  11: "INFORMATION-REQUEST",
  20: "DHCPV4-QUERY",
  21: "DHCPV4-RESPONSE",
};

/** Name of a DHCPv6 message type for logs: `dhcp6MessageTypeName(20)` is `"DHCPV4-QUERY"`. */
export function dhcp6MessageTypeName(type: number): string {
  return _TYPE_NAMES[type] ?? `type ${type}`;
}

/**
 * The message type (first byte) without decoding anything else, to choose between
 * `decodeDhcp4o6` (20, 21) and `decodeDhcp6`; `null` for an empty buffer.
 */
export function peekDhcp6MessageType(buf: Uint8Array, offset = 0): number | null {
  return Number.isInteger(offset) && offset >= 0 && offset < buf.length ? buf[offset]! : null;
}

const _ENVELOPE_BY_CODE: (_Spec<unknown> | undefined)[] = [];
for (const spec of _ENVELOPE_SPECS) _ENVELOPE_BY_CODE[spec.code] = spec;
const _DHCP6_BY_CODE: (_Spec<unknown> | undefined)[] = [];
for (const spec of _DHCP6_SPECS) _DHCP6_BY_CODE[spec.code] = spec;

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
  const bad = _checkRange(buf, offset, length);
  if (bad !== undefined) return bad;
  const type = buf[offset]!;
  if (type !== 20 && type !== 21) {
    const name = dhcp6MessageTypeName(type);
    return _fail("bad-msg-type", `${name} is not DHCPV4-QUERY (20) or DHCPV4-RESPONSE (21)`);
  }
  const fields: Record<string, unknown> = {};
  const msg87: number[] = [];
  const end = offset + length;
  const error = _readOptions(buf, offset, end, _ENVELOPE_BY_CODE, fields, msg87);
  if (error !== undefined) return { ok: false, error };
  if (msg87.length === 0) {
    return _fail("missing-option", `${_TYPE_NAMES[type]} carries no OPTION_DHCPV4_MSG (87)`);
  }
  const inner = decodeDhcp4(buf, msg87[0], msg87[1]);
  if (!inner.ok) {
    const message = `OPTION_DHCPV4_MSG: ${inner.error.code}: ${inner.error.message}`;
    return { ok: false, error: { code: "bad-dhcpv4-msg", message, dhcp4: inner.error } };
  }
  // RFC 7341 §6: a query carries what a client sends, a response what a server sends.
  const op = type === 20 ? Dhcp4Op.BOOTREQUEST : Dhcp4Op.BOOTREPLY;
  if (inner.value.op !== op) {
    return _fail("bad-direction", `${_TYPE_NAMES[type]} carries a DHCPv4 op ${inner.value.op}`);
  }
  const value = { type, flags: readU24(buf, offset + 1), ...fields, dhcp4: inner.value };
  return { ok: true, value: value as Dhcp4o6Message, offset: end };
}

/** Bytes `encodeDhcp4o6` writes: 4 of header, 4 + the DHCPv4 message, and each option. */
export function dhcp4o6EncodingLength(msg: Dhcp4o6Message): number {
  return 8 + dhcp4EncodingLength(msg.dhcp4) + _optionsLength(msg, _ENVELOPE_SPECS);
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
  if (!_isUint(flags, 0xffffff)) throw new RangeError(`flags ${flags} is not 24 bits`);
  const op = type === 20 ? Dhcp4Op.BOOTREQUEST : Dhcp4Op.BOOTREPLY;
  if (dhcp4?.op !== op) throw new RangeError(`${_TYPE_NAMES[type]} must carry op ${op}`);
  _checkOptions(msg, _ENVELOPE_SPECS, Dhcp6OptionCode.DHCPV4_MSG);
  const innerLength = dhcp4EncodingLength(dhcp4);
  if (innerLength > 0xffff) throw new RangeError(`${innerLength}-byte DHCPv4 message`);
  const out = encodeTarget(buf, offset, dhcp4o6EncodingLength(msg), _TYPE_NAMES[type]!);
  // The DHCPv4 message goes first: encodeDhcp4 checks it before writing a byte, so a
  // refused message leaves `buf` untouched.
  const clientIdLength = msg.clientId === undefined ? 0 : 4 + msg.clientId.length;
  const at87 = 4 + clientIdLength + (msg.serverId === undefined ? 0 : 4 + msg.serverId.length);
  encodeDhcp4(dhcp4, out, at87 + 4);
  out[0] = type;
  out[1] = flags >>> 16;
  writeU16(out, 2, flags);
  let p = _putTyped(out, 4, _CLIENT_ID, msg.clientId);
  p = _putTyped(out, p, _SERVER_ID, msg.serverId);
  writeU16(out, p, Dhcp6OptionCode.DHCPV4_MSG);
  writeU16(out, p + 2, innerLength);
  p = _putTyped(out, p + 4 + innerLength, _SERVERS, msg.dhcp4o6Servers);
  _putUnknown(out, p, msg.unknown);
  return out;
}

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
  const bad = _checkRange(buf, offset, length);
  if (bad !== undefined) return bad;
  const type = buf[offset]!;
  const required = _REQUIRED[type];
  if (required === undefined) {
    const hint = type === 20 || type === 21 ? "; decode it with decodeDhcp4o6" : "";
    return _fail("bad-msg-type", `${dhcp6MessageTypeName(type)} is not supported${hint}`);
  }
  const fields: Record<string, unknown> = {};
  const end = offset + length;
  const error = _readOptions(buf, offset, end, _DHCP6_BY_CODE, fields, null);
  if (error !== undefined) return { ok: false, error };
  for (const key of required) {
    if (fields[key] === undefined) {
      return _fail("missing-option", `${_TYPE_NAMES[type]} without ${_keyName(key)}`);
    }
  }
  if (type === Dhcp6MessageType.SOLICIT && fields.serverId !== undefined) {
    return _fail("option-not-allowed", "SOLICIT with OPTION_SERVERID");
  }
  const value = { type, xid: readU24(buf, offset + 1), ...fields };
  return { ok: true, value: value as Dhcp6Message, offset: end };
}

/** Bytes `encodeDhcp6` writes: 4 of header and each option. */
export function dhcp6EncodingLength(msg: Dhcp6Message): number {
  return 4 + _optionsLength(msg, _DHCP6_SPECS);
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
  if (!_isUint(msg.xid, 0xffffff)) throw new RangeError(`xid ${msg.xid} is not 24 bits`);
  _checkOptions(msg, _DHCP6_SPECS, -1);
  for (const key of required) {
    if (msg[key] === undefined) throw new RangeError(`${_TYPE_NAMES[msg.type]} requires ${key}`);
  }
  if (msg.type === Dhcp6MessageType.SOLICIT && msg.serverId !== undefined) {
    throw new RangeError("SOLICIT must not carry serverId");
  }
  const out = encodeTarget(buf, offset, dhcp6EncodingLength(msg), _TYPE_NAMES[msg.type]!);
  out[0] = msg.type;
  out[1] = msg.xid >>> 16;
  writeU16(out, 2, msg.xid);
  let p = 4;
  for (const spec of _DHCP6_SPECS)
    p = _putTyped(out, p, spec, (msg as unknown as _Fields)[spec.key]);
  _putUnknown(out, p, msg.unknown);
  return out;
}

type _Fields = Record<string, unknown>;

function _fail(
  code: Dhcp6DecodeErrorCode,
  message: string,
): { ok: false; error: Dhcp6DecodeError } {
  return { ok: false, error: { code, message } };
}

function _checkRange(
  buf: Uint8Array,
  offset: number,
  length: number,
): { ok: false; error: Dhcp6DecodeError } | undefined {
  if (!Number.isInteger(offset) || offset < 0) {
    return _fail("bad-offset", `offset ${offset} is not an integer ≥ 0`);
  }
  if (offset > buf.length) return _fail("truncated", `offset ${offset} is past the buffer`);
  if (!Number.isInteger(length) || length < 0) {
    return _fail("bad-offset", `length ${length} is not an integer ≥ 0`);
  }
  if (offset + length > buf.length) {
    return _fail(
      "truncated",
      `${length} bytes at offset ${offset} but the buffer holds ${buf.length}`,
    );
  }
  if (length < 4) return _fail("truncated", `${length} bytes cannot hold the 4-byte header`);
  return undefined;
}

function _keyName(key: _Key): string {
  return (_DHCP6_SPECS.find((s) => s.key === key) as _Spec<unknown>).name;
}

/**
 * Reads the options after the 4-byte header into `fields`. In an envelope (`msg87` given)
 * option 87 is located, not decoded: `msg87` receives its value's start and length.
 */
function _readOptions(
  buf: Uint8Array,
  base: number,
  end: number,
  specs: readonly (_Spec<unknown> | undefined)[],
  fields: _Fields,
  msg87: number[] | null,
): Dhcp6DecodeError | undefined {
  let unknown: Dhcp6RawOption[] | undefined;
  let p = base + 4;
  while (p < end) {
    const at = p - base;
    if (end - p < 4)
      return { code: "truncated-option", message: `option at byte ${at} is cut off` };
    const code = readU16(buf, p);
    const len = readU16(buf, p + 2);
    const v = p + 4;
    p = v + len;
    if (p > end) {
      const message = `option ${code} at byte ${at}: its ${len}-byte value is cut off`;
      return { code: "truncated-option", message };
    }
    if (msg87 !== null && code === Dhcp6OptionCode.DHCPV4_MSG) {
      if (msg87.length > 0) {
        return { code: "duplicate-option", message: "OPTION_DHCPV4_MSG appears twice" };
      }
      msg87.push(v, len);
      continue;
    }
    const spec = specs[code];
    if (spec === undefined) {
      unknown ??= [];
      unknown.push({ code, data: buf.slice(v, v + len) });
      continue;
    }
    if (fields[spec.key] !== undefined) {
      return { code: "duplicate-option", message: `${spec.name} appears twice` };
    }
    const value = spec.read(buf, v, len);
    if (typeof value === "string") return { code: "bad-option-length", message: value };
    fields[spec.key] = value;
  }
  if (unknown !== undefined) fields.unknown = unknown;
  return undefined;
}

/** Throws `RangeError` on a typed option value or an unknown option `decode*` would not return. */
function _checkOptions(
  msg: Dhcp6CommonOptions,
  specs: readonly _Spec<unknown>[],
  reserved: number,
) {
  for (const spec of specs) {
    const value = (msg as _Fields)[spec.key];
    if (value !== undefined) spec.check(value);
  }
  for (const raw of msg.unknown ?? []) {
    const { code, data } = raw;
    if (!_isUint(code, 0xffff) || code === reserved || specs.some((s) => s.code === code)) {
      throw new RangeError(`unknown option code ${code} is not 16 bits or has a typed field`);
    }
    if (!(data instanceof Uint8Array) || data.length > 0xffff) {
      throw new RangeError(`unknown option ${code} needs at most 65535 bytes`);
    }
  }
}

function _optionsLength(msg: Dhcp6CommonOptions, specs: readonly _Spec<unknown>[]): number {
  let n = 0;
  for (const spec of specs) {
    const value = (msg as _Fields)[spec.key];
    if (value !== undefined) n += 4 + spec.size(value);
  }
  for (const raw of msg.unknown ?? []) n += 4 + raw.data.length;
  return n;
}

function _putTyped(out: Uint8Array, at: number, spec: _Spec<unknown>, value: unknown): number {
  if (value === undefined) return at;
  const n = spec.size(value);
  writeU16(out, at, spec.code);
  writeU16(out, at + 2, n);
  spec.write(value, out, at + 4);
  return at + 4 + n;
}

function _putUnknown(out: Uint8Array, at: number, list: readonly Dhcp6RawOption[] | undefined) {
  let p = at;
  for (const { code, data } of list ?? []) {
    writeU16(out, p, code);
    writeU16(out, p + 2, data.length);
    out.set(data, p + 4);
    p += 4 + data.length;
  }
}

function _isUint(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
}
