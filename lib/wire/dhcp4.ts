/**
 * DHCPv4 messages: the BOOTP layout of RFC 2131 §2 with the RFC 2132 options a
 * DHCPv4-over-DHCPv6 client and server exchange (docs/dhcp4o6.md has the flow).
 *
 * Same shape as `dstm.ts`: `encodeDhcp4(msg, buf?, offset?)`, `decodeDhcp4(buf, offset?,
 * length?)`, `dhcp4EncodingLength(msg)`, and the same trio for every typed option in
 * `dhcp4OptionCodecs` (on the option value, without code and length bytes). Decoding never
 * throws: a malformed datagram is ordinary input and comes back as `{ ok: false, error }`.
 * Encoding a value that would not decode back to itself throws `RangeError`.
 *
 * Options follow RFC 3396: every instance of a code is concatenated, in the order options
 * field, `file`, `sname` (the last two only when option 52 says they are overloaded), before
 * the value is interpreted. So a split client identifier is one value, and a repeated
 * fixed-length option (two message types) is a `bad-option-length`. The encoder never
 * overloads `file`/`sname`; it splits values longer than 255 bytes into several instances.
 * Options without a typed field are kept as raw bytes in `unknown` so they round-trip.
 *
 * This file is the message codec (decodeDhcp4 as seven named steps, encodeDhcp4 and its
 * checks); the constants and types are ./dhcp4_types.ts and the option table and option
 * area (RFC 3396) ./dhcp4_options.ts, both re-exported here.
 *
 * @module
 */

import { readU16, readU32, writeU16, writeU32 } from "../net/bytes.ts";
import { encodeTarget, fail } from "./codec.ts";
import {
  _byteString,
  _concat,
  _Fault,
  _isByteString,
  _isUint,
  _overload,
  _putByteString,
  _putOption,
  _SPEC_BY_CODE,
  _SPECS_IN_ORDER,
  _scanOptions,
  _tlvLength,
} from "./dhcp4_options.ts";
import {
  DHCP4_MAGIC_COOKIE,
  DHCP4_MIN_LENGTH,
  type Dhcp4Decoded,
  type Dhcp4Message,
  Dhcp4Op,
  Dhcp4OptionCode,
  type Dhcp4Options,
  type Dhcp4RawOption,
} from "./dhcp4_types.ts";

export { dhcp4OptionCodecs } from "./dhcp4_options.ts";
export * from "./dhcp4_types.ts";

const _MESSAGE_NAMES = [
  "",
  "DISCOVER",
  "OFFER",
  "REQUEST",
  "DECLINE",
  "ACK",
  "NAK",
  "RELEASE",
  "INFORM",
];
/** OFFER, ACK and NAK come from a server (BOOTREPLY); the others from a client. */
const _IS_REPLY = [false, false, true, false, false, true, true, false, false];

/** Name of a message type for logs: `dhcp4MessageTypeName(2)` is `"OFFER"`, others `"type 9"`. */
export function dhcp4MessageTypeName(type: number): string {
  return _MESSAGE_NAMES[type] || `type ${type}`;
}

/** Scratch for `decodeDhcp4`: per option code, 1 + index of its group (0 = not seen yet). */
const _groupOf = new Int32Array(256);

/**
 * Decodes the DHCPv4 message held in the `length` bytes at `offset` (by default the rest of
 * `buf`: a UDP payload or the value of OPTION_DHCPV4_MSG). Never throws. Options end at the
 * end option (255) or, when it is missing, at the end of the bytes; bytes after the end option
 * are padding and not read. The result's `offset` is `offset + length`. Byte values (chaddr,
 * client identifier, unknown options) are copies, so `buf` may be reused afterwards.
 *
 * @example
 * const r = decodeDhcp4(udpPayload);
 * if (r.ok && r.value.options.messageType === Dhcp4MessageType.OFFER) offer(r.value.yiaddr);
 */
