/**
 * Encoder and decoder of DSTM protocol version 1 messages; docs/protocol.md has the bytes.
 *
 * The shape follows dns-packet (lib/wire/codec.ts): `encodeMessage(msg, buf?, offset?)`,
 * `decodeMessage(buf, offset?)` and `encodingLength(msg)`. Decoding is on the server's hot
 * path, so it reads bytes directly, keeps a bit mask of the options seen, and reports every
 * fault as a value (`{ ok: false, error }`) rather than an exception: a malformed datagram is
 * ordinary input. Encoding a message that could not be decoded back is a programmer error and
 * throws a `RangeError`, so whatever this module writes, it also accepts. This file holds the
 * header and the rules of which options each message type carries; the options themselves are
 * the table of dstm_options.ts.
 *
 * @module
 */
import { readU16, readU32, writeU16, writeU32 } from "../net/bytes.ts";
import { type Codec, type Decoded, type DecodeError, encodeTarget, fail } from "./codec.ts";
import { isUint32 } from "./dstm_fields.ts";
import {
  DSTM_EXTENSIONS,
  DSTM_OPTION_LIST,
  DSTM_OPTIONS,
  DSTM_WRITE_ORDER,
  type MutableDstmMessage,
  optionName,
  statusName,
} from "./dstm_options.ts";
import {
  DSTM_HEADER_LENGTH,
  DSTM_MAX_MESSAGE,
  DSTM_VERSION,
  type DstmMessage,
  MessageType,
  OptionCode,
  Status,
} from "./dstm_types.ts";

export { statusName };

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
  "bad-generation",
] as const;
export type DecodeErrorCode = (typeof DECODE_ERROR_CODES)[number];

/** Why a DSTM message was rejected. `message` is one line naming the field or option at fault. */
export type DstmDecodeError = DecodeError<DecodeErrorCode>;

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

