/**
 * Interface facts from /proc and /sys (Linux): which interface holds an IPv6 address, whether
 * an interface exists, and a link's MTU. Used to size the DTI: tunnel MTU = MTU of the IPv6 link − 40 (RFC 2473).
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { parseIPv6 } from "../net/addr.ts";

/** The interface that has `ipv6` configured (from /proc/net/if_inet6), or null. */
export function interfaceOfIPv6(ipv6: string): string | null {
  const bytes = parseIPv6(ipv6);
  if (!bytes) return null;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  let table: string;
  try {
    table = readFileSync("/proc/net/if_inet6", "utf8");
  } catch {
    return null;
  }
  for (const line of table.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields[0] === hex && fields[5]) return fields[5];
  }
  return null;
}

/** Whether this host (this network namespace) has an interface called `name` (/sys/class/net). */
export function interfaceExists(name: string): boolean {
  if (name === "" || name.includes("/") || name === "." || name === "..") return false;
  return existsSync(`/sys/class/net/${name}`);
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
