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
 * @module
 */

import { readU16, readU32, writeU16, writeU32 } from "../net/bytes.ts";
import { type PortSetValue, portSetProblem } from "../net/portset.ts";
import type { Decoded, DecodeError, OptionCodec, RawOption } from "./codec.ts";
import { encodeTarget, validRange } from "./codec.ts";

/** UDP port of a DHCPv4 server. */
export const DHCP4_SERVER_PORT = 67;
/** UDP port of a DHCPv4 client. */
export const DHCP4_CLIENT_PORT = 68;
/** 99.130.83.99, the four bytes between `file` and the options (RFC 2131 §3). */
export const DHCP4_MAGIC_COOKIE = 0x63825363;
/** The fixed BOOTP fields (236 bytes) plus the magic cookie: the shortest message. */
export const DHCP4_MIN_LENGTH = 240;
/** Broadcast bit of `flags` (RFC 2131 §2); the other 15 bits must be zero. */
export const DHCP4_FLAG_BROADCAST = 0x8000;
/** `htype` of Ethernet (hlen 6). */
export const DHCP4_HTYPE_ETHERNET = 1;
/** Lease time meaning "forever" (RFC 2131 §3.3). */
export const DHCP4_INFINITE_LEASE = 0xffffffff;

export const Dhcp4Op = { BOOTREQUEST: 1, BOOTREPLY: 2 } as const;
export type Dhcp4Op = (typeof Dhcp4Op)[keyof typeof Dhcp4Op];

/** Values of option 53 (RFC 2132 §9.6). */
export const Dhcp4MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type Dhcp4MessageType = (typeof Dhcp4MessageType)[keyof typeof Dhcp4MessageType];

export const Dhcp4OptionCode = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTERS: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLIENT_ID: 61,
  /** RFC 7618 OPTION_V4_PORTPARAMS: offset, PSID length, left-aligned PSID. */
  V4_PORTPARAMS: 159,
  END: 255,
} as const;

/** Every reason `decodeDhcp4` rejects a message; one counter per code suits a server. */
export const DHCP4_DECODE_ERROR_CODES = [
  "bad-offset",
  "truncated",
  "bad-op",
  "bad-hlen",
  "bad-cookie",
  "truncated-option",
  "bad-option-length",
  "bad-overload",
  "missing-message-type",
  "bad-message-type",
  "op-mismatch",
  "bad-subnet-mask",
  "bad-port-params",
] as const;
export type Dhcp4DecodeErrorCode = (typeof DHCP4_DECODE_ERROR_CODES)[number];

/** Why a message was rejected. `message` is one line naming the field or option at fault. */
export type Dhcp4DecodeError = DecodeError<Dhcp4DecodeErrorCode>;

/** Result of a decode: the value and the offset just past it, or the reason it failed. */
export type Dhcp4Decoded<T> = Decoded<T, Dhcp4DecodeError>;

/** An option without a typed field, all its instances concatenated (RFC 3396). */
export type Dhcp4RawOption = RawOption;

/**
 * The options of a message. IPv4 addresses are unsigned 32-bit numbers, times are seconds,
 * texts hold one character per byte (code points 0–255, no decoding), so they round-trip.
 */
export interface Dhcp4Options {
  /** 53, required in every message. */
  readonly messageType: Dhcp4MessageType;
  /** 1, a contiguous mask. */
  readonly subnetMask?: number;
  /** 3, at least one address. */
  readonly routers?: readonly number[];
  /** 6, at least one address. */
  readonly dnsServers?: readonly number[];
  /** 12, at least one character. */
  readonly hostname?: string;
  /** 50 */
  readonly requestedIp?: number;
  /** 51, seconds; `DHCP4_INFINITE_LEASE` for ever. */
  readonly leaseTime?: number;
  /** 54 */
  readonly serverId?: number;
  /** 55, option codes (at least one). */
  readonly parameterRequestList?: readonly number[];
  /** 56, at least one character. */
  readonly message?: string;
  /** 58, T1 in seconds. */
  readonly renewalTime?: number;
  /** 59, T2 in seconds. */
  readonly rebindingTime?: number;
  /** 61, type byte then identifier (at least 2 bytes). */
  readonly clientId?: Uint8Array;
  /** 159 (RFC 7618), a valid RFC 7597 port set. */
  readonly portParams?: PortSetValue;
  /** Every other option except pad, end and overload (52), in order of first appearance. */
  readonly unknown?: readonly Dhcp4RawOption[];
}

