/**
 * `dstm server`: flags and config file → ServerConfig → running server until a signal.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Command, Option } from "@commander-js/extra-typings";
import type { PoolConfig } from "../lib/alloc/engine.ts";
import type { Pool } from "../lib/alloc/pool.ts";
import {
  DEFAULT_PSID_OFFSET,
  lowestPort,
  sharingProblem,
  WELL_KNOWN_PORTS,
} from "../lib/alloc/sharing.ts";
import { type LogFormat, Logger, type LogLevel } from "../lib/control/log.ts";
import { isPostgresUrl } from "../lib/lease/postgres.ts";
import { parseIPv4Prefix, prefixContains } from "../lib/net/prefix.ts";
import { ADMISSION_DEFAULTS, parseIPv6Prefix } from "../lib/server/admission.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { stdoutIsJournal } from "../lib/sys/journal.ts";
import { sdNotify } from "../lib/sys/sd_notify.ts";
import { readTomlFile } from "../lib/sys/toml.ts";
import { sharesSecret } from "../lib/wire/auth.ts";
import { DSTM_PORT } from "../lib/wire/dstm_types.ts";
import { readKeys } from "./common.ts";
import {
  checkPoolScope,
  parseDuration,
  parseHostPort,
  parseTep,
  unicastIPv4,
  unicastIPv6,
} from "./endpoints.ts";
import { UsageError } from "./errors.ts";
import { defaultControlSocket, defaultLeaseDb } from "./paths.ts";

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function serverCommand(): Command {
  return new Command("server")
    .description(
      "run the DSTM server: IPv4 pool, lease table, answers DISCOVER/REQUEST/RELEASE over UDP/IPv6",
    )
    .option("--pool <cidr>", "IPv4 pool (repeatable); each --pool is one pool", collect)
    .option("--exclude <addr>", "address or CIDR never to hand out (repeatable)", collect)
    .option(
      "--share <n>",
      "share each pool address among N hosts (a power of two), each with its own port set (RFC 7597 PSID); default 1: whole addresses",
    )
    .option(
      "--psid-offset <a>",
      `RFC 7597 offset bits of the port sets, 0–15 (default ${DEFAULT_PSID_OFFSET}: ports 0–1023 are in no set)`,
    )
    .option(
      "--allow-well-known-ports",
      "also hand out port sets that contain ports 0–1023 (only matters with --psid-offset 0 or above 6)",
    )
    .option(
      "--tep <v6[,v4]>",
      "tunnel end point the leases use: its IPv6 address and optionally its IPv4 address",
    )
    .option("--listen <addr:port>", `UDP address to answer on (default [::]:${DSTM_PORT})`)
    .option("--lease-time <seconds>", "lease time granted (default 3600; 90s, 15m, 2h accepted)")
    .option(
      "--max-lease-time <seconds>",
      "longest lease a client may ask for (default: --lease-time)",
    )
    .option(
      "--db <path|url>",
      `SQLite lease database, a postgres:// URL (several servers may share it), or "memory" (default ${defaultLeaseDb()})`,
    )
    .option(
      "--new-db",
      "start an empty lease database although one existed at --db and is gone (only once its leases have expired)",
    )
    .option(
      "--key <file>",
      "require HMAC-SHA256 authentication with the keys in FILE (see `dstm keygen`)",
    )
    .option(
      "--tep-key <file>",
      "sign BIND/UNBIND/SNAPSHOT and verify the TEPs' SYNC with the server-TEP key in FILE (each dstm tep --key FILE); never give hosts this file",
    )
    .option(
      "--no-source-check",
      "accept a HOST_IPV6 that differs from the request's source address",
    )
    .option(
      "--control <path>",
      `control socket for \`dstm lease ls\` (default ${defaultControlSocket()})`,
    )
    .option("--no-control", "do not open a control socket")
    .option("--metrics <addr:port>", "serve Prometheus metrics on http://ADDR:PORT/metrics")
    .option("--tep-port <n>", "UDP port of the TEPs' control endpoint (default 4608)")
    .option(
      "--tep-source <v6>",
      "source address of BIND/UNBIND to the TEPs (default: the --listen address, or where the TEP's SYNC arrived)",
    )
    .option("--require-tep", "refuse leases (TEP_UNAVAILABLE) while their TEP has not connected")
    .option(
      "--dhcp4o6",
      "also answer DHCPv4-over-DHCPv6 (RFC 7341) on UDP 547, from the same pools",
    )
    .option("--dhcp4o6-listen <addr:port>", "DHCPv4-over-DHCPv6 address (default [::]:547)")
    .option(
      "--dhcp4o6-interface <ifname>",
      "join ff02::1:2 on this interface (repeatable)",
      collect,
    )
    .option(
      "--dhcp4o6-server-id <ipv4>",
      "DHCPv4 server identifier (default: the first pool's TEP IPv4)",
    )
    .option(
      "--dhcp4o6-allow <prefix>",
      "answer DHCPv4-over-DHCPv6 only from hosts in this IPv6 prefix (repeatable); needed with --key",
      collect,
    )
    .option(
      "--dhcp4o6-open",
      "with --key, answer DHCPv4-over-DHCPv6 (which has no authentication) from any host anyway",
    )
    .option(
      "--max-leases-per-prefix <n>",
      `most leases the hosts of one host prefix may hold (default ${ADMISSION_DEFAULTS.maxLeasesPerPrefix}; 0: no cap)`,
    )
    .option(
      "--host-prefix-length <bits>",
      `host prefix length for the lease cap and the rate limit (default ${ADMISSION_DEFAULTS.hostPrefixLength})`,
    )
    .option(
      "--prefix-rate <n>",
      `requests per second per source prefix, native and 4o6 (default ${ADMISSION_DEFAULTS.ratePerSecond}; 0: no limit)`,
    )
    .option(
      "--prefix-burst <n>",
      `requests per source prefix at once before --prefix-rate applies (default ${ADMISSION_DEFAULTS.burst})`,
    )
    .option(
      "--reclaim-max-leases <n>",
      "most expired leases reclaimed in one slice, answers go out between slices (default 100; 0: no limit)",
    )
    .option(
      "--reclaim-max-ms <ms>",
      "longest one reclamation slice runs (default 250; 0: no limit)",
    )
    .addOption(
      new Option("--log-format <format>", "log line format").choices(["text", "json"] as const),
    )
    .addOption(
      new Option("--log-level <level>", "least severe events logged").choices([
        "debug",
        "info",
        "warn",
        "error",
      ] as const),
    )
    .option("--config <file>", "read these settings from a TOML file (flags win)")
    .addHelpText(
      "after",
      `
Examples:
  dstm server --pool 192.168.20.0/24 --tep 2001:db8:1::1,192.0.2.1
  dstm server --pool 198.51.100.0/25 --pool 203.0.113.0/24 --tep 2001:db8::1 --key /etc/dstm/key --metrics [::1]:9604
  dstm server --pool 198.51.100.0/24 --share 4 --tep 2001:db8::1   # 4 hosts per address, 16,128 ports each
  dstm server --config /etc/dstm/dstm.toml`,
    )
    .action(async (flags) => {
      const config = resolveServerConfig(flags);
      const server = await DstmServer.start(config);
      for (const pool of server.engine.pools()) logSharing(config.log, pool);
      sdNotify("READY=1\nSTATUS=answering DISCOVER/REQUEST/RELEASE");
      const fatal = await new Promise<Error | undefined>((resolve) => {
        const stop = () => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          server.stop().then(() => resolve(undefined), resolve);
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
        // The lease database vanished under the server: it has stopped; exit non-zero.
        server.failed.then((error) => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          server.stop().then(() => resolve(error), resolve);
        });
      });
      if (fatal) throw fatal;
    });
}

export interface ServerFlags {
  pool?: string[];
  exclude?: string[];
  share?: string;
  psidOffset?: string;
  allowWellKnownPorts?: boolean;
  tep?: string;
  listen?: string;
  leaseTime?: string;
  maxLeaseTime?: string;
  db?: string;
  newDb?: boolean;
  key?: string;
  tepKey?: string;
  sourceCheck?: boolean;
  control?: string | boolean;
  metrics?: string;
  tepPort?: string;
  tepSource?: string;
  requireTep?: boolean;
  dhcp4o6?: boolean;
  dhcp4o6Listen?: string;
  dhcp4o6Interface?: string[];
  dhcp4o6ServerId?: string;
  dhcp4o6Allow?: string[];
  dhcp4o6Open?: boolean;
  maxLeasesPerPrefix?: string;
  hostPrefixLength?: string;
  prefixRate?: string;
  prefixBurst?: string;
  reclaimMaxLeases?: string;
  reclaimMaxMs?: string;
  logFormat?: LogFormat;
  logLevel?: LogLevel;
  config?: string;
}

const FILE_KEYS = new Set([
  "pool",
  "dhcp4o6",
  "dhcp4o6-listen",
  "dhcp4o6-interfaces",
  "dhcp4o6-server-id",
  "dhcp4o6-allow",
  "dhcp4o6-open",
  "max-leases-per-prefix",
  "host-prefix-length",
  "prefix-rate",
  "prefix-burst",
  "reclaim-max-leases",
  "reclaim-max-ms",
  "share",
  "psid-offset",
  "allow-well-known-ports",
  "tep",
  "listen",
  "lease-time",
  "max-lease-time",
  "db",
  "key",
  "tep-key",
  "source-check",
  "control",
  "metrics",
  "tep-port",
  "tep-source",
  "require-tep",
  "log-format",
  "log-level",
]);

/** Merges flags over the config file over defaults; throws UsageError on anything wrong. */
export function resolveServerConfig(
  flags: ServerFlags,
  sink: (text: string) => void = stdoutSink,
): ServerConfig {
  const file = flags.config ? readConfigFile(flags.config) : {};
  for (const key of Object.keys(file)) {
    if (!FILE_KEYS.has(key))
      throw new UsageError(`config file ${flags.config}: unknown setting "${key}"`);
  }
  const str = (key: string): string | undefined => {
    const value = file[key];
    if (value === undefined) return undefined;
    if (typeof value !== "string" && typeof value !== "number") {
      throw new UsageError(`config file ${flags.config}: "${key}" must be a string or number`);
    }
    return String(value);
  };
  const tepText = flags.tep ?? str("tep");
  const defaultTep = tepText ? parseTep(tepText) : undefined;
  const pools = flags.pool?.length
    ? flags.pool.map((prefix) => ({ prefixes: [prefix] }) as FilePool)
    : poolsFromFile(file.pool, flags.config);
  if (pools.length === 0)
    throw new UsageError(
      "no pool: give --pool CIDR (e.g. --pool 192.168.20.0/24) or [[pool]] in --config",
    );
  for (const pool of pools) for (const cidr of pool.prefixes) checkPoolScope(cidr, "pool");
  assignExclusions(pools, flags.exclude ?? []);
  // Sharing: a [[pool]] table's own setting, else the flag, else the top-level setting.
  const share = wholeNumber(flags.share ?? file.share, "--share");
  const psidOffset = wholeNumber(flags.psidOffset ?? file["psid-offset"], "--psid-offset");
  const allowWellKnown = flags.allowWellKnownPorts || fileFlag(file, "allow-well-known-ports");
  const poolConfigs: PoolConfig[] = pools.map((pool) => {
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
    };
  });
  const leaseTime = parseDuration(flags.leaseTime ?? str("lease-time") ?? 3600, "--lease-time");
  const maxText = flags.maxLeaseTime ?? str("max-lease-time");
  const maxLeaseTime =
    maxText === undefined ? leaseTime : parseDuration(maxText, "--max-lease-time");
  if (maxLeaseTime < leaseTime)
    throw new UsageError("--max-lease-time must not be shorter than --lease-time");
  const listen = parseHostPort(
    flags.listen ?? str("listen") ?? `[::]:${DSTM_PORT}`,
    "--listen",
    DSTM_PORT,
  );
  if (!listen.address.includes(":"))
    throw new UsageError(
      `--listen: DSTM runs over IPv6; "${listen.address}" is not an IPv6 address`,
    );
  const dbText = flags.db ?? str("db") ?? defaultLeaseDb();
  const db = dbText === "memory" ? undefined : dbText;
  if (db && !isPostgresUrl(db)) ensureDirectory(db, "--db");
  const keyFile = flags.key ?? str("key");
  const keys = keyFile ? readKeys(keyFile) : undefined;
  const tepKeyFile = flags.tepKey ?? str("tep-key");
  const tepKeys = tepKeyFile ? readKeys(tepKeyFile) : undefined;
  if (keys && tepKeys && sharesSecret(keys, tepKeys))
    throw new UsageError(
      "--tep-key: a secret of the TEP key file is also in --key; hosts hold --key, so make a separate one with `dstm keygen`",
    );
  const sourceCheck = flags.sourceCheck === false ? false : file["source-check"] !== false;
  const control =
    flags.control === false
      ? undefined
      : typeof flags.control === "string"
        ? flags.control
        : (str("control") ?? defaultControlSocket());
  const metricsText = flags.metrics ?? str("metrics");
  const metrics = metricsText ? parseHostPort(metricsText, "--metrics", 9604) : undefined;
  const logFormat = (flags.logFormat ?? str("log-format") ?? "text") as LogFormat;
  const logLevel = (flags.logLevel ?? str("log-level") ?? "info") as LogLevel;
  if (logFormat !== "text" && logFormat !== "json")
    throw new UsageError(`log-format must be text or json, not "${logFormat}"`);
  if (!["debug", "info", "warn", "error"].includes(logLevel))
    throw new UsageError(`log-level "${logLevel}" is not debug, info, warn or error`);
  const tepPortText = flags.tepPort ?? str("tep-port");
  const tepPort = tepPortText === undefined ? undefined : Number(tepPortText);
  if (tepPort !== undefined && (!Number.isInteger(tepPort) || tepPort < 1 || tepPort > 65535)) {
    throw new UsageError(`--tep-port: "${tepPortText}" is not a port`);
  }
  const dhcp4o6 = dhcp4o6Config(flags, file, str, poolConfigs);
  if (dhcp4o6 && keys && !dhcp4o6.allow && !(flags.dhcp4o6Open || fileFlag(file, "dhcp4o6-open")))
    throw new UsageError(
      "--key does not cover DHCPv4-over-DHCPv6 (RFC 7341 has no authentication): give --dhcp4o6-allow PREFIX for the hosts that may lease over it, or --dhcp4o6-open to answer any host knowingly",
    );
  const tepSourceText = flags.tepSource ?? str("tep-source");
  const tepSource =
    tepSourceText === undefined
      ? undefined
      : unicastIPv6(tepSourceText, "--tep-source", "the server's", { loopback: true });
  return {
    dhcp4o6,
    admission: admissionConfig(flags, file),
    reclaim: {
      maxLeases: wholeNumber(
        flags.reclaimMaxLeases ?? file["reclaim-max-leases"],
        "--reclaim-max-leases",
      ),
      maxMs: wholeNumber(flags.reclaimMaxMs ?? file["reclaim-max-ms"], "--reclaim-max-ms"),
    },
    tepPort,
    tepSource,
    requireTep: flags.requireTep ?? file["require-tep"] === true,
    pools: poolConfigs,
    leaseTime,
    maxLeaseTime,
    listen,
    db,
    newDb: flags.newDb === true,
    keys,
    tepKeys,
    sourceCheck,
    control,
    metrics,
    log: new Logger({
      format: logFormat,
      level: logLevel,
      sink,
      priorityPrefix: sink === stdoutSink && stdoutIsJournal(),
    }),
  };
}

