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

/** Formats 16 bytes (at `offset`) as canonical RFC 5952 text: lower case, longest zero run as `::`. */
export function formatIPv6(bytes: Uint8Array, offset = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++)
    groups.push((bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!);
  let bestStart = -1;
  let bestLen = 1; // RFC 5952 §4.2.2: a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(":");
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
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
