/**
 * ECN and DSCP across an IP-in-IP tunnel: RFC 6040 ("Tunnelling of Explicit Congestion
 * Notification") in normal mode, and the DSCP choices of RFC 2983.
 *
 * The ECN field is the low two bits of the IPv4 TOS byte and of the IPv6 traffic class
 * (RFC 3168 §5): 00 Not-ECT, 01 ECT(1), 10 ECT(0), 11 CE. The DSCP is the high six bits.
 *
 * - Encapsulation (RFC 6040 §4.1, normal mode): the outer ECN is a copy of the inner one, CE
 *   included, so a congested IPv6 router can mark the outer header and an ECN-capable flow
 *   gets the signal. The outer DSCP is a copy of the inner one by default (RFC 2983 §3, the
 *   "uniform" choice at ingress), or a fixed value the operator chooses.
 * - Decapsulation (RFC 6040 §4.2, Figure 4): the inner ECN becomes the combination in
 *   {@link ecnDecapsulate}; outer CE over an inner Not-ECT packet must be dropped (the
 *   endpoints cannot understand the mark, and forwarding it would hide the congestion).
 *   The inner DSCP is left as it is (RFC 2983 §3.1, the "pipe" choice at egress).
 *
 * Nothing here allocates.
 *
 * @module
 */

/** ECN codepoints (RFC 3168 §5). */
export const Ecn = { NOT_ECT: 0, ECT1: 1, ECT0: 2, CE: 3 } as const;

/** {@link ecnDecapsulate}'s answer when the packet must be dropped. */
export const ECN_DROP = -1;

// RFC 6040 Figure 4, indexed by inner * 4 + outer (codepoint values).
// Rows: inner Not-ECT, ECT(1), ECT(0), CE; columns: outer Not-ECT, ECT(1), ECT(0), CE.
const _DECAP = Int8Array.of(
  // inner Not-ECT: Not-ECT, Not-ECT(!!!), Not-ECT(!!!), drop(!!!)
  0,
  0,
  0,
  ECN_DROP,
  // inner ECT(1): ECT(1), ECT(1), ECT(1)(!), CE
  1,
  1,
  1,
  3,
  // inner ECT(0): ECT(0), ECT(1), ECT(0), CE
  2,
  1,
  2,
  3,
  // inner CE: CE, CE(!!!), CE(!!!), CE
  3,
  3,
  3,
  3,
);

/**
 * RFC 6040 §4.2: the ECN codepoint the decapsulated packet leaves with, given the arriving
 * inner and outer codepoints (0–3), or {@link ECN_DROP}.
 *
 * @example ecnDecapsulate(Ecn.ECT0, Ecn.CE) // Ecn.CE
 * @example ecnDecapsulate(Ecn.NOT_ECT, Ecn.CE) // ECN_DROP
 */
export function ecnDecapsulate(inner: number, outer: number): number {
  return _DECAP[((inner & 3) << 2) | (outer & 3)]!;
}

/**
 * RFC 6040 §4.1: the outer ECN codepoint for an inner one. Normal mode copies it (CE too);
 * compatibility mode (`normal` false) sends Not-ECT, for a decapsulator that predates RFC 6040.
 *
 * @example ecnEncapsulate(Ecn.CE, true) // Ecn.CE
 */
export function ecnEncapsulate(inner: number, normal: boolean): number {
  return normal ? inner & 3 : Ecn.NOT_ECT;
}

/** "Copy the inner DSCP" as a {@link outerTrafficClass} setting. */
export const DSCP_COPY = -1;

/**
 * The outer IPv6 traffic class for an inner IPv4 TOS byte: DSCP copied (`dscp` =
 * {@link DSCP_COPY}, RFC 2983 uniform model) or fixed (`dscp` 0–63, pipe model), ECN per
 * {@link ecnEncapsulate}.
 *
 * @example outerTrafficClass(0xb8 | Ecn.ECT0, DSCP_COPY, true) // 0xba: EF, ECT(0)
 */
export function outerTrafficClass(innerTos: number, dscp: number, normal: boolean): number {
  const d = dscp < 0 ? innerTos & 0xfc : (dscp & 0x3f) << 2;
  return d | ecnEncapsulate(innerTos, normal);
}

/**
 * Rewrites the ECN bits of the IPv4 header at `buf[off]` to `ecn`, updating the header
 * checksum incrementally (RFC 1624). The header must have been validated.
 */
export function setIPv4Ecn(buf: Uint8Array, off: number, ecn: number): void {
  const oldWord = (buf[off]! << 8) | buf[off + 1]!;
  const tos = (buf[off + 1]! & 0xfc) | (ecn & 3);
  buf[off + 1] = tos;
  const newWord = (buf[off]! << 8) | tos;
  let sum = (~((buf[off + 10]! << 8) | buf[off + 11]!) & 0xffff) + (~oldWord & 0xffff) + newWord;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const checksum = ~sum & 0xffff;
  buf[off + 10] = checksum >>> 8;
  buf[off + 11] = checksum & 0xff;
}
