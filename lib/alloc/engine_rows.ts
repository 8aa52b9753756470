/**
 * The allocation engine's small pure pieces (./engine.ts): the lease rows it makes (a new or
 * renewed active lease of a pool, the same lease in another state), the holder of a declined
 * slot (RFC 6666 discard prefix), a row's key, and the checks and texts of its answers.
 *
 * @module
 */
import { type Lease, type LeaseState, leaseKey, leaseOf, type PortSet } from "../lease/lease.ts";
import { formatIPv4, formatIPv6 } from "../net/addr.ts";
import type { EngineFailure, EngineResult } from "./engine_types.ts";
import type { PoolSlots } from "./slots.ts";

/** The lease key of a row (`leaseKey(ipv4, psid)`). */
export function rowKey(lease: Lease): number {
  return leaseKey(lease.ipv4, lease.portSet.psid);
}

/**
 * The holder of a declined slot: `100::PSID:IPV4` in the discard-only prefix 100::/64 (RFC
 * 6666), an address no host can send from. `lease ls` shows it; {@link isDeclinedHost} tells it.
 */
export function declinedHost(ipv4: number, psid: number): string {
  const bytes = new Uint8Array(16);
  bytes[0] = 0x01;
  bytes[10] = psid >>> 8;
  bytes[11] = psid & 0xff;
  bytes[12] = ipv4 >>> 24;
  bytes[13] = (ipv4 >>> 16) & 0xff;
  bytes[14] = (ipv4 >>> 8) & 0xff;
  bytes[15] = ipv4 & 0xff;
  return formatIPv6(bytes);
}

/** True when `host6` (canonical) is a {@link declinedHost}, not a host. */
export function isDeclinedHost(host6: string): boolean {
  return host6.startsWith("100::");
}

/** A new or renewed active lease of `ps`. */
export function activeLease(
  ipv4: number,
  portSet: PortSet,
  host6: string,
  ps: PoolSlots,
  grantedAt: number,
  expiresAt: number,
  identity?: string,
): Lease {
  return leaseOf(
    ipv4,
    portSet,
    host6,
    ps.tep4,
    ps.tep6,
    ps.pool.name,
    "active",
    grantedAt,
    expiresAt,
    identity,
  );
}

/** The same lease in another state; `at` is when that happened (kept in expiresAt). */
export function leaseInState(row: Lease, state: LeaseState, at: number): Lease {
  return leaseOf(
    row.ipv4,
    row.portSet,
    row.host6,
    row.tep4,
    row.tep6,
    row.pool,
    state,
    row.grantedAt,
    at,
    row.identity,
  );
}

/** A reclamation limit: `value` (a whole number ≥ 0; 0 means none) or the default. */
export function reclaimLimit(value: number | undefined, fallback: number, unit: string): number {
  const limit = value ?? fallback;
  if (!Number.isInteger(limit) || limit < 0) {
    throw new RangeError(`reclamation limit ${limit} ${unit}: must be a whole number (0: none)`);
  }
  return limit;
}

export function failure(reason: EngineFailure, message: string): Promise<EngineResult> {
  return Promise.resolve({ ok: false, reason, message });
}

export function isIPv4Number(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

export function ipv4Text(ipv4: number): string {
  return isIPv4Number(ipv4) ? formatIPv4(ipv4) : String(ipv4);
}

/**
 * `host6-is-tep` when `host6` (canonical) is the IPv6 address of the TEP of one of `pools`
 * (the configuration's, as reloaded): a lease of it would make that TEP tunnel to itself, so
 * no such host gets one (./allocator.ts: DISCOVER, REQUEST, renewal) nor is given one by an
 * administrator (./engine_admin.ts). A loop over the pools, a handful. Else undefined.
 */
export function hostIsTep(
  pools: readonly PoolSlots[],
  host6: string,
): { reason: "host6-is-tep"; message: string } | undefined {
  for (const ps of pools) {
    if (ps.tep6 !== host6) continue;
    return {
      reason: "host6-is-tep",
      message: `${host6} is the IPv6 address of the TEP of pool ${ps.pool.name}: a host there would make the TEP tunnel to itself`,
    };
  }
  return undefined;
}
