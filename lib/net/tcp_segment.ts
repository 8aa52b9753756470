/**
 * Cutting an oversized TCP/IPv4 packet into segments that fit an MTU: what the NIC does for a
 * sender with TCP segmentation offload (TSO/GSO).
 *
 * A Linux host with offloads on hands a veth (every container's link) TCP packets of up to
 * 64 KB that the hardware was to segment. When the host's own kernel 4over6-encapsulates them
 * (seg6 `encap.red`), they cross the veth whole, the TEP's raw socket receives one big inner
 * IPv4 packet, and the IPv4 network cannot forward it (DF set: the kernel answers "fragmentation
 * needed", the host's TCP stalls). The TEP cuts such a packet into segments no larger than the
 * tunnel MTU, as a NIC would (RFC 9293 §3.7.1: any segment size up to the MSS is valid; the
 * receiver cannot tell): each segment gets the IPv4 and TCP headers (options included), the
 * sequence number advanced by the data before it, IPv4 identification + index, FIN and PSH
 * only on the last segment, CWR only on the first, and fresh IPv4 and TCP checksums.
 *
 * Allocation-free: the caller gives the output buffer.
 *
 * @module
 */
import { checksumSum } from "./checksum.ts";
import { writeIPv4Segment } from "./ipv4_segment.ts";

const PROTO_TCP = 6;
const FIN = 0x01;
const PSH = 0x08;
const CWR = 0x80;

/**
 * How many segments of at most `mtu` bytes the IPv4 packet `pkt[off .. off+total)` must be cut
 * into: 0 when it fits already or cannot be cut (not TCP, a fragment, headers too long for
 * `mtu`). The IPv4 header must have been validated.
 *
 * @example const n = tcpSegmentCount(buf, 0, len, 1460); // 0: send as is
 */
export function tcpSegmentCount(pkt: Uint8Array, off: number, total: number, mtu: number): number {
  if (total <= mtu || pkt[off + 9] !== PROTO_TCP) return 0;
  if ((((pkt[off + 6]! << 8) | pkt[off + 7]!) & 0x3fff) !== 0) return 0;
  const ihl = (pkt[off]! & 0x0f) * 4;
  if (total < ihl + 20) return 0;
  const headers = ihl + (pkt[off + ihl + 12]! >>> 4) * 4;
  const room = mtu - headers;
  if (room < 8 || headers > total) return 0;
  return Math.ceil((total - headers) / room);
}

/**
 * Whether the TCP checksum of the IPv4 packet `pkt[off .. off+total)` verifies (RFC 9293 §3.1:
 * the sum over the pseudo-header and the segment, field included, is all ones). The IPv4
 * header must have been validated and the packet must be TCP, not a fragment.
 *
 * @example if (!tcpChecksumValid(buf, 0, len)) return 0; // corrupt: not to be cut afresh
 */
export function tcpChecksumValid(pkt: Uint8Array, off: number, total: number): boolean {
  const ihl = (pkt[off]! & 0x0f) * 4;
  const l4Length = total - ihl;
  const pseudo = checksumSum(pkt, off + 12, 8, PROTO_TCP + l4Length);
  return checksumSum(pkt, off + ihl, l4Length, pseudo) === 0xffff;
}

/**
 * Writes segment `index` (0-based, of {@link tcpSegmentCount}) of the TCP/IPv4 packet
 * `pkt[off .. off+total)` cut for `mtu` into `out` at `outOff`; returns its length (bytes).
 * The TCP checksum is computed afresh, so the input's may be unfinished (CHECKSUM_PARTIAL).
 *
 * @example for (let i = 0; i < n; i++) tun.write(seg, 0, writeTcpSegment(buf, 0, len, 1460, i, seg, 0));
 */
export function writeTcpSegment(
  pkt: Uint8Array,
  off: number,
  total: number,
  mtu: number,
  index: number,
  out: Uint8Array,
  outOff: number,
): number {
  const ihl = (pkt[off]! & 0x0f) * 4;
  const tcp = off + ihl;
  const headers = ihl + (pkt[tcp + 12]! >>> 4) * 4;
  const room = mtu - headers;
  const dataTotal = total - headers;
  const count = Math.ceil(dataTotal / room);
  const start = index * room;
  const data = Math.min(room, dataTotal - start);
  // IPv4: total length, identification + index, header checksum.
  const length = writeIPv4Segment(pkt, off, ihl, headers, start, data, index, out, outOff);
  // TCP: sequence number + data before this segment, flags, checksum.
  const t = outOff + ihl;
  const seq =
    (((pkt[tcp + 4]! << 24) | (pkt[tcp + 5]! << 16) | (pkt[tcp + 6]! << 8) | pkt[tcp + 7]!) +
      start) >>>
    0;
  out[t + 4] = seq >>> 24;
  out[t + 5] = (seq >>> 16) & 0xff;
  out[t + 6] = (seq >>> 8) & 0xff;
  out[t + 7] = seq & 0xff;
  let flags = pkt[tcp + 13]!;
  if (index !== count - 1) flags &= ~(FIN | PSH);
  if (index !== 0) flags &= ~CWR;
  out[t + 13] = flags;
  out[t + 16] = 0;
  out[t + 17] = 0;
  const l4Length = length - ihl;
  const pseudo = checksumSum(out, outOff + 12, 8, PROTO_TCP + l4Length);
  const check = ~checksumSum(out, t, l4Length, pseudo) & 0xffff;
  out[t + 16] = check >>> 8;
  out[t + 17] = check & 0xff;
  return length;
}
