/**
 * The server's pools from its settings: `--pool` flags, or the file's `pool` (a CIDR, an array
 * of CIDRs, or `[[pool]]` tables with their own TEP, sharing and links), with `--exclude` and
 * `--pool-link` given to the pool that holds each, every pool checked as the allocation
 * engine will check it (lib/alloc/pool.ts), at its place in the file.
 *
 * @module
 */
import type { PoolConfig } from "../alloc/engine.ts";
import { Pool, PoolConfigError } from "../alloc/pool.ts";
import { sharingProblem } from "../alloc/sharing.ts";
import { formatIPv4 } from "../net/addr.ts";
import { parseIPv4Prefix, prefixContains, prefixMeant } from "../net/prefix.ts";
import { linkProblem } from "../server/dhcp4o6_link.ts";
import { checkPoolScope, parseTep, wholeNumber } from "./endpoints.ts";
import { UsageError } from "./errors.ts";
import type { Settings } from "./merge.ts";

/** The pool settings of the server, in flag form (lib/config/server_schema.ts). */
export interface PoolFlags {
  pool?: unknown;
  exclude?: string[];
  share?: string;
  psidOffset?: string;
  allowWellKnownPorts?: boolean;
  tep?: string;
  poolLink?: string[];
}

/** One pool as given, before the defaults (TEP, sharing) are applied. */
interface FilePool {
  prefixes: string[];
  exclude?: string[];
  tep?: string;
  share?: number;
  psidOffset?: number;
  allowWellKnownPorts?: boolean;
  links?: string[];
}

/**
 * The pools as the allocation engine takes them. Throws {@link UsageError} naming the flag or
 * `FILE:LINE:COL` for a missing pool or TEP, a special-purpose range, an exclusion or link in
 * no pool, a bad sharing setting, or a pool the engine refuses (host bits, exclusions).
 */
export function serverPools(flags: PoolFlags, settings: Settings): PoolConfig[] {
  const defaultTep = flags.tep ? parseTep(flags.tep) : undefined;
  const pools = poolsOf(flags.pool, settings);
  if (pools.length === 0)
    throw new UsageError(
      "no pool: give --pool CIDR (e.g. --pool 192.168.20.0/24) or [[pool]] in --config",
    );
  for (const pool of pools) for (const cidr of pool.prefixes) checkPoolScope(cidr, "pool");
  assignExclusions(pools, flags.exclude ?? []);
  assignLinks(pools, flags.poolLink ?? []);
  const poolConfigs = withDefaults(pools, flags, defaultTep);
  checkTepsOutsidePools(poolConfigs);
  if (settings.fromFile("pool")) checkAtFilePlace(poolConfigs, flags, settings);
  return poolConfigs;
}

/**
 * A TEP's own IPv4 address inside a pool would be leased to a host while the TEP uses it
 * (the source of its ICMPv4 errors, the address the hosts' packets leave from): refused
 * unless that pool excludes it.
 */
function checkTepsOutsidePools(poolConfigs: readonly PoolConfig[]): void {
  for (const { tep4, tep6 } of poolConfigs) {
    if (!tep4) continue;
    for (const pool of poolConfigs) {
      const cidr = pool.prefixes.find((c) => covers(c, tep4));
      if (cidr === undefined || (pool.exclude ?? []).some((e) => covers(e, tep4))) continue;
      const address = formatIPv4(tep4);
      throw new UsageError(
        `pool ${cidr}: it holds the IPv4 address ${address} of TEP ${tep6}, which would be leased to a host; give the TEP an address outside the pools, or --exclude ${address}`,
      );
    }
  }
}

/** True when `text` (an IPv4 address or CIDR) holds IPv4 address `address`. */
function covers(text: string, address: number): boolean {
  const prefix = parseIPv4Prefix(text.includes("/") ? text : `${text}/32`);
  return prefix !== null && prefixContains(prefix, address);
}

/** Each pool with its TEP and sharing: a [[pool]] table's own setting, else the flag (or the file's top-level setting). */
function withDefaults(
  pools: readonly FilePool[],
  flags: PoolFlags,
  defaultTep: { tep6: string; tep4?: number } | undefined,
): PoolConfig[] {
  const share = wholeNumber(flags.share, "--share");
  const psidOffset = wholeNumber(flags.psidOffset, "--psid-offset");
  const allowWellKnown = flags.allowWellKnownPorts === true;
  return pools.map((pool) => {
    const tep = pool.tep ? parseTep(pool.tep) : defaultTep;
    if (!tep)
      throw new UsageError(`pool ${pool.prefixes.join(",")}: no TEP; give --tep IPV6[,IPV4]`);
    const sharing = {
      share: pool.share ?? share,
      psidOffset: pool.psidOffset ?? psidOffset,
      allowWellKnownPorts: pool.allowWellKnownPorts ?? allowWellKnown,
    };
    const problem = sharingProblem(sharing);
    if (problem) throw new UsageError(`pool ${pool.prefixes[0]}: ${problem}`);
    return {
      prefixes: pool.prefixes,
      exclude: pool.exclude,
      tep6: tep.tep6,
      tep4: tep.tep4,
      ...sharing,
      ...(pool.links?.length ? { links: pool.links } : {}),
    };
  });
}

