/**
 * IPv4 prefixes (CIDR blocks) as `{ base, length }` with `base` an unsigned 32-bit number.
 *
 * @module
 */
import { formatIPv4, parseIPv4 } from "./addr.ts";

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
