/**
 * Encoder and decoder of DSTM protocol version 1 messages; docs/protocol.md has the bytes.
 *
 * The shape follows dns-packet: `encodeMessage(msg, buf?, offset?)`, `decodeMessage(buf,
 * offset?)` and `encodingLength(msg)`. Decoding is on the server's hot path, so it reads
 * bytes directly, keeps a bit mask of the options seen, and reports every fault as a value
 * (`{ ok: false, error }`) rather than an exception: a malformed datagram is ordinary input.
 * Encoding a message that could not be decoded back is a programmer error and throws a
 * `RangeError`, so whatever this module writes, it also accepts.
 *
 * @module
 */
import { formatIPv4, formatIPv6, parseIPv6 } from "../net/addr.ts";
import { readU16, readU32, writeU16, writeU32 } from "../net/bytes.ts";
import {
  AUTH_MAC_LENGTH,
  AUTH_NONCE_LENGTH,
  DSTM_HEADER_LENGTH,
  DSTM_MAX_MESSAGE,
  DSTM_VERSION,
  type DstmMessage,
  MessageType,
  OptionCode,
  STATUS_TEXT_MAX,
  Status,
  type WireAuth,
  type WireBinding,
  type WirePortSet,
} from "./dstm_types.ts";

/** Every reason `decodeMessage` rejects a message; one counter per code suits a server. */
export const DECODE_ERROR_CODES = [
  "bad-offset",
  "truncated",
  "bad-version",
  "unknown-type",
  "bad-flags",
  "bad-reserved",
  "bad-length",
  "too-long",
  "truncated-option",
  "unknown-option",
  "option-not-allowed",
  "duplicate-option",
  "bad-option-length",
  "auth-not-last",
  "bad-address",
  "bad-port-set",
  "bad-lease-time",
  "bad-status",
  "bad-text",
  "bad-auth",
  "missing-option",
  "bad-snapshot",
] as const;
export type DecodeErrorCode = (typeof DECODE_ERROR_CODES)[number];

/** Why a message was rejected. `message` is one line naming the field or option at fault. */
export interface DecodeError {
  readonly code: DecodeErrorCode;
  readonly message: string;
}

/** Result of a decode: the value and the offset just past it, or the reason it failed. */
export type Decoded<T> = { ok: true; value: T; offset: number } | { ok: false; error: DecodeError };

/** The first eight header bytes, read without any validation. */
export interface PeekedHeader {
  readonly version: number;
  readonly type: number;
  readonly xid: number;
}

const _MESSAGE_NAMES = [
  "",
  "DISCOVER",
  "DISCOVER_ACK",
  "REQUEST",
  "REQUEST_ACK",
  "RELEASE",
  "RELEASE_ACK",
  "NAK",
  "BIND",
  "UNBIND",
  "BIND_ACK",
  "SYNC",
  "SNAPSHOT",
];
const _OPTION_NAMES = [
  "",
  "HOST_IPV4",
  "HOST_IPV6",
  "TEP_IPV4",
  "TEP_IPV6",
  "PORT_SET",
  "LEASE_TIME",
  "STATUS",
  "AUTH",
  "SYNC_STATE",
  "SNAPSHOT_PART",
  "BINDING",
];
const _STATUS_NAMES: string[] = [];
for (const [name, code] of Object.entries(Status)) _STATUS_NAMES[code] = name;
/** Value length of each option code; -1 for STATUS, whose length varies (2–255). */
const _AUTH_LENGTH = 12 + AUTH_NONCE_LENGTH + AUTH_MAC_LENGTH;
const _FIXED_LENGTH = [0, 4, 16, 4, 16, 4, 4, -1, _AUTH_LENGTH, 8, 8, 24];

