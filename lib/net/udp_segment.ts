/**
 * UDP segmentation offload done in software: cuts an IPv4 UDP "super-datagram" — what a TUN
 * device with IFF_VNET_HDR and TUN_F_USO4 hands over (gso_type UDP_L4, Linux ≥ 6.2), or what
 * lib/tunnel/gro_udp.ts coalesced — into the datagrams it stands for, as the kernel's
 * `__udp_gso_segment` / `inet_gso_segment` would put them on the wire:
 *
 * - every datagram carries `gsoSize` payload bytes, the last one the rest (UDP GSO keeps the
 *   sender's datagram boundaries: `gsoSize` is not an MTU, it is the datagram size);
 * - IPv4 (RFC 791): the super-datagram's header (options included) with its own total length,
 *   identification `id + i` (mod 2^16) and a fresh header checksum;
 * - UDP (RFC 768): the same ports, length `8 + payload`, a checksum computed in full over the
 *   pseudo-header and the datagram (a zero result sent as 0xffff), whatever the
 *   super-datagram's checksum field held (a CHECKSUM_PARTIAL one holds only the pseudo-header
 *   sum).
 *
 * Allocation-free: the caller gives the output buffer.
 *
 * @module
 */
import { checksumSum } from "./checksum.ts";
import { writeIPv4Segment } from "./ipv4_segment.ts";

const PROTO_UDP = 17;

/**
 * How many datagrams of `gsoSize` payload bytes (the last one shorter) the IPv4 UDP
 * super-datagram `buf[off, off+len)` gives (its IPv4 total length counts), or -1 when it is
 * not one: not IPv4, inconsistent lengths, not UDP, a fragment, no payload, `gsoSize` < 1.
 *
 * @example const n = udpSegmentCount(stage, 10, len, gsoSize); // -1: drop it
 */
export function udpSegmentCount(
  buf: Uint8Array,
  off: number,
  len: number,
  gsoSize: number,
): number {
  if (len < 28 || buf[off]! >>> 4 !== 4 || gsoSize < 1) return -1;
  const ihl = (buf[off]! & 0x0f) << 2;
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (ihl < 20 || total > len || total < ihl + 9) return -1;
  if (buf[off + 9] !== PROTO_UDP) return -1;
  if (((buf[off + 6]! << 8) | buf[off + 7]!) & 0x3fff) return -1;
  return Math.ceil((total - ihl - 8) / gsoSize);
}

/**
 * Writes datagram `index` (0-based, below {@link udpSegmentCount}, which must have accepted
 * the packet) of the super-datagram `buf[off, …)` at `out[outOff …]`; returns its length
 * (bytes). `out` may not overlap `buf` and needs room for the headers plus `gsoSize` bytes.
 */
export function writeUdpSegment(
  buf: Uint8Array,
  off: number,
  gsoSize: number,
  index: number,
  out: Uint8Array,
  outOff: number,
): number {
  const ihl = (buf[off]! & 0x0f) << 2;
  const headers = ihl + 8;
  const dataTotal = ((buf[off + 2]! << 8) | buf[off + 3]!) - headers;
  const start = index * gsoSize;
  const data = Math.min(gsoSize, dataTotal - start);
  const length = writeIPv4Segment(buf, off, ihl, headers, start, data, index, out, outOff);
  const u = outOff + ihl;
  const udpLength = 8 + data;
  out[u + 4] = udpLength >>> 8;
  out[u + 5] = udpLength & 0xff;
  out[u + 6] = 0;
  out[u + 7] = 0;
  const pseudo = checksumSum(out, outOff + 12, 8, PROTO_UDP + udpLength);
  const check = ~checksumSum(out, u, udpLength, pseudo) & 0xffff || 0xffff;
  out[u + 6] = check >>> 8;
  out[u + 7] = check & 0xff;
  return length;
}

/**
 * Sum of the UDP/IPv4 pseudo-header (RFC 768) for a UDP length, folded to 16 bits: what a
 * CHECKSUM_PARTIAL datagram carries in its checksum field (not complemented) for the kernel to
 * finish.
 */
export function udpPseudoHeaderSum(buf: Uint8Array, ipOff: number, udpLength: number): number {
  return checksumSum(buf, ipOff + 12, 8, PROTO_UDP + udpLength);
}
