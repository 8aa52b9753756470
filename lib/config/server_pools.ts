/**
 * The server's pools from its settings: `--pool` flags, or the file's `pool` (a CIDR, an array
 * of CIDRs, or `[[pool]]` tables with their own TEP, sharing and links), with `--exclude` and
 * `--pool-link` given to the pool that holds each, every pool checked as the allocation
 * engine will check it (lib/alloc/pool.ts), at its place in the file.
 *
 * A problem of a pool from the file is said at the key or value it comes from, with its key
 * path: `FILE:7:15: pool[1].prefixes[0]: pool 198.51.100.1/24 has host bits set; …` (a value of
 * a list, of an inline table, of `pool = [...]` alike; ./toml_places.ts), not at the table's
 * header.
 *
 * @module
 */
import type { PoolConfig } from "../alloc/engine.ts";
import { Pool, PoolConfigError, poolsOverlap } from "../alloc/pool.ts";
import { sharingProblem } from "../alloc/sharing.ts";
import { formatIPv4 } from "../net/addr.ts";
import { parseIPv4Prefix, prefixContains, prefixesOverlap, prefixMeant } from "../net/prefix.ts";
import { linkProblem } from "../server/dhcp4o6_link.ts";
import { checkPoolScope, parseTep, wholeNumber } from "./endpoints.ts";
import { UsageError } from "./errors.ts";
import type { Settings } from "./merge.ts";
import { keyPathText } from "./toml_places.ts";

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
  /** From the config file: where its keys are; absent for a --pool flag. */
  file?: PoolPlace;
}

/** Where a pool of the config file is, to say a problem at the key it comes from. */
interface PoolPlace {
  /** Its key path: ["pool", 1] for the second `[[pool]]`, ["pool"] for `pool = "CIDR"`. */
  readonly keys: readonly (string | number)[];
  /** The key its prefixes were given as: "prefixes", "prefix", or none (a CIDR string). */
  readonly prefixKey?: string;
  /** How many of `exclude` the file gave (the rest come from --exclude). */
  readonly fileExcludes: number;
  readonly settings: Settings;
}

/**
 * The UsageError `FILE:LINE:COL: KEY-PATH: problem` of the key `sub` below `pool` (its
 * prefix `--flag: ` or `pool: ` dropped: the key path names the setting instead).
 */
function atKey(pool: PoolPlace, sub: readonly (string | number)[], problem: string): UsageError {
  const keys = [...pool.keys, ...sub];
  const where = pool.settings.where(keys) ?? "config file";
  return new UsageError(
    `${where}: ${keyPathText(keys)}: ${problem.replace(/^(--)?[a-z0-9-]+: /, "")}`,
  );
}

/** The key below a pool that names its `j`th prefix. */
function prefixKeys(pool: PoolPlace, j: number): (string | number)[] {
  if (pool.prefixKey === "prefixes") return ["prefixes", j];
  return pool.prefixKey === undefined ? [] : [pool.prefixKey];
}

/**
 * Runs `check`; a UsageError or PoolConfigError it throws is said at the key `sub(file)` of a
 * pool from the file (a --pool flag's is thrown as it is).
 */
function checkedAt<T>(
  pool: FilePool,
  sub: (file: PoolPlace) => readonly (string | number)[],
  check: () => T,
): T {
  try {
    return check();
  } catch (error) {
    if (!pool.file || !(error instanceof UsageError || error instanceof PoolConfigError))
      throw error;
    throw atKey(pool.file, sub(pool.file), error.message);
  }
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
  for (const pool of pools)
    pool.prefixes.forEach((cidr, j) => {
      checkedAt(
        pool,
        (file) => prefixKeys(file, j),
        () => checkPoolScope(cidr, "pool"),
      );
    });
  assignExclusions(pools, flags.exclude ?? []);
  assignLinks(pools, flags.poolLink ?? []);
  const poolConfigs = withDefaults(pools, flags, defaultTep);
  checkTepsOutsidePools(pools, poolConfigs);
  checkAtFilePlace(pools, poolConfigs);
  return poolConfigs;
}

/**
 * A TEP's own IPv4 address inside a pool would be leased to a host while the TEP uses it
 * (the source of its ICMPv4 errors, the address the hosts' packets leave from): refused
 * unless that pool excludes it.
 */