export function decodeDhcp4(
  buf: Uint8Array,
  offset = 0,
  length = buf.length - offset,
): Dhcp4Decoded<Dhcp4Message> {
  const fault = _checkRange(buf, offset, length) ?? _checkFixedFields(buf, offset);
  if (fault !== undefined) return fail(fault.code, fault.message);
  const tlvs: number[] = [];
  const overload = _locateOptions(buf, offset, length, tlvs);
  if (overload instanceof _Fault) return fail(overload.code, overload.message);
  const options = _repeats(tlvs)
    ? _readOptions(buf, _groupOptions(tlvs))
    : _readSingleOptions(buf, tlvs);
  if (options instanceof _Fault) return fail(options.code, options.message);
  const op = buf[offset]! as Dhcp4Op;
  const typeFault = _checkMessageType(options, op);
  if (typeFault !== undefined) return fail(typeFault.code, typeFault.message);
  return { ok: true, value: _readMessage(buf, offset, options, overload), offset: offset + length };
}

/** Step 1: `length` bytes at `offset` lie inside `buf` and can hold the header and cookie. */
function _checkRange(buf: Uint8Array, offset: number, length: number): _Fault | undefined {
  if (!Number.isInteger(offset) || offset < 0) {
    return new _Fault("bad-offset", `offset ${offset} is not an integer ≥ 0`);
  }
  if (offset > buf.length) return new _Fault("truncated", `offset ${offset} is past the buffer`);
  if (!Number.isInteger(length) || length < 0) {
    return new _Fault("bad-offset", `length ${length} is not an integer ≥ 0`);
  }
  if (offset + length > buf.length) {
    const holds = `the buffer holds ${buf.length}`;
    return new _Fault("truncated", `${length} bytes at offset ${offset} but ${holds}`);
  }
  if (length < DHCP4_MIN_LENGTH) {
    const what = "cannot hold the 236-byte header and the cookie";
    return new _Fault("truncated", `${length} bytes ${what}`);
  }
  return undefined;
}

/** Step 2: op is 1 or 2, hlen fits chaddr, the magic cookie is there (RFC 2131 §2, §3). */
function _checkFixedFields(buf: Uint8Array, offset: number): _Fault | undefined {
  const op = buf[offset]!;
  if (op !== 1 && op !== 2) {
    return new _Fault("bad-op", `op ${op} is neither 1 (BOOTREQUEST) nor 2`);
  }
  const hlen = buf[offset + 2]!;
  if (hlen > 16) return new _Fault("bad-hlen", `hlen ${hlen} exceeds the 16-byte chaddr field`);
  const cookie = readU32(buf, offset + 236);
  if (cookie !== DHCP4_MAGIC_COOKIE) {
    return new _Fault("bad-cookie", `magic cookie 0x${cookie.toString(16)} is not 0x63825363`);
  }
  return undefined;
}

/**
 * Step 3: where every option instance is, appended to `tlvs` as (code, value start, value
 * length) triples: the options field, then `file` and `sname` when option 52 says they
 * carry options (RFC 3396 §6: the aggregate option buffer is options, then file, then sname).
 * Returns option 52's value (0 when absent).
 */
function _locateOptions(
  buf: Uint8Array,
  offset: number,
  length: number,
  tlvs: number[],
): number | _Fault {
  let fault = _scanOptions(buf, offset, offset + 240, offset + length, "options", tlvs);
  if (fault !== undefined) return fault;
  const overload = _overload(buf, tlvs);
  if (overload instanceof _Fault) return overload;
  if (overload & 1) fault = _scanOptions(buf, offset, offset + 108, offset + 236, "file", tlvs);
  if (fault === undefined && overload & 2) {
    fault = _scanOptions(buf, offset, offset + 44, offset + 108, "sname", tlvs);
  }
  return fault ?? overload;
}

/**
 * Step 4: the instances of one code together (RFC 3396 §7: they are concatenated), in order
 * of first appearance. Each group is [code, start, length, start, length, …]; option 52 is
 * left out (step 3 read it).
 */