interface FilePool {
  prefixes: string[];
  exclude?: string[];
  tep?: string;
  share?: number;
  psidOffset?: number;
  allowWellKnownPorts?: boolean;
}

/** A whole number from a flag or a TOML value (number or digits), or undefined when absent. */
function wholeNumber(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  if ((typeof value !== "string" && typeof value !== "number") || !/^\d{1,6}$/.test(text))
    throw new UsageError(`${what}: "${String(value)}" is not a whole number`);
  return Number(text);
}

/** A true/false setting of the config file (or of one [[pool]] table). */
function fileFlag(record: Record<string, unknown>, key: string, where = "config file"): boolean {
  const value = record[key];
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw new UsageError(`${where}: "${key}" must be true or false`);
  return value;
}

/** One `share` log line per shared pool: how its addresses are split and which PSIDs are handed out. */
function logSharing(log: Logger, pool: Pool): void {
  const s = pool.sharing;
  if (s.share === 1) return;
  let wellKnown = 0; // PSIDs whose set holds a port below 1024
  for (let psid = 0; psid < s.share; psid++) {
    if (lowestPort(s.psidOffset, s.psidLength, psid) < WELL_KNOWN_PORTS) wellKnown++;
  }
  log.info("share", {
    pool: pool.name,
    addresses: pool.addresses,
    share: s.share,
    "psid-offset": s.psidOffset,
    psids: `${s.usablePsids}/${s.share}`,
    ports: s.portsPerSet,
    leases: pool.size,
    "well-known":
      wellKnown === 0
        ? undefined
        : s.allowWellKnownPorts
          ? `${wellKnown} PSID(s) with ports below 1024 assigned (allow-well-known-ports)`
          : `${wellKnown === 1 ? "PSID 0 holds" : `PSIDs 0-${wellKnown - 1} hold`} ports below 1024: not assigned (allow-well-known-ports assigns them)`,
  });
}

