/**
 * The filtered, paged walk over the lease table behind `GET /v1/leases`, `dstm lease ls` and
 * `GET /v1/leases/export`: pure functions over any iterable of lease rows.
 *
 * Paging: rows come in key order (IPv4 address, then PSID: the key is ipv4 · 65536 + PSID);
 * a page holds at most `limit` rows and its cursor is its last row as `IPV4:PSID`. The next
 * page takes rows with a greater key, so no row is ever listed twice however the table
 * changes between pages, and a row that exists from the first page to the last is listed
 * exactly once. A page costs one pass over the table (O(n log limit)), or only the rows it
 * lists when they come in key order from the cursor on, and memory for `limit` rows, never
 * for the table.
 *
 * @module
 */
import { keyIpv4, keyPsid, type Lease, type LeaseState, leaseKey } from "../lease/lease.ts";
import { formatIPv4, parseIPv4 } from "../net/addr.ts";

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
  /** The 4o6 client identity the lease is held by (`id:HEX` / `hw:HTYPE:HEX`, lower case). */
  readonly identity?: string;
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
  if (filter.identity !== undefined && lease.identity !== filter.identity) return false;
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

/**
 * One page: up to `limit` rows after the cursor key, in key order, and the next cursor (null:
 * last page). `ordered`: `rows` come in ascending key order, so the walk stops at the
 * `limit + 1`-th row kept (the page then costs what it lists, not the table).
 */
export function leasePage(
  rows: Iterable<Lease>,
  afterKey: number,
  limit: number,
  keep: (lease: Lease) => boolean,
  ordered = false,
): { leases: Lease[]; next: number | null } {
  // Keep the `limit + 1` smallest keys seen (one more tells whether a next page exists).
  let picked: Lease[] = [];
  let bound = Number.POSITIVE_INFINITY;
  for (const row of rows) {
    const key = leaseKey(row.ipv4, row.portSet.psid);
    if (key <= afterKey || key >= bound || !keep(row)) continue;
    picked.push(row);
    if (ordered && picked.length > limit) break;
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

/** The cursor text of a lease key: `IPV4:PSID` (e.g. `192.0.2.7:0`). */
export function formatCursor(key: number): string {
  return `${formatIPv4(keyIpv4(key))}:${keyPsid(key)}`;
}

/** The key of a cursor `IPV4:PSID` (or a bare `IPV4`: after its last PSID), or null when malformed. */
export function parseCursor(text: string): number | null {
  const colon = text.lastIndexOf(":");
  const ipv4 = parseIPv4(colon < 0 ? text : text.slice(0, colon));
  if (ipv4 === null) return null;
  if (colon < 0) return leaseKey(ipv4, 65535);
  const psidText = text.slice(colon + 1);
  if (!/^\d{1,5}$/.test(psidText) || Number(psidText) > 65535) return null;
  return leaseKey(ipv4, Number(psidText));
}
