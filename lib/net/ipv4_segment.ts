/**
 * The IPv4 half of cutting a super-packet into segments (software TSO/GSO and UDP GSO, as the
 * kernel's `inet_gso_segment` does it), shared by ./tcp_segment.ts and ./udp_segment.ts:
 * copy the headers and this segment's slice of the payload, then give the IPv4 header
 * (RFC 791) its own total length, identification `id + index` (mod 2^16) and a fresh header
 * checksum. The caller then fixes its L4 header.
 *
 * Allocation-free: the caller gives the output buffer.
 *
 * @module
 */
import { checksumSum } from "./checksum.ts";

/**
 * Writes segment `index` of the IPv4 packet at `pkt[off …]` to `out[outOff …]`: the first
 * `headers` bytes (IPv4 header of `ihl` bytes + L4 header), then `data` payload bytes taken
 * `start` bytes into the payload. Sets total length, identification and header checksum;
 * returns the segment's length (bytes). `out` may not overlap `pkt`.
 */
export function writeIPv4Segment(
  pkt: Uint8Array,
  off: number,
  ihl: number,
  headers: number,
  start: number,
  data: number,
  index: number,
  out: Uint8Array,
  outOff: number,
): number {
  const length = headers + data;
  out.set(pkt.subarray(off, off + headers), outOff);
  out.set(pkt.subarray(off + headers + start, off + headers + start + data), outOff + headers);
  out[outOff + 2] = length >>> 8;
  out[outOff + 3] = length & 0xff;
  const id = (((pkt[off + 4]! << 8) | pkt[off + 5]!) + index) & 0xffff;
  out[outOff + 4] = id >>> 8;
  out[outOff + 5] = id & 0xff;
  out[outOff + 10] = 0;
  out[outOff + 11] = 0;
  const ipCheck = ~checksumSum(out, outOff, ihl) & 0xffff;
  out[outOff + 10] = ipCheck >>> 8;
  out[outOff + 11] = ipCheck & 0xff;
  return length;
}