/** Name of a message type for logs: `messageTypeName(2)` is `"DISCOVER_ACK"`, unknown ones `"type 9"`. */
export function messageTypeName(type: number): string {
  return _MESSAGE_NAMES[type] || `type ${type}`;
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
export function decodeMessage(buf: Uint8Array, offset = 0): Decoded<DstmMessage, DstmDecodeError> {
  const header = _decodeHeader(buf, offset);
  if (!header.ok) return header;
  const { type, length } = header.value;
  const rule = _RULES[type]!;
  const msg: MutableDstmMessage = { type, xid: readU32(buf, offset + 4) };
  const end = offset + length;
  const seen = _decodeOptions(buf, offset, end, msg);
  if (typeof seen !== "number") return { ok: false, error: seen };
  const missing = rule.required & ~seen;
  if (missing !== 0) {
    return fail("missing-option", `${_MESSAGE_NAMES[type]} requires ${_lowestOption(missing)}`);
  }
  const error = _checkStatus(type, msg.status);
  if (error !== undefined) return fail("bad-status", error);
  if (msg.snapshot && msg.snapshot.part >= msg.snapshot.parts) {
    return fail("bad-snapshot", `SNAPSHOT_PART ${msg.snapshot.part} of ${msg.snapshot.parts}`);
  }
  return { ok: true, value: msg, offset: end };
}

/** Checks the 12-byte header at `offset`; the message type and the length field when sound. */
function _decodeHeader(
  buf: Uint8Array,
  offset: number,
): Decoded<{ type: MessageType; length: number }, DstmDecodeError> {
  if (!Number.isInteger(offset) || offset < 0) {
    return fail("bad-offset", `offset ${offset} is not a non-negative integer`);
  }
  const available = buf.length - offset;
  if (available < DSTM_HEADER_LENGTH) {
    return fail("truncated", `${Math.max(0, available)} bytes cannot hold the 12-byte header`);
  }
  const version = buf[offset] ?? 0;
  if (version !== DSTM_VERSION) return fail("bad-version", `version ${version} is not 1`);
  const type = buf[offset + 1] ?? 0;
  if (_RULES[type] === undefined) return fail("unknown-type", `message type ${type} is unknown`);
  const flags = readU16(buf, offset + 2);
  if (flags !== 0) return fail("bad-flags", `flags 0x${flags.toString(16)} are not zero`);
  const length = readU16(buf, offset + 8);
  const reserved = readU16(buf, offset + 10);
  if (reserved !== 0) return fail("bad-reserved", `reserved field ${reserved} is not zero`);
  if (length < DSTM_HEADER_LENGTH) return fail("bad-length", `length ${length} is below 12`);
  if (length > DSTM_MAX_MESSAGE) {
    return fail("too-long", `length ${length} exceeds ${DSTM_MAX_MESSAGE}`);
  }
  if (length > available) {
    return fail("truncated", `length ${length} but only ${available} bytes present`);
  }
  return { ok: true, value: { type: type as MessageType, length }, offset: offset + length };
}

/**
 * Reads the options of the message at `start` (its header checked) up to `end` into `msg`;
 * returns the bit mask of the option codes seen, or the first fault.
 */
function _decodeOptions(
  buf: Uint8Array,
  start: number,
  end: number,
  msg: MutableDstmMessage,
): number | DstmDecodeError {
  const rule = _RULES[msg.type]!;
  let seen = 0;
  let p = start + DSTM_HEADER_LENGTH;
  while (p < end) {
    const at = p - start;
    if (seen & _AU) return _fault("auth-not-last", `option at byte ${at} follows AUTH`);
    if (end - p < 2) return _fault("truncated-option", `option header at byte ${at} is cut off`);
    const code = buf[p] ?? 0;
    const len = buf[p + 1] ?? 0;
    const v = p + 2;
    p = v + len;
    if (p > end) {
      const message = `option ${code} at byte ${at}: ${len}-byte value is cut off`;
      return _fault("truncated-option", message);
    }
    if (code >= 0x80) {
      // Extensions: skipped for forward compatibility, except where this version reads them.
      const ext = DSTM_EXTENSIONS.get(code);
      if (ext === undefined || !ext.onlyIn.includes(msg.type)) continue;
      if (len < ext.minLength || len > ext.maxLength) {
        const message = `${ext.name} has length ${len}, expected ${ext.minLength}`;
        return _fault("bad-option-length", message);
      }
      const error = ext.read(buf, v, len, msg);
      if (error !== undefined) return error;
      continue;
    }
    const spec = DSTM_OPTIONS[code];
    if (!spec) return _fault("unknown-option", `option code ${code} at byte ${at} is unknown`);
    const { name } = spec;
    const bit = 1 << code;
    if (!(rule.allowed & bit)) {
      return _fault("option-not-allowed", `${name} is not allowed in ${_MESSAGE_NAMES[msg.type]}`);
    }
    if (seen & bit && !spec.repeatable) return _fault("duplicate-option", `${name} appears twice`);
    seen |= bit;
    if (len < spec.minLength || len > spec.maxLength) {
      const { minLength: min, maxLength: max } = spec;
      const expected = min === max ? `${min}` : `at least ${min}`;
      return _fault("bad-option-length", `${name} has length ${len}, expected ${expected}`);
    }
    const error = spec.read(buf, v, len, msg);
    if (error !== undefined) return error;
  }
  return seen;
}

/** Bytes `encodeMessage` writes for `msg` (12 for the header plus each present option). */
export function encodingLength(msg: DstmMessage): number {
  let n = DSTM_HEADER_LENGTH;
  for (const spec of DSTM_WRITE_ORDER) n += spec.encodingLength(msg);
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
  const values = _prepareOptions(msg);
  // Only the options present are sized and written: one call each, in the order they go out.
  let length = DSTM_HEADER_LENGTH;
  for (const spec of DSTM_WRITE_ORDER) {
    if (values[spec.code] !== undefined) length += spec.encodingLength(msg);
  }
  const out = encodeTarget(buf, offset, length, "message");
  out[0] = DSTM_VERSION;
  out[1] = msg.type;
  writeU16(out, 2, 0);
  writeU32(out, 4, msg.xid);
  writeU16(out, 8, length);
  writeU16(out, 10, 0);
  let p = DSTM_HEADER_LENGTH;
  for (const spec of DSTM_WRITE_ORDER) {
    const value = values[spec.code];
    if (value !== undefined) p = spec.write(value, out, p);
  }
  return out;
}

/**
 * Checks `msg` against the rules `decodeMessage` enforces and returns each present option's
 * prepared value by code; throws `RangeError` naming the first fault.
 */
function _prepareOptions(msg: DstmMessage): unknown[] {
  const rule = _RULES[msg.type];
  if (rule === undefined) throw new RangeError(`message type ${msg.type} is unknown`);
  const typeName = messageTypeName(msg.type);
  if (!isUint32(msg.xid)) {
    throw new RangeError(`xid ${msg.xid} is not a 32-bit unsigned integer`);
  }
  const values: unknown[] = new Array(DSTM_OPTIONS.length);
  let present = 0;
  for (const spec of DSTM_OPTION_LIST) {
    const value = spec.prepare(msg);
    if (value === undefined) continue;
    values[spec.code] = value;
    present |= 1 << spec.code;
  }
  const notAllowed = present & ~rule.allowed;
  if (notAllowed !== 0) {
    throw new RangeError(`${_lowestOption(notAllowed)} is not allowed in ${typeName}`);
  }
  const missing = rule.required & ~present;
  if (missing !== 0) throw new RangeError(`${typeName} requires ${_lowestOption(missing)}`);
  const statusError = _checkStatus(msg.type, msg.status);
  if (statusError !== undefined) throw new RangeError(statusError);
  for (const spec of DSTM_EXTENSIONS.values()) {
    const value = spec.prepare(msg);
    if (value === undefined) continue;
    if (!spec.onlyIn.includes(msg.type))
      throw new RangeError(`${spec.name} is not allowed in ${typeName}`);
    values[spec.code] = value;
  }
  return values;
}

/** Name of the option of the lowest bit set in `mask`. */
function _lowestOption(mask: number): string {
  return optionName(31 - Math.clz32(mask & -mask));
}

function _fault(code: DecodeErrorCode, message: string): DstmDecodeError {
  return { code, message };
}

/** NAK carries a failure; RELEASE_ACK may carry only SUCCESS. Returns the fault if any. */
function _checkStatus(type: number, status: number | undefined): string | undefined {
  if (type === MessageType.NAK && status === Status.SUCCESS) return "NAK with STATUS SUCCESS";
  if (type === MessageType.RELEASE_ACK && status !== undefined && status !== Status.SUCCESS) {
    return `RELEASE_ACK with STATUS ${statusName(status)}; failures are sent as NAK`;
  }
  return undefined;
}

/** The DSTM message codec in the one shape of lib/wire/codec.ts. */
export const dstmCodec: Codec<DstmMessage, DstmDecodeError> = {
  encodingLength,
  encode: encodeMessage,
  decode: decodeMessage,
};