const _H4 = 1 << OptionCode.HOST_IPV4;
const _H6 = 1 << OptionCode.HOST_IPV6;
const _T4 = 1 << OptionCode.TEP_IPV4;
const _T6 = 1 << OptionCode.TEP_IPV6;
const _PS = 1 << OptionCode.PORT_SET;
const _LT = 1 << OptionCode.LEASE_TIME;
const _ST = 1 << OptionCode.STATUS;
const _AU = 1 << OptionCode.AUTH;
const _SY = 1 << OptionCode.SYNC_STATE;
const _SP = 1 << OptionCode.SNAPSHOT_PART;
const _BI = 1 << OptionCode.BINDING;
/** Options that may appear more than once. */
const _REPEATABLE = _BI;

/** Per message type (the index): options that must be present, options that may be. */
const _RULES: readonly ({ readonly required: number; readonly allowed: number } | undefined)[] = [
  undefined,
  { required: _H6, allowed: _H6 | _H4 | _LT | _AU }, // DISCOVER
  { required: _H4 | _H6 | _T6 | _LT, allowed: _H4 | _H6 | _T4 | _T6 | _PS | _LT | _AU },
  { required: _H6 | _H4, allowed: _H6 | _H4 | _LT | _AU }, // REQUEST
  { required: _H4 | _H6 | _T6 | _LT, allowed: _H4 | _H6 | _T4 | _T6 | _PS | _LT | _AU },
  { required: _H6 | _H4, allowed: _H6 | _H4 | _AU }, // RELEASE
  { required: _H4 | _H6, allowed: _H4 | _H6 | _ST | _AU }, // RELEASE_ACK
  { required: _ST, allowed: _ST | _H4 | _H6 | _AU }, // NAK
  { required: _H4 | _H6, allowed: _H4 | _H6 | _PS | _LT | _AU }, // BIND
  { required: _H4 | _H6, allowed: _H4 | _H6 | _PS | _AU }, // UNBIND
  { required: _H4, allowed: _H4 | _H6 | _PS | _AU }, // BIND_ACK
  { required: _T6 | _SY, allowed: _T6 | _T4 | _SY | _AU }, // SYNC
  { required: _SP, allowed: _SP | _BI | _AU }, // SNAPSHOT
];

// ignoreBOM keeps a leading U+FEFF in the text, so STATUS text round-trips byte for byte.
const _textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const _textEncoder = new TextEncoder();

/** Name of a message type for logs: `messageTypeName(2)` is `"DISCOVER_ACK"`, unknown ones `"type 9"`. */
export function messageTypeName(type: number): string {
  return _MESSAGE_NAMES[type] || `type ${type}`;
}

/** Name of a status code: `statusName(1)` is `"POOL_EXHAUSTED"`, unknown ones `"status 99"`. */
export function statusName(status: number): string {
  return _STATUS_NAMES[status] ?? `status ${status}`;
}

/**
 * Reads version, type and xid without validating anything else, so a server can answer a
 * malformed message with a NAK carrying the right xid. `null` when fewer than 8 bytes.
 *
 * @example peekHeader(new Uint8Array([1, 1, 0, 0, 0, 0, 0, 7])) // { version: 1, type: 1, xid: 7 }
 */
export function peekHeader(buf: Uint8Array, offset = 0): PeekedHeader | null {
  if (!Number.isInteger(offset) || offset < 0 || buf.length - offset < 8) return null;
  return { version: buf[offset] ?? 0, type: buf[offset + 1] ?? 0, xid: readU32(buf, offset + 4) };
}

/**
 * Decodes one message starting at `offset`. Never throws. On success `offset` in the result
 * is `offset` plus the header's length field; bytes past that length are not read, so a
 * message can be decoded from inside a larger buffer. Options may come in any order, AUTH
 * last. `nonce` and `mac` of AUTH are copies, so `buf` may be reused afterwards.
 *
 * @example
 * const r = decodeMessage(datagram);
 * if (!r.ok) counters[`drop-${r.error.code}`]++;
 */