function _groupOptions(tlvs: readonly number[]): number[][] {
  const groups: number[][] = [];
  for (let i = 0; i < tlvs.length; i += 3) {
    const code = tlvs[i]!;
    if (code === Dhcp4OptionCode.OVERLOAD) continue;
    const g = _groupOf[code]!;
    if (g === 0) {
      groups.push([code, tlvs[i + 1]!, tlvs[i + 2]!]);
      _groupOf[code] = groups.length;
    } else groups[g - 1]!.push(tlvs[i + 1]!, tlvs[i + 2]!);
  }
  for (const g of groups) _groupOf[g[0]!] = 0;
  return groups;
}

/** True when some code (other than 52) appears more than once in `tlvs` (step 3's triples). */
function _repeats(tlvs: readonly number[]): boolean {
  let repeated = false;
  let i = 0;
  for (; i < tlvs.length; i += 3) {
    const code = tlvs[i]!;
    if (code === Dhcp4OptionCode.OVERLOAD) continue;
    if (_groupOf[code] !== 0) {
      repeated = true;
      break;
    }
    _groupOf[code] = 1;
  }
  for (let j = 0; j < i; j += 3) _groupOf[tlvs[j]!] = 0;
  return repeated;
}

/**
 * Step 5 when no code repeats (the usual message): what {@link _readOptions} reads of
 * {@link _groupOptions}' one-instance groups, read in place, without making the groups.
 */
function _readSingleOptions(buf: Uint8Array, tlvs: readonly number[]): Dhcp4Options | _Fault {
  const options: Record<string, unknown> = {};
  let unknown: Dhcp4RawOption[] | undefined;
  for (let i = 0; i < tlvs.length; i += 3) {
    const code = tlvs[i]!;
    if (code === Dhcp4OptionCode.OVERLOAD) continue;
    const at = tlvs[i + 1]!;
    const len = tlvs[i + 2]!;
    const spec = _SPEC_BY_CODE[code];
    if (spec === undefined) {
      unknown ??= [];
      unknown.push({ code, data: buf.slice(at, at + len) });
      continue;
    }
    const value = spec.read(buf, at, len);
    if (value instanceof _Fault) return value;
    options[spec.key] = value;
  }
  if (unknown !== undefined) options.unknown = unknown;
  return options as unknown as Dhcp4Options;
}

/**
 * Step 5: each group's value read by its option's spec into the `Dhcp4Options` key; codes
 * without a spec go to `unknown` as copies. The first value a spec refuses is the fault.
 */
function _readOptions(buf: Uint8Array, groups: readonly number[][]): Dhcp4Options | _Fault {
  const options: Record<string, unknown> = {};
  let unknown: Dhcp4RawOption[] | undefined;
  for (const g of groups) {
    const code = g[0]!;
    let src = buf;
    let at = g[1]!;
    let len = g[2]!;
    if (g.length > 3) {
      src = _concat(buf, g);
      at = 0;
      len = src.length;
    }
    const spec = _SPEC_BY_CODE[code];
    if (spec === undefined) {
      unknown ??= [];
      unknown.push({ code, data: src.slice(at, at + len) });
      continue;
    }
    const value = spec.read(src, at, len);
    if (value instanceof _Fault) return value;
    options[spec.key] = value;
  }
  if (unknown !== undefined) options.unknown = unknown;
  return options as unknown as Dhcp4Options;
}

/**
 * Step 6: a DHCP message has option 53 (else it is BOOTP, RFC 2132 §9.6), and its type agrees
 * with `op` (RFC 2131 §3: the server's messages are BOOTREPLY).
 */
function _checkMessageType(options: Dhcp4Options, op: Dhcp4Op): _Fault | undefined {
  const type = options.messageType;
  if (type === undefined) {
    const what = "option 53 (message type) is missing: BOOTP, not DHCP";
    return new _Fault("missing-message-type", what);
  }
  if (_IS_REPLY[type] !== (op === Dhcp4Op.BOOTREPLY)) {
    return new _Fault("op-mismatch", `${_MESSAGE_NAMES[type]} with op ${op}: ${_opRule(type)}`);
  }
  return undefined;
}

