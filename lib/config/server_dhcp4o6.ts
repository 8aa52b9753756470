/**
 * The server's DHCPv4-over-DHCPv6 settings (RFC 7341): where it listens, its DHCPv4 server
 * identifier, which hosts and relays may use it, DECLINE probation and who a client is.
 *
 * @module
 */
import type { PoolConfig } from "../alloc/engine.ts";
import { ipv6PrefixMeant } from "../net/prefix.ts";
import { parseIPv6Prefix } from "../server/admission.ts";
import { DHCP4O6_IDENTITY_MODES, type Dhcp4o6IdentityMode } from "../server/dhcp4o6_identity.ts";
import { duplicateLinkPrefix, linkPrefixProblem } from "../server/dhcp4o6_link_names.ts";
import type { ServerConfig } from "../server/server_config.ts";
import { parseDuration, parseHostPort, unicastIPv4 } from "./endpoints.ts";
import { UsageError } from "./errors.ts";

/** The DHCPv4-over-DHCPv6 settings in flag form (lib/config/server_schema.ts). */
export interface ServerDhcp4o6Flags {
  dhcp4o6?: boolean;
  dhcp4o6Listen?: string;
  dhcp4o6Interface?: string[];
  dhcp4o6ServerId?: string;
  dhcp4o6Allow?: string[];
  dhcp4o6Relay?: string[];
  dhcp4o6LinkPrefix?: string[];
  dhcp4o6Open?: boolean;
  declineProbation?: string;
  dhcp4o6Identity?: string;
}

/**
 * The DHCPv4-over-DHCPv6 service's settings, or undefined when it is off; `warn`s about the
 * settings given while it is off. With host keys (`--key`), which RFC 7341 cannot check, it
 * needs `--dhcp4o6-allow` or `--dhcp4o6-open`. Throws {@link UsageError}.
 */
export function dhcp4o6Settings(
  flags: ServerDhcp4o6Flags,
  pools: readonly PoolConfig[],
  hasKeys: boolean,
  warn: (text: string) => void,
): ServerConfig["dhcp4o6"] {
  const dhcp4o6 = dhcp4o6Config(flags, pools);
  const ignored = ignoredDhcp4o6Settings(flags);
  // A pool's links pick the pool for DHCPv4-over-DHCPv6 clients only (RFC 8415 §13.1).
  if (flags.dhcp4o6 !== true && pools.some((p) => p.links?.length))
    ignored.push("--pool-link (links in [[pool]])");
  if (ignored.length)
    warn(
      `${ignored.join(", ")} ${ignored.length === 1 ? "has" : "have"} no effect without --dhcp4o6 (TOML: dhcp4o6 = true)`,
    );
  if (dhcp4o6 && hasKeys && !dhcp4o6.allow && !flags.dhcp4o6Open)
    throw new UsageError(
      "--key does not cover DHCPv4-over-DHCPv6 (RFC 7341 has no authentication): give --dhcp4o6-allow PREFIX for the hosts that may lease over it, or --dhcp4o6-open to answer any host knowingly",
    );
  return dhcp4o6;
}

/** The DHCPv4-over-DHCPv6 settings given (flag or file) while --dhcp4o6 is off: they do nothing. */
function ignoredDhcp4o6Settings(flags: ServerDhcp4o6Flags): string[] {
  if (flags.dhcp4o6 === true) return [];
  const settings: [string, unknown][] = [
    ["dhcp4o6-listen", flags.dhcp4o6Listen],
    ["dhcp4o6-interface", flags.dhcp4o6Interface],
    ["dhcp4o6-server-id", flags.dhcp4o6ServerId],
    ["dhcp4o6-allow", flags.dhcp4o6Allow],
    ["dhcp4o6-open", flags.dhcp4o6Open],
    ["dhcp4o6-identity", flags.dhcp4o6Identity],
    ["dhcp4o6-link-prefix", flags.dhcp4o6LinkPrefix],
    ["decline-probation", flags.declineProbation],
  ];
  return settings
    .filter(([, v]) => v !== undefined && v !== false && !(Array.isArray(v) && v.length === 0))
    .map(([name]) => `--${name}`);
}

