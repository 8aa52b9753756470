/**
 * ICMPv4 (RFC 792) messages the tunnel builds: "fragmentation needed" (type 3 code 4, with the
 * next-hop MTU of RFC 1191), "host unreachable" (3/1), and echo request/reply.
 *
 * Errors are built into a caller's buffer, never about a packet that must not cause one
 * (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7): an ICMP error, a fragment other than the first, a
 * packet to a broadcast or multicast address, or one whose source is not a single host
 * (0.0.0.0, 127/8, multicast, 240/4 and 255.255.255.255). The error carries the offending
 * IP header and the first 8 bytes of its payload (RFC 792), which is enough for the sender
 * to find the socket (RFC 1191 §4).
 *
 * Nothing here allocates: the builders take the output buffer and return the length written.
 *
 * @module
 */
import { checksumSum } from "./checksum.ts";
import { IPV4_DF, IPV4_HEADER_LENGTH, IpProtocol, writeIPv4Header } from "./ipv4.ts";

/** ICMPv4 message types (RFC 792) that matter to the tunnel. */
export const IcmpType = {
  ECHO_REPLY: 0,
  DEST_UNREACHABLE: 3,
  SOURCE_QUENCH: 4,
  REDIRECT: 5,
  ECHO_REQUEST: 8,
  TIME_EXCEEDED: 11,
  PARAMETER_PROBLEM: 12,
} as const;

/** True for the ICMPv4 types that are error messages (they quote an offending packet). */
export function isIcmpErrorType(type: number): boolean {
  return (
    type === IcmpType.DEST_UNREACHABLE ||
    type === IcmpType.SOURCE_QUENCH ||
    type === IcmpType.REDIRECT ||
    type === IcmpType.TIME_EXCEEDED ||
    type === IcmpType.PARAMETER_PROBLEM
  );
}

/** Codes of type 3 (destination unreachable) used here. */
export const UnreachableCode = {
  NET: 0,
  HOST: 1,
  PROTOCOL: 2,
  PORT: 3,
  FRAGMENTATION_NEEDED: 4,
  ADMIN_PROHIBITED: 13,
} as const;

/** Length of the ICMP header (type, code, checksum, 4 bytes of "rest of header"). */
export const ICMP_HEADER_LENGTH = 8;

/** TTL of the errors and echoes built here (RFC 1700 default, what Linux uses). */
export const ICMP_TTL = 64;

/** Largest ICMP error built here: 20 (IP) + 8 (ICMP) + 60 (quoted header with options) + 8. */
export const ICMP_ERROR_MAX_LENGTH = IPV4_HEADER_LENGTH + ICMP_HEADER_LENGTH + 60 + 8;

/**
 * True when the packet at `orig[off .. off+len)` may be the subject of an ICMP error. The
 * header is assumed to be validated (validateIPv4); anything too short to judge gets `false`.
 *
 * @example icmpErrorAllowed(pkt, 0, len) // false for an ICMP error or a non-first fragment
 */
export function icmpErrorAllowed(orig: Uint8Array, off: number, len: number): boolean {
  if (len < IPV4_HEADER_LENGTH) return false;
  const ihl = (orig[off]! & 0x0f) << 2;
  if (ihl < IPV4_HEADER_LENGTH || ihl > len) return false;
  if ((((orig[off + 6]! & 0x1f) << 8) | orig[off + 7]!) !== 0) return false; // non-initial fragment
  const src0 = orig[off + 12]!;
  const dst0 = orig[off + 16]!;
  // Source must name one host: not 0.0.0.0 ("this host"), 127/8, 224/4 multicast, 240/4 (class E,
  // which includes the limited broadcast 255.255.255.255).
  if (src0 === 127 || src0 >= 224) return false;
  if (src0 === 0 && orig[off + 13] === 0 && orig[off + 14] === 0 && orig[off + 15] === 0)
    return false;
  // Destination must not be multicast or the limited broadcast (directed broadcasts are the
  // kernel's business: it does not route them into the tunnel).
  if (dst0 >= 224 && dst0 < 240) return false;
  if (dst0 === 255 && orig[off + 17] === 255 && orig[off + 18] === 255 && orig[off + 19] === 255) {
    return false;
  }
  if (orig[off + 9] === IpProtocol.ICMP) {
    if (ihl + 1 > len) return false; // cannot tell whether it is an error: be quiet
    if (isIcmpErrorType(orig[off + ihl]!)) return false;
  }
  return true;
}

