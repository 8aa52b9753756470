/**
 * How leases look to users: the JSON of the control API and `lease ls --json`, and the
 * table of `lease ls`, with the columns of the paper's lease table (its figure 3).
 *
 * @module
 */
import type { Lease, LeaseState, PortSet } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import { formatPortSet, portSetRanges } from "../net/portset.ts";

export interface LeaseJson {
  hostIPv4: string;
  hostIPv6: string;
  tepIPv4: string | null;
  tepIPv6: string;
  /** The ports, readably: `"all"` for a whole address, else see {@link describePorts}. */
  ports: string;
  /** `"all"`, or the RFC 7597 port set as `offset/psidLength/psid` (parsePortSet reads it back). */
  portSet: string;
  /** The ports as inclusive `[first, last]` ranges in ascending order (`[[0, 65535]]` when whole). */
  portRanges: [number, number][];
  pool: string;
  /**
   * The DHCPv4-over-DHCPv6 client holding the lease in the keyed identity modes
   * (`id:HEX` of option 61, `hw:HTYPE:HEX` of chaddr; lib/server/dhcp4o6_identity.ts);
   * null for a lease held by its host IPv6 address (native DSTM, 4o6 `source` mode).
   */
  identity: string | null;
  state: LeaseState;
  /**
   * Present (true) for a DHCPv4-over-DHCPv6 OFFER the server holds in memory only (60 s, for
   * the REQUEST that takes it): never stored, so a restart forgets it (RFC 2131 §4.3.1 lets a
   * server offer without committing). `lease ls` shows its STATE as `offered`.
   */
  offered?: true;
  grantedAt: string;
  expiresAt: string;
}

/**
 * The JSON form of a lease row (the control API's `/v1/leases`, `lease ls --json`): addresses
 * as text, `tepIPv4` null when the TEP has no IPv4 address (tep4 0), the port set three ways
 * (readable, `offset/psidLength/psid`, inclusive ranges), times as ISO 8601 UTC strings from
 * the row's ms-since-epoch values; `offered`: the row is an OFFER held in memory only (the
 * engine's `isOffer`). Pure; never throws for a row the store accepted.
 *
 * @example leaseToJson(lease).expiresAt // "2026-01-01T12:10:00.000Z"
 */
export function leaseToJson(lease: Lease, offered = false): LeaseJson {
  return {
    hostIPv4: formatIPv4(lease.ipv4),
    hostIPv6: lease.host6,
    tepIPv4: lease.tep4 === 0 ? null : formatIPv4(lease.tep4),
    tepIPv6: lease.tep6,
    ports: describePorts(lease.portSet),
    portSet: formatPortSet(lease.portSet),
    portRanges: portSetRanges(lease.portSet),
    pool: lease.pool,
    identity: lease.identity ?? null,
    state: lease.state,
    ...(offered ? { offered: true as const } : {}),
    grantedAt: new Date(lease.grantedAt).toISOString(),
    expiresAt: new Date(lease.expiresAt).toISOString(),
  };
}

/**
 * A port set as people read it: the first range of ports, then `+N` when N more ranges of
 * the same size follow (one every 2^(16−a) ports, RFC 7597 §5.1), then the PSID among the
 * 2^k of the address and the offset. `"all"` for a whole address.
 *
 * @example describePorts({ offset: 6, psidLength: 6, psid: 17 }) // "1296-1311+62 (psid 17/64, a=6)"
 * @example describePorts({ offset: 0, psidLength: 2, psid: 1 })  // "16384-32767 (psid 1/4, a=0)"
 */
export function describePorts(set: PortSet): string {
  if (set.psidLength === 0) return "all";
  const ranges = portSetRanges(set);
  const [first, last] = ranges[0] as [number, number];
  const more = ranges.length > 1 ? `+${ranges.length - 1}` : "";
  return `${first}-${last}${more} (psid ${set.psid}/${2 ** set.psidLength}, a=${set.offset})`;
}

const COLUMNS: [keyof LeaseJson | "expiresIn", string][] = [
  ["hostIPv4", "HOST IPv4"],
  ["hostIPv6", "HOST IPv6"],
  ["tepIPv4", "TEP IPv4"],
  ["tepIPv6", "TEP IPv6"],
  ["ports", "PORTS"],
  ["state", "STATE"],
  ["identity", "IDENTITY"],
  ["expiresIn", "EXPIRES"],
];

/** Renders leases as an aligned text table; `now` makes "EXPIRES" relative ("in 59m58s"). */
export function renderLeaseTable(leases: readonly LeaseJson[], now: number): string {
  return leaseTablePrinter(now)(leases);
}

/**
 * A table printed page by page (`lease ls` over a paged control API): the first call returns
 * the header and its rows, with the column widths of that page; later calls return rows in
 * the same widths (a longer cell pushes its line, never the columns above it).
 */
export function leaseTablePrinter(now: number): (leases: readonly LeaseJson[]) => string {
  let widths: number[] | undefined;
  const header = COLUMNS.map(([, title]) => title);
  return (leases) => {
    const rows = leases.map((lease) =>
      COLUMNS.map(([key]) => {
        if (key === "expiresIn") return ends(lease, now);
        if (key === "state" && lease.offered) return "offered";
        return String(lease[key] ?? "-");
      }),
    );
    if (rows.length === 0) return "";
    const first = widths === undefined;
    widths ??= header.map((title, i) =>
      Math.max(title.length, ...rows.map((row) => row[i]!.length)),
    );
    const w = widths;
    const line = (cells: string[]) =>
      cells
        .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(w[i]!)))
        .join("  ")
        .trimEnd();
    const lines = first ? [line(header), ...rows.map(line)] : rows.map(line);
    return lines.length ? `${lines.join("\n")}\n` : "";
  };
}

/**
 * The EXPIRES cell: "in 59m58s" for an active lease, "1m30s ago" for one past its expiry not
 * yet reclaimed; an ended lease says how it ended, since its time is then the end's (a
 * release stamps the release time): "released 2s ago", "expired 1m30s ago".
 */
function ends(lease: LeaseJson, now: number): string {
  const text = relative(Date.parse(lease.expiresAt) - now);
  return lease.state === "active" ? text : `${lease.state} ${text}`;
}

function relative(ms: number): string {
  const past = ms < 0;
  let s = Math.round(Math.abs(ms) / 1000);
  // Days as the duration flags take them (30d), not 719h.
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const text = `${d ? `${d}d` : ""}${d || h ? `${h}h` : ""}${d || h || m ? `${m}m` : ""}${s}s`;
  return past ? `${text} ago` : `in ${text}`;
}