/** Gives each --exclude to the pool that contains it. */
function assignExclusions(pools: FilePool[], exclusions: readonly string[]): void {
  for (const text of exclusions) {
    const prefix = parseIPv4Prefix(text.includes("/") ? text : `${text}/32`);
    if (!prefix) throw new UsageError(`--exclude: "${text}" is not an IPv4 address or CIDR`);
    const pool = pools.find((p) =>
      p.prefixes.some((cidr) => {
        const parsed = parseIPv4Prefix(cidr);
        return parsed !== null && prefixContains(parsed, prefix.base);
      }),
    );
    if (!pool) throw new UsageError(`--exclude: ${text} is in no pool`);
    pool.exclude = [...(pool.exclude ?? []), text];
  }
}

function poolsFromFile(value: unknown, file: string | undefined): FilePool[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((entry, i) => {
    const where = `config file ${file}: pool ${i + 1}`;
    if (typeof entry === "string") return { prefixes: [entry] };
    if (typeof entry !== "object" || entry === null)
      throw new UsageError(`${where}: expected a CIDR or a table`);
    const record = entry as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (
        ![
          "prefixes",
          "prefix",
          "exclude",
          "tep",
          "share",
          "psid-offset",
          "allow-well-known-ports",
        ].includes(key)
      )
        throw new UsageError(`${where}: unknown setting "${key}"`);
    }
    const prefixes = record.prefixes ?? (record.prefix === undefined ? undefined : [record.prefix]);
    if (!isStringArray(prefixes) || prefixes.length === 0)
      throw new UsageError(`${where}: "prefixes" must be a list of CIDRs`);
    if (record.exclude !== undefined && !isStringArray(record.exclude))
      throw new UsageError(`${where}: "exclude" must be a list`);
    if (record.tep !== undefined && typeof record.tep !== "string")
      throw new UsageError(`${where}: "tep" must be "IPV6[,IPV4]"`);
    return {
      prefixes,
      exclude: record.exclude as string[] | undefined,
      tep: record.tep as string | undefined,
      share: wholeNumber(record.share, `${where}: share`),
      psidOffset: wholeNumber(record["psid-offset"], `${where}: psid-offset`),
      allowWellKnownPorts:
        record["allow-well-known-ports"] === undefined
          ? undefined
          : fileFlag(record, "allow-well-known-ports", where),
    };
  });
}