/**
 * Builds an ICMPv4 error about `orig[origOff .. origOff+origLen)` at `out[outOff]`: an IPv4
 * header from `source` to the offending packet's source (TTL 64, DF, identification 0: an
 * atomic datagram, RFC 6864), then type, code, checksum, the 32-bit `rest` word, then the
 * offending header and the first 8 bytes of its payload. Returns the length written, or 0
 * when no error may be sent about that packet (icmpErrorAllowed). `out` needs
 * ICMP_ERROR_MAX_LENGTH bytes and must not overlap `orig`.
 *
 * @example buildIcmpError(reply, 0, 3, 1, 0, tep4, pkt, 0, len) // host unreachable
 */
export function buildIcmpError(
  out: Uint8Array,
  outOff: number,
  type: number,
  code: number,
  rest: number,
  source: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
): number {
  if (!icmpErrorAllowed(orig, origOff, origLen)) return 0;
  const ihl = (orig[origOff]! & 0x0f) << 2;
  const origTotal = (orig[origOff + 2]! << 8) | orig[origOff + 3]!;
  let quote = ihl + 8;
  if (quote > origTotal) quote = origTotal;
  if (quote > origLen) quote = origLen;
  const total = IPV4_HEADER_LENGTH + ICMP_HEADER_LENGTH + quote;
  const destination =
    ((orig[origOff + 12]! << 24) |
      (orig[origOff + 13]! << 16) |
      (orig[origOff + 14]! << 8) |
      orig[origOff + 15]!) >>>
    0;
  writeIPv4Header(out, outOff, total, 0, IPV4_DF, ICMP_TTL, IpProtocol.ICMP, source, destination);
  const icmp = outOff + IPV4_HEADER_LENGTH;
  out[icmp] = type;
  out[icmp + 1] = code;
  out[icmp + 2] = 0;
  out[icmp + 3] = 0;
  out[icmp + 4] = rest >>> 24;
  out[icmp + 5] = rest >>> 16;
  out[icmp + 6] = rest >>> 8;
  out[icmp + 7] = rest;
  const q = icmp + ICMP_HEADER_LENGTH;
  for (let i = 0; i < quote; i++) out[q + i] = orig[origOff + i]!;
  _writeIcmpChecksum(out, icmp, ICMP_HEADER_LENGTH + quote);
  return total;
}

/**
 * Type 3 code 4 "fragmentation needed and DF set" with the next-hop MTU in the low 16 bits
 * of the rest word (RFC 1191 §4). Returns the length written, or 0 (see buildIcmpError).
 *
 * @example buildFragmentationNeeded(reply, 0, tep4, pkt, 0, len, 1460)
 */
export function buildFragmentationNeeded(
  out: Uint8Array,
  outOff: number,
  source: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
  nextHopMtu: number,
): number {
  return buildIcmpError(
    out,
    outOff,
    IcmpType.DEST_UNREACHABLE,
    UnreachableCode.FRAGMENTATION_NEEDED,
    nextHopMtu & 0xffff,
    source,
    orig,
    origOff,
    origLen,
  );
}

/**
 * Type 3 code 1 "host unreachable". Returns the length written, or 0 (see buildIcmpError).
 *
 * @example buildHostUnreachable(reply, 0, tep4, pkt, 0, len)
 */
export function buildHostUnreachable(
  out: Uint8Array,
  outOff: number,
  source: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
): number {
  return buildIcmpError(
    out,
    outOff,
    IcmpType.DEST_UNREACHABLE,
    UnreachableCode.HOST,
    0,
    source,
    orig,
    origOff,
    origLen,
  );
}

/**
 * Builds an echo request (or reply, with `type` 0) with `dataLength` bytes of data
 * (0x00, 0x01, … repeating) at `out[off]`. Returns the total length (28 + dataLength).
 *
 * @example buildEcho(buf, 0, IcmpType.ECHO_REQUEST, src, dst, 0x1234, 1, 56)
 */
