/**
 * The typed DHCPv6 options 4o6 needs (RFC 8415 §21: OPTION_CLIENTID 1, OPTION_SERVERID 2,
 * OPTION_ORO 6, OPTION_ELAPSED_TIME 8; RFC 7341 §8: OPTION_DHCP4_O_DHCP6_SERVER 88): one spec
 * per option (check, size, write, read), the public codec trio of each (`dhcp6OptionCodecs`),
 * and the option-list reading and writing that ./dhcp6.ts and ./dhcp4o6.ts share, with their
 * decode-error helpers. Reading never throws (a bad length is a `bad-option-length` error);
 * writing throws `RangeError` on a value reading would not give back.
 *
 * @module
 */
import { formatIPv6, parseIPv6 } from "../net/addr.ts";
import { readU16, writeU16 } from "../net/bytes.ts";
import { fail, type OptionValueSpec, optionCodec } from "./codec.ts";
import {
  type Dhcp6CommonOptions,
  type Dhcp6DecodeError,
  Dhcp6OptionCode,
  type Dhcp6OptionCodec,
  type Dhcp6RawOption,
} from "./dhcp6_types.ts";

/** The message fields a typed option fills. */
export type Dhcp6OptionKey = "clientId" | "serverId" | "dhcp4o6Servers" | "oro" | "elapsedTime";

/** One typed option; `read` returns a string describing a bad length instead of a value. */
export interface Dhcp6OptionSpec<T> extends OptionValueSpec<T, string> {
  readonly key: Dhcp6OptionKey;
}