function readConfigFile(path: string): Record<string, unknown> {
  try {
    return readTomlFile(path);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === "string");
}

function ensureDirectory(file: string, what: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new UsageError(
      `${what}: cannot create the directory of ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

function stdoutSink(text: string): void {
  process.stdout.write(text);
}

/** The DHCPv4-over-DHCPv6 service's settings, or undefined when it is off. */
function dhcp4o6Config(
  flags: ServerFlags,
  file: Record<string, unknown>,
  str: (key: string) => string | undefined,
  pools: readonly PoolConfig[],
): ServerConfig["dhcp4o6"] {
  if (!flags.dhcp4o6 && file.dhcp4o6 !== true) return undefined;
  const listen = parseHostPort(
    flags.dhcp4o6Listen ?? str("dhcp4o6-listen") ?? "[::]:547",
    "--dhcp4o6-listen",
    547,
  );
  if (!listen.address.includes(":"))
    throw new UsageError("--dhcp4o6-listen: DHCPv4-over-DHCPv6 runs over IPv6");
  const fileInterfaces = file["dhcp4o6-interfaces"];
  if (fileInterfaces !== undefined && !isStringArray(fileInterfaces)) {
    throw new UsageError('config file: "dhcp4o6-interfaces" must be a list of interface names');
  }
  const idText = flags.dhcp4o6ServerId ?? str("dhcp4o6-server-id");
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
  const allow = flags.dhcp4o6Allow ?? file["dhcp4o6-allow"];
  if (allow !== undefined && !isStringArray(allow))
    throw new UsageError('config file: "dhcp4o6-allow" must be a list of IPv6 prefixes');
  for (const prefix of allow ?? []) {
    if (!parseIPv6Prefix(prefix))
      throw new UsageError(
        `--dhcp4o6-allow: "${prefix}" is not an IPv6 prefix (e.g. 2001:db8:4::/64)`,
      );
  }
  return {
    address: listen.address,
    port: listen.port,
    interfaces: flags.dhcp4o6Interface ?? (fileInterfaces as string[] | undefined) ?? [],
    serverId,
    allow: allow?.length ? allow : undefined,
  };
}

/** The lease cap per host prefix and the rate limit per source prefix (./../lib/server/admission.ts). */
function admissionConfig(
  flags: ServerFlags,
  file: Record<string, unknown>,
): ServerConfig["admission"] {
  const cap = wholeNumber(
    flags.maxLeasesPerPrefix ?? file["max-leases-per-prefix"],
    "--max-leases-per-prefix",
  );
  const length = wholeNumber(
    flags.hostPrefixLength ?? file["host-prefix-length"],
    "--host-prefix-length",
  );
  if (length !== undefined && (length < 1 || length > 128))
    throw new UsageError(`--host-prefix-length: ${length} is not 1–128`);
  const rate = wholeNumber(flags.prefixRate ?? file["prefix-rate"], "--prefix-rate");
  const burst = wholeNumber(flags.prefixBurst ?? file["prefix-burst"], "--prefix-burst");
  if (burst === 0)
    throw new UsageError("--prefix-burst must be at least 1 (--prefix-rate 0 turns the limit off)");
  return { maxLeasesPerPrefix: cap, hostPrefixLength: length, ratePerSecond: rate, burst };
}
