/**
 * Interface facts from /proc and /sys (Linux): which interface holds an IPv6 address, whether
 * an interface exists, and a link's MTU. Used to size the DTI: tunnel MTU = MTU of the IPv6 link − 40 (RFC 2473).
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { formatIPv6, parseIPv6 } from "../net/addr.ts";

/** The lines of /proc/net/if_inet6 (one address each), none when it cannot be read. */
function ifInet6Lines(): string[] {
  try {
    return readFileSync("/proc/net/if_inet6", "utf8").split("\n");
  } catch {
    return [];
  }
}

/** The interface that has `ipv6` configured (from /proc/net/if_inet6), or null. */
export function interfaceOfIPv6(ipv6: string): string | null {
  const bytes = parseIPv6(ipv6);
  if (!bytes) return null;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  for (const line of ifInet6Lines()) {
    const fields = line.trim().split(/\s+/);
    if (fields[0] === hex && fields[5]) return fields[5];
  }
  return null;
}

/**
 * The usable link-local address of interface `name`, as `fe80::…%NAME`, or null (none yet, or
 * only a tentative one still in DAD). From /proc/net/if_inet6: scope 0x20 is link, flag 0x40
 * IFA_F_TENTATIVE (0x80 is IFA_F_PERMANENT). A DHCPv6 client sends to ff02::1:2 from it
 * (RFC 8415 §14.1).
 */
export function linkLocalOf(name: string): string | null {
  for (const line of ifInet6Lines()) {
    const [hex, , , scope, flags, ifname] = line.trim().split(/\s+/);
    if (ifname !== name || scope !== "20" || !hex || hex.length !== 32) continue;
    if ((Number.parseInt(flags ?? "0", 16) & 0x40) !== 0) continue;
    const bytes = Uint8Array.from(hex.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
    return `${formatIPv6(bytes)}%${name}`;
  }
  return null;
}

/** Whether this host (this network namespace) has an interface called `name` (/sys/class/net). */
export function interfaceExists(name: string): boolean {
  if (name === "" || name.includes("/") || name === "." || name === "..") return false;
  return existsSync(`/sys/class/net/${name}`);
}

/**
 * Whether interface `name` is administratively up (IFF_UP in /sys/class/net/NAME/flags), or
 * null when it cannot be read (no such interface).
 */
export function linkIsUp(name: string): boolean | null {
  try {
    const flags = Number.parseInt(readFileSync(`/sys/class/net/${name}/flags`, "utf8").trim(), 16);
    return Number.isInteger(flags) ? (flags & 0x1) !== 0 : null;
  } catch {
    return null;
  }
}

/** The MTU of interface `name`, or null when it cannot be read. */
export function linkMtu(name: string): number | null {
  try {
    const mtu = Number(readFileSync(`/sys/class/net/${name}/mtu`, "utf8").trim());
    return Number.isInteger(mtu) && mtu > 0 ? mtu : null;
  } catch {
    return null;
  }
}

/**
 * This host's global-scope IPv6 addresses (scope 0x00 in /proc/net/if_inet6) with their
 * interface index, tentative ones included (their prefix is the link's all the same), and
 * whether each is permanent (flag 0x80 IFA_F_PERMANENT: configured by the administrator, not
 * learned from a Router Advertisement, RFC 4862 §5.5.3, nor leased with a lifetime); none
 * when the file cannot be read.
 */
export function globalIPv6Addresses(): { index: number; bytes: Uint8Array; permanent: boolean }[] {
  const out: { index: number; bytes: Uint8Array; permanent: boolean }[] = [];
  for (const line of ifInet6Lines()) {
    const [hex, index, , scope, flags] = line.trim().split(/\s+/);
    if (scope !== "00" || !hex || hex.length !== 32 || !index) continue;
    const bytes = Uint8Array.from(hex.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
    const permanent = (Number.parseInt(flags ?? "0", 16) & 0x80) !== 0;
    out.push({ index: Number.parseInt(index, 16), bytes, permanent });
  }
  return out;
}
