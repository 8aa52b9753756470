/**
 * Parsing of the address arguments users type: `ADDR:PORT`, `[V6]:PORT`, `V6[,V4]`.
 *
 * @module
 */
import { canonicalIPv6, parseIPv4 } from "../lib/net/addr.ts";
import { UsageError } from "./errors.ts";

export interface HostPort {
  address: string;
  port: number;
}

/**
 * `[2001:db8::1]:4607`, `[::]:4607`, `127.0.0.1:9604`, `:4607` (any IPv6 address) or a bare
 * IPv6 address (port = `defaultPort`).
 */
export function parseHostPort(text: string, what: string, defaultPort: number): HostPort {
  let address: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracket) {
    address = bracket[1]!;
    portText = bracket[2];
  } else if (text.startsWith(":") && /^:\d+$/.test(text)) {
    address = "::";
    portText = text.slice(1);
  } else if (text.includes(":") && canonicalIPv6(text)) {
    address = text;
  } else {
    const colon = text.lastIndexOf(":");
    address = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  const port = portText === undefined ? defaultPort : Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`${what}: bad port in "${text}" (expected 0–65535)`);
  }
  const v6 = canonicalIPv6(address);
  if (v6) return { address: v6, port };
  if (parseIPv4(address) !== null || address === "localhost") return { address, port };
  throw new UsageError(`${what}: "${text}" is not ADDRESS:PORT or [IPv6]:PORT`);
}

/** `V6` or `V6,V4`: the TEP's addresses. */
export function parseTep(text: string): { tep6: string; tep4?: number } {
  const [v6Text, v4Text, extra] = text.split(",").map((s) => s.trim());
  const tep6 = v6Text ? canonicalIPv6(v6Text) : null;
  if (!tep6 || extra !== undefined)
    throw new UsageError(`--tep: "${text}" is not IPV6 or IPV6,IPV4`);
  if (v4Text === undefined) return { tep6 };
  const tep4 = parseIPv4(v4Text);
  if (tep4 === null) throw new UsageError(`--tep: "${v4Text}" is not an IPv4 address`);
  return { tep6, tep4 };
}

/** A positive whole number of seconds; accepts `90`, `90s`, `15m`, `2h`, `1d`. */
export function parseDuration(text: string | number, what: string): number {
  const match = /^(\d+)\s*([smhd]?)$/.exec(String(text).trim());
  const seconds = match
    ? Number(match[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2]!]!
    : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds <= 0 || seconds > 0xffffffff) {
    throw new UsageError(`${what}: "${text}" is not a positive duration (e.g. 3600, 90s, 15m, 2h)`);
  }
  return seconds;
}
