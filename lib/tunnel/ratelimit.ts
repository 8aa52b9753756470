/**
 * A token bucket for ICMP errors (RFC 1812 §4.3.2.8, RFC 7596 §8: ICMP errors must be rate
 * limited). The time comes in as a parameter (milliseconds, any origin) so that tests and
 * the check mode are deterministic; the pipeline reads its injected clock only when it is
 * about to send an error, never per forwarded packet.
 *
 * @module
 */

/**
 * `ratePerSecond` tokens a second, at most `burst` saved up; starts full.
 *
 * @example
 * const bucket = new TokenBucket(10, 2);
 * bucket.take(0); bucket.take(0); // true, true
 * bucket.take(0);                 // false: burst spent
 * bucket.take(100);               // true: one token back after 100 ms at 10/s
 */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  private tokens: number;
  private lastMs = Number.NaN;

  constructor(ratePerSecond: number, burst: number) {
    if (!(ratePerSecond >= 0) || !(burst >= 0)) {
      throw new RangeError(`rate ${ratePerSecond}/s, burst ${burst}: both must be ≥ 0`);
    }
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.tokens = burst;
  }

  /** Takes one token at time `nowMs`; false when none is left. Allocation-free. */
  take(nowMs: number): boolean {
    if (Number.isNaN(this.lastMs)) this.lastMs = nowMs; // first call
    const elapsed = nowMs - this.lastMs;
    if (elapsed > 0) {
      // A clock that steps back refills nothing and does not move lastMs back.
      const refilled = this.tokens + (elapsed * this.ratePerSecond) / 1000;
      this.tokens = Math.min(refilled, this.burst);
      this.lastMs = nowMs;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Tokens available now (for tests). */
  get available(): number {
    return this.tokens;
  }
}
