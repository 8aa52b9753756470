/**
 * The synthetic leases the store and engine benchmarks fill a pool with (million.ts,
 * million_server.ts, reclaim.ts, reclaim_server.ts): bench host `i` is 2001:db8:<high 16
 * bits of i>::<low 16 bits>, its lease the whole address `base + 1 + i`, active, TEP
 * 2001:db8::1.
 *
 * @module
 */
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";

/** The IPv6 address of bench host `i` (0 ≤ i < 2^32). */
export const benchHost6 = (i: number): string =>
  `2001:db8:${(i >>> 16).toString(16)}::${(i & 0xffff).toString(16)}`;

/** The active whole-address lease of bench host `i` on `base + 1 + i` in `pool`; times in ms since the epoch. */
export function benchLease(
  base: number,
  pool: string,
  i: number,
  grantedAt: number,
  expiresAt: number,
): Lease {
  return {
    ipv4: base + 1 + i,
    portSet: WHOLE_ADDRESS,
    host6: benchHost6(i),
    tep4: 0,
    tep6: "2001:db8::1",
    pool,
    state: "active",
    grantedAt,
    expiresAt,
  };
}
