/**
 * DHCPv4 options (RFC 2132, RFC 7618) and the option area they live in (RFC 3396):
 * - the table of typed options, one `_Spec` per code (size, check, write, read of the value
 *   without code and length bytes), in the order the encoder writes them, and the codec trio
 *   of each as `dhcp4OptionCodecs`;
 * - the option area: scanning an area into (code, start, length) triples, option 52
 *   (overload, RFC 2132 §9.3), concatenating the instances of one code (RFC 3396 §7) and
 *   splitting a value longer than 255 bytes on encode;
 * - the byte-string and integer checks the specs and the message share.
 *
 * Split from ./dhcp4.ts (the message codec), which re-exports `dhcp4OptionCodecs`. Names
 * starting with `_` are internal to lib/wire/dhcp4*.ts.
 *
 * @module
 */
import { readU16, readU32, writeU16, writeU32 } from "../net/bytes.ts";
import { type PortSetValue, portSetProblem } from "../net/portset.ts";
import { type OptionValueSpec, optionCodec } from "./codec.ts";
import {
  type Dhcp4DecodeErrorCode,
  type Dhcp4MessageType,
  Dhcp4OptionCode,
  type Dhcp4OptionCodec,
  type Dhcp4Options,
} from "./dhcp4_types.ts";

/** A decode fault inside a step: the code and one-line message a decode returns. */
export class _Fault {
  constructor(
    readonly code: Dhcp4DecodeErrorCode,
    readonly message: string,
  ) {}
}

/** How one typed option is checked, sized, written and read; `read` gets the whole value. */
export interface _Spec<T> extends OptionValueSpec<T, _Fault> {
  readonly key: Exclude<keyof Dhcp4Options, "unknown">;
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
  read(buf, at, len) {
    if (len === 0) return _lengthFault("parameter request list", len, "at least 1");
    const codes: number[] = [];
    for (let i = at; i < at + len; i++) codes.push(buf[i]!);
    return codes;
  },
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
export const _SPECS_IN_ORDER: readonly _Spec<unknown>[] = [
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
export const _SPEC_BY_CODE: (_Spec<unknown> | undefined)[] = [];
for (const spec of _SPECS_IN_ORDER) _SPEC_BY_CODE[spec.code] = spec;

function _codec<T>(spec: _Spec<T>): Dhcp4OptionCodec<T> {
  return optionCodec(spec, (r) =>
    r instanceof _Fault ? { code: r.code, message: r.message } : undefined,
  );
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

/** Records the options of one area (`from`..`to`); stops at the end option. */
export function _scanOptions(
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
export function _overload(buf: Uint8Array, tlvs: number[]): number | _Fault {
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

/** The values of one group ([code, start, length, …]) of `buf` concatenated (RFC 3396 §7). */
export function _concat(buf: Uint8Array, group: number[]): Uint8Array {
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
export function _tlvLength(n: number): number {
  return n === 0 ? 2 : n + 2 * Math.ceil(n / 255);
}

/** Writes one option (split per RFC 3396 when longer than 255 bytes); returns the next byte. */
export function _putOption(
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

/** True when `value` is an integer 0–`max`. */
export function _isUint(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
}

/** True when the ones of `mask` are all to the left of its zeros (0.0.0.0 included). */
function _isContiguousMask(mask: number): boolean {
  const inverted = ~mask >>> 0;
  return (inverted & (inverted + 1)) === 0;
}

/** True when every character is one byte (U+0000–U+00FF; U+0000 excluded if `noNul`). */
export function _isByteString(text: string, noNul: boolean): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || (noNul && c === 0)) return false;
  }
  return true;
}

/** `len` bytes at `at` as text, one character (U+0000–U+00FF) per byte. */
export function _byteString(buf: Uint8Array, at: number, len: number): string {
  let text = "";
  for (let i = at; i < at + len; i++) text += String.fromCharCode(buf[i]!);
  return text;
}

/** Writes `text` (U+0000–U+00FF, checked by the caller) at `at`, one byte per character. */
export function _putByteString(buf: Uint8Array, at: number, text: string): void {
  for (let i = 0; i < text.length; i++) buf[at + i] = text.charCodeAt(i);
}