/**
 * Step 7: the fixed fields (RFC 2131 §2, figure 1) with `options`; `sname` and `file` as text
 * unless option 52 gave them to options (then they are left out).
 */
function _readMessage(
  buf: Uint8Array,
  offset: number,
  options: Dhcp4Options,
  overload: number,
): Dhcp4Message {
  const msg: { -readonly [K in keyof Dhcp4Message]: Dhcp4Message[K] } = {
    op: buf[offset]! as Dhcp4Op,
    htype: buf[offset + 1]!,
    hops: buf[offset + 3]!,
    xid: readU32(buf, offset + 4),
    secs: readU16(buf, offset + 8),
    flags: readU16(buf, offset + 10),
    ciaddr: readU32(buf, offset + 12),
    yiaddr: readU32(buf, offset + 16),
    siaddr: readU32(buf, offset + 20),
    giaddr: readU32(buf, offset + 24),
    chaddr: buf.slice(offset + 28, offset + 28 + buf[offset + 2]!),
    options,
  };
  if (!(overload & 2)) {
    const sname = _cString(buf, offset + 44, 64);
    if (sname !== "") msg.sname = sname;
  }
  if (!(overload & 1)) {
    const file = _cString(buf, offset + 108, 128);
    if (file !== "") msg.file = file;
  }
  return msg;
}

/** Bytes `encodeDhcp4` writes for `msg`: 240, each option, and the end option. No padding. */
export function dhcp4EncodingLength(msg: Dhcp4Message): number {
  let n = DHCP4_MIN_LENGTH + 1;
  const opts = msg.options as unknown as Record<string, unknown>;
  for (const spec of _SPECS_IN_ORDER) {
    const value = opts[spec.key];
    if (value !== undefined) n += _tlvLength(spec.size(value));
  }
  for (const raw of msg.options.unknown ?? []) n += _tlvLength(raw.data.length);
  return n;
}

/**
 * Encodes `msg` into `buf` at `offset` (a new buffer when `buf` is omitted) and returns the
 * bytes written. Options go message type first, then the typed ones by code, then `unknown`
 * in order, then the end option; values over 255 bytes are split (RFC 3396). `file` and
 * `sname` never carry options. Throws `RangeError` when a field is out of range, an option
 * value is one `decodeDhcp4` would refuse, an unknown option reuses a typed or repeated
 * code, or `buf` is too small.
 *
 * @example
 * const discover = encodeDhcp4({
 *   op: Dhcp4Op.BOOTREQUEST, htype: 1, hops: 0, xid: 0x3903f326, secs: 0, flags: 0,
 *   ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: mac,
 *   options: { messageType: Dhcp4MessageType.DISCOVER, parameterRequestList: [1, 3, 6, 159] },
 * });
 */
export function encodeDhcp4(msg: Dhcp4Message, buf?: Uint8Array, offset = 0): Uint8Array {
  _checkMessage(msg);
  const length = dhcp4EncodingLength(msg);
  const out = encodeTarget(buf, offset, length, "DHCPv4 message");
  out.fill(0, 0, DHCP4_MIN_LENGTH);
  out[0] = msg.op;
  out[1] = msg.htype;
  out[2] = msg.chaddr.length;
  out[3] = msg.hops;
  writeU32(out, 4, msg.xid);
  writeU16(out, 8, msg.secs);
  writeU16(out, 10, msg.flags);
  writeU32(out, 12, msg.ciaddr);
  writeU32(out, 16, msg.yiaddr);
  writeU32(out, 20, msg.siaddr);
  writeU32(out, 24, msg.giaddr);
  out.set(msg.chaddr, 28);
  if (msg.sname !== undefined) _putByteString(out, 44, msg.sname);
  if (msg.file !== undefined) _putByteString(out, 108, msg.file);
  writeU32(out, 236, DHCP4_MAGIC_COOKIE);
  let p = DHCP4_MIN_LENGTH;
  const opts = msg.options as unknown as Record<string, unknown>;
  for (const spec of _SPECS_IN_ORDER) {
    const value = opts[spec.key];
    if (value !== undefined) p = _putOption(out, p, spec.code, spec, value);
  }
  for (const raw of msg.options.unknown ?? [])
    p = _putOption(out, p, raw.code, undefined, raw.data);
  out[p] = Dhcp4OptionCode.END;
  return out;
}

