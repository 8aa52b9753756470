/**
 * Field checks and writers shared by the DSTM option table (dstm_options.ts): addresses,
 * RFC 7618 port sets, option heads, integer ranges and UTF-8 lengths. Checks for encoding
 * throw `RangeError`; readers return a description of the fault instead of throwing.
 *
 * @module
 */
import { parseIPv6 } from "../net/addr.ts";
import { readU16, writeU16 } from "../net/bytes.ts";
import type { WirePortSet } from "./dstm_types.ts";

/** UTF-8 length of a well-formed string, without encoding it. */
export function utf8Length(text: string): number {
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

/** Reads a 4-byte port set; returns a description of the fault instead when invalid. */
export function readPortSet(buf: Uint8Array, v: number): WirePortSet | string {
  const a = buf[v] ?? 0;
  const k = buf[v + 1] ?? 0;
  const wire = readU16(buf, v + 2);
  // RFC 7618 option 159 layout: the PSID is left-aligned, the bits below it are zero.
  if (a > 15 || k > 16 || a + k > 16 || (k === 0 ? wire !== 0 : wire & (0xffff >> k))) {
    return `offset ${a}, psidLength ${k}, PSID field 0x${wire.toString(16)}`;
  }
  return { offset: a, psidLength: k, psid: k === 0 ? 0 : wire >> (16 - k) };
}

/** `value` when it is a usable IPv4 host address (not 0.0.0.0 or 255.255.255.255), else `RangeError`. */
export function checkIPv4(field: string, value: number): number {
  if (!isUint32(value) || value === 0 || value === 0xffffffff) {
    throw new RangeError(`${field} ${value} is not a usable IPv4 address`);
  }
  return value;
}

/** The 16 bytes of `text` when it is a unicast IPv6 address, else `RangeError`. */
export function parseUnicastIPv6(field: string, text: string): Uint8Array {
  const bytes = parseIPv6(text);
  if (bytes === null || bytes[0] === 0xff || isZero(bytes, 0, 16)) {
    throw new RangeError(`${field} ${JSON.stringify(text)} is not a unicast IPv6 address`);
  }
  return bytes;
}

/** `ps` when it is a valid RFC 7597 port set, else `RangeError`. */
export function checkPortSet(ps: WirePortSet): WirePortSet {
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
  return ps;
}

/** True for an integer 0..2^32-1. */
export function isUint32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

/** True for an integer 0..65535. */
export function isUint16(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

/** True when the `len` bytes at `at` are all zero. */
export function isZero(buf: Uint8Array, at: number, len: number): boolean {
  for (let i = at; i < at + len; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Writes an option's code and length; returns where its value starts. */
export function putOptionHead(buf: Uint8Array, at: number, code: number, len: number): number {
  buf[at] = code;
  buf[at + 1] = len;
  return at + 2;
}

/** Port set as in RFC 7618 option 159: offset, PSID length, left-aligned PSID. */
export function putPortSet(buf: Uint8Array, at: number, ps: WirePortSet): number {
  buf[at] = ps.offset;
  buf[at + 1] = ps.psidLength;
  return writeU16(buf, at + 2, ps.psidLength === 0 ? 0 : ps.psid << (16 - ps.psidLength));
}

/** Copies `bytes` to `at`; returns the offset after them. */
export function putBytes(buf: Uint8Array, at: number, bytes: Uint8Array): number {
  buf.set(bytes, at);
  return at + bytes.length;
}