/** A DHCPv4 message. `hlen` is `chaddr.length`; `sname`/`file` are omitted when empty. */
export interface Dhcp4Message {
  readonly op: Dhcp4Op;
  readonly htype: number;
  readonly hops: number;
  /** Transaction id chosen by the client (32 bits). */
  readonly xid: number;
  readonly secs: number;
  /** 16 bits; `DHCP4_FLAG_BROADCAST` is the only one defined. */
  readonly flags: number;
  readonly ciaddr: number;
  readonly yiaddr: number;
  readonly siaddr: number;
  readonly giaddr: number;
  /** The significant `hlen` (0–16) bytes of the client hardware address. */
  readonly chaddr: Uint8Array;
  /** Server host name up to the first NUL (≤ 64 bytes); absent when `sname` holds options. */
  readonly sname?: string;
  /** Boot file name up to the first NUL (≤ 128 bytes); absent when `file` holds options. */
  readonly file?: string;
  readonly options: Dhcp4Options;
}

/** The codec trio of one option's value (the bytes after code and length; ./codec.ts). */
export type Dhcp4OptionCodec<T> = OptionCodec<T, Dhcp4DecodeError>;

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

class _Fault {
  constructor(
    readonly code: Dhcp4DecodeErrorCode,
    readonly message: string,
  ) {}
}

/** How one typed option is checked, sized, written and read; `read` gets the whole value. */
interface _Spec<T> {
  readonly code: number;
  readonly name: string;
  readonly key: Exclude<keyof Dhcp4Options, "unknown">;
  check(value: T): void;
  size(value: T): number;
  write(value: T, buf: Uint8Array, at: number): void;
  read(buf: Uint8Array, at: number, len: number): T | _Fault;
}

function _lengthFault(name: string, len: number, want: string): _Fault {
  return new _Fault("bad-option-length", `${name} has length ${len}, expected ${want}`);
}

function _u32Spec(code: number, name: string, key: _Spec<number>["key"]): _Spec<number> {
  return {
    code,
    name,
    key,
    check(v) {
      if (!_isUint(v, 0xffffffff)) throw new RangeError(`${name} ${v} is not a 32-bit value`);
    },
    size: () => 4,
    write: (v, buf, at) => writeU32(buf, at, v),
    read: (buf, at, len) => (len === 4 ? readU32(buf, at) : _lengthFault(name, len, "4")),
  };
}

function _addressListSpec(code: number, name: string, key: "routers" | "dnsServers") {
  const spec: _Spec<readonly number[]> = {
    code,
    name,
    key,
    check(v) {
      if (!Array.isArray(v) || v.length === 0 || !v.every((a) => _isUint(a, 0xffffffff))) {
        throw new RangeError(`${name} must be a non-empty list of 32-bit IPv4 addresses`);
      }
    },
    size: (v) => 4 * v.length,
    write(v, buf, at) {
      for (let i = 0; i < v.length; i++) writeU32(buf, at + 4 * i, v[i]!);
    },
    read(buf, at, len) {
      if (len === 0 || len % 4 !== 0) return _lengthFault(name, len, "a non-zero multiple of 4");
      const list: number[] = [];
      for (let i = 0; i < len; i += 4) list.push(readU32(buf, at + i));
      return list;
    },
  };
  return spec;
}

function _textSpec(code: number, name: string, key: "hostname" | "message"): _Spec<string> {
  return {
    code,
    name,
    key,
    check(v) {
      if (typeof v !== "string" || v.length === 0 || !_isByteString(v, false)) {
        throw new RangeError(`${name} must be 1 or more characters U+0000–U+00FF`);
      }
    },
    size: (v) => v.length,
    write: (v, buf, at) => _putByteString(buf, at, v),
    read: (buf, at, len) =>
      len === 0 ? _lengthFault(name, len, "at least 1") : _byteString(buf, at, len),
  };
}