export function decodeMessage(buf: Uint8Array, offset = 0): Decoded<DstmMessage> {
  if (!Number.isInteger(offset) || offset < 0) {
    return _fail("bad-offset", `offset ${offset} is not a non-negative integer`);
  }
  const available = buf.length - offset;
  if (available < DSTM_HEADER_LENGTH) {
    return _fail("truncated", `${Math.max(0, available)} bytes cannot hold the 12-byte header`);
  }
  const version = buf[offset] ?? 0;
  if (version !== DSTM_VERSION) return _fail("bad-version", `version ${version} is not 1`);
  const type = buf[offset + 1] ?? 0;
  const rule = _RULES[type];
  if (rule === undefined) return _fail("unknown-type", `message type ${type} is unknown`);
  const flags = readU16(buf, offset + 2);
  if (flags !== 0) return _fail("bad-flags", `flags 0x${flags.toString(16)} are not zero`);
  const length = readU16(buf, offset + 8);
  const reserved = readU16(buf, offset + 10);
  if (reserved !== 0) return _fail("bad-reserved", `reserved field ${reserved} is not zero`);
  if (length < DSTM_HEADER_LENGTH) return _fail("bad-length", `length ${length} is below 12`);
  if (length > DSTM_MAX_MESSAGE) {
    return _fail("too-long", `length ${length} exceeds ${DSTM_MAX_MESSAGE}`);
  }
  if (length > available) {
    return _fail("truncated", `length ${length} but only ${available} bytes present`);
  }
  const msg: _MutableMessage = { type: type as MessageType, xid: readU32(buf, offset + 4) };
  const end = offset + length;
  let seen = 0;
  let p = offset + DSTM_HEADER_LENGTH;
  while (p < end) {
    const at = p - offset;
    if (seen & _AU) return _fail("auth-not-last", `option at byte ${at} follows AUTH`);
    if (end - p < 2) return _fail("truncated-option", `option header at byte ${at} is cut off`);
    const code = buf[p] ?? 0;
    const len = buf[p + 1] ?? 0;
    const v = p + 2;
    p = v + len;
    if (p > end) {
      return _fail(
        "truncated-option",
        `option ${code} at byte ${at}: ${len}-byte value is cut off`,
      );
    }
    if (code >= 0x80) continue; // v1 defines none: skipped for forward compatibility
    const name = _OPTION_NAMES[code];
    if (!name) return _fail("unknown-option", `option code ${code} at byte ${at} is unknown`);
    const bit = 1 << code;
    if (!(rule.allowed & bit)) {
      return _fail("option-not-allowed", `${name} is not allowed in ${_MESSAGE_NAMES[type]}`);
    }
    if (seen & bit & ~_REPEATABLE) return _fail("duplicate-option", `${name} appears twice`);
    seen |= bit;
    const fixed = _FIXED_LENGTH[code] ?? 0;
    if (fixed >= 0 ? len !== fixed : len < 2) {
      const want = fixed >= 0 ? `${fixed}` : "at least 2";
      return _fail("bad-option-length", `${name} has length ${len}, expected ${want}`);
    }
    const error = _decodeOption(buf, v, len, code, msg);
    if (error !== undefined) return { ok: false, error };
  }
  const missing = rule.required & ~seen;
  if (missing !== 0) {
    const name = _OPTION_NAMES[31 - Math.clz32(missing & -missing)];
    return _fail("missing-option", `${_MESSAGE_NAMES[type]} requires ${name}`);
  }
  const error = _checkStatus(type, msg.status);
  if (error !== undefined) return _fail("bad-status", error);
  if (msg.snapshot && msg.snapshot.part >= msg.snapshot.parts) {
    return _fail("bad-snapshot", `SNAPSHOT_PART ${msg.snapshot.part} of ${msg.snapshot.parts}`);
  }
  return { ok: true, value: msg, offset: end };
}

/** Bytes `encodeMessage` writes for `msg` (12 for the header plus each present option). */
export function encodingLength(msg: DstmMessage): number {
  let n = DSTM_HEADER_LENGTH;
  if (msg.host4 !== undefined) n += 6;
  if (msg.host6 !== undefined) n += 18;
  if (msg.tep4 !== undefined) n += 6;
  if (msg.tep6 !== undefined) n += 18;
  if (msg.portSet !== undefined) n += 6;
  if (msg.leaseTime !== undefined) n += 6;
  if (msg.status !== undefined) n += 4 + _utf8Length(msg.statusText ?? "");
  if (msg.auth !== undefined) n += 2 + _AUTH_LENGTH;
  if (msg.syncCount !== undefined || msg.syncDigest !== undefined) n += 10;
  if (msg.snapshot !== undefined) n += 10;
  if (msg.bindings !== undefined) n += 26 * msg.bindings.length;
  return n;
}

