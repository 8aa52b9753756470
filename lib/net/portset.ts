/**
 * RFC 7597 §5.1 port sets: which ports a PSID owns when 2^k hosts share one IPv4 address.
 *
 * With offset bits `a`, PSID length `k` and `m = 16 − a − k`, the ports of PSID `p` are
 * `(A << (16 − a)) | (p << m) | j` for `0 < A < 2^a` (A starts at 1 when a > 0, which keeps
 * the well-known ports 0..2^(16−a)−1 out of every set) and `0 ≤ j < 2^m`.
 *
 * @module
 */

export interface PortSetValue {
  readonly offset: number;
  readonly psidLength: number;
  readonly psid: number;
}

/** `"all"` for the whole port space, else `offset/psidLength/psid`, e.g. `6/6/17`. */
export function formatPortSet(set: PortSetValue): string {
  return set.psidLength === 0 ? "all" : `${set.offset}/${set.psidLength}/${set.psid}`;
}
