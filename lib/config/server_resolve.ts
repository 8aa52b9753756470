/**
 * `dstm server`'s settings (flags over the config file, lib/config/merge.ts) checked and
 * turned into the server's configuration (lib/server/server_config.ts), all but its logger,
 * which cli/server.ts makes. Each step throws a one-line {@link UsageError} naming the flag;
 * cli/ rewrites it to `FILE:LINE:COL` when the value came from the file (Settings.explain).
 *
 * @module
 */

import { POOL_WARN_PERCENT } from "../server/pool_watch.ts";
import type { ServerConfig } from "../server/server_config.ts";
import { sharesSecret } from "../wire/auth.ts";
import { DSTM_PORT } from "../wire/dstm_types.ts";
import type { DaemonFlags } from "./common_schema.ts";
import { parseDuration, parseHostPort, parsePort, unicastIPv6, wholeNumber } from "./endpoints.ts";
import { UsageError } from "./errors.ts";
import { readKeys } from "./key_file.ts";
import type { Settings } from "./merge.ts";
import { defaultControlSocket, defaultLeaseDb } from "./paths.ts";
import { dhcp4o6Settings, type ServerDhcp4o6Flags } from "./server_dhcp4o6.ts";
import { type PoolFlags, serverPools } from "./server_pools.ts";

/** The server's settings in flag form (camelCase names of lib/config/server_schema.ts). */
export interface ServerFlags extends PoolFlags, ServerDhcp4o6Flags, DaemonFlags {
  listen?: string;
  leaseTime?: string;
  maxLeaseTime?: string;
  db?: string;
  newDb?: boolean;
  key?: string;
  keyOverlap?: string;
  tepKey?: string;
  sourceCheck?: boolean;
  control?: string | boolean;
  poolWarnPercent?: string;
  tepPort?: string;
  tepSource?: string;
  requireTep?: boolean;
  maxLeasesPerPrefix?: string;
  hostPrefixLength?: string;
  maxLeasesPerSite?: string;
  sitePrefixLength?: string;
  prefixRate?: string;
  prefixBurst?: string;
  reclaimMaxLeases?: string;
  reclaimMaxMs?: string;
}

/** A {@link ServerConfig} without its logger. */
export type ServerSettings = Omit<ServerConfig, "log">;

export interface ResolveServerOptions {
  /** Called with the lease database (not "memory") once it is known, e.g. to create its directory. */
  prepareDatabase?: (db: string) => void;
  /** Warnings (default: `dstm: …` on stderr). */
  warn?: (text: string) => void;
}

/**
 * The server's configuration from its merged settings (`flags`: Settings.values) with the
 * server's defaults applied (some depend on other settings). Throws {@link UsageError}.
 */
export function resolveServerSettings(
  flags: ServerFlags,
  settings: Settings,
  opts: ResolveServerOptions = {},
): ServerSettings {
  const pools = serverPools(flags, settings);
  const { leaseTime, maxLeaseTime } = leaseTimes(flags);
  const listen = parseHostPort(flags.listen ?? `[::]:${DSTM_PORT}`, "--listen", DSTM_PORT);
  if (!listen.address.includes(":"))
    throw new UsageError(
      `--listen: DSTM runs over IPv6; "${listen.address}" is not an IPv6 address`,
    );
  const dbText = flags.db ?? defaultLeaseDb();
  const db = dbText === "memory" ? undefined : dbText;
  if (db) opts.prepareDatabase?.(db);
  const { keys, keyOverlap, tepKeys } = serverKeys(flags);
  const endpoints = controlEndpoints(flags);
  const logging = logSettings(flags);
  const tepPort =
    flags.tepPort === undefined ? undefined : parsePort(flags.tepPort, "--tep-port", 0);
  const warn = opts.warn ?? ((text: string) => process.stderr.write(`dstm: ${text}\n`));
  const dhcp4o6 = dhcp4o6Settings(flags, pools, keys !== undefined, warn);
  const tepSource =
    flags.tepSource === undefined
      ? undefined
      : unicastIPv6(flags.tepSource, "--tep-source", "the server's", { loopback: true });
  return {
    dhcp4o6,
    admission: admissionSettings(flags),
    reclaim: {
      maxLeases: wholeNumber(flags.reclaimMaxLeases, "--reclaim-max-leases"),
      maxMs: wholeNumber(flags.reclaimMaxMs, "--reclaim-max-ms"),
    },
    tepPort,
    tepSource,
    requireTep: flags.requireTep === true,
    pools,
    leaseTime,
    maxLeaseTime,
    listen,
    db,
    newDb: flags.newDb === true,
    keys,
    keyOverlapSeconds: keyOverlap,
    tepKeys,
    sourceCheck: flags.sourceCheck !== false,
    ...endpoints,
    ...logging,
  };
}

