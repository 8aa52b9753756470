/**
 * Fragmenting an IPv4 packet (RFC 791 §3.2, "Fragmentation and Reassembly"), for a tunnel
 * entry point that cuts the inner packet rather than the outer one (RFC 4459 §3.4, "inner
 * fragmentation"; `dstm tep --fragment inner`): each fragment then travels in a whole outer
 * packet and the final destination reassembles, so a tunnel end that decapsulates before IPv6
 * reassembly (the Linux kernel's seg6 End.DX4) still gets every fragment.
 *
 * Only packets without IPv4 options are cut here ({@link ipv4FragmentCount} returns 0
 * otherwise: RFC 791 copies some options into every fragment and not others); a packet that is
 * already a fragment is cut further, its offset and More Fragments flag carried on (RFC 791:
 * the last new fragment keeps the original MF). Nothing allocates.
 *
 * @module
 */
import {
  IPV4_DF,
  IPV4_HEADER_LENGTH,
  IPV4_MF,
  ipv4FlagsFragment,
  ipv4HeaderLength,
  writeIPv4HeaderChecksum,
} from "./ipv4.ts";

/** Payload bytes per fragment at `mtu` (bytes): a multiple of 8, RFC 791. */
function _chunk(mtu: number): number {
  return (mtu - IPV4_HEADER_LENGTH) & ~7;
}

/**
 * How many fragments of at most `mtu` bytes the IPv4 packet `pkt[off, off + total)` becomes,
 * or 0 when this module does not cut it: DF set, IPv4 options, an `mtu` below 28 bytes, a
 * packet that already fits (`total` ≤ `mtu`), or a fragment whose data would end past byte
 * 65,535 of its datagram (RFC 791: no offset can say where its pieces go).
 */
export function ipv4FragmentCount(
  pkt: Uint8Array,
  off: number,
  total: number,
  mtu: number,
): number {
  if (total <= mtu || mtu < IPV4_HEADER_LENGTH + 8) return 0;
  if (ipv4HeaderLength(pkt, off) !== IPV4_HEADER_LENGTH) return 0;
  const word = ipv4FlagsFragment(pkt, off);
  if ((word & IPV4_DF) !== 0) return 0;
  // A fragment whose data would end past 65,535 (a crafted "ping of death") has no valid
  // offsets to cut into: the 13-bit field would spill into the flags.
  if ((word & 0x1fff) * 8 + total - IPV4_HEADER_LENGTH > 0xffff) return 0;
  const chunk = _chunk(mtu);
  return Math.ceil((total - IPV4_HEADER_LENGTH) / chunk);
}

/**
 * Writes fragment `index` (from 0, below {@link ipv4FragmentCount}) of the IPv4 packet
 * `pkt[off, off + total)` cut to `mtu` bytes into `out` at `outOff`, and returns its length
 * (bytes). The header is the original's with its total length, fragment offset (the
 * original's plus this fragment's, in 8-byte units), MF (set but on the last, which keeps the
 * original's) and checksum rewritten (RFC 791 §3.2). `out` must hold `mtu` bytes at `outOff`
 * and may not overlap `pkt`.
 */
export function writeIPv4Fragment(
  pkt: Uint8Array,
  off: number,
  total: number,
  mtu: number,
  index: number,
  out: Uint8Array,
  outOff: number,
): number {
  const chunk = _chunk(mtu);
  const payload = total - IPV4_HEADER_LENGTH;
  const start = index * chunk;
  const bytes = Math.min(chunk, payload - start);
  const last = start + bytes >= payload;
  const word = ipv4FlagsFragment(pkt, off);
  const offset = (word & 0x1fff) + start / 8;
  const mf = last ? word & IPV4_MF : IPV4_MF;
  out.set(pkt.subarray(off, off + IPV4_HEADER_LENGTH), outOff);
  const length = IPV4_HEADER_LENGTH + bytes;
  out[outOff + 2] = length >>> 8;
  out[outOff + 3] = length & 0xff;
  const flags = mf | offset;
  out[outOff + 6] = flags >>> 8;
  out[outOff + 7] = flags & 0xff;
  out.set(
    pkt.subarray(off + IPV4_HEADER_LENGTH + start, off + IPV4_HEADER_LENGTH + start + bytes),
    outOff + IPV4_HEADER_LENGTH,
  );
  writeIPv4HeaderChecksum(out, outOff);
  return length;
}