function _opRule(type: number): string {
  return _IS_REPLY[type] ? "a server's message is op 2 (BOOTREPLY)" : "a client's is op 1";
}

/** Throws `RangeError` on anything `decodeDhcp4` would not give back unchanged. */
function _checkMessage(msg: Dhcp4Message): void {
  const { op, options } = msg;
  if (op !== 1 && op !== 2) throw new RangeError(`op ${op} is neither 1 (BOOTREQUEST) nor 2`);
  _checkUint("htype", msg.htype, 0xff);
  _checkUint("hops", msg.hops, 0xff);
  _checkUint("xid", msg.xid, 0xffffffff);
  _checkUint("secs", msg.secs, 0xffff);
  _checkUint("flags", msg.flags, 0xffff);
  _checkUint("ciaddr", msg.ciaddr, 0xffffffff);
  _checkUint("yiaddr", msg.yiaddr, 0xffffffff);
  _checkUint("siaddr", msg.siaddr, 0xffffffff);
  _checkUint("giaddr", msg.giaddr, 0xffffffff);
  if (!(msg.chaddr instanceof Uint8Array) || msg.chaddr.length > 16) {
    throw new RangeError("chaddr must be a Uint8Array of at most 16 bytes");
  }
  for (const [field, max] of [
    ["sname", 64],
    ["file", 128],
  ] as const) {
    const text = msg[field];
    if (
      text !== undefined &&
      (typeof text !== "string" || text.length > max || !_isByteString(text, true))
    ) {
      throw new RangeError(`${field} must be at most ${max} characters U+0001–U+00FF`);
    }
  }
  if (typeof options !== "object" || options === null) throw new RangeError("options missing");
  const opts = options as unknown as Record<string, unknown>;
  if (opts.messageType === undefined) throw new RangeError("options.messageType is required");
  for (const spec of _SPECS_IN_ORDER) {
    const value = opts[spec.key];
    if (value !== undefined) spec.check(value);
  }
  if (_IS_REPLY[options.messageType] !== (op === Dhcp4Op.BOOTREPLY)) {
    throw new RangeError(`${_MESSAGE_NAMES[options.messageType]}: ${_opRule(options.messageType)}`);
  }
  const seen = new Set<number>();
  for (const raw of options.unknown ?? []) {
    const { code, data } = raw;
    if (!_isUint(code, 254) || code === 0 || code === Dhcp4OptionCode.OVERLOAD) {
      throw new RangeError(`unknown option code ${code} is not 1–254 other than 52`);
    }
    const spec = _SPEC_BY_CODE[code];
    if (spec !== undefined) throw new RangeError(`option ${code} must be given as ${spec.key}`);
    if (seen.has(code)) throw new RangeError(`unknown option ${code} given twice; concatenate`);
    if (!(data instanceof Uint8Array)) throw new RangeError(`unknown option ${code}: no bytes`);
    seen.add(code);
  }
}

function _checkUint(field: string, value: number, max: number): void {
  if (!_isUint(value, max)) throw new RangeError(`${field} ${value} is not an integer 0–${max}`);
}

/** A NUL-terminated field (`sname`, `file`); the whole field when it has no NUL. */
function _cString(buf: Uint8Array, at: number, size: number): string {
  let end = at;
  while (end < at + size && buf[end] !== 0) end++;
  return _byteString(buf, at, end - at);
}