function _duidSpec(
  code: number,
  name: string,
  key: "clientId" | "serverId",
): Dhcp6OptionSpec<Uint8Array> {
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

export const SERVERS_SPEC: Dhcp6OptionSpec<readonly string[]> = {
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

const _ORO: Dhcp6OptionSpec<readonly number[]> = {
  code: 6,
  name: "OPTION_ORO",
  key: "oro",
  check(v) {
    if (!Array.isArray(v) || v.length > 32767 || !v.every((c) => isUintUpTo(c, 0xffff))) {
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

const _ELAPSED_TIME: Dhcp6OptionSpec<number> = {
  code: 8,
  name: "OPTION_ELAPSED_TIME",
  key: "elapsedTime",
  check(v) {
    if (!isUintUpTo(v, 0xffff)) throw new RangeError(`elapsedTime ${v} is not 0–65535`);
  },
  size: () => 2,
  write: (v, buf, at) => writeU16(buf, at, v),
  read: (buf, at, len) =>
    len === 2 ? readU16(buf, at) : `OPTION_ELAPSED_TIME has length ${len}, expected 2`,
};

export const CLIENT_ID_SPEC = _duidSpec(1, "OPTION_CLIENTID", "clientId");
export const SERVER_ID_SPEC = _duidSpec(2, "OPTION_SERVERID", "serverId");

function _codec<T>(spec: Dhcp6OptionSpec<T>): Dhcp6OptionCodec<T> {
  return optionCodec(spec, (r) =>
    typeof r === "string" ? { code: "bad-option-length", message: r } : undefined,
  );
}

/** The codec trio of each typed DHCPv6 option, keyed like the message fields. */
export const dhcp6OptionCodecs = {
  clientId: _codec(CLIENT_ID_SPEC),
  serverId: _codec(SERVER_ID_SPEC),
  oro: _codec(_ORO),
  elapsedTime: _codec(_ELAPSED_TIME),
  dhcp4o6Servers: _codec(SERVERS_SPEC),
} as const;

/** Typed options of the envelope and of plain DHCPv6, in the order they are written. */
export const ENVELOPE_SPECS: readonly Dhcp6OptionSpec<unknown>[] = [
  CLIENT_ID_SPEC,
  SERVER_ID_SPEC,
  SERVERS_SPEC,
];
export const DHCP6_SPECS: readonly Dhcp6OptionSpec<unknown>[] = [
  CLIENT_ID_SPEC,
  SERVER_ID_SPEC,
  _ORO,
  _ELAPSED_TIME,
  SERVERS_SPEC,
];

/** The specs of each list by option code. */
export const ENVELOPE_SPECS_BY_CODE: (Dhcp6OptionSpec<unknown> | undefined)[] = [];
for (const spec of ENVELOPE_SPECS) ENVELOPE_SPECS_BY_CODE[spec.code] = spec;
export const DHCP6_SPECS_BY_CODE: (Dhcp6OptionSpec<unknown> | undefined)[] = [];
for (const spec of DHCP6_SPECS) DHCP6_SPECS_BY_CODE[spec.code] = spec;

/** A message being decoded or encoded, seen as its fields by name. */
export type Dhcp6Fields = Record<string, unknown>;

/** A decode error when `length` bytes at `offset` are not inside `buf` or cannot hold the 4-byte header; else undefined. */
export function checkDhcp6Range(
  buf: Uint8Array,
  offset: number,
  length: number,
): { ok: false; error: Dhcp6DecodeError } | undefined {
  if (!Number.isInteger(offset) || offset < 0) {
    return fail("bad-offset", `offset ${offset} is not an integer ≥ 0`);
  }
  if (offset > buf.length) return fail("truncated", `offset ${offset} is past the buffer`);
  if (!Number.isInteger(length) || length < 0) {
    return fail("bad-offset", `length ${length} is not an integer ≥ 0`);
  }
  if (offset + length > buf.length) {
    return fail(
      "truncated",
      `${length} bytes at offset ${offset} but the buffer holds ${buf.length}`,
    );
  }
  if (length < 4) return fail("truncated", `${length} bytes cannot hold the 4-byte header`);
  return undefined;
}

/** The RFC name of the option filling `key` (e.g. `OPTION_CLIENTID`). */
export function dhcp6OptionName(key: Dhcp6OptionKey): string {
  return (DHCP6_SPECS.find((s) => s.key === key) as Dhcp6OptionSpec<unknown>).name;
}

/**
 * Reads the options after the 4-byte header into `fields`. In an envelope (`msg87` given)
 * option 87 is located, not decoded: `msg87` receives its value's start and length.
 */
export function readDhcp6Options(
  buf: Uint8Array,
  base: number,
  end: number,
  specs: readonly (Dhcp6OptionSpec<unknown> | undefined)[],
  fields: Dhcp6Fields,
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
export function checkDhcp6Options(
  msg: Dhcp6CommonOptions,
  specs: readonly Dhcp6OptionSpec<unknown>[],
  reserved: number,
) {
  for (const spec of specs) {
    const value = (msg as Dhcp6Fields)[spec.key];
    if (value !== undefined) spec.check(value);
  }
  for (const raw of msg.unknown ?? []) {
    const { code, data } = raw;
    if (!isUintUpTo(code, 0xffff) || code === reserved || specs.some((s) => s.code === code)) {
      throw new RangeError(`unknown option code ${code} is not 16 bits or has a typed field`);
    }
    if (!(data instanceof Uint8Array) || data.length > 0xffff) {
      throw new RangeError(`unknown option ${code} needs at most 65535 bytes`);
    }
  }
}

/** Bytes the typed options of `specs` present in `msg` and its unknown options take, 4 of code and length each. */
export function dhcp6OptionsLength(
  msg: Dhcp6CommonOptions,
  specs: readonly Dhcp6OptionSpec<unknown>[],
): number {
  let n = 0;
  for (const spec of specs) {
    const value = (msg as Dhcp6Fields)[spec.key];
    if (value !== undefined) n += 4 + spec.size(value);
  }
  for (const raw of msg.unknown ?? []) n += 4 + raw.data.length;
  return n;
}

/** Writes `value` (if any) as option `spec` at `at` in `out`; returns the offset just past it. */
export function putDhcp6Option(
  out: Uint8Array,
  at: number,
  spec: Dhcp6OptionSpec<unknown>,
  value: unknown,
): number {
  if (value === undefined) return at;
  const n = spec.size(value);
  writeU16(out, at, spec.code);
  writeU16(out, at + 2, n);
  spec.write(value, out, at + 4);
  return at + 4 + n;
}

/** Writes the raw options `list` (code, length, bytes) at `at` in `out`. */
export function putDhcp6Unknown(
  out: Uint8Array,
  at: number,
  list: readonly Dhcp6RawOption[] | undefined,
) {
  let p = at;
  for (const { code, data } of list ?? []) {
    writeU16(out, p, code);
    writeU16(out, p + 2, data.length);
    out.set(data, p + 4);
    p += 4 + data.length;
  }
}

/** True when `value` is an integer 0–`max`. */
export function isUintUpTo(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
}
