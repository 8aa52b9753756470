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
 * Nothing is allocated: segments go into the caller's buffer at `outOffset + i × stride`, and
 * their lengths into `sizes`.
 *
 * @module
 */
import { checksumSum } from "./checksum.ts";

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

function fold(sum: number): number {
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
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
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  const tcpOff = off + ipLen;
  const tcpLen = (buf[tcpOff + 12]! >>> 4) << 2;
  const headers = ipLen + tcpLen;
  const payload = total - headers;
  const count = payload === 0 ? 1 : Math.ceil(payload / mss);
  const start = index * mss;
  const size = Math.min(mss, payload - start);
  const segTotal = headers + size;
  const o = outOff;
  out.set(buf.subarray(off, off + headers), o);
  out.set(buf.subarray(off + headers + start, off + headers + start + size), o + headers);
  // IPv4: length, identification, header checksum.
  out[o + 2] = segTotal >>> 8;
  out[o + 3] = segTotal;
  const segId = (((buf[off + 4]! << 8) | buf[off + 5]!) + index) & 0xffff;
  out[o + 4] = segId >>> 8;
  out[o + 5] = segId;
  out[o + 10] = 0;
  out[o + 11] = 0;
  const ipSum = ~checksumSum(out, o, ipLen) & 0xffff;
  out[o + 10] = ipSum >>> 8;
  out[o + 11] = ipSum;
  // TCP: sequence number, flags, checksum.
  const t = o + ipLen;
  const seq =
    ((buf[tcpOff + 4]! << 24) |
      (buf[tcpOff + 5]! << 16) |
      (buf[tcpOff + 6]! << 8) |
      buf[tcpOff + 7]!) >>>
    0;
  const segSeq = (seq + start) >>> 0;
  out[t + 4] = segSeq >>> 24;
  out[t + 5] = segSeq >>> 16;
  out[t + 6] = segSeq >>> 8;
  out[t + 7] = segSeq;
  let f = buf[tcpOff + 13]!;
  if (index > 0) f &= ~0x80; // CWR: first segment only
  if (index < count - 1) f &= ~0x09; // FIN, PSH: last segment only
  out[t + 13] = f;
  out[t + 16] = 0;
  out[t + 17] = 0;
  const sum = checksumSum(out, t, tcpLen + size, tcpPseudoHeaderSum(out, o, tcpLen + size));
  const c = ~fold(sum) & 0xffff;
  out[t + 16] = c >>> 8;
  out[t + 17] = c;
  return segTotal;
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