export function buildEcho(
  out: Uint8Array,
  off: number,
  type: number,
  source: number,
  destination: number,
  identifier: number,
  sequence: number,
  dataLength: number,
): number {
  const total = IPV4_HEADER_LENGTH + ICMP_HEADER_LENGTH + dataLength;
  writeIPv4Header(out, off, total, 0, IPV4_DF, ICMP_TTL, IpProtocol.ICMP, source, destination);
  const icmp = off + IPV4_HEADER_LENGTH;
  out[icmp] = type;
  out[icmp + 1] = 0;
  out[icmp + 2] = 0;
  out[icmp + 3] = 0;
  out[icmp + 4] = identifier >>> 8;
  out[icmp + 5] = identifier;
  out[icmp + 6] = sequence >>> 8;
  out[icmp + 7] = sequence;
  for (let i = 0; i < dataLength; i++) out[icmp + ICMP_HEADER_LENGTH + i] = i;
  _writeIcmpChecksum(out, icmp, ICMP_HEADER_LENGTH + dataLength);
  return total;
}

/**
 * Turns a valid echo request at `buf[off]` into its reply in place: swaps the addresses,
 * sets type 0, TTL 64, and recomputes both checksums. Returns false (and changes nothing)
 * when the packet is not an echo request.
 *
 * @example if (echoRequestToReply(pkt, 0, len)) send(pkt)
 */
export function echoRequestToReply(buf: Uint8Array, off: number, len: number): boolean {
  const ihl = (buf[off]! & 0x0f) << 2;
  if (buf[off + 9] !== IpProtocol.ICMP || ihl + ICMP_HEADER_LENGTH > len) return false;
  if (buf[off + ihl] !== IcmpType.ECHO_REQUEST || buf[off + ihl + 1] !== 0) return false;
  for (let i = 0; i < 4; i++) {
    const s = buf[off + 12 + i]!;
    buf[off + 12 + i] = buf[off + 16 + i]!;
    buf[off + 16 + i] = s;
  }
  buf[off + 8] = ICMP_TTL;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  const sum = ~checksumSum(buf, off, ihl) & 0xffff;
  buf[off + 10] = sum >>> 8;
  buf[off + 11] = sum;
  buf[off + ihl] = IcmpType.ECHO_REPLY;
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  _writeIcmpChecksum(buf, off + ihl, Math.min(total, len) - ihl);
  return true;
}

/** ICMP type of the packet at `buf[off]` (an IPv4 packet with protocol 1). */
export function icmpType(buf: Uint8Array, off: number): number {
  return buf[off + ((buf[off]! & 0x0f) << 2)]!;
}

/** ICMP code of the packet at `buf[off]`. */
export function icmpCode(buf: Uint8Array, off: number): number {
  return buf[off + ((buf[off]! & 0x0f) << 2) + 1]!;
}

/** Next-hop MTU of a "fragmentation needed" message at `buf[off]` (RFC 1191). */
export function icmpNextHopMtu(buf: Uint8Array, off: number): number {
  const icmp = off + ((buf[off]! & 0x0f) << 2);
  return (buf[icmp + 6]! << 8) | buf[icmp + 7]!;
}

/** Identifier of an echo request/reply at `buf[off]`. */
export function icmpEchoId(buf: Uint8Array, off: number): number {
  const icmp = off + ((buf[off]! & 0x0f) << 2);
  return (buf[icmp + 4]! << 8) | buf[icmp + 5]!;
}

/** Sequence number of an echo request/reply at `buf[off]`. */
export function icmpEchoSequence(buf: Uint8Array, off: number): number {
  const icmp = off + ((buf[off]! & 0x0f) << 2);
  return (buf[icmp + 6]! << 8) | buf[icmp + 7]!;
}

/** True when the ICMP checksum of the IPv4 packet at `buf[off .. off+len)` verifies. */
export function icmpChecksumValid(buf: Uint8Array, off: number, len: number): boolean {
  const ihl = (buf[off]! & 0x0f) << 2;
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  return checksumSum(buf, off + ihl, Math.min(total, len) - ihl) === 0xffff;
}

function _writeIcmpChecksum(buf: Uint8Array, icmp: number, length: number): void {
  buf[icmp + 2] = 0;
  buf[icmp + 3] = 0;
  const sum = ~checksumSum(buf, icmp, length) & 0xffff;
  buf[icmp + 2] = sum >>> 8;
  buf[icmp + 3] = sum;
}
