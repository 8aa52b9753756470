/**
 * What a per-packet step decided (pipeline.ts, pipeline_client.ts): a small integer, so a
 * step allocates nothing to answer.
 *
 * @module
 */
/** What a step decided. */
export const Verdict = {
  /** Send the packet on. */
  FORWARD: 0,
  /** Send it on; it exceeds the tunnel MTU with DF clear, so the outer IPv6 gets fragmented. */
  FORWARD_FRAGMENT: 1,
  /** Drop the packet and send `ctx.reply` (an ICMPv4 error) to the packet's source. */
  ICMP: 2,
  /** Not a well-formed IPv4 packet. */
  DROP_MALFORMED: 3,
  /** No binding for the address. */
  DROP_NO_BINDING: 4,
  /** The binding names another IPv6 host than the outer source. */
  DROP_SPOOFED_SOURCE: 5,
  /** Shared address, port in no bound port set (TEP) or outside the lease's set (client). */
  DROP_BAD_PORT: 6,
  /** Host-to-host through the TEP while hairpinning is off. */
  DROP_HAIRPIN_DISABLED: 7,
  /** Too big for the tunnel with DF set, and no ICMP error may be sent about it. */
  DROP_TOO_BIG: 8,
  /** An ICMP error was due but the rate limiter had no token. */
  DROP_RATE_LIMITED: 9,
  /** Client: the source is not the leased address. */
  DROP_WRONG_SOURCE: 10,
  /** Client: the outer IPv6 source is not the TEP. */
  DROP_WRONG_TEP: 11,
  /** Client: the inner destination is not the leased address (or port set). */
  DROP_WRONG_DESTINATION: 12,
  /** Outer CE over an inner Not-ECT packet (RFC 6040 §4.2). */
  DROP_ECN: 13,
  /** A fragment of a shared-address datagram whose first fragment has not come yet: held (fragments.ts). */
  HELD: 14,
  /** A fragment dropped: no room to track or hold it (counted `*-frag-drop-no-room`). */
  DROP_FRAGMENT_NO_ROOM: 15,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

const _VERDICT_NAMES = Object.keys(Verdict) as (keyof typeof Verdict)[];

/** The name of a verdict code, e.g. `"DROP_NO_BINDING"`. */
export function verdictName(verdict: number): string {
  return _VERDICT_NAMES[verdict] ?? `UNKNOWN_${verdict}`;
}

/** True for FORWARD and FORWARD_FRAGMENT. */
export function isForward(verdict: number): boolean {
  return verdict <= Verdict.FORWARD_FRAGMENT;
}