/** `--lease-time` (default 3600 s) and `--max-lease-time` (default: the lease time), seconds. */
function leaseTimes(flags: ServerFlags): { leaseTime: number; maxLeaseTime: number } {
  const leaseTime = parseDuration(flags.leaseTime ?? 3600, "--lease-time");
  const maxLeaseTime =
    flags.maxLeaseTime === undefined
      ? leaseTime
      : parseDuration(flags.maxLeaseTime, "--max-lease-time");
  if (maxLeaseTime < leaseTime)
    throw new UsageError(
      `--max-lease-time (${maxLeaseTime}s) must not be shorter than --lease-time (${leaseTime}s): raise --max-lease-time or lower --lease-time`,
    );
  return { leaseTime, maxLeaseTime };
}

/** The hosts' keys (`--key`), their overlap on reload, and the TEPs' keys (`--tep-key`), never the same secret. */
function serverKeys(
  flags: ServerFlags,
): Pick<ServerSettings, "keys" | "tepKeys"> & { keyOverlap: number } {
  const keys = flags.key ? readKeys(flags.key, { setting: "key" }) : undefined;
  const keyOverlap = parseDuration(flags.keyOverlap ?? "1h", "--key-overlap");
  const tepKeys = flags.tepKey ? readKeys(flags.tepKey, { setting: "tep-key" }) : undefined;
  if (keys && tepKeys && sharesSecret(keys, tepKeys))
    throw new UsageError(
      "--tep-key: a secret of the TEP key file is also in --key; hosts hold --key, so make a separate one with `dstm keygen`",
    );
  return { keys, keyOverlap, tepKeys };
}

/** The control socket (`--no-control`: none), the Prometheus endpoint and the pool warning threshold. */
function controlEndpoints(
  flags: ServerFlags,
): Pick<ServerSettings, "control" | "metrics" | "poolWarnPercent"> {
  const control =
    flags.control === false
      ? undefined
      : typeof flags.control === "string"
        ? flags.control
        : defaultControlSocket();
  const metrics = flags.metrics ? parseHostPort(flags.metrics, "--metrics", 9604) : undefined;
  const poolWarnPercent = Number(flags.poolWarnPercent ?? POOL_WARN_PERCENT);
  if (!Number.isInteger(poolWarnPercent) || poolWarnPercent < 1 || poolWarnPercent > 100)
    throw new UsageError(`--pool-warn-percent: "${flags.poolWarnPercent}" is not 1–100`);
  return { control, metrics, poolWarnPercent };
}

/** `--log-format` (text, json) and `--log-level` (debug, info, warn, error). */
function logSettings(flags: ServerFlags): {
  logFormat: "text" | "json";
  logLevel: "debug" | "info" | "warn" | "error";
} {
  const logFormat = flags.logFormat ?? "text";
  const logLevel = flags.logLevel ?? "info";
  if (logFormat !== "text" && logFormat !== "json")
    throw new UsageError(`--log-format must be text or json, not "${logFormat}"`);
  if (!["debug", "info", "warn", "error"].includes(logLevel))
    throw new UsageError(`--log-level "${logLevel}" is not debug, info, warn or error`);
  return { logFormat, logLevel };
}

/** The lease cap per host prefix and the rate limit per source prefix (lib/server/admission.ts). */
function admissionSettings(flags: ServerFlags): ServerSettings["admission"] {
  const cap = wholeNumber(flags.maxLeasesPerPrefix, "--max-leases-per-prefix");
  const length = wholeNumber(flags.hostPrefixLength, "--host-prefix-length");
  if (length !== undefined && (length < 1 || length > 128))
    throw new UsageError(`--host-prefix-length: ${length} is not 1–128`);
  const rate = wholeNumber(flags.prefixRate, "--prefix-rate");
  const burst = wholeNumber(flags.prefixBurst, "--prefix-burst");
  if (burst === 0)
    throw new UsageError("--prefix-burst must be at least 1 (--prefix-rate 0 turns the limit off)");
  const perSite = wholeNumber(flags.maxLeasesPerSite, "--max-leases-per-site");
  const siteLength = wholeNumber(flags.sitePrefixLength, "--site-prefix-length");
  if (siteLength !== undefined && (siteLength < 1 || siteLength > 128))
    throw new UsageError(`--site-prefix-length: ${siteLength} is not 1–128`);
  return {
    maxLeasesPerPrefix: cap,
    hostPrefixLength: length,
    maxLeasesPerSite: perSite,
    sitePrefixLength: siteLength,
    ratePerSecond: rate,
    burst,
  };
}
