/**
 * Red-team helpers (rt20) for the SQLite store's in-memory holder guard
 * (lib/lease/sqlite_holders.ts): a seeded PRNG, holders whose holderHash collide (found by a
 * birthday search at load: the hash is keyed per process, so the pairs differ from run to run
 * and only collide in this process), PSID-shared keys, and the stored active rows of a
 * database.
 *
 * @module
 */
import type { Database } from "bun:sqlite";
import {
  type Lease,
  type LeaseState,
  leaseKey,
  leaseOf,
  type PortSet,
} from "../../lib/lease/lease.ts";

/** mulberry32 (./fuzz.ts): a failure replays from its seed. */
export { prng as random } from "./fuzz.ts";

import { pairsWithOneHash } from "./holder_collisions.ts";

export { pairsWithOneHash };

/** Pairs of IPv6 holders with equal holderHash (2001:db8:X:Y::1 against 2001:db8:X:Y::2). */
export const HOST_PAIRS = pairsWithOneHash(
  3,
  (i) => `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`,
  (i) => `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::2`,
);

/** An identity holder whose hash equals an IPv6 holder's. */
export const IDENTITY_PAIRS = pairsWithOneHash(
  2,
  (i) => `id:01${i.toString(16).padStart(12, "0")}`,
  (i) => `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::3`,
);

/** Two IPv4 addresses, each shared by 4 hosts (PSID length 2, offset 6), and 4 whole ones. */
export const BASE4 = 0xc0000200;
export function slotPortSet(slot: number): { ipv4: number; portSet: PortSet } {
  if (slot < 8) {
    return {
      ipv4: BASE4 + 100 + (slot >> 2),
      portSet: { offset: 6, psidLength: 2, psid: slot & 3 },
    };
  }
  return { ipv4: BASE4 + slot, portSet: { offset: 0, psidLength: 0, psid: 0 } };
}
export const SLOTS = 12;
export const slotKey = (slot: number): number => {
  const { ipv4, portSet } = slotPortSet(slot);
  return leaseKey(ipv4, portSet.psid);
};

export function leaseAt(
  slot: number,
  host6: string,
  state: LeaseState,
  identity: string | undefined,
  pool = "pool",
): Lease {
  const { ipv4, portSet } = slotPortSet(slot);
  return leaseOf(
    ipv4,
    portSet,
    host6,
    0xc0000201,
    "2001:db8::1",
    pool,
    state,
    1_700_000_000_000,
    1_700_003_600_000,
    identity,
  );
}

/** Active rows as stored: key → holder. */
export function storedActive(db: Database): Map<number, string> {
  const rows = db
    .query("SELECT key, coalesce(identity, host6) FROM leases WHERE state = 'active' ORDER BY key")
    .values() as [number, string][];
  return new Map(rows.map(([k, h]) => [Number(k), String(h)]));
}

/** Holders with more than one active row as stored. */
export function doubleHolders(db: Database): string[] {
  return (
    db
      .query(
        "SELECT coalesce(identity, host6) AS h FROM leases WHERE state = 'active' GROUP BY h HAVING count(*) > 1",
      )
      .values() as [string][]
  ).map(([h]) => h);
}

/** The active rows of a lease list: key → holder. */
export function activeOf(leases: readonly Lease[]): Map<number, string> {
  return new Map(
    leases
      .filter((l) => l.state === "active")
      .map((l) => [leaseKey(l.ipv4, l.portSet.psid), l.identity ?? l.host6] as const)
      .sort((a, b) => a[0] - b[0]),
  );
}