const _SUBNET_MASK: _Spec<number> = {
  ..._u32Spec(1, "subnet mask", "subnetMask"),
  check(v) {
    if (!_isUint(v, 0xffffffff) || !_isContiguousMask(v)) {
      throw new RangeError(`subnet mask ${v} is not a contiguous 32-bit mask`);
    }
  },
  read(buf, at, len) {
    if (len !== 4) return _lengthFault("subnet mask", len, "4");
    const mask = readU32(buf, at);
    if (!_isContiguousMask(mask)) {
      return new _Fault("bad-subnet-mask", `subnet mask 0x${mask.toString(16)} is not contiguous`);
    }
    return mask;
  },
};

const _MESSAGE_TYPE: _Spec<Dhcp4MessageType> = {
  code: 53,
  name: "message type",
  key: "messageType",
  check(v) {
    if (!Number.isInteger(v) || v < 1 || v > 8) {
      throw new RangeError(`message type ${v} is not 1 (DISCOVER) .. 8 (INFORM)`);
    }
  },
  size: () => 1,
  write(v, buf, at) {
    buf[at] = v;
  },
  read(buf, at, len) {
    if (len !== 1) return _lengthFault("message type", len, "1");
    const type = buf[at]!;
    if (type < 1 || type > 8) {
      return new _Fault("bad-message-type", `message type ${type} is not 1 (DISCOVER) .. 8`);
    }
    return type as Dhcp4MessageType;
  },
};

const _PARAMETER_REQUEST_LIST: _Spec<readonly number[]> = {
  code: 55,
  name: "parameter request list",
  key: "parameterRequestList",
  check(v) {
    if (!Array.isArray(v) || v.length === 0 || !v.every((c) => _isUint(c, 255))) {
      throw new RangeError("parameterRequestList must be a non-empty list of codes 0–255");
    }
  },
  size: (v) => v.length,
  write: (v, buf, at) => buf.set(v, at),
  read: (buf, at, len) =>
    len === 0
      ? _lengthFault("parameter request list", len, "at least 1")
      : Array.from(buf.subarray(at, at + len)),
};

const _CLIENT_ID: _Spec<Uint8Array> = {
  code: 61,
  name: "client identifier",
  key: "clientId",
  check(v) {
    if (!(v instanceof Uint8Array) || v.length < 2) {
      throw new RangeError("clientId must be a Uint8Array of at least 2 bytes (type + id)");
    }
  },
  size: (v) => v.length,
  write: (v, buf, at) => buf.set(v, at),
  read: (buf, at, len) =>
    len < 2 ? _lengthFault("client identifier", len, "at least 2") : buf.slice(at, at + len),
};

const _PORT_PARAMS: _Spec<PortSetValue> = {
  code: 159,
  name: "OPTION_V4_PORTPARAMS",
  key: "portParams",
  check(v) {
    const problem = typeof v === "object" && v !== null ? portSetProblem(v) : "not an object";
    if (problem !== null) throw new RangeError(`portParams: ${problem}`);
  },
  size: () => 4,
  write(v, buf, at) {
    buf[at] = v.offset;
    buf[at + 1] = v.psidLength;
    writeU16(buf, at + 2, v.psidLength === 0 ? 0 : v.psid << (16 - v.psidLength));
  },
  read(buf, at, len) {
    if (len !== 4) return _lengthFault("OPTION_V4_PORTPARAMS", len, "4");
    const a = buf[at]!;
    const k = buf[at + 1]!;
    const field = readU16(buf, at + 2);
    // RFC 7598 §4.5 (by reference from RFC 7618 §4): offset 0–15, PSID left-aligned and the
    // bits to its right zero; with PSID-len 0 the PSID field is ignored.
    if (a > 15 || k > 16 || a + k > 16 || (k > 0 && (field & (0xffff >> k)) !== 0)) {
      const text = `offset ${a}, PSID-len ${k}, PSID field 0x${field.toString(16)}`;
      return new _Fault("bad-port-params", `OPTION_V4_PORTPARAMS ${text} is not a port set`);
    }
    return { offset: a, psidLength: k, psid: k === 0 ? 0 : field >>> (16 - k) };
  },
};

