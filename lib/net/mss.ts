/**
 * TCP MSS clamping (RFC 4459 §3.2; what DS-Lite and lw4o6 deployments do): a SYN's Maximum
 * Segment Size option (RFC 9293 §3.7.1, kind 2, length 4) is lowered to what fits the
 * tunnel, so neither end sends segments the tunnel would have to fragment or drop, even
 * when ICMP "fragmentation needed" is filtered on the way (RFC 2923 §2.1, PMTUD black holes).
 *
 * For a tunnel MTU M (the largest IPv4 packet that fits), the MSS is M − 40: 20 bytes of IPv4
 * and 20 of TCP header (RFC 9293 §3.7.1 counts neither options).
 *
 * Nothing here allocates.
 *
 * @module
 */

/** IPv4 (20) and TCP (20) headers without options: MSS = MTU − 40. */
export const TCP_IPV4_OVERHEAD = 40;

const TCP = 6;
const SYN = 0x02;
const MSS_KIND = 2;

/**
 * If the IPv4 packet `buf[off .. off+len)` is a TCP SYN (or SYN-ACK) whose MSS option exceeds
 * `maxMss`, lowers it to `maxMss` and fixes the TCP checksum incrementally (RFC 1624). Returns
 * the MSS it replaced, or 0 when nothing changed (not TCP, not a SYN, a fragment other than
 * the first, no MSS option, already small enough, options malformed or cut short). The IPv4
 * header must have been validated and the TCP checksum be complete (not a CHECKSUM_PARTIAL
 * seed).
 *
 * @example clampTcpMss(pkt, 0, len, 1320) // 1420 when the SYN carried MSS 1420
 */
export function clampTcpMss(buf: Uint8Array, off: number, len: number, maxMss: number): number {
  if (buf[off + 9] !== TCP) return 0;
  if (((buf[off + 6]! & 0x1f) | buf[off + 7]!) !== 0) return 0; // not the first fragment
  const tcp = off + ((buf[off]! & 0x0f) << 2);
  if (tcp + 20 > off + len) return 0;
  if ((buf[tcp + 13]! & SYN) === 0) return 0;
  const end = tcp + ((buf[tcp + 12]! >>> 4) << 2);
  if (end > off + len) return 0;
  let at = tcp + 20;
  while (at < end) {
    const kind = buf[at]!;
    if (kind === 0) return 0; // end of option list
    if (kind === 1) {
      at++; // no-operation
      continue;
    }
    if (at + 1 >= end) return 0;
    const optionLength = buf[at + 1]!;
    if (optionLength < 2 || at + optionLength > end) return 0;
    if (kind === MSS_KIND) {
      if (optionLength !== 4) return 0;
      const mss = (buf[at + 2]! << 8) | buf[at + 3]!;
      if (mss <= maxMss) return 0;
      const clamped = maxMss & 0xffff;
      buf[at + 2] = clamped >>> 8;
      buf[at + 3] = clamped & 0xff;
      // The MSS value is 16-bit aligned within the TCP header only when `at` is even
      // relative to it; otherwise the changed bytes straddle two checksum words.
      _updateChecksum(buf, tcp, at + 2, mss, clamped);
      return mss;
    }
    at += optionLength;
  }
  return 0;
}

/** RFC 1624 eqn. 3 for a 16-bit value at `at` that may sit at an odd offset from `tcp`. */
function _updateChecksum(
  buf: Uint8Array,
  tcp: number,
  at: number,
  oldValue: number,
  newValue: number,
): void {
  let oldWord = oldValue;
  let newWord = newValue;
  if (((at - tcp) & 1) !== 0) {
    // Odd alignment: the sum of byte-swapped words is the byte-swapped sum (RFC 1071 §2(B)).
    oldWord = ((oldValue & 0xff) << 8) | (oldValue >>> 8);
    newWord = ((newValue & 0xff) << 8) | (newValue >>> 8);
  }
  const c = tcp + 16;
  let sum = (~((buf[c]! << 8) | buf[c + 1]!) & 0xffff) + (~oldWord & 0xffff) + newWord;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const checksum = ~sum & 0xffff;
  buf[c] = checksum >>> 8;
  buf[c + 1] = checksum & 0xff;
}
