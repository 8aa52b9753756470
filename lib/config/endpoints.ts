/**
 * Parsing of the values users type: addresses (`ADDR:PORT`, `[V6]:PORT`, `V6[,V4]`), ports
 * and durations. Each throws a one-line {@link UsageError} naming the flag.
 *
 * @module
 */
import { canonicalIPv6, formatIPv4, parseIPv4, parseIPv6 } from "../net/addr.ts";
import { parseIPv4Prefix } from "../net/prefix.ts";
import {
  describeScope,
  ipv4PrefixScope,
  ipv4Scope,
  ipv6Scope,
  type ScopeAllowance,
  scopeAllowed,
} from "../net/scope.ts";
import { parseDurationSeconds } from "./duration.ts";
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
  if (v6) {
    if (ipv6Scope(parseIPv6(v6)!) === "multicast")
      throw new UsageError(`${what}: ${v6} ${describeScope("multicast")}; give a unicast address`);
    return { address: v6, port };
  }
  const v4 = parseIPv4(address);
  if (v4 !== null && ipv4Scope(v4) === "multicast")
    throw new UsageError(
      `${what}: ${address} ${describeScope("multicast")}; give a unicast address`,
    );
  if (v4 !== null || address === "localhost") return { address, port };
  if (/^\d+$/.test(text))
    throw new UsageError(
      `${what}: "${text}" is a port alone; give [::]:${text} (every address) or ADDRESS:${text}`,
    );
  throw new UsageError(`${what}: "${text}" is not ADDRESS:PORT or [IPv6]:PORT`);
}

/**
 * `V6` or `V6,V4`: the TEP's addresses, as the server hands them to hosts. Both must be
 * unicast addresses another host can reach: not multicast, unspecified, loopback,
 * link-local or IPv4-mapped (lib/net/scope.ts).
 */
export function parseTep(text: string): { tep6: string; tep4?: number } {
  const [v6Text, v4Text, extra] = text.split(",").map((s) => s.trim());
  const tep6 = v6Text ? canonicalIPv6(v6Text) : null;
  if (!tep6 || extra !== undefined)
    throw new UsageError(`--tep: "${text}" is not IPV6 or IPV6,IPV4`);
  checkIPv6Scope(tep6, "--tep", "the TEP's");
  if (v4Text === undefined) return { tep6 };
  const tep4 = unicastIPv4(v4Text, "--tep", "the TEP's");
  return { tep6, tep4 };
}

/**
 * Parses an IPv6 address flag that must name one host (`whose`: "the DSTM server's"), and
 * returns its RFC 5952 text. Throws UsageError (exit 2, one line) for bad text and for
 * multicast, unspecified, link-local and IPv4-mapped addresses; loopback only when `allow`
 * says so (RFC 4291 §2.4, lib/net/scope.ts).
 *
 * @example unicastIPv6("ff02::1", "--server", "the DSTM server's") // throws "--server: ff02::1 is a multicast address …"
 */
export function unicastIPv6(
  text: string,
  what: string,
  whose: string,
  allow: ScopeAllowance = {},
): string {
  const v6 = canonicalIPv6(text);
  if (!v6) throw new UsageError(`${what}: "${text}" is not an IPv6 address`);
  checkIPv6Scope(v6, what, whose, allow);
  return v6;
}

/** As {@link unicastIPv6} for an IPv4 address flag; returns the address as a number. */
export function unicastIPv4(
  text: string,
  what: string,
  whose: string,
  allow: ScopeAllowance = {},
): number {
  const v4 = parseIPv4(text);
  if (v4 === null) throw new UsageError(`${what}: "${text}" is not an IPv4 address`);
  const scope = ipv4Scope(v4);
  if (!scopeAllowed(scope, allow))
    throw new UsageError(
      `${what}: ${formatIPv4(v4)} ${describeScope(scope!)}; give ${whose} unicast IPv4 address`,
    );
  return v4;
}

/**
 * Refuses an IPv4 pool that reaches into a special-purpose range (0.0.0.0/8, 127.0.0.0/8,
 * 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4): its addresses would be handed to hosts that
 * can never use them. Unparsable text is left to the pool parser's own message.
 */
export function checkPoolScope(cidr: string, what = "--pool"): void {
  const prefix = parseIPv4Prefix(cidr);
  if (!prefix) return;
  const special = ipv4PrefixScope(prefix.base, prefix.length);
  if (special)
    throw new UsageError(
      `${what}: ${cidr} reaches into ${special[1]} (${special[0]}); a pool must hold unicast-routable addresses`,
    );
}

function checkIPv6Scope(v6: string, what: string, whose: string, allow: ScopeAllowance = {}) {
  const scope = ipv6Scope(parseIPv6(v6)!);
  if (!scopeAllowed(scope, allow))
    throw new UsageError(
      `${what}: ${v6} ${describeScope(scope!)}; give ${whose} unicast IPv6 address`,
    );
}

/** A positive whole number of seconds; accepts `90`, `90s`, `15m`, `2h`, `1d`. */
export function parseDuration(text: string | number, what: string): number {
  const seconds = parseDurationSeconds(text) ?? Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds <= 0 || seconds > 0xffffffff) {
    throw new UsageError(
      `${what}: "${text}" is not a positive duration (e.g. 3600, 90s, 15m, 2h, 1h30m, 1.5h)`,
    );
  }
  return seconds;
}

/** A port number 1–65535 from a flag, or `fallback` when absent. */
export function parsePort(text: string | undefined, what: string, fallback: number): number {
  if (text === undefined) return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new UsageError(`${what}: "${text}" is not a port (1–65535)`);
  return port;
}

/** A whole number from a flag or a TOML value (number or digits), or undefined when absent. */
export function wholeNumber(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  if ((typeof value !== "string" && typeof value !== "number") || !/^\d{1,6}$/.test(text))
    throw new UsageError(`${what}: "${String(value)}" is not a whole number`);
  return Number(text);
}