/** The DHCPv4-over-DHCPv6 service's settings, or undefined when it is off. */
function dhcp4o6Config(
  flags: ServerDhcp4o6Flags,
  pools: readonly PoolConfig[],
): ServerConfig["dhcp4o6"] {
  if (flags.dhcp4o6 !== true) return undefined;
  const listen = parseHostPort(flags.dhcp4o6Listen ?? "[::]:547", "--dhcp4o6-listen", 547);
  if (!listen.address.includes(":"))
    throw new UsageError("--dhcp4o6-listen: DHCPv4-over-DHCPv6 runs over IPv6");
  const idText = flags.dhcp4o6ServerId;
  const serverId =
    idText === undefined
      ? pools.find((p) => p.tep4)?.tep4
      : unicastIPv4(idText, "--dhcp4o6-server-id", "the DHCPv4 server's");
  if (serverId === null || serverId === undefined) {
    throw new UsageError(
      idText === undefined
        ? "--dhcp4o6 needs a DHCPv4 server identifier: give --dhcp4o6-server-id IPV4 (or a TEP with an IPv4 address)"
        : `--dhcp4o6-server-id: "${idText}" is not an IPv4 address`,
    );
  }
  const allow = ipv6Prefixes(flags.dhcp4o6Allow, "--dhcp4o6-allow", "2001:db8:4::/64");
  const relays = ipv6Prefixes(flags.dhcp4o6Relay, "--dhcp4o6-relay", "2001:db8:7::/64");
  return {
    address: listen.address,
    port: listen.port,
    interfaces: flags.dhcp4o6Interface ?? [],
    serverId,
    allow: allow?.length ? allow : undefined,
    relays: relays?.length ? relays : undefined,
    declineProbation: probationSeconds(flags.declineProbation),
    identity: identityMode(flags.dhcp4o6Identity),
    linkPrefixes: linkPrefixes(flags.dhcp4o6LinkPrefix),
  };
}

/** A list of IPv6 prefixes, each checked (`example` in the message). */
function ipv6Prefixes(
  prefixes: string[] | undefined,
  what: string,
  example: string,
): string[] | undefined {
  for (const prefix of prefixes ?? []) {
    if (!parseIPv6Prefix(prefix))
      throw new UsageError(`${what}: "${prefix}" is not an IPv6 prefix (e.g. ${example})`);
    // As IPv4's --route and --pool: host bits set are a typo, not a prefix.
    const meant = ipv6PrefixMeant(prefix);
    if (meant !== null)
      throw new UsageError(`${what}: ${prefix} has host bits set; did you mean ${meant}?`);
  }
  return prefixes;
}

/** `--dhcp4o6-link-prefix`: per value, one link's prefixes (comma-separated). */
function linkPrefixes(values: string[] | undefined): string[][] | undefined {
  if (!values?.length) return undefined;
  const links = values.map((value) => {
    const problem = linkPrefixProblem(value);
    if (problem) throw new UsageError(`--dhcp4o6-link-prefix: ${problem}`);
    const parts = value.split(",").map((p) => p.trim());
    ipv6Prefixes(parts, "--dhcp4o6-link-prefix", "2001:db8:10::/64");
    return parts;
  });
  const twice = duplicateLinkPrefix(links);
  if (twice) throw new UsageError(`--dhcp4o6-link-prefix: ${twice}`);
  return links;
}

/** `--decline-probation`: a duration like every other one (24h, 86400), or 0 for none; seconds. */
function probationSeconds(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  return String(text).trim() === "0" ? 0 : parseDuration(text, "--decline-probation");
}

/** `--dhcp4o6-identity`: source, client-id or chaddr. */
function identityMode(text: string | undefined): Dhcp4o6IdentityMode | undefined {
  if (text === undefined) return undefined;
  const mode = DHCP4O6_IDENTITY_MODES.find((m) => m === text);
  if (!mode)
    throw new UsageError(
      `--dhcp4o6-identity: "${text}" is not ${DHCP4O6_IDENTITY_MODES.join(", ")}`,
    );
  return mode;
}
