/**
 * TCP segmentation offload done in software (GSO): cuts an IPv4 TCP "super-packet" — what a
 * TUN device with IFF_VNET_HDR and TSO4 hands over, up to 64 KiB with a `gso_size` — into
 * segments of at most `mss` payload bytes, as the kernel's `tcp_gso_segment` /
 * `inet_gso_segment` would put them on the wire:
 *
 * - IPv4 (RFC 791): every segment gets the super-packet's header (options included) with its
 *   own total length, identification `id + i` (mod 2^16; the kernel's default, not the
 *   FIXEDID variant) and a fresh header checksum.
 * - TCP (RFC 9293): sequence number `seq + i × mss`; CWR only on the first segment (RFC 3168
 *   §6.1.2: set once per window reduction), FIN and PSH only on the last; every other field
 *   and option (timestamps included) is copied. The checksum is computed in full over the
 *   pseudo-header and the segment, whatever the super-packet's checksum field held (a
 *   CHECKSUM_PARTIAL super-packet carries only the pseudo-header sum there).
 *
 * This module speaks in `gso_size` (payload bytes per segment, what a virtio_net_hdr carries)
 * and validates the super-packet; the cutting is lib/net/tcp_segment.ts's (by MTU), which the
 * TEP also uses for a kernel peer's TSO packets. Nothing is allocated: segments go into the
 * caller's buffer at `outOffset + i × stride`, and their lengths into `sizes`.
 *
 * @module
 */
import { writeTcpSegment } from "./tcp_segment.ts";

/** Why {@link tcpSegmentIPv4} refused a super-packet (negative return values). */
export const GsoError = {
  /** Not IPv4, header lengths inconsistent, or shorter than its headers. */
  MALFORMED: -1,
  /** Not TCP, or a fragment (a super-packet is never fragmented). */
  NOT_TCP: -2,
  /** `mss` below 1, or the segments would not fit into `out` / `sizes`. */
  NO_ROOM: -3,
} as const;

/**
 * Sum of the TCP/IPv4 pseudo-header (RFC 9293 §3.1) for a TCP length, not folded past 17 bits.
 * `ipOff` is the IPv4 header's offset.
 */
export function tcpPseudoHeaderSum(buf: Uint8Array, ipOff: number, tcpLength: number): number {
  let sum = 6 + tcpLength;
  for (let i = ipOff + 12; i < ipOff + 20; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  return sum;
}

/**
 * How many segments of at most `mss` payload bytes the IPv4 TCP super-packet
 * `buf[off, off+len)` gives (1 when its payload fits, or has none), or a negative
 * {@link GsoError} when it cannot be segmented.
 */
export function tcpSegmentCount(buf: Uint8Array, off: number, len: number, mss: number): number {
  if (len < 20 || buf[off]! >>> 4 !== 4) return GsoError.MALFORMED;
  const ipLen = (buf[off]! & 0x0f) << 2;
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (ipLen < 20 || total > len || total < ipLen + 20) return GsoError.MALFORMED;
  if (buf[off + 9] !== 6) return GsoError.NOT_TCP;
  if (((buf[off + 6]! << 8) | buf[off + 7]!) & 0x3fff) return GsoError.NOT_TCP;
  const tcpLen = (buf[off + ipLen + 12]! >>> 4) << 2;
  if (tcpLen < 20 || ipLen + tcpLen > total) return GsoError.MALFORMED;
  if (mss < 1) return GsoError.NO_ROOM;
  const payload = total - ipLen - tcpLen;
  return payload === 0 ? 1 : Math.ceil(payload / mss);
}

/**
 * Writes segment `index` (0-based, below {@link tcpSegmentCount}, which must have accepted the
 * packet) of the super-packet `buf[off, …)` at `out[outOff …]`; returns its length. `out` may
 * not overlap `buf`, and needs room for the headers plus `mss` bytes.
 */
export function tcpSegmentAt(
  buf: Uint8Array,
  off: number,
  mss: number,
  index: number,
  out: Uint8Array,
  outOff: number,
): number {
  const ipLen = (buf[off]! & 0x0f) << 2;
  const headers = ipLen + ((buf[off + ipLen + 12]! >>> 4) << 2);
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (total === headers) {
    // No payload: one segment, as it is (at most 120 bytes of headers: a loop, no view object).
    for (let i = 0; i < total; i++) out[outOff + i] = buf[off + i]!;
    return total;
  }
  // The cut itself is the NIC's, shared with the TEP's TSO path (tcp_segment.ts), by MTU.
  return writeTcpSegment(buf, off, total, headers + mss, index, out, outOff);
}

/**
 * Segments the IPv4 TCP super-packet `buf[off, off+len)` (its IPv4 total length counts, bytes
 * after it are ignored) into segments of at most `mss` TCP payload bytes. Segment `i` is
 * written at `out[outOffset + i × stride …]` and its length stored in `sizes[i]`.
 *
 * Returns the number of segments (1 when the payload already fits: the packet is copied with
 * its checksums recomputed), or a negative {@link GsoError}. `out` may not overlap `buf`.
 *
 * @example const n = tcpSegmentIPv4(superPacket, 0, len, 1420, arena, 0, 1500, sizes)
 */
export function tcpSegmentIPv4(
  buf: Uint8Array,
  off: number,
  len: number,
  mss: number,
  out: Uint8Array,
  outOffset: number,
  stride: number,
  sizes: Int32Array,
): number {
  const count = tcpSegmentCount(buf, off, len, mss);
  if (count < 0) return count;
  const ipLen = (buf[off]! & 0x0f) << 2;
  const headers = ipLen + ((buf[off + ipLen + 12]! >>> 4) << 2);
  const payload = ((buf[off + 2]! << 8) | buf[off + 3]!) - headers;
  if (count > sizes.length || headers + Math.min(mss, payload) > stride) return GsoError.NO_ROOM;
  if (outOffset + (count - 1) * stride + headers + (payload - (count - 1) * mss) > out.length)
    return GsoError.NO_ROOM;
  for (let i = 0; i < count; i++)
    sizes[i] = tcpSegmentAt(buf, off, mss, i, out, outOffset + i * stride);
  return count;
}
