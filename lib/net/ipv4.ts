/**
 * IPv4 header (RFC 791) field readers and writers on a `Uint8Array` at an offset.
 *
 * Addresses are unsigned 32-bit numbers (see addr.ts). Nothing here allocates: the tunnel
 * steps call these per packet on preallocated buffers.
 *
 * ```
 *  0      4      8             16    19              31
 * |version| IHL |    TOS      |       total length      |
 * |      identification       |flags|  fragment offset  |
 * |    TTL      |  protocol   |     header checksum     |
 * |                  source address                     |
 * |                destination address                  |
 * ```
 *
 * @module
 */

import { readU32, writeU32 } from "./bytes.ts";
import { checksumSum, checksumUpdate16 } from "./checksum.ts";

/** Length of an IPv4 header without options. */
export const IPV4_HEADER_LENGTH = 20;

/** IP protocol numbers the tunnel looks at (IANA "Assigned Internet Protocol Numbers"). */
export const IpProtocol = {
  ICMP: 1,
  IPV4: 4,
  TCP: 6,
  UDP: 17,
  DCCP: 33,
  IPV6: 41,
  SCTP: 132,
  UDPLITE: 136,
} as const;

/** Flag bits of the 16-bit flags/fragment-offset word. */
export const IPV4_DF = 0x4000;
export const IPV4_MF = 0x2000;

/**
 * Reasons `validateIPv4` rejects a packet; 0 means valid. Small integers so that a per-packet
 * caller can switch on them or index a counter array.
 */
export const IPv4Problem = {
  NONE: 0,
  /** Fewer than 20 bytes. */
  TOO_SHORT: 1,
  /** Version field is not 4. */
  BAD_VERSION: 2,
  /** IHL below 5, or a header longer than the bytes at hand. */
  BAD_IHL: 3,
  /** Total length larger than the bytes at hand, or smaller than the header. */
  BAD_TOTAL_LENGTH: 4,
  /** Header checksum does not verify. */
  BAD_CHECKSUM: 5,
} as const;
export type IPv4Problem = (typeof IPv4Problem)[keyof typeof IPv4Problem];

/** Version field (4 for IPv4). */
export function ipv4Version(buf: Uint8Array, off: number): number {
  return buf[off]! >>> 4;
}

/** Header length in bytes (IHL × 4). */
export function ipv4HeaderLength(buf: Uint8Array, off: number): number {
  return (buf[off]! & 0x0f) << 2;
}

/** Type of service / DSCP+ECN byte. */
export function ipv4Tos(buf: Uint8Array, off: number): number {
  return buf[off + 1]!;
}

/** Total length field (header + payload), in bytes. */
export function ipv4TotalLength(buf: Uint8Array, off: number): number {
  return (buf[off + 2]! << 8) | buf[off + 3]!;
}

/** Identification field. */
export function ipv4Identification(buf: Uint8Array, off: number): number {
  return (buf[off + 4]! << 8) | buf[off + 5]!;
}

/** The whole flags + fragment offset word (mask with IPV4_DF, IPV4_MF, 0x1fff). */
export function ipv4FlagsFragment(buf: Uint8Array, off: number): number {
  return (buf[off + 6]! << 8) | buf[off + 7]!;
}

/** True when Don't Fragment is set. */
export function ipv4DontFragment(buf: Uint8Array, off: number): boolean {
  return (buf[off + 6]! & 0x40) !== 0;
}

/** True when More Fragments is set. */
export function ipv4MoreFragments(buf: Uint8Array, off: number): boolean {
  return (buf[off + 6]! & 0x20) !== 0;
}

/** Fragment offset in 8-byte units (0 for an unfragmented packet or a first fragment). */
export function ipv4FragmentOffset(buf: Uint8Array, off: number): number {
  return ((buf[off + 6]! & 0x1f) << 8) | buf[off + 7]!;
}

/** Time to live. */
export function ipv4Ttl(buf: Uint8Array, off: number): number {
  return buf[off + 8]!;
}

/** Protocol of the payload (see IpProtocol). */
export function ipv4Protocol(buf: Uint8Array, off: number): number {
  return buf[off + 9]!;
}

/** Header checksum field as stored. */
export function ipv4HeaderChecksum(buf: Uint8Array, off: number): number {
  return (buf[off + 10]! << 8) | buf[off + 11]!;
}

/** Source address as an unsigned 32-bit number. */
export function ipv4Source(buf: Uint8Array, off: number): number {
  return readU32(buf, off + 12);
}

/** Destination address as an unsigned 32-bit number. */
export function ipv4Destination(buf: Uint8Array, off: number): number {
  return readU32(buf, off + 16);
}

/** Sets the total length (does not touch the checksum: call writeIPv4HeaderChecksum). */
export function setIPv4TotalLength(buf: Uint8Array, off: number, length: number): void {
  buf[off + 2] = length >>> 8;
  buf[off + 3] = length;
}

/** Sets the source address (checksum not updated). */
export function setIPv4Source(buf: Uint8Array, off: number, address: number): void {
  writeU32(buf, off + 12, address);
}

/** Sets the destination address (checksum not updated). */
export function setIPv4Destination(buf: Uint8Array, off: number, address: number): void {
  writeU32(buf, off + 16, address);
}

/**
 * Sets the TTL and updates the header checksum incrementally (RFC 1624), as a router does.
 *
 * @example setIPv4Ttl(pkt, 0, ipv4Ttl(pkt, 0) - 1)
 */
