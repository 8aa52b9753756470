/**
 * The IPv6 header (RFC 8200), as far as the tunnel needs it.
 *
 * On the TEP and the client the kernel builds and strips the outer IPv6 header (raw socket
 * with protocol 4), so the per-packet steps never touch it. This module exists for the
 * check mode and the tests: to show a 4over6 packet as it appears on the wire (RFC 2473:
 * next header 4, the IPv4 packet as payload) and to write pcap files of it.
 *
 * @module
 */

/** Length of the fixed IPv6 header. */
export const IPV6_HEADER_LENGTH = 40;

/** Next header value of an encapsulated IPv4 packet (IPv4-in-IPv6, RFC 2473). */
export const NEXT_HEADER_IPV4 = 4;

/** Hop limit of the outer header: the IPv6 default (RFC 2473 §6.3 tunnel hop limit). */
export const TUNNEL_HOP_LIMIT = 64;

/**
 * Writes a 40-byte IPv6 header (traffic class and flow label 0, as a raw socket sends by
 * default) with addresses copied from `src[srcOff]` and `dst[dstOff]`.
 *
 * @example writeIPv6Header(buf, 0, innerLength, NEXT_HEADER_IPV4, 64, tep6, 0, host6, 0)
 */
export function writeIPv6Header(
  buf: Uint8Array,
  off: number,
  payloadLength: number,
  nextHeader: number,
  hopLimit: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
): void {
  buf[off] = 0x60;
  buf[off + 1] = 0;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf[off + 4] = payloadLength >>> 8;
  buf[off + 5] = payloadLength;
  buf[off + 6] = nextHeader;
  buf[off + 7] = hopLimit;
  for (let i = 0; i < 16; i++) {
    buf[off + 8 + i] = src[srcOff + i]!;
    buf[off + 24 + i] = dst[dstOff + i]!;
  }
}

/** Version field (6 for IPv6). */
export function ipv6Version(buf: Uint8Array, off: number): number {
  return buf[off]! >>> 4;
}

/** Payload length field. */
export function ipv6PayloadLength(buf: Uint8Array, off: number): number {
  return (buf[off + 4]! << 8) | buf[off + 5]!;
}

/** Next header field. */
export function ipv6NextHeader(buf: Uint8Array, off: number): number {
  return buf[off + 6]!;
}

/** Hop limit field. */
export function ipv6HopLimit(buf: Uint8Array, off: number): number {
  return buf[off + 7]!;
}

/** Offset of the source address within the header. */
export const IPV6_SOURCE_OFFSET = 8;

/** Offset of the destination address within the header. */
export const IPV6_DESTINATION_OFFSET = 24;

/**
 * A whole 4over6 packet, new bytes: IPv6 header (next header 4) from `src6` to `dst6`, then the
 * IPv4 packet. Allocates; for fixtures and pcap output, not for the per-packet path.
 *
 * @example encapsulate4in6(ipv4Packet, tep6, host6)
 */
export function encapsulate4in6(
  inner: Uint8Array,
  src6: Uint8Array,
  dst6: Uint8Array,
  hopLimit = TUNNEL_HOP_LIMIT,
): Uint8Array {
  const out = new Uint8Array(IPV6_HEADER_LENGTH + inner.length);
  writeIPv6Header(out, 0, inner.length, NEXT_HEADER_IPV4, hopLimit, src6, 0, dst6, 0);
  out.set(inner, IPV6_HEADER_LENGTH);
  return out;
}
