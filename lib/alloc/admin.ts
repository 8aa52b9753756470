/**
 * Lease administration, the engine's side (ISC Kea's lease commands): results of the
 * administrator's operations, how a slot looks to them, and the filtered, paged walk over
 * the lease table behind `GET /v1/leases` and `dstm lease ls`.
 *
 * Paging: rows come in key order (IPv4 address, then PSID: the key is ipv4 · 65536 + PSID);
 * a page holds at most `limit` rows and its cursor is the key of its last row. The next page
 * takes rows with a greater key, so no row is ever listed twice however the table changes
 * between pages, and a row that exists from the first page to the last is listed exactly
 * once. A page costs one pass over the table (O(n log limit)), and memory for `limit` rows.
 *
 * @module
 */
import { type Lease, type LeaseState, leaseKey, type Reservation } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import { ACTIVE, BLOCKED, FREE, NEVER, RESERVED } from "./slots.ts";

/** Why an administrator's operation was refused. */
export type AdminFailure =
  | "not-in-pool"
  | "in-use"
  | "no-such-lease"
  | "store-failed"
  | "unsupported";

export type AdminResult<T> =
  | { ok: true; value: T }
  | { ok: false; reason: AdminFailure; message: string };

export function adminOk<T>(value: T): Promise<AdminResult<T>> {
  return Promise.resolve({ ok: true, value });
}

export function adminFail<T>(reason: AdminFailure, message: string): Promise<AdminResult<T>> {
  return Promise.resolve({ ok: false, reason, message });
}

/** A slot as an administrator sees it. */
export interface SlotView {
  /** The pool whose prefixes contain the address. */
  pool: string;
  /** Hosts per address in that pool (1: whole addresses). */
  share: number;
  state: "never-used" | "active" | "free" | "reserved" | "blocked" | "off" | "beyond-share";
  /** The row stored under the slot's key (any state), if any. */
  row: Lease | undefined;
  reservation: Reservation | undefined;
}

export function slotState(state: number): SlotView["state"] {
  switch (state) {
    case NEVER:
      return "never-used";
    case ACTIVE:
      return "active";
    case FREE:
      return "free";
    case RESERVED:
      return "reserved";
    case BLOCKED:
      return "blocked";
    default:
      return "off";
  }
}

/**
 * Why `host6` may not take the slot (`ipv4`, `psid`) by an administrator's hand (a static
 * lease or a reservation), or undefined: the slot is in no pool or not usable there
 * (`not-in-pool`), is leased to or reserved for another host, or blocked, or the host holds
 * another active lease (`in-use`). `held`: the host's active lease, if any.
 */
export function slotProblem(
  ipv4: number,
  psid: number,
  view: SlotView | undefined,
  host6: string,
  held: Lease | undefined,
): { reason: "not-in-pool" | "in-use"; message: string } | undefined {
  const where = `${formatIPv4(ipv4)}${psid ? ` psid ${psid}` : ""}`;
  if (!view) return { reason: "not-in-pool", message: `${where} is in no pool of this server` };
  if (view.state === "beyond-share" || view.state === "off") {
    return {
      reason: "not-in-pool",
      message: `${where} cannot be leased from pool ${view.pool} (${view.state === "beyond-share" ? `psid beyond its share of ${view.share}` : "excluded, network or broadcast address, or a port set with well-known ports"})`,
    };
  }
  const row = view.row;
  if (row?.state === "active" && row.host6 !== host6)
    return { reason: "in-use", message: `${where} is leased to ${row.host6}` };
  const reserved = view.reservation;
  if (reserved && reserved.host6 !== host6)
    return { reason: "in-use", message: `${where} is reserved for ${reserved.host6}` };
  if (view.state === "blocked")
    return {
      reason: "in-use",
      message: `${where} is blocked by a lease with another port-set layout`,
    };
  if (held && (held.ipv4 !== ipv4 || held.portSet.psid !== psid)) {
    return {
      reason: "in-use",
      message: `host ${host6} holds ${formatIPv4(held.ipv4)}${held.portSet.psidLength ? ` psid ${held.portSet.psid}` : ""}; delete that lease first`,
    };
  }
  return undefined;
}

/** What `GET /v1/leases` selects; every field optional (absent: any). */
export interface LeaseFilter {
  /** One IPv4 address. */
  readonly address?: number;
  /** An IPv4 prefix the lease's address lies in. */
  readonly prefix4?: { readonly base: number; readonly length: number };
  /** An IPv6 prefix the host's address lies in (16 bytes and a length). */
  readonly prefix6?: { readonly bytes: Uint8Array; readonly length: number };
  /** The host's IPv6 address, canonical. */
  readonly host?: string;
  /** One state; absent: every state. */
  readonly state?: LeaseState;
  /** Pool name as stored in the row. */
  readonly pool?: string;
}

/** True when `lease` matches `filter`; `host6Bytes` parses a canonical IPv6 text (for prefix6). */
export function matchesFilter(
  lease: Lease,
  filter: LeaseFilter,
  host6Bytes: (text: string) => Uint8Array | null,
): boolean {
  if (filter.state !== undefined && lease.state !== filter.state) return false;
  if (filter.address !== undefined && lease.ipv4 !== filter.address) return false;
  if (filter.pool !== undefined && lease.pool !== filter.pool) return false;
  if (filter.host !== undefined && lease.host6 !== filter.host) return false;
  const p4 = filter.prefix4;
  if (p4 && (p4.length === 0 ? 0 : (lease.ipv4 ^ p4.base) >>> (32 - p4.length)) !== 0) return false;
  const p6 = filter.prefix6;
  if (p6) {
    const bytes = host6Bytes(lease.host6);
    if (!bytes || !_prefixMatch(bytes, p6.bytes, p6.length)) return false;
  }
  return true;
}

function _prefixMatch(a: Uint8Array, b: Uint8Array, length: number): boolean {
  let bits = length;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((a[i] as number) & mask) !== ((b[i] as number) & mask)) return false;
  }
  return true;
}

/** One page: up to `limit` rows after the cursor key, in key order, and the next cursor (null: last page). */
export function leasePage(
  rows: Iterable<Lease>,
  afterKey: number,
  limit: number,
  keep: (lease: Lease) => boolean,
): { leases: Lease[]; next: number | null } {
  // Keep the `limit + 1` smallest keys seen (one more tells whether a next page exists).
  let picked: Lease[] = [];
  let bound = Number.POSITIVE_INFINITY;
  for (const row of rows) {
    const key = leaseKey(row.ipv4, row.portSet.psid);
    if (key <= afterKey || key >= bound || !keep(row)) continue;
    picked.push(row);
    if (picked.length >= 2 * (limit + 1)) {
      // Keys are unique: a row above the (limit+1)-th smallest key seen can never be listed.
      picked = _sorted(picked).slice(0, limit + 1);
      const last = picked[picked.length - 1] as Lease;
      bound = leaseKey(last.ipv4, last.portSet.psid);
    }
  }
  picked = _sorted(picked);
  const more = picked.length > limit;
  const leases = more ? picked.slice(0, limit) : picked;
  const last = leases[leases.length - 1];
  return { leases, next: more && last ? leaseKey(last.ipv4, last.portSet.psid) : null };
}

function _sorted(rows: Lease[]): Lease[] {
  return rows.sort((a, b) => leaseKey(a.ipv4, a.portSet.psid) - leaseKey(b.ipv4, b.portSet.psid));
}