/** Each pool as the engine will check it (host bits, exclusions), at its place in the file. */
function checkAtFilePlace(
  poolConfigs: readonly PoolConfig[],
  flags: PoolFlags,
  settings: Settings,
): void {
  poolConfigs.forEach((config, i) => {
    try {
      new Pool(config);
    } catch (error) {
      if (!(error instanceof PoolConfigError)) throw error;
      const where = Array.isArray(flags.pool)
        ? settings.where(["pool", i])
        : settings.fromFile("pool");
      throw new UsageError(`${where}: ${error.message}`);
    }
  });
}

/** Gives each --exclude to the pool that contains it. */
function assignExclusions(pools: FilePool[], exclusions: readonly string[]): void {
  for (const text of exclusions) {
    const prefix = parseIPv4Prefix(text.includes("/") ? text : `${text}/32`);
    if (!prefix) {
      const meant = prefixMeant(text);
      throw new UsageError(
        meant === null
          ? `--exclude: "${text}" is not an IPv4 address or CIDR`
          : `--exclude: ${text} has host bits set; did you mean ${meant}?`,
      );
    }
    const pool = poolHolding(pools, prefix.base);
    if (!pool) throw new UsageError(`--exclude: ${text} is in no pool`);
    pool.exclude = [...(pool.exclude ?? []), text];
  }
}

/** The pool one of whose prefixes holds IPv4 address `base`. */
function poolHolding(pools: FilePool[], base: number): FilePool | undefined {
  return pools.find((p) =>
    p.prefixes.some((cidr) => {
      const parsed = parseIPv4Prefix(cidr);
      return parsed !== null && prefixContains(parsed, base);
    }),
  );
}

/** `links` of a [[pool]] table, each checked (lib/server/dhcp4o6_link.ts). */
function checkedLinks(links: string[] | undefined, where: string): string[] | undefined {
  for (const link of links ?? []) {
    const problem = linkProblem(link);
    if (problem) throw new UsageError(`${where}: links: ${problem}`);
  }
  return links;
}

/** Gives each --pool-link ADDR=LINK to the pool that holds ADDR (an IPv4 address or CIDR). */
function assignLinks(pools: FilePool[], links: readonly string[]): void {
  for (const text of links) {
    const eq = text.indexOf("=");
    const prefix =
      eq < 0
        ? null
        : parseIPv4Prefix(
            text.slice(0, eq).includes("/") ? text.slice(0, eq) : `${text.slice(0, eq)}/32`,
          );
    if (!prefix)
      throw new UsageError(
        `--pool-link: "${text}" is not ADDR=LINK (e.g. 198.51.100.0=2001:db8:10::/64)`,
      );
    const link = text.slice(eq + 1).trim();
    const problem = linkProblem(link);
    if (problem) throw new UsageError(`--pool-link: ${problem}`);
    const pool = poolHolding(pools, prefix.base);
    if (!pool) throw new UsageError(`--pool-link: ${text.slice(0, eq)} is in no pool`);
    pool.links = [...(pool.links ?? []), link];
  }
}

/**
 * The pools: each --pool flag is one; from the file a CIDR, an array of CIDRs or [[pool]]
 * tables (their TOML types were checked with the file, lib/config/server_schema.ts).
 */
function poolsOf(value: unknown, settings: Settings): FilePool[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((entry, i) => {
    if (typeof entry === "string") return { prefixes: [entry] };
    const where = `${settings.where(["pool", i]) ?? "config file"}: pool ${i + 1}`;
    const record = entry as Record<string, unknown>;
    const prefixes = (record.prefixes ??
      (record.prefix === undefined ? undefined : [record.prefix])) as string[] | undefined;
    if (!prefixes || prefixes.length === 0)
      throw new UsageError(`${where}: give prefixes = ["CIDR", …]`);
    return {
      prefixes,
      exclude: record.exclude as string[] | undefined,
      tep: record.tep as string | undefined,
      share: record.share as number | undefined,
      psidOffset: record["psid-offset"] as number | undefined,
      allowWellKnownPorts: record["allow-well-known-ports"] as boolean | undefined,
      links: checkedLinks(record.links as string[] | undefined, where),
    };
  });
}
