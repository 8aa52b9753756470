/**
 * IPv4 and IPv6 addresses as plain values.
 *
 * An IPv4 address is a `number` holding the unsigned 32-bit value (network order
 * read as big-endian), which makes pools and bitmaps cheap. An IPv6 address is a
 * 16-byte `Uint8Array` on the wire and its RFC 5952 text form everywhere else
 * (lease tables, logs, map keys), so two spellings of one address compare equal.
 *
 * @module
 */
import { Address6 } from "ip-address";

/** Parses dotted-quad IPv4 text. Returns `null` when `text` is not exactly four decimal octets. */
export function parseIPv4(text: string): number | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return null;
    const octet = Number(part);
    if (octet > 255) return null;
    value = value * 256 + octet;
  }
  return value >>> 0;
}

/** Formats an IPv4 address held as an unsigned 32-bit number: `formatIPv4(0xc0000201)` is `"192.0.2.1"`. */
export function formatIPv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

/** Parses IPv6 text (any RFC 4291 spelling, no zone, no prefix) to 16 bytes, or `null`. */
export function parseIPv6(text: string): Uint8Array | null {
  if (text.includes("/") || text.includes("%") || !text.includes(":")) return null;
  // The RFC 4291 §2.2 forms by hand (a binding file has hundreds of thousands of them);
  // anything else goes to ip-address, which is about 15 times slower.
  const fast = new Uint8Array(16);
  if (_parseIPv6Into(text, fast)) return fast;
  try {
    const bytes = new Address6(text).toByteArray();
    // toByteArray drops leading zero bytes (it goes through a BigInteger): left-pad to 16.
    if (bytes.length > 16) return null;
    const out = new Uint8Array(16);
    out.set(bytes, 16 - bytes.length);
    return out;
  } catch {
    return null;
  }
}

/**
 * {@link parseIPv6} into `out` (16 bytes, written only when the text parses), without
 * allocating for the common forms: for a hash of an address known as text, once per lease
 * (lib/server/tep_state.ts). False when `text` is not an IPv6 address.
 */
export function parseIPv6Into(text: string, out: Uint8Array): boolean {
  if (_parseIPv6Into(text, out)) return true;
  const bytes = parseIPv6(text);
  if (bytes === null) return false;
  out.set(bytes);
  return true;
}

/** The groups of the text being parsed (one parse at a time: the event loop's thread). */
const _groups = new Uint16Array(8);

/**
 * RFC 4291 §2.2: eight groups of 1–4 hex digits, at most one `::` standing for one or more
 * zero groups, optionally a dotted IPv4 address as the last 32 bits: the 16 bytes into
 * `out`, true. False otherwise (`out` unchanged), also for text only ip-address reads.
 */
function _parseIPv6Into(text: string, out: Uint8Array): boolean {
  const n = text.length;
  if (n < 2 || n > 45) return false;
  const groups = _groups;
  let count = 0;
  let gap = -1; // index in `groups` where "::" stands
  let i = 0;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
  }
  while (i < n) {
    const start = i;
    let value = 0;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      const digit =
        c >= 48 && c <= 57
          ? c - 48
          : c >= 97 && c <= 102
            ? c - 87
            : c >= 65 && c <= 70
              ? c - 55
              : -1;
      if (digit < 0) break;
      value = value * 16 + digit;
    }
    if (i < n && text.charCodeAt(i) === 46) {
      const v4 = parseIPv4(text.slice(start));
      if (v4 === null || count > 6) return false;
      groups[count++] = v4 >>> 16;
      groups[count++] = v4 & 0xffff;
      break;
    }
    if (i === start || i - start > 4 || count === 8) return false;
    groups[count++] = value;
    if (i === n) break;
    if (text.charCodeAt(i) !== 58 || i + 1 === n) return false;
    i++;
    if (text.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = count;
      i++;
    }
  }
  if (gap < 0 ? count !== 8 : count > 7) return false;
  const tail = gap < 0 ? 0 : count - gap;
  out.fill(0);
  for (let g = 0; g < count; g++) {
    const at = gap < 0 || g < gap ? g : 8 - tail + (g - gap);
    out[2 * at] = (groups[g] as number) >>> 8;
    out[2 * at + 1] = (groups[g] as number) & 0xff;
  }
  return true;
}

/** Lower-case hex digits as ASCII codes, for {@link formatIPv6}. */
const _HEX = new Uint8Array([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102]);
/** The ASCII text being formatted (at most 39 characters; one at a time: the caller's thread). */
const _text = new Uint8Array(39);
/** `_text.subarray(0, n)` for each length n: no view made per address. */
const _textOf = Array.from({ length: 40 }, (_, n) => _text.subarray(0, n));
/** ASCII bytes to a string (UTF-8 decoding of ASCII is the identity). */
const _ascii = new TextDecoder();

/** Formats 16 bytes (at `offset`) as canonical RFC 5952 text: lower case, longest zero run as `::`. */
export function formatIPv6(bytes: Uint8Array, offset = 0): string {
  // Two passes over the bytes, no array or closure: servers format an address per datagram
  // (0.5–0.8 µs with an array of groups and a closure, about half that without). The text is
  // written as ASCII into a scratch array and decoded once: one flat string, where joining
  // the groups' strings made a rope of up to 15 parts that its first use as a Map key or a
  // hash's input flattened (0.9 against 0.4 µs an address in a loop that does).
  let bestStart = -1;
  let bestLen = 1; // RFC 5952 §4.2.2: a single zero group is not shortened
  let runStart = -1;
  for (let i = 0; i < 8; i++) {
    if (bytes[offset + 2 * i] !== 0 || bytes[offset + 2 * i + 1] !== 0) {
      runStart = -1;
      continue;
    }
    if (runStart < 0) runStart = i;
    // §4.2.3: the first of two longest runs (a later run of the same length never exceeds it).
    if (i - runStart + 1 > bestLen) {
      bestStart = runStart;
      bestLen = i - runStart + 1;
    }
  }
  const text = _text;
  let n = 0;
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      text[n++] = 58; // "::"
      text[n++] = 58;
      i += bestLen - 1;
      continue;
    }
    if (i !== 0 && i !== bestStart + bestLen) text[n++] = 58; // ":"
    // §4.1: the group without leading zeros (§4.3: lower case).
    const hi = bytes[offset + 2 * i] as number;
    const lo = bytes[offset + 2 * i + 1] as number;
    if (hi >= 16) text[n++] = _HEX[hi >>> 4] as number;
    if (hi !== 0) text[n++] = _HEX[hi & 15] as number;
    if (hi !== 0 || lo >= 16) text[n++] = _HEX[lo >>> 4] as number;
    text[n++] = _HEX[lo & 15] as number;
  }
  return _ascii.decode(_textOf[n] as Uint8Array);
}

/** Canonical text of an IPv6 address given as text, or `null` when it does not parse. */
export function canonicalIPv6(text: string): string | null {
  const bytes = parseIPv6(text);
  return bytes ? formatIPv6(bytes) : null;
}

/** True when two 16-byte addresses (at the given offsets) are equal. */
export function equalIPv6(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): boolean {
  for (let i = 0; i < 16; i++) if (a[aOffset + i] !== b[bOffset + i]) return false;
  return true;
}