/**
 * Encodes `msg` into `buf` at `offset` (a new buffer when `buf` is omitted) and returns the
 * bytes written, `buf.subarray(offset, offset + length)`. Options go in code order, AUTH
 * (written as given) last. Throws `RangeError` when `msg` breaks a rule `decodeMessage`
 * enforces (a missing or disallowed option, a value out of range) or `buf` is too small.
 *
 * @example
 * const bytes = encodeMessage({ type: MessageType.DISCOVER, xid: 1, host6: "2001:db8::1" });
 */
export function encodeMessage(msg: DstmMessage, buf?: Uint8Array, offset = 0): Uint8Array {
  const rule = _RULES[msg.type];
  if (rule === undefined) throw new RangeError(`message type ${msg.type} is unknown`);
  const typeName = messageTypeName(msg.type);
  if (!_isUint32(msg.xid)) throw new RangeError(`xid ${msg.xid} is not a 32-bit unsigned integer`);
  let present = 0;
  if (msg.host4 !== undefined) present |= _checkIPv4("host4", msg.host4, _H4);
  const host6 = msg.host6 === undefined ? undefined : _parseIPv6("host6", msg.host6);
  if (host6) present |= _H6;
  if (msg.tep4 !== undefined) present |= _checkIPv4("tep4", msg.tep4, _T4);
  const tep6 = msg.tep6 === undefined ? undefined : _parseIPv6("tep6", msg.tep6);
  if (tep6) present |= _T6;
  if (msg.portSet !== undefined) present |= _checkPortSet(msg.portSet);
  if (msg.leaseTime !== undefined) {
    if (!_isUint32(msg.leaseTime) || msg.leaseTime === 0) {
      throw new RangeError(`leaseTime ${msg.leaseTime} is not 1..2^32-1 seconds`);
    }
    present |= _LT;
  }
  if (msg.status !== undefined) present |= _checkStatusText(msg.status, msg.statusText);
  else if (msg.statusText !== undefined) throw new RangeError("statusText given without status");
  if (msg.auth !== undefined) present |= _checkAuth(msg.auth);
  if (msg.syncCount !== undefined || msg.syncDigest !== undefined) {
    if (!_isUint32(msg.syncCount ?? -1) || !_isUint32(msg.syncDigest ?? -1)) {
      throw new RangeError("syncCount and syncDigest must both be 32-bit unsigned integers");
    }
    present |= _SY;
  }
  if (msg.snapshot !== undefined) {
    const { id, part, parts } = msg.snapshot;
    if (!_isUint32(id) || !_isUint16(part) || !_isUint16(parts) || part >= parts) {
      throw new RangeError(`snapshot id ${id} part ${part} of ${parts} is invalid`);
    }
    present |= _SP;
  }
  const bindings = msg.bindings?.map((b) => {
    _checkIPv4("binding host4", b.host4, 0);
    _checkPortSet(b.portSet);
    return _parseIPv6("binding host6", b.host6);
  });
  if (bindings && bindings.length > 0) present |= _BI;
  const notAllowed = present & ~rule.allowed;
  if (notAllowed !== 0) {
    const name = _OPTION_NAMES[31 - Math.clz32(notAllowed & -notAllowed)];
    throw new RangeError(`${name} is not allowed in ${typeName}`);
  }
  const missing = rule.required & ~present;
  if (missing !== 0) {
    const name = _OPTION_NAMES[31 - Math.clz32(missing & -missing)];
    throw new RangeError(`${typeName} requires ${name}`);
  }
  const statusError = _checkStatus(msg.type, msg.status);
  if (statusError !== undefined) throw new RangeError(statusError);

  const length = encodingLength(msg);
  if (buf === undefined) {
    buf = new Uint8Array(length);
    offset = 0;
  } else if (!Number.isInteger(offset) || offset < 0 || offset + length > buf.length) {
    throw new RangeError(
      `${length}-byte message does not fit at offset ${offset} of ${buf.length}`,
    );
  }
  buf[offset] = DSTM_VERSION;
  buf[offset + 1] = msg.type;
  writeU16(buf, offset + 2, 0);
  writeU32(buf, offset + 4, msg.xid);
  writeU16(buf, offset + 8, length);
  writeU16(buf, offset + 10, 0);
  let p = offset + DSTM_HEADER_LENGTH;
  if (msg.host4 !== undefined) p = writeU32(buf, _head(buf, p, OptionCode.HOST_IPV4, 4), msg.host4);
  if (host6) p = _putBytes(buf, _head(buf, p, OptionCode.HOST_IPV6, 16), host6);
  if (msg.tep4 !== undefined) p = writeU32(buf, _head(buf, p, OptionCode.TEP_IPV4, 4), msg.tep4);
  if (tep6) p = _putBytes(buf, _head(buf, p, OptionCode.TEP_IPV6, 16), tep6);
  if (msg.portSet !== undefined)
    p = _putPortSet(buf, _head(buf, p, OptionCode.PORT_SET, 4), msg.portSet);
  if (msg.leaseTime !== undefined) {
    p = writeU32(buf, _head(buf, p, OptionCode.LEASE_TIME, 4), msg.leaseTime);
  }
  if (msg.status !== undefined) {
    const text = msg.statusText ?? "";
    const textLength = _utf8Length(text);
    p = writeU16(buf, _head(buf, p, OptionCode.STATUS, 2 + textLength), msg.status);
    _textEncoder.encodeInto(text, buf.subarray(p, p + textLength));
    p += textLength;
  }
  p = _encodeSyncOptions(msg, bindings, buf, p);
  if (msg.auth !== undefined) {
    const { keyId, timestamp, nonce, mac } = msg.auth;
    p = writeU32(buf, _head(buf, p, OptionCode.AUTH, _AUTH_LENGTH), keyId);
    p = writeU32(buf, p, Math.floor(timestamp / 2 ** 32));
    p = writeU32(buf, p, timestamp >>> 0);
    p = _putBytes(buf, p, nonce);
    p = _putBytes(buf, p, mac);
  }
  return buf.subarray(offset, p);
}