/** Typed options in the order the encoder writes them: message type first, then by code. */
const _SPECS_IN_ORDER: readonly _Spec<unknown>[] = [
  _MESSAGE_TYPE,
  _SUBNET_MASK,
  _addressListSpec(3, "routers", "routers"),
  _addressListSpec(6, "DNS servers", "dnsServers"),
  _textSpec(12, "hostname", "hostname"),
  _u32Spec(50, "requested IP address", "requestedIp"),
  _u32Spec(51, "lease time", "leaseTime"),
  _u32Spec(54, "server identifier", "serverId"),
  _PARAMETER_REQUEST_LIST,
  _textSpec(56, "message", "message"),
  _u32Spec(58, "renewal time", "renewalTime"),
  _u32Spec(59, "rebinding time", "rebindingTime"),
  _CLIENT_ID,
  _PORT_PARAMS,
];
/** Typed option by code. */
const _SPEC_BY_CODE: (_Spec<unknown> | undefined)[] = [];
for (const spec of _SPECS_IN_ORDER) _SPEC_BY_CODE[spec.code] = spec;

function _codec<T>(spec: _Spec<T>): Dhcp4OptionCodec<T> {
  return {
    code: spec.code,
    name: spec.name,
    encodingLength: (value) => spec.size(value),
    encode(value, buf, offset = 0) {
      spec.check(value);
      const n = spec.size(value);
      const out = encodeTarget(buf, offset, n, spec.name);
      spec.write(value, out, 0);
      return out;
    },
    decode(buf, offset = 0, length = buf.length - offset) {
      if (!validRange(buf, offset, length)) {
        return _fail("bad-offset", `offset ${offset}, length ${length} outside ${buf.length}`);
      }
      const r = spec.read(buf, offset, length);
      if (r instanceof _Fault) return _fail(r.code, r.message);
      return { ok: true, value: r, offset: offset + length };
    },
  };
}

/** The codec trio of each typed option, keyed like `Dhcp4Options`. */
export const dhcp4OptionCodecs = {
  messageType: _codec(_MESSAGE_TYPE),
  subnetMask: _codec(_SUBNET_MASK),
  routers: _codec(_SPEC_BY_CODE[3] as _Spec<readonly number[]>),
  dnsServers: _codec(_SPEC_BY_CODE[6] as _Spec<readonly number[]>),
  hostname: _codec(_SPEC_BY_CODE[12] as _Spec<string>),
  requestedIp: _codec(_SPEC_BY_CODE[50] as _Spec<number>),
  leaseTime: _codec(_SPEC_BY_CODE[51] as _Spec<number>),
  serverId: _codec(_SPEC_BY_CODE[54] as _Spec<number>),
  parameterRequestList: _codec(_PARAMETER_REQUEST_LIST),
  message: _codec(_SPEC_BY_CODE[56] as _Spec<string>),
  renewalTime: _codec(_SPEC_BY_CODE[58] as _Spec<number>),
  rebindingTime: _codec(_SPEC_BY_CODE[59] as _Spec<number>),
  clientId: _codec(_CLIENT_ID),
  portParams: _codec(_PORT_PARAMS),
} as const;

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
  if (fault !== undefined) return _fail(fault.code, fault.message);
  const tlvs: number[] = [];
  const overload = _locateOptions(buf, offset, length, tlvs);
  if (overload instanceof _Fault) return _fail(overload.code, overload.message);
  const options = _readOptions(buf, _groupOptions(tlvs));
  if (options instanceof _Fault) return _fail(options.code, options.message);
  const op = buf[offset]! as Dhcp4Op;
  const typeFault = _checkMessageType(options, op);
  if (typeFault !== undefined) return _fail(typeFault.code, typeFault.message);
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

function _fail(
  code: Dhcp4DecodeErrorCode,
  message: string,
): { ok: false; error: Dhcp4DecodeError } {
  return { ok: false, error: { code, message } };
}

function _opRule(type: number): string {
  return _IS_REPLY[type] ? "a server's message is op 2 (BOOTREPLY)" : "a client's is op 1";
}