function checkTepsOutsidePools(
  pools: readonly FilePool[],
  poolConfigs: readonly PoolConfig[],
): void {
  for (const { tep4, tep6 } of poolConfigs) {
    if (!tep4) continue;
    poolConfigs.forEach((pool, i) => {
      const j = pool.prefixes.findIndex((c) => covers(c, tep4));
      if (j < 0 || (pool.exclude ?? []).some((e) => covers(e, tep4))) return;
      const address = formatIPv4(tep4);
      const problem = `pool ${pool.prefixes[j]}: it holds the IPv4 address ${address} of TEP ${tep6}, which would be leased to a host; give the TEP an address outside the pools, or --exclude ${address}`;
      const file = pools[i]?.file;
      throw file ? atKey(file, prefixKeys(file, j), problem) : new UsageError(problem);
    });
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
    const own = pool.tep;
    const tep = own
      ? checkedAt(
          pool,
          () => ["tep"],
          () => parseTep(own),
        )
      : defaultTep;
    if (!tep) {
      const problem = `pool ${pool.prefixes.join(",")}: no TEP; give --tep IPV6[,IPV4]`;
      throw pool.file
        ? atKey(pool.file, [], `${problem} (or tep = "…" here)`)
        : new UsageError(problem);
    }
    const sharing = {
      share: pool.share ?? share,
      psidOffset: pool.psidOffset ?? psidOffset,
      allowWellKnownPorts: pool.allowWellKnownPorts ?? allowWellKnown,
    };
    const problem = sharingProblem(sharing);
    if (problem) {
      // At the pool's own share or psid-offset (the one the problem names first), else the flag's.
      const key = sharingKey(pool, problem);
      if (pool.file && key) throw atKey(pool.file, [key], problem);
      throw new UsageError(`pool ${pool.prefixes[0]}: ${problem}`);
    }
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

/** The key of a [[pool]] table (share, psid-offset) a sharing `problem` is about, if it has it. */
function sharingKey(pool: FilePool, problem: string): string | undefined {
  const keys = [
    ...(pool.share === undefined ? [] : [{ key: "share", at: problem.indexOf("share") }]),
    ...(pool.psidOffset === undefined
      ? []
      : [{ key: "psid-offset", at: problem.indexOf("psid-offset") }]),
  ].filter((k) => k.at >= 0);
  keys.sort((a, b) => a.at - b.at);
  return keys[0]?.key;
}

/**
 * Each pool of the file as the engine will check it (host bits, overlaps, exclusions, size), at
 * the value it fails on: the first prefix with which the pool fails, else the first of the
 * file's exclusions, else its prefixes key; then no two pools of the file may overlap (said at
 * the later pool's prefix). Pools of --pool flags are the engine's to refuse (by their text).
 */
function checkAtFilePlace(pools: readonly FilePool[], poolConfigs: readonly PoolConfig[]): void {
  const built: Pool[] = [];
  for (const [i, config] of poolConfigs.entries()) {
    const problem = poolProblem(config);
    const file = pools[i]?.file;
    if (problem === undefined) built.push(new Pool(config));
    else if (file) throw atKey(file, poolProblemKeys(config, file), problem);
    else return; // a --pool flag's: the engine refuses it, by its text
  }
  const overlap = poolsOverlap(built);
  const later = overlap ? built.indexOf(overlap.b) : -1;
  const file = pools[later]?.file;
  if (!overlap || !file) return;
  const j = overlap.b.prefixes.findIndex((p) =>
    overlap.a.prefixes.some((q) => prefixesOverlap(p, q)),
  );
  throw atKey(file, prefixKeys(file, Math.max(0, j)), overlap.message);
}

/** Why the engine refuses `config` (lib/alloc/pool.ts), or undefined. */
function poolProblem(config: PoolConfig): string | undefined {
  try {
    new Pool(config);
    return undefined;
  } catch (error) {
    if (error instanceof PoolConfigError) return error.message;
    throw error;
  }
}

/**
 * The key below a refused file pool that its problem comes from: the first prefix with which
 * it is refused (format, host bits, overlap, size), else the first exclusion of the file with
 * which it is, else its prefixes.
 */
function poolProblemKeys(config: PoolConfig, file: PoolPlace): (string | number)[] {
  const base = { ...config, exclude: undefined };
  for (let j = 0; j < config.prefixes.length; j++)
    if (poolProblem({ ...base, prefixes: config.prefixes.slice(0, j + 1) }) !== undefined)
      return prefixKeys(file, j);
  const exclude = config.exclude ?? [];
  for (let k = 0; k < Math.min(file.fileExcludes, exclude.length); k++)
    if (poolProblem({ ...config, exclude: exclude.slice(0, k + 1) }) !== undefined)
      return ["exclude", k];
  return file.prefixKey === undefined ? [] : [file.prefixKey];
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

/** `links` of a [[pool]] table, each checked (lib/server/dhcp4o6_link.ts), said at the bad one. */
function checkedLinks(links: string[] | undefined, file: PoolPlace): string[] | undefined {
  (links ?? []).forEach((link, j) => {
    const problem = linkProblem(link);
    if (problem) throw atKey(file, ["links", j], problem);
  });
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
  const fromFile = settings.fromFile("pool") !== undefined;
  const list = Array.isArray(value) ? value : [value];
  return list.map((entry, i) => {
    const keys = Array.isArray(value) ? ["pool", i] : ["pool"];
    if (typeof entry === "string")
      return fromFile
        ? { prefixes: [entry], file: { keys, fileExcludes: 0, settings } }
        : { prefixes: [entry] };
    const record = entry as Record<string, unknown>;
    const prefixKey =
      record.prefixes !== undefined
        ? "prefixes"
        : record.prefix !== undefined
          ? "prefix"
          : undefined;
    const exclude = record.exclude as string[] | undefined;
    const file: PoolPlace = { keys, prefixKey, fileExcludes: exclude?.length ?? 0, settings };
    const prefixes = (record.prefixes ??
      (record.prefix === undefined ? undefined : [record.prefix])) as string[] | undefined;
    if (!prefixes || prefixes.length === 0)
      throw atKey(file, prefixKey ? [prefixKey] : [], 'give prefixes = ["CIDR", …]');
    return {
      prefixes,
      exclude,
      tep: record.tep as string | undefined,
      share: record.share as number | undefined,
      psidOffset: record["psid-offset"] as number | undefined,
      allowWellKnownPorts: record["allow-well-known-ports"] as boolean | undefined,
      links: checkedLinks(record.links as string[] | undefined, file),
      file,
    };
  });
}