/** Writes the options that come between the lease options and AUTH (TEP synchronisation). */
function _encodeSyncOptions(
  msg: DstmMessage,
  bindings: Uint8Array[] | undefined,
  buf: Uint8Array,
  at: number,
): number {
  let p = at;
  if (msg.syncCount !== undefined && msg.syncDigest !== undefined) {
    p = writeU32(buf, _head(buf, p, OptionCode.SYNC_STATE, 8), msg.syncCount);
    p = writeU32(buf, p, msg.syncDigest);
  }
  if (msg.snapshot !== undefined) {
    p = writeU32(buf, _head(buf, p, OptionCode.SNAPSHOT_PART, 8), msg.snapshot.id);
    p = writeU16(buf, p, msg.snapshot.part);
    p = writeU16(buf, p, msg.snapshot.parts);
  }
  msg.bindings?.forEach((b, i) => {
    p = writeU32(buf, _head(buf, p, OptionCode.BINDING, 24), b.host4);
    p = _putBytes(buf, p, bindings![i]!);
    p = _putPortSet(buf, p, b.portSet);
  });
  return p;
}

type _MutableMessage = { -readonly [K in keyof DstmMessage]: DstmMessage[K] };

function _fail(code: DecodeErrorCode, message: string): { ok: false; error: DecodeError } {
  return { ok: false, error: { code, message } };
}

