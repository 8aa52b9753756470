/**
 * The DHCPv4 client's lease timers (RFC 2131 §4.4.5), as pure functions of a clock reading so
 * that they are tested without sockets or waiting:
 *
 * ```
 *  obtainedAt        T1                 T2                 lease end
 *  │── BOUND ────────│── RENEWING ───────│── REBINDING ──────│ EXPIRED: stop using the address
 *                     unicast, U flag     ff02::1:2, U clear
 * ```
 *
 * - T1 and T2 are the server's options 58 and 59; only when it sends none, T1 = 0.5 × lease
 *   and T2 = 0.875 × lease (§4.4.5). T1 ≤ T2 ≤ lease is enforced (a later value is cut).
 * - Retransmission inside RENEWING and REBINDING (§4.4.5): wait half the time left until T2
 *   (RENEWING) or until the lease ends (REBINDING), at least 60 s, and never past the end of
 *   the state: the next transmission of the next state goes out at its start.
 *
 * Times are ms on the caller's clock; T1, T2 and the lease time are seconds after `obtainedAt`.
 *
 * @module
 */

export type Dhcp4LeaseState = "BOUND" | "RENEWING" | "REBINDING" | "EXPIRED";

/** A lease's timers: seconds after `obtainedAt` (ms). */
export interface Dhcp4LeaseTimers {
  readonly obtainedAt: number;
  readonly leaseTime: number;
  readonly t1: number;
  readonly t2: number;
}

/** RFC 2131 §4.4.5: the shortest wait between two REQUESTs in RENEWING or REBINDING (ms). */
export const DHCP4_MIN_RETRANSMIT_MS = 60_000;

/**
 * T1 and T2 (s) for a lease of `leaseTime` s: the server's values when it sent them, else the
 * §4.4.5 defaults; clamped so that 0 ≤ T1 ≤ T2 ≤ leaseTime.
 */
export function dhcp4Timers(
  leaseTime: number,
  renewalTime?: number,
  rebindingTime?: number,
): { t1: number; t2: number } {
  const t2 = Math.min(rebindingTime ?? leaseTime * 0.875, leaseTime);
  const t1 = Math.min(renewalTime ?? leaseTime * 0.5, t2);
  return { t1: Math.max(0, t1), t2: Math.max(0, t2) };
}

/** Absolute times (ms) of T1, T2 and the lease end. */
export function dhcp4Deadlines(t: Dhcp4LeaseTimers): { t1: number; t2: number; end: number } {
  return {
    t1: t.obtainedAt + t.t1 * 1000,
    t2: t.obtainedAt + t.t2 * 1000,
    end: t.obtainedAt + t.leaseTime * 1000,
  };
}

/** The §4.4.5 state at `now` (ms). */
export function dhcp4StateAt(t: Dhcp4LeaseTimers, now: number): Dhcp4LeaseState {
  const d = dhcp4Deadlines(t);
  if (now >= d.end) return "EXPIRED";
  if (now >= d.t2) return "REBINDING";
  if (now >= d.t1) return "RENEWING";
  return "BOUND";
}

/**
 * When (ms) the REQUEST sent at `now` is followed by the next one, if no answer came: half the
 * time left in the state, at least `minMs` (default 60 s), cut at the state's end (T2 while
 * renewing or bound, the lease end while rebinding). At or after the lease end: `now`.
 */
export function dhcp4NextTransmission(
  t: Dhcp4LeaseTimers,
  now: number,
  minMs = DHCP4_MIN_RETRANSMIT_MS,
): number {
  const d = dhcp4Deadlines(t);
  const state = dhcp4StateAt(t, now);
  if (state === "EXPIRED") return now;
  const stateEnd = state === "REBINDING" ? d.end : d.t2;
  const wait = Math.max((stateEnd - now) / 2, minMs);
  return Math.min(now + wait, stateEnd);
}
