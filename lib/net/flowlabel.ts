/**
 * The IPv6 flow label of a tunnel packet, from the inner IPv4 packet's flow (RFC 6438): every
 * packet of one inner flow gets the same label and different flows get (very likely)
 * different ones, so routers that balance by (source, destination, flow label) (RFC 6437 §3)
 * spread the tunnel's flows instead of pinning all of a host's traffic to one path.
 *
 * The flow is the 5-tuple (source, destination, protocol, source port, destination port) for
 * TCP, UDP, UDP-Lite, SCTP and DCCP, (source, destination, protocol, identifier) for an ICMP
 * echo or echo reply, the 3-tuple otherwise. Fragments (first or not) use the
 * 3-tuple, so all fragments of a datagram share the label (RFC 6438 §3). The label is a hash,
 * never 0 (0 means "no label", RFC 6437 §2).
 *
 * Nothing here allocates.
 *
 * @module
 */

/**
 * The 20-bit flow label (1–0xFFFFF) of the IPv4 packet at `buf[off .. off+len)`; the header
 * must have been validated.
 *
 * @example flowLabelOf(pkt, 0, len) // e.g. 0x5a3c1, the same for each packet of the flow
 */
export function flowLabelOf(buf: Uint8Array, off: number, len: number): number {
  const protocol = buf[off + 9]!;
  let h = _mix(0x9e3779b9 ^ protocol, _word(buf, off + 12));
  h = _mix(h, _word(buf, off + 16));
  const fragment = ((buf[off + 6]! & 0x3f) | buf[off + 7]!) !== 0; // MF or an offset
  if (
    !fragment &&
    (protocol === 6 || protocol === 17 || protocol === 136 || protocol === 132 || protocol === 33)
  ) {
    const l4 = off + ((buf[off]! & 0x0f) << 2);
    if (l4 + 4 <= off + len) h = _mix(h, _word(buf, l4));
  } else if (!fragment && protocol === 1) {
    const l4 = off + ((buf[off]! & 0x0f) << 2);
    const type = buf[l4]!;
    if ((type === 0 || type === 8) && l4 + 6 <= off + len)
      h = _mix(h, (buf[l4 + 4]! << 8) | buf[l4 + 5]!);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  const label = (h ^ (h >>> 20)) & 0xfffff;
  return label === 0 ? 1 : label;
}

function _word(buf: Uint8Array, at: number): number {
  return (buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!;
}

/** One round of a multiply-rotate hash (MurmurHash3's mixing step). */
function _mix(h: number, k: number): number {
  let x = Math.imul(k, 0xcc9e2d51);
  x = (x << 15) | (x >>> 17);
  x = Math.imul(x, 0x1b873593);
  const y = h ^ x;
  return (Math.imul((y << 13) | (y >>> 19), 5) + 0xe6546b64) | 0;
}