/** Checks and stores one option value (its length already checked); returns the fault if any. */
function _decodeOption(
  buf: Uint8Array,
  v: number,
  len: number,
  code: number,
  msg: _MutableMessage,
): DecodeError | undefined {
  switch (code) {
    case OptionCode.HOST_IPV4:
    case OptionCode.TEP_IPV4: {
      const address = readU32(buf, v);
      if (address === 0 || address === 0xffffffff) {
        const message = `${_OPTION_NAMES[code]} ${formatIPv4(address)} is not a host address`;
        return { code: "bad-address", message };
      }
      if (code === OptionCode.HOST_IPV4) msg.host4 = address;
      else msg.tep4 = address;
      return undefined;
    }
    case OptionCode.HOST_IPV6:
    case OptionCode.TEP_IPV6: {
      if (buf[v] === 0xff || _isZero(buf, v, 16)) {
        const text = formatIPv6(buf, v);
        return { code: "bad-address", message: `${_OPTION_NAMES[code]} ${text} is not unicast` };
      }
      if (code === OptionCode.HOST_IPV6) msg.host6 = formatIPv6(buf, v);
      else msg.tep6 = formatIPv6(buf, v);
      return undefined;
    }
    case OptionCode.PORT_SET: {
      const portSet = _readPortSet(buf, v);
      if (typeof portSet === "string")
        return { code: "bad-port-set", message: `PORT_SET ${portSet}` };
      msg.portSet = portSet;
      return undefined;
    }
    case OptionCode.SYNC_STATE:
      msg.syncCount = readU32(buf, v);
      msg.syncDigest = readU32(buf, v + 4);
      return undefined;
    case OptionCode.SNAPSHOT_PART:
      msg.snapshot = { id: readU32(buf, v), part: readU16(buf, v + 4), parts: readU16(buf, v + 6) };
      return undefined;
    case OptionCode.BINDING: {
      const host4 = readU32(buf, v);
      if (host4 === 0 || host4 === 0xffffffff || buf[v + 4] === 0xff || _isZero(buf, v + 4, 16)) {
        return { code: "bad-address", message: "BINDING holds an unusable address" };
      }
      const portSet = _readPortSet(buf, v + 20);
      if (typeof portSet === "string")
        return { code: "bad-port-set", message: `BINDING ${portSet}` };
      const binding: WireBinding = { host4, host6: formatIPv6(buf, v + 4), portSet };
      msg.bindings = msg.bindings ? [...msg.bindings, binding] : [binding];
      return undefined;
    }
    case OptionCode.LEASE_TIME: {
      const seconds = readU32(buf, v);
      if (seconds === 0) return { code: "bad-lease-time", message: "LEASE_TIME is zero" };
      msg.leaseTime = seconds;
      return undefined;
    }
    case OptionCode.STATUS: {
      const status = readU16(buf, v);
      if (_STATUS_NAMES[status] === undefined) {
        return { code: "bad-status", message: `STATUS code ${status} is unknown` };
      }
      msg.status = status as Status;
      if (len > 2) {
        try {
          msg.statusText = _textDecoder.decode(buf.subarray(v + 2, v + len));
        } catch {
          return { code: "bad-text", message: "STATUS text is not valid UTF-8" };
        }
      }
      return undefined;
    }
    default: {
      const hi = readU32(buf, v + 4);
      if (hi > 0x1fffff) {
        return { code: "bad-auth", message: "AUTH timestamp exceeds 2^53-1 ms" };
      }
      const nonceAt = v + 12;
      const macAt = nonceAt + AUTH_NONCE_LENGTH;
      msg.auth = {
        keyId: readU32(buf, v),
        timestamp: hi * 2 ** 32 + readU32(buf, v + 8),
        nonce: buf.slice(nonceAt, macAt),
        mac: buf.slice(macAt, macAt + AUTH_MAC_LENGTH),
      };
      return undefined;
    }
  }
}

/** Reads a 4-byte port set; returns a description of the fault instead when invalid. */
function _readPortSet(buf: Uint8Array, v: number): WirePortSet | string {
  const a = buf[v] ?? 0;
  const k = buf[v + 1] ?? 0;
  const wire = readU16(buf, v + 2);
  // RFC 7618 option 159 layout: the PSID is left-aligned, the bits below it are zero.
  if (a > 15 || k > 16 || a + k > 16 || (k === 0 ? wire !== 0 : wire & (0xffff >> k))) {
    return `offset ${a}, psidLength ${k}, PSID field 0x${wire.toString(16)}`;
  }
  return { offset: a, psidLength: k, psid: k === 0 ? 0 : wire >> (16 - k) };
}

