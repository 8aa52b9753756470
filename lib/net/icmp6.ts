/**
 * The ICMPv6 error the TEP sends back into the tunnel: Destination Unreachable, code 5
 * "source address failed ingress/egress policy" (RFC 4443 §3.1), about a 4over6 packet whose
 * inner source is bound to nobody, to another host, or not in the sender's port set. RFC 7597
 * §8.1–8.2 has a MAP-E border relay do the same ("SHOULD send an ICMPv6 Destination
 * Unreachable, Source address failed ingress/egress policy (Type 1, Code 5)"): it is what tells
 * a DSTM client that its binding is gone while it still believes it holds the lease.
 *
 * The message is built without the IPv6 header (a raw ICMPv6 socket adds it, and the kernel
 * computes the ICMPv6 checksum of such a socket itself: RFC 3542 §3.1), and quotes "as much of
 * the invoking packet as possible without the ICMPv6 packet exceeding the minimum IPv6 MTU"
 * (RFC 4443 §3.1): the outer IPv6 header, rebuilt from what the receiving socket reported (the
 * kernel strips it), then the inner IPv4 packet. The client's kernel matches the quoted header
 * (source, destination, next header 4) to its tunnel socket (net/ipv6/raw.c raw6_icmp_error),
 * so the quoted destination must be the address the client sent to: the TEP's.
 *
 * Nothing here allocates.
 *
 * @module
 */

/** ICMPv6 Destination Unreachable (RFC 4443 §3.1). */
export const ICMP6_DEST_UNREACHABLE = 1;
/** Destination Unreachable code 5: source address failed ingress/egress policy (RFC 4443 §3.1). */
export const ICMP6_SOURCE_POLICY = 5;
/** IPv6 minimum MTU (RFC 8200 §5); an ICMPv6 error must fit in it with its IPv6 header. */
const MIN_MTU = 1280;
/** Room for the ICMPv6 message itself: 1280 − 40 bytes of IPv6 header. */
export const ICMP6_ERROR_MAX_LENGTH = MIN_MTU - 40;
const OUTER_NEXT_HEADER_IPIP = 4;
/** Hop limit written into the rebuilt quoted header: the received one is not reported. */
const QUOTED_HOP_LIMIT = 64;

/**
 * True when an ICMPv6 error may be sent to `src6[off, +16)` (RFC 4443 §2.4 (e)): not the
 * unspecified address, not multicast, not loopback.
 */
export function icmp6ErrorAllowed(src6: Uint8Array, off: number): boolean {
  if (src6[off] === 0xff) return false;
  let zero = true;
  for (let i = 0; i < 15; i++) {
    if (src6[off + i] !== 0) {
      zero = false;
      break;
    }
  }
  const last = src6[off + 15]!;
  return !(zero && (last === 0 || last === 1));
}

/**
 * Writes into `out[outOff, …)` the ICMPv6 message (type 1, code 5, checksum 0 for the kernel
 * to fill) about the 4over6 packet from `src6[src6Off, +16)` to `dst6[dst6Off, +16)` with
 * outer traffic class `trafficClass` and inner IPv4 packet `inner[innerOff, +innerLen)`.
 * Returns the bytes written (8 + 40 + the quoted part of the inner packet, at most
 * {@link ICMP6_ERROR_MAX_LENGTH}), or 0 when no error may be sent to that source
 * ({@link icmp6ErrorAllowed}). `out` needs ICMP6_ERROR_MAX_LENGTH bytes from `outOff`.
 *
 * @example const n = buildSourcePolicyFailed(reply6, 0, from6, 0, tep6, 0, 0, pkt, 0, len);
 */
export function buildSourcePolicyFailed(
  out: Uint8Array,
  outOff: number,
  src6: Uint8Array,
  src6Off: number,
  dst6: Uint8Array,
  dst6Off: number,
  trafficClass: number,
  inner: Uint8Array,
  innerOff: number,
  innerLen: number,
): number {
  if (!icmp6ErrorAllowed(src6, src6Off)) return 0;
  const quote = Math.min(innerLen, ICMP6_ERROR_MAX_LENGTH - 48);
  out[outOff] = ICMP6_DEST_UNREACHABLE;
  out[outOff + 1] = ICMP6_SOURCE_POLICY;
  out[outOff + 2] = 0; // checksum: the kernel's (raw ICMPv6 socket)
  out[outOff + 3] = 0;
  out[outOff + 4] = 0; // unused (RFC 4443 §3.1)
  out[outOff + 5] = 0;
  out[outOff + 6] = 0;
  out[outOff + 7] = 0;
  const h = outOff + 8;
  // The invoking packet's IPv6 header: version 6, traffic class, flow label 0 (not reported),
  // payload length = the inner packet's length as received, next header 4.
  out[h] = 0x60 | (trafficClass >>> 4);
  out[h + 1] = (trafficClass & 0x0f) << 4;
  out[h + 2] = 0;
  out[h + 3] = 0;
  out[h + 4] = (innerLen >>> 8) & 0xff;
  out[h + 5] = innerLen & 0xff;
  out[h + 6] = OUTER_NEXT_HEADER_IPIP;
  out[h + 7] = QUOTED_HOP_LIMIT;
  for (let i = 0; i < 16; i++) {
    out[h + 8 + i] = src6[src6Off + i]!;
    out[h + 24 + i] = dst6[dst6Off + i]!;
  }
  for (let i = 0; i < quote; i++) out[h + 40 + i] = inner[innerOff + i]!;
  return 48 + quote;
}
