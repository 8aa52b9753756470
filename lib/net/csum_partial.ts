/**
 * Completing the TCP/UDP checksum of a packet whose sender left it to the hardware.
 *
 * A Linux sender with checksum offload (every veth, so every container) hands its driver
 * packets in state CHECKSUM_PARTIAL: the L4 checksum field holds only the folded, *not*
 * complemented, one's complement sum of the pseudo-header (RFC 768, RFC 9293 §3.1), and the
 * NIC is to add the sum of the L4 header and data and store its complement
 * (`__tcp_v4_send_check`, `udp4_hwcsum`: `check = ~csum_tcpudp_magic(src, dst, len, proto, 0)`).
 * When such a packet is 4over6-encapsulated by the sender's kernel (seg6 `encap.red`) and
 * crosses a veth, nothing ever finishes it: the receiving kernel trusts CHECKSUM_PARTIAL, and
 * a raw IPv6 socket hands the inner IPv4 packet over unfinished. A TEP that forwards it
 * as is sends the IPv4 network a packet with a wrong checksum ("TCP CHECKSUM INCORRECT").
 *
 * How we know a packet is unfinished without asking the kernel: its checksum field equals the
 * pseudo-header sum, the mark the offloading stack leaves. Completing it is what the NIC would
 * have done (`skb_checksum_help`: sum from the L4 header to the end, field included, fold,
 * complement). The rule is safe on packets that were finished after all:
 * - a finished, correct packet whose checksum happens to equal the pseudo-header sum (one
 *   payload in 65,536) is recomputed to the same value: nothing changes;
 * - a finished packet with any other checksum (correct or corrupt) is not touched;
 * - only a packet corrupted in flight *and* whose correct checksum happened to equal the
 *   pseudo-header sum would have its corruption hidden (links check their own CRC as well).
 * UDP checksum 0 ("none", RFC 768) never matches (a folded non-zero sum is never 0); a
 * computed 0 is sent as 0xffff (RFC 768). Fragments are left alone: a sender completes the
 * checksum before fragmenting.
 *
 * Why not ask the kernel: a raw IPv6 socket reports nothing of the skb's checksum state;
 * AF_PACKET with PACKET_AUXDATA does (TP_STATUS_CSUMNOTREADY) but sees the outer packets
 * before reassembly and every IPv6 packet of the host, and the raw socket must stay open
 * besides it (else the kernel answers next header 4 with ICMPv6 parameter problem), so every
 * packet would arrive twice. The mark above needs no second socket, works for the TEP and the
 * client alike, and costs a pseudo-header sum (ten additions) per packet.
 *
 * @module
 */
import { checksumSum } from "./checksum.ts";

const PROTO_TCP = 6;
const PROTO_UDP = 17;
/** Offset of the checksum field in the TCP and UDP headers. */
const TCP_CHECK = 16;
const UDP_CHECK = 6;

/**
 * Completes the TCP or UDP checksum of the IPv4 packet `pkt[off .. off+total)` if it is still
 * in the sender's CHECKSUM_PARTIAL state (see the module text). The IPv4 header must have been
 * validated (length, IHL). Returns true when the checksum field was changed. Allocates nothing.
 *
 * @example if (completePartialChecksum(buf, 0, ipv4TotalLength(buf, 0))) completed++;
 */
export function completePartialChecksum(pkt: Uint8Array, off: number, total: number): boolean {
  const protocol = pkt[off + 9]!;
  if (protocol !== PROTO_TCP && protocol !== PROTO_UDP) return false;
  // MF set or a fragment offset: not a whole L4 segment.
  if ((((pkt[off + 6]! << 8) | pkt[off + 7]!) & 0x3fff) !== 0) return false;
  const ihl = (pkt[off]! & 0x0f) * 4;
  const l4 = off + ihl;
  const l4Length = total - ihl;
  const field = protocol === PROTO_TCP ? l4 + TCP_CHECK : l4 + UDP_CHECK;
  if (l4Length < (protocol === PROTO_TCP ? 20 : 8)) return false;
  // Pseudo-header: source, destination, zero + protocol, L4 length (RFC 768, RFC 9293 §3.1).
  let sum =
    ((pkt[off + 12]! << 8) | pkt[off + 13]!) +
    ((pkt[off + 14]! << 8) | pkt[off + 15]!) +
    ((pkt[off + 16]! << 8) | pkt[off + 17]!) +
    ((pkt[off + 18]! << 8) | pkt[off + 19]!) +
    protocol +
    l4Length;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const current = (pkt[field]! << 8) | pkt[field + 1]!;
  if (current !== sum) return false;
  // skb_checksum_help: the field already holds the pseudo-header sum, so sum everything.
  let check = ~checksumSum(pkt, l4, l4Length) & 0xffff;
  if (check === 0 && protocol === PROTO_UDP) check = 0xffff;
  if (check === current) return false;
  pkt[field] = check >>> 8;
  pkt[field + 1] = check & 0xff;
  return true;
}

/**
 * True when the TCP/IPv4 packet `pkt[off .. off+total)` carries the CHECKSUM_PARTIAL mark (its
 * checksum field holds the pseudo-header sum) and is not a fragment: a caller that can hand the
 * packet to a device taking partial checksums (a TUN with IFF_VNET_HDR: NEEDS_CSUM) may leave
 * it so instead of {@link completePartialChecksum}. The IPv4 header must have been validated.
 */
export function hasPartialTcpChecksum(pkt: Uint8Array, off: number, total: number): boolean {
  return hasPartialChecksum(pkt, off, total, PROTO_TCP, 20, TCP_CHECK);
}

/**
 * {@link hasPartialTcpChecksum} for a UDP/IPv4 datagram (a UDP header at least; checksum 0,
 * "none", never matches: a folded non-zero sum is never 0).
 */
export function hasPartialUdpChecksum(pkt: Uint8Array, off: number, total: number): boolean {
  return hasPartialChecksum(pkt, off, total, PROTO_UDP, 8, UDP_CHECK);
}

function hasPartialChecksum(
  pkt: Uint8Array,
  off: number,
  total: number,
  protocol: number,
  minL4: number,
  check: number,
): boolean {
  if (pkt[off + 9] !== protocol) return false;
  if ((((pkt[off + 6]! << 8) | pkt[off + 7]!) & 0x3fff) !== 0) return false;
  const ihl = (pkt[off]! & 0x0f) * 4;
  const l4Length = total - ihl;
  if (l4Length < minL4) return false;
  let sum =
    ((pkt[off + 12]! << 8) | pkt[off + 13]!) +
    ((pkt[off + 14]! << 8) | pkt[off + 15]!) +
    ((pkt[off + 16]! << 8) | pkt[off + 17]!) +
    ((pkt[off + 18]! << 8) | pkt[off + 19]!) +
    protocol +
    l4Length;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const field = off + ihl + check;
  return ((pkt[field]! << 8) | pkt[field + 1]!) === sum;
}