/** NAK carries a failure; RELEASE_ACK may carry only SUCCESS. Returns the fault if any. */
function _checkStatus(type: number, status: number | undefined): string | undefined {
  if (type === MessageType.NAK && status === Status.SUCCESS) return "NAK with STATUS SUCCESS";
  if (type === MessageType.RELEASE_ACK && status !== undefined && status !== Status.SUCCESS) {
    return `RELEASE_ACK with STATUS ${statusName(status)}; failures are sent as NAK`;
  }
  return undefined;
}

function _checkIPv4(field: string, value: number, bit: number): number {
  if (!_isUint32(value) || value === 0 || value === 0xffffffff) {
    throw new RangeError(`${field} ${value} is not a usable IPv4 address`);
  }
  return bit;
}

function _parseIPv6(field: string, text: string): Uint8Array {
  const bytes = parseIPv6(text);
  if (bytes === null || bytes[0] === 0xff || _isZero(bytes, 0, 16)) {
    throw new RangeError(`${field} ${JSON.stringify(text)} is not a unicast IPv6 address`);
  }
  return bytes;
}

function _checkPortSet(ps: WirePortSet): number {
  const { offset: a, psidLength: k, psid } = ps;
  const ok =
    Number.isInteger(a) &&
    Number.isInteger(k) &&
    Number.isInteger(psid) &&
    a >= 0 &&
    k >= 0 &&
    a + k <= 16 &&
    a <= 15 &&
    psid >= 0 &&
    psid < 2 ** k;
  if (!ok) throw new RangeError(`portSet offset ${a}, psidLength ${k}, psid ${psid} is invalid`);
  return _PS;
}

function _checkStatusText(status: number, text: string | undefined): number {
  if (_STATUS_NAMES[status] === undefined || !Number.isInteger(status)) {
    throw new RangeError(`status ${status} is unknown`);
  }
  if (text !== undefined && (!text.isWellFormed() || _utf8Length(text) > STATUS_TEXT_MAX)) {
    throw new RangeError(`statusText is not well-formed or longer than ${STATUS_TEXT_MAX} bytes`);
  }
  return _ST;
}

function _checkAuth(auth: WireAuth): number {
  const { keyId, timestamp, nonce, mac } = auth;
  if (!_isUint32(keyId)) throw new RangeError(`auth keyId ${keyId} is not 32-bit unsigned`);
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new RangeError(`auth timestamp ${timestamp} is not a non-negative safe integer`);
  }
  if (nonce.length !== AUTH_NONCE_LENGTH || mac.length !== AUTH_MAC_LENGTH) {
    throw new RangeError(`auth nonce/mac must be ${AUTH_NONCE_LENGTH}/${AUTH_MAC_LENGTH} bytes`);
  }
  return _AU;
}

/** UTF-8 length of a well-formed string, without encoding it. */
function _utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4; // surrogate pair: one code point above U+FFFF
      i++;
    } else n += 3; // a lone surrogate too: TextEncoder writes U+FFFD
  }
  return n;
}

function _isUint32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

function _isZero(buf: Uint8Array, at: number, len: number): boolean {
  for (let i = at; i < at + len; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Writes an option's code and length; returns where its value starts. */
function _head(buf: Uint8Array, at: number, code: number, len: number): number {
  buf[at] = code;
  buf[at + 1] = len;
  return at + 2;
}

/** Port set as in RFC 7618 option 159: offset, PSID length, left-aligned PSID. */
function _putPortSet(buf: Uint8Array, at: number, ps: WirePortSet): number {
  buf[at] = ps.offset;
  buf[at + 1] = ps.psidLength;
  return writeU16(buf, at + 2, ps.psidLength === 0 ? 0 : ps.psid << (16 - ps.psidLength));
}

function _isUint16(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

function _putBytes(buf: Uint8Array, at: number, bytes: Uint8Array): number {
  buf.set(bytes, at);
  return at + bytes.length;
}
