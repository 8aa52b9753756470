/**
 * How leases look to users: the JSON of the control API and `lease ls --json`, and the
 * table of `lease ls`, with the columns of the paper's lease table (its figure 3).
 *
 * @module
 */
import type { Lease, LeaseState } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";

export interface LeaseJson {
  hostIPv4: string;
  hostIPv6: string;
  tepIPv4: string | null;
  tepIPv6: string;
  /** `"all"` for a whole address, else the RFC 7597 port set as `offset/psidLength/psid`. */
  ports: string;
  pool: string;
  state: LeaseState;
  grantedAt: string;
  expiresAt: string;
}

export function leaseToJson(lease: Lease): LeaseJson {
  return {
    hostIPv4: formatIPv4(lease.ipv4),
    hostIPv6: lease.host6,
    tepIPv4: lease.tep4 === 0 ? null : formatIPv4(lease.tep4),
    tepIPv6: lease.tep6,
    ports: formatPortSet(lease.portSet),
    pool: lease.pool,
    state: lease.state,
    grantedAt: new Date(lease.grantedAt).toISOString(),
    expiresAt: new Date(lease.expiresAt).toISOString(),
  };
}

const COLUMNS: [keyof LeaseJson | "expiresIn", string][] = [
  ["hostIPv4", "HOST IPv4"],
  ["hostIPv6", "HOST IPv6"],
  ["tepIPv4", "TEP IPv4"],
  ["tepIPv6", "TEP IPv6"],
  ["ports", "PORTS"],
  ["state", "STATE"],
  ["expiresIn", "EXPIRES"],
];

/** Renders leases as an aligned text table; `now` makes "EXPIRES" relative ("in 59m58s"). */
export function renderLeaseTable(leases: readonly LeaseJson[], now: number): string {
  const rows = leases.map((lease) =>
    COLUMNS.map(([key]) => {
      if (key === "expiresIn") return relative(Date.parse(lease.expiresAt) - now);
      return String(lease[key] ?? "-");
    }),
  );
  const header = COLUMNS.map(([, title]) => title);
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => row[i]!.length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

function relative(ms: number): string {
  const past = ms < 0;
  let s = Math.round(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const text = `${h ? `${h}h` : ""}${h || m ? `${m}m` : ""}${s}s`;
  return past ? `${text} ago` : `in ${text}`;
}
