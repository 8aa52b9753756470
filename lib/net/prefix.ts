/**
 * IPv4 prefixes (CIDR blocks) as `{ base, length }` with `base` an unsigned 32-bit number.
 *
 * @module
 */
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from "./addr.ts";

/** An IPv4 prefix: the network address and the prefix length (0–32). */
export interface IPv4Prefix {
  readonly base: number;
  readonly length: number;
}

/**
 * Parses `a.b.c.d/len`. Host bits must be zero (a pool written `192.0.2.1/24` is almost
 * always a typo), so this returns `null` for them as for any other bad text.
 *
 * @example parseIPv4Prefix("192.0.2.0/24") // { base: 3221225984, length: 24 }
 */
export function parseIPv4Prefix(text: string): IPv4Prefix | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const base = parseIPv4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (base === null || !/^\d{1,2}$/.test(lenText)) return null;
  const length = Number(lenText);
  if (length > 32) return null;
  if ((base & ~prefixMask(length)) >>> 0 !== 0) return null;
  return { base, length };
}

/** The netmask of a prefix length as an unsigned 32-bit number: `prefixMask(24)` is `0xffffff00`. */
export function prefixMask(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

/** Number of addresses a prefix spans (2^(32-length)). */
export function prefixSize(prefix: IPv4Prefix): number {
  return 2 ** (32 - prefix.length);
}

/** True when `address` lies inside `prefix`. */
export function prefixContains(prefix: IPv4Prefix, address: number): boolean {
  return (address & prefixMask(prefix.length)) >>> 0 === prefix.base;
}

/** True when two prefixes share at least one address. */
export function prefixesOverlap(a: IPv4Prefix, b: IPv4Prefix): boolean {
  const shorter = a.length <= b.length ? a : b;
  const longer = shorter === a ? b : a;
  return prefixContains(shorter, longer.base);
}

/** Formats a prefix as `a.b.c.d/len`. */
export function formatIPv4Prefix(prefix: IPv4Prefix): string {
  return `${formatIPv4(prefix.base)}/${prefix.length}`;
}

/**
 * For a CIDR whose address has host bits set (`198.51.100.5/24`, which
 * {@link parseIPv4Prefix} refuses), the prefix meant (`198.51.100.0/24`); null for anything
 * else (a valid prefix, or text that is no CIDR at all).
 */
export function prefixMeant(text: string): string | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const base = parseIPv4(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (base === null || !/^\d{1,2}$/.test(lengthText) || Number(lengthText) > 32) return null;
  const network = (base & prefixMask(Number(lengthText))) >>> 0;
  return network === base ? null : `${formatIPv4(network)}/${lengthText}`;
}

/**
 * As {@link prefixMeant} for IPv6: for `2001:db8:4::10/64` (host bits set) the prefix meant,
 * `2001:db8:4::/64` (RFC 4291 §2.3: the bits after the prefix length are 0); null for a valid
 * prefix or text that is no IPv6 CIDR.
 */
export function ipv6PrefixMeant(text: string): string | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const bytes = parseIPv6(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (!bytes || !/^\d{1,3}$/.test(lengthText) || Number(lengthText) > 128) return null;
  const length = Number(lengthText);
  const network = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, length - 8 * i));
    network[i] = bytes[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return network.every((b, i) => b === bytes[i]) ? null : `${formatIPv6(network)}/${length}`;
}
