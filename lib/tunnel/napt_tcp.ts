/**
 * TCP state of the client NAPT's mappings (RFC 5382 §5, RFC 7857 §2.2, RFC 6146 §3.5.2).
 *
 * The NAPT does not follow sequence numbers; it records which of SYN, FIN and RST it has seen
 * each way on a mapping (one byte per external port, written with Atomics by both Workers:
 * outbound sees the host's segments, inbound the far end's). From these bits a mapping is in
 * one of four phases:
 *
 * - **half-open**: a SYN went out and no SYN came back (RFC 5382's "partially open");
 * - **established**: SYNs both ways (or the mapping was made mid-connection, e.g. after a
 *   NAPT restart: RFC 5382 §5 says a NAT that cannot tell must assume it is established);
 * - **closing**: a FIN one way only ("partially closed");
 * - **closed**: FINs both ways, or a RST either way.
 *
 * Idle timeouts (RFC 5382 REQ-5): established ≥ 2 h 4 min (7,440 s), every other phase the
 * "transitory" timeout ≥ 4 min (240 s). RFC 7857 §2.2: a RST does not end the mapping at once
 * (a forged RST must not cut a live connection); it makes it transitory.
 *
 * Port reuse (what does not confuse the far end): when every port of the set is held, a new
 * SYN may take over the port of a *closed* mapping before its transitory timeout, least
 * recently used first, if the far end cannot be in TIME-WAIT for the same pair of endpoints:
 * the connection was reset, or the host sent the first FIN (the active closer keeps TIME-WAIT,
 * RFC 9293 §3.6; the far end went through LAST-ACK to CLOSED), or the new SYN goes to another
 * remote endpoint than the closed connection (a different 4-tuple at every far end). A closed
 * mapping whose far end closed first waits out the transitory timeout before a SYN to the same
 * remote endpoint gets its port.
 *
 * @module
 */

/** Bits of the TCP state byte. */
export const TcpSeen = {
  SYN_OUT: 1,
  SYN_IN: 2,
  FIN_OUT: 4,
  FIN_IN: 8,
  RST: 16,
  /** The far end's FIN came before the host's: the far end is the one in TIME-WAIT. */
  FAR_CLOSED_FIRST: 32,
} as const;

export const TcpPhase = { HALF_OPEN: 0, ESTABLISHED: 1, CLOSING: 2, CLOSED: 3 } as const;
export type TcpPhase = (typeof TcpPhase)[keyof typeof TcpPhase];

const TCP_SYN = 0x02;
const TCP_FIN = 0x01;
const TCP_RST = 0x04;
const TCP_ACK = 0x10;

/** The phase a state byte describes. */
export function tcpPhase(bits: number): TcpPhase {
  if ((bits & TcpSeen.RST) !== 0) return TcpPhase.CLOSED;
  const fins = bits & (TcpSeen.FIN_OUT | TcpSeen.FIN_IN);
  if (fins === (TcpSeen.FIN_OUT | TcpSeen.FIN_IN)) return TcpPhase.CLOSED;
  if (fins !== 0) return TcpPhase.CLOSING;
  if ((bits & (TcpSeen.SYN_OUT | TcpSeen.SYN_IN)) === (TcpSeen.SYN_OUT | TcpSeen.SYN_IN))
    return TcpPhase.ESTABLISHED;
  return TcpPhase.HALF_OPEN;
}

/** True for a segment that opens a connection: SYN without ACK (or RST, FIN). */
export function isTcpSyn(flags: number): boolean {
  return (flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) === TCP_SYN;
}

/**
 * Outbound segment with `flags` on the mapping of external port `p` (its state byte in
 * `state`). `created`: the segment just made the mapping.
 */
export function tcpOutbound(state: Uint8Array, p: number, flags: number, created: boolean): void {
  if (created || (isTcpSyn(flags) && tcpPhase(Atomics.load(state, p)) === TcpPhase.CLOSED)) {
    // A new connection from this internal port; a mapping made by anything but a SYN is
    // taken as established (RFC 5382 §5: when in doubt, established).
    Atomics.store(state, p, isTcpSyn(flags) ? TcpSeen.SYN_OUT : TcpSeen.SYN_OUT | TcpSeen.SYN_IN);
    return;
  }
  if ((flags & (TCP_SYN | TCP_FIN | TCP_RST)) === 0) return;
  let bits = 0;
  if ((flags & TCP_SYN) !== 0) bits |= TcpSeen.SYN_OUT;
  if ((flags & TCP_FIN) !== 0) bits |= TcpSeen.FIN_OUT;
  if ((flags & TCP_RST) !== 0) bits |= TcpSeen.RST;
  Atomics.or(state, p, bits);
}

/** Inbound segment with `flags` on the mapping of external port `p`. */
export function tcpInbound(state: Uint8Array, p: number, flags: number): void {
  if ((flags & (TCP_SYN | TCP_FIN | TCP_RST)) === 0) return;
  let bits = 0;
  if ((flags & TCP_SYN) !== 0) bits |= TcpSeen.SYN_IN;
  if ((flags & TCP_RST) !== 0) bits |= TcpSeen.RST;
  if ((flags & TCP_FIN) !== 0) {
    bits |= TcpSeen.FIN_IN;
    if ((Atomics.load(state, p) & TcpSeen.FIN_OUT) === 0) bits |= TcpSeen.FAR_CLOSED_FIRST;
  }
  Atomics.or(state, p, bits);
}

/**
 * May a new SYN to (remote, remotePort) take over the closed mapping whose state is `bits`
 * and whose last connection went to (lastRemote, lastRemotePort)? (See the module text.)
 */
export function tcpMayTakeOver(
  bits: number,
  lastRemote: number,
  lastRemotePort: number,
  remote: number,
  remotePort: number,
): boolean {
  if (tcpPhase(bits) !== TcpPhase.CLOSED) return false;
  if ((bits & TcpSeen.RST) !== 0) return true;
  if ((bits & TcpSeen.FAR_CLOSED_FIRST) === 0) return true;
  return lastRemote !== remote || lastRemotePort !== remotePort;
}