/** Records the options of one area (`from`..`to`); stops at the end option. */
function _scanOptions(
  buf: Uint8Array,
  base: number,
  from: number,
  to: number,
  area: string,
  tlvs: number[],
): _Fault | undefined {
  let p = from;
  while (p < to) {
    const code = buf[p]!;
    if (code === Dhcp4OptionCode.PAD) {
      p++;
      continue;
    }
    if (code === Dhcp4OptionCode.END) return undefined;
    if (p + 1 >= to) {
      return new _Fault(
        "truncated-option",
        `${area}: option ${code} at byte ${p - base} has no length`,
      );
    }
    const len = buf[p + 1]!;
    if (p + 2 + len > to) {
      const where = `${area}: option ${code} at byte ${p - base}`;
      return new _Fault("truncated-option", `${where}: its ${len}-byte value is cut off`);
    }
    tlvs.push(code, p + 2, len);
    p += 2 + len;
  }
  return undefined;
}

/** Option 52 of the options field (RFC 2132 §9.3): 1 file, 2 sname, 3 both; 0 when absent. */
function _overload(buf: Uint8Array, tlvs: number[]): number | _Fault {
  let seen = false;
  let len = 0;
  let value = 0;
  for (let i = 0; i < tlvs.length; i += 3) {
    if (tlvs[i] !== Dhcp4OptionCode.OVERLOAD) continue;
    seen = true;
    len += tlvs[i + 2]!;
    value = buf[tlvs[i + 1]!]!;
  }
  if (!seen) return 0;
  if (len !== 1 || value < 1 || value > 3) {
    return new _Fault("bad-overload", `option overload (52) has length ${len}, value ${value}`);
  }
  return value;
}

function _concat(buf: Uint8Array, group: number[]): Uint8Array {
  let total = 0;
  for (let i = 2; i < group.length; i += 2) total += group[i]!;
  const out = new Uint8Array(total);
  let p = 0;
  for (let i = 1; i < group.length; i += 2) {
    const at = group[i]!;
    const len = group[i + 1]!;
    out.set(buf.subarray(at, at + len), p);
    p += len;
  }
  return out;
}

/** Encoded size of an option whose value has `n` bytes: 2 header bytes per 255-byte piece. */
function _tlvLength(n: number): number {
  return n === 0 ? 2 : n + 2 * Math.ceil(n / 255);
}

/** Writes one option (split per RFC 3396 when longer than 255 bytes); returns the next byte. */
function _putOption(
  out: Uint8Array,
  at: number,
  code: number,
  spec: _Spec<unknown> | undefined,
  value: unknown,
): number {
  const n = spec === undefined ? (value as Uint8Array).length : spec.size(value);
  let p = at;
  if (n <= 255) {
    out[p] = code;
    out[p + 1] = n;
    if (spec === undefined) out.set(value as Uint8Array, p + 2);
    else spec.write(value, out, p + 2);
    return p + 2 + n;
  }
  let data = value as Uint8Array;
  if (spec !== undefined) {
    data = new Uint8Array(n);
    spec.write(value, data, 0);
  }
  for (let i = 0; i < n; i += 255) {
    const piece = Math.min(255, n - i);
    out[p] = code;
    out[p + 1] = piece;
    out.set(data.subarray(i, i + piece), p + 2);
    p += 2 + piece;
  }
  return p;
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

function _isUint(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
}

/** True when the ones of `mask` are all to the left of its zeros (0.0.0.0 included). */
function _isContiguousMask(mask: number): boolean {
  const inverted = ~mask >>> 0;
  return (inverted & (inverted + 1)) === 0;
}

/** True when every character is one byte (U+0000–U+00FF; U+0000 excluded if `noNul`). */
function _isByteString(text: string, noNul: boolean): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || (noNul && c === 0)) return false;
  }
  return true;
}

function _byteString(buf: Uint8Array, at: number, len: number): string {
  let text = "";
  for (let i = at; i < at + len; i++) text += String.fromCharCode(buf[i]!);
  return text;
}

/** A NUL-terminated field (`sname`, `file`); the whole field when it has no NUL. */
function _cString(buf: Uint8Array, at: number, size: number): string {
  let end = at;
  while (end < at + size && buf[end] !== 0) end++;
  return _byteString(buf, at, end - at);
}

function _putByteString(buf: Uint8Array, at: number, text: string): void {
  for (let i = 0; i < text.length; i++) buf[at + i] = text.charCodeAt(i);
}
