/** Counters of /proc/net/snmp6 (per network namespace): `{ Ip6ReasmOKs: 3, ... }`. */
import { readFileSync } from "node:fs";

export function snmp6(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync("/proc/net/snmp6", "utf8").split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value) out[key] = Number(value);
  }
  return out;
}