export function setIPv4Ttl(buf: Uint8Array, off: number, ttl: number): void {
  const oldWord = (buf[off + 8]! << 8) | buf[off + 9]!;
  buf[off + 8] = ttl;
  const newWord = (buf[off + 8]! << 8) | buf[off + 9]!;
  const sum = checksumUpdate16(ipv4HeaderChecksum(buf, off), oldWord, newWord);
  buf[off + 10] = sum >>> 8;
  buf[off + 11] = sum;
}

/** The header checksum the header should carry (computed over IHL × 4 bytes, field as zero). */
export function computeIPv4HeaderChecksum(buf: Uint8Array, off: number): number {
  const headerLength = ipv4HeaderLength(buf, off);
  const stored = ipv4HeaderChecksum(buf, off);
  // Sum everything, then take the stored field back out (one's complement subtraction).
  let sum = checksumSum(buf, off, headerLength) + (~stored & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Computes and stores the header checksum. */
export function writeIPv4HeaderChecksum(buf: Uint8Array, off: number): void {
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  const sum = ~checksumSum(buf, off, ipv4HeaderLength(buf, off)) & 0xffff;
  buf[off + 10] = sum >>> 8;
  buf[off + 11] = sum;
}

/** True when the header checksum verifies. */
export function ipv4HeaderChecksumValid(buf: Uint8Array, off: number): boolean {
  // A correct header sums to 0xffff (the one's complement "negative zero").
  return checksumSum(buf, off, ipv4HeaderLength(buf, off)) === 0xffff;
}

/**
 * Writes a 20-byte header (no options) with its checksum. `flagsFragment` is the flags +
 * fragment offset word (e.g. IPV4_DF). Positional numbers so the ICMP builders can call it per
 * packet without an options object.
 *
 * @example writeIPv4Header(buf, 0, 84, 0, IPV4_DF, 64, IpProtocol.ICMP, src, dst)
 */
export function writeIPv4Header(
  buf: Uint8Array,
  off: number,
  totalLength: number,
  identification: number,
  flagsFragment: number,
  ttl: number,
  protocol: number,
  source: number,
  destination: number,
): void {
  buf[off] = 0x45;
  buf[off + 1] = 0;
  buf[off + 2] = totalLength >>> 8;
  buf[off + 3] = totalLength;
  buf[off + 4] = identification >>> 8;
  buf[off + 5] = identification;
  buf[off + 6] = flagsFragment >>> 8;
  buf[off + 7] = flagsFragment;
  buf[off + 8] = ttl;
  buf[off + 9] = protocol;
  writeU32(buf, off + 12, source);
  writeU32(buf, off + 16, destination);
  writeIPv4HeaderChecksum(buf, off);
}

/**
 * Checks that `buf[off .. off+len)` starts with a well-formed IPv4 header: at least 20 bytes,
 * version 4, 5 ≤ IHL and IHL × 4 ≤ len, IHL × 4 ≤ total length ≤ len, checksum right.
 * Returns an IPv4Problem (0 when valid). Bytes after `total length` (link padding) are
 * allowed; callers forward `ipv4TotalLength` bytes.
 *
 * @example if (validateIPv4(pkt, off, len) !== IPv4Problem.NONE) drop()
 */
export function validateIPv4(buf: Uint8Array, off: number, len: number): IPv4Problem {
  if (len < IPV4_HEADER_LENGTH) return IPv4Problem.TOO_SHORT;
  const b0 = buf[off]!;
  if (b0 >>> 4 !== 4) return IPv4Problem.BAD_VERSION;
  const headerLength = (b0 & 0x0f) << 2;
  if (headerLength < IPV4_HEADER_LENGTH || headerLength > len) return IPv4Problem.BAD_IHL;
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (total > len || total < headerLength) return IPv4Problem.BAD_TOTAL_LENGTH;
  const sum =
    headerLength === IPV4_HEADER_LENGTH
      ? header20Sum(buf, off)
      : checksumSum(buf, off, headerLength);
  if (sum !== 0xffff) return IPv4Problem.BAD_CHECKSUM;
  return IPv4Problem.NONE;
}

/**
 * {@link checksumSum} of a 20-byte header (no options, nearly every packet), unrolled: the
 * per-packet check of every forwarded packet (issue 14).
 */
function header20Sum(b: Uint8Array, o: number): number {
  let s =
    ((b[o]! << 8) | b[o + 1]!) +
    ((b[o + 2]! << 8) | b[o + 3]!) +
    ((b[o + 4]! << 8) | b[o + 5]!) +
    ((b[o + 6]! << 8) | b[o + 7]!) +
    ((b[o + 8]! << 8) | b[o + 9]!) +
    ((b[o + 10]! << 8) | b[o + 11]!) +
    ((b[o + 12]! << 8) | b[o + 13]!) +
    ((b[o + 14]! << 8) | b[o + 15]!) +
    ((b[o + 16]! << 8) | b[o + 17]!) +
    ((b[o + 18]! << 8) | b[o + 19]!);
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}

/** Name of an IPv4Problem code, for logs and check-mode output. */
export function ipv4ProblemName(code: number): string {
  return _PROBLEM_NAMES[code] ?? `unknown-${code}`;
}

const _PROBLEM_NAMES = [
  "none",
  "too-short",
  "bad-version",
  "bad-ihl",
  "bad-total-length",
  "bad-checksum",
];
