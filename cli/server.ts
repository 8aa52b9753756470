/**
 * `dstm server`: flags and config file → ServerConfig → running server until a signal.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Command } from "@commander-js/extra-typings";
import { AllocationEngine, type PoolConfig } from "../lib/alloc/engine.ts";
import { Pool, PoolConfigError } from "../lib/alloc/pool.ts";
import { lowestPort, sharingProblem, WELL_KNOWN_PORTS } from "../lib/alloc/sharing.ts";
import {
  checkPoolScope,
  parseDuration,
  parseHostPort,
  parsePort,
  parseTep,
  unicastIPv4,
  unicastIPv6,
} from "../lib/config/endpoints.ts";
import { readKeys } from "../lib/config/key_file.ts";
import { mergeSettings, type Settings } from "../lib/config/merge.ts";
import { SERVER_SCHEMA } from "../lib/config/server_schema.ts";
import { type LogFormat, Logger, type LogLevel } from "../lib/control/log.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { isPostgresUrl } from "../lib/lease/postgres.ts";
import { parseIPv4Prefix, prefixContains } from "../lib/net/prefix.ts";
import { parseIPv6Prefix } from "../lib/server/admission.ts";
import {
  DHCP4O6_IDENTITY_MODES,
  type Dhcp4o6IdentityMode,
} from "../lib/server/dhcp4o6_identity.ts";
import { linkProblem } from "../lib/server/dhcp4o6_link.ts";
import { POOL_WARN_PERCENT } from "../lib/server/pool_watch.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { postUnix, unixPermissionProblem } from "../lib/sys/http.ts";
import { interfaceExists } from "../lib/sys/ifinfo.ts";
import { stdoutIsJournal } from "../lib/sys/journal.ts";
import { sdNotify } from "../lib/sys/sd_notify.ts";
import { sharesSecret } from "../lib/wire/auth.ts";
import { DSTM_PORT } from "../lib/wire/dstm_types.ts";
import { RuntimeError, UsageError } from "./errors.ts";
import { addSettings } from "./options.ts";
import { defaultControlSocket, defaultLeaseDb } from "./paths.ts";

export function serverCommand(): Command {
  const command = new Command("server").description(
    "run the DSTM server: IPv4 pool, lease table, answers DISCOVER/REQUEST/RELEASE over UDP/IPv6",
  );
  command.enablePositionalOptions();
  addReloadCommand(command);
  return addSettings(command, SERVER_SCHEMA)
    .addHelpText(
      "after",
      `
Examples:
  dstm server --pool 192.168.20.0/24 --tep 2001:db8:1::1,192.0.2.1
  dstm server --pool 198.51.100.0/25 --pool 203.0.113.0/24 --tep 2001:db8::1 --key /etc/dstm/key --metrics '[::1]:9604'
  dstm server --pool 198.51.100.0/24 --share 4 --tep 2001:db8::1   # 4 hosts per address, 16,128 ports each
  dstm server --config /etc/dstm/server.toml --check`,
    )
    .action(async (_opts, command) => {
      const flags = command.opts() as ServerFlags;
      const fromCli = (key: string) => command.getOptionValueSource(key) === "cli";
      if (flags.check) {
        checkServerConfig(resolveServerConfig(flags, stdoutSink, { fromCli, check: true }));
        return;
      }
      const config = resolveServerConfig(flags, stdoutSink, { fromCli });
      const server = await DstmServer.start(config);
      for (const pool of server.engine.pools()) logSharing(config.log, pool);
      // Reload (SIGHUP, `dstm server reload`): flags and the file read again; all or nothing.
      server.onReload(() => resolveServerConfig(flags, stdoutSink, { fromCli, log: config.log }));
      const hup = () => void server.reload("SIGHUP");
      process.on("SIGHUP", hup);
      sdNotify("READY=1\nSTATUS=answering DISCOVER/REQUEST/RELEASE");
      const fatal = await new Promise<Error | undefined>((resolve) => {
        const stop = () => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          sdNotify("STOPPING=1");
          server.stop().then(() => resolve(undefined), resolve);
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
        // The lease database vanished under the server: it has stopped; exit non-zero.
        server.failed.then((error) => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          sdNotify("STOPPING=1");
          server.stop().then(() => resolve(error), resolve);
        });
      });
      process.off("SIGHUP", hup);
      if (fatal) throw fatal;
    });
}

/** `dstm server reload`: the running server reads its flags and config file again. */
function addReloadCommand(server: Command): void {
  server
    .command("reload")
    .description(
      "make the running server read its configuration again (like SIGHUP): pools, keys, lease times, log level, limits; leases and bindings are kept",
    )
    .option("--control <path>", `control socket of the server (default: ${defaultControlSocket()})`)
    .addHelpText(
      "after",
      "\nExamples:\n  dstm server reload\n  dstm server reload --control /run/dstm/server.sock",
    )
    .action(async (flags) => {
      const socket = flags.control ?? defaultControlSocket();
      let result: { ok: boolean; message: string };
      try {
        result = (await (await postUnix(socket, "/v1/reload")).json()) as typeof result;
      } catch (error) {
        throw new RuntimeError(
          unixPermissionProblem(socket, error) ??
            `no dstm server answers on ${socket}; is it running? (use --control PATH)`,
        );
      }
      if (!result.ok) throw new RuntimeError(`reload refused: ${result.message}`);
      process.stdout.write(`${result.message}\n`);
    });
}

/**
 * `--check`: what start would refuse, without starting (no socket, no database, no
 * directory): the pools as the allocation engine validates them (host bits, overlaps), and
 * that each `--dhcp4o6-interface` exists here (start would fail to join ff02::1:2 on it).
 * Throws {@link UsageError} (exit 2).
 */
function checkServerConfig(config: ServerConfig): void {
  for (const ifname of config.dhcp4o6?.interfaces ?? [])
    if (!interfaceExists(ifname))
      throw new UsageError(
        `--dhcp4o6-interface ${ifname}: no such interface on this host (see ip link)`,
      );
  try {
    new AllocationEngine({
      pools: [...config.pools],
      store: new MemoryLeaseStore(),
      leaseTime: config.leaseTime,
      maxLeaseTime: config.maxLeaseTime,
    });
  } catch (error) {
    if (error instanceof PoolConfigError) throw new UsageError(error.message);
    throw error;
  }
  process.stdout.write(
    `dstm server: configuration OK (${config.pools.length} pool(s), listen [${config.listen.address}]:${config.listen.port}${config.dhcp4o6 ? `, dhcp4o6 [${config.dhcp4o6.address}]:${config.dhcp4o6.port}` : ""}, ${config.db ? `database ${config.db}` : "memory"})\n`,
  );
}

export interface ServerFlags {
  pool?: unknown;
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
  keyOverlap?: string;
  tepKey?: string;
  sourceCheck?: boolean;
  control?: string | boolean;
  metrics?: string;
  poolWarnPercent?: string;
  tepPort?: string;
  tepSource?: string;
  requireTep?: boolean;
  dhcp4o6?: boolean;
  dhcp4o6Listen?: string;
  dhcp4o6Interface?: string[];
  dhcp4o6ServerId?: string;
  dhcp4o6Allow?: string[];
  dhcp4o6Relay?: string[];
  poolLink?: string[];
  dhcp4o6Open?: boolean;
  declineProbation?: string;
  dhcp4o6Identity?: string;
  maxLeasesPerPrefix?: string;
  hostPrefixLength?: string;
  maxLeasesPerSite?: string;
  sitePrefixLength?: string;
  prefixRate?: string;
  prefixBurst?: string;
  reclaimMaxLeases?: string;
  reclaimMaxMs?: string;
  logFormat?: LogFormat;
  logLevel?: LogLevel;
  config?: string;
  check?: boolean;
}

export interface ResolveOptions {
  /** Whether a flag was given on the command line (default: it is defined in `flags`). */
  fromCli?: (key: string) => boolean;
  /** Check mode: no directory is created for the database. */
  check?: boolean;
  /** Reload: keep this logger (the server sets its level from the new configuration). */
  log?: Logger;
}

/**
 * Merges flags over the config file (lib/config/server_schema.ts: strict types, positions)
 * over defaults; throws UsageError on anything wrong, naming the flag or `FILE:LINE:COL`.
 */
export function resolveServerConfig(
  flags: ServerFlags,
  sink: (text: string) => void = stdoutSink,
  opts: ResolveOptions = {},
): ServerConfig {
  // The server's defaults are applied below (some depend on other settings).
  const settings = mergeSettings(SERVER_SCHEMA, flags as Record<string, unknown>, {
    fromCli: opts.fromCli,
    defaults: false,
  });
  try {
    return buildServerConfig(settings.values as ServerFlags, settings, sink, opts);
  } catch (error) {
    throw settings.explain(error);
  }
}

function buildServerConfig(
  flags: ServerFlags,
  settings: Settings,
  sink: (text: string) => void,
  opts: ResolveOptions,
): ServerConfig {
  const defaultTep = flags.tep ? parseTep(flags.tep) : undefined;
  const pools = poolsOf(flags.pool, settings);
  if (pools.length === 0)
    throw new UsageError(
      "no pool: give --pool CIDR (e.g. --pool 192.168.20.0/24) or [[pool]] in --config",
    );
  for (const pool of pools) for (const cidr of pool.prefixes) checkPoolScope(cidr, "pool");
  assignExclusions(pools, flags.exclude ?? []);
  assignLinks(pools, flags.poolLink ?? []);
  // Sharing: a [[pool]] table's own setting, else the flag (or the file's top-level setting).
  const share = wholeNumber(flags.share, "--share");
  const psidOffset = wholeNumber(flags.psidOffset, "--psid-offset");
  const allowWellKnown = flags.allowWellKnownPorts === true;
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
      ...(pool.links?.length ? { links: pool.links } : {}),
    };
  });
  // Each pool as the engine will check it (host bits, exclusions), at its place in the file.
  if (settings.fromFile("pool")) {
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
  const leaseTime = parseDuration(flags.leaseTime ?? 3600, "--lease-time");
  const maxLeaseTime =
    flags.maxLeaseTime === undefined
      ? leaseTime
      : parseDuration(flags.maxLeaseTime, "--max-lease-time");
  if (maxLeaseTime < leaseTime)
    throw new UsageError(
      `--max-lease-time (${maxLeaseTime}s) must not be shorter than --lease-time (${leaseTime}s): raise --max-lease-time or lower --lease-time`,
    );
  const listen = parseHostPort(flags.listen ?? `[::]:${DSTM_PORT}`, "--listen", DSTM_PORT);
  if (!listen.address.includes(":"))
    throw new UsageError(
      `--listen: DSTM runs over IPv6; "${listen.address}" is not an IPv6 address`,
    );
  const dbText = flags.db ?? defaultLeaseDb();
  const db = dbText === "memory" ? undefined : dbText;
  if (db && !opts.check && !isPostgresUrl(db)) ensureDirectory(db, "--db");
  const keys = flags.key ? readKeys(flags.key) : undefined;
  const keyOverlap = parseDuration(flags.keyOverlap ?? "1h", "--key-overlap");
  const tepKeys = flags.tepKey ? readKeys(flags.tepKey) : undefined;
  if (keys && tepKeys && sharesSecret(keys, tepKeys))
    throw new UsageError(
      "--tep-key: a secret of the TEP key file is also in --key; hosts hold --key, so make a separate one with `dstm keygen`",
    );
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
  const logFormat = (flags.logFormat ?? "text") as LogFormat;
  const logLevel = (flags.logLevel ?? "info") as LogLevel;
  if (logFormat !== "text" && logFormat !== "json")
    throw new UsageError(`--log-format must be text or json, not "${logFormat}"`);
  if (!["debug", "info", "warn", "error"].includes(logLevel))
    throw new UsageError(`--log-level "${logLevel}" is not debug, info, warn or error`);
  const tepPort =
    flags.tepPort === undefined ? undefined : parsePort(flags.tepPort, "--tep-port", 0);
  const dhcp4o6 = dhcp4o6Config(flags, poolConfigs);
  const ignored = ignoredDhcp4o6Settings(flags);
  if (ignored.length)
    process.stderr.write(
      `dstm: ${ignored.join(", ")} ${ignored.length === 1 ? "has" : "have"} no effect without --dhcp4o6 (TOML: dhcp4o6 = true)\n`,
    );
  if (dhcp4o6 && keys && !dhcp4o6.allow && !flags.dhcp4o6Open)
    throw new UsageError(
      "--key does not cover DHCPv4-over-DHCPv6 (RFC 7341 has no authentication): give --dhcp4o6-allow PREFIX for the hosts that may lease over it, or --dhcp4o6-open to answer any host knowingly",
    );
  const tepSourceText = flags.tepSource;
  const tepSource =
    tepSourceText === undefined
      ? undefined
      : unicastIPv6(tepSourceText, "--tep-source", "the server's", { loopback: true });
  return {
    dhcp4o6,
    admission: admissionConfig(flags),
    reclaim: {
      maxLeases: wholeNumber(flags.reclaimMaxLeases, "--reclaim-max-leases"),
      maxMs: wholeNumber(flags.reclaimMaxMs, "--reclaim-max-ms"),
    },
    tepPort,
    tepSource,
    requireTep: flags.requireTep === true,
    pools: poolConfigs,
    leaseTime,
    maxLeaseTime,
    listen,
    db,
    newDb: flags.newDb === true,
    keys,
    keyOverlapSeconds: keyOverlap,
    tepKeys,
    sourceCheck: flags.sourceCheck !== false,
    control,
    metrics,
    poolWarnPercent,
    logFormat,
    logLevel,
    log:
      opts.log ??
      new Logger({
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
  links?: string[];
}

/** A whole number from a flag or a TOML value (number or digits), or undefined when absent. */
function wholeNumber(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  if ((typeof value !== "string" && typeof value !== "number") || !/^\d{1,6}$/.test(text))
    throw new UsageError(`${what}: "${String(value)}" is not a whole number`);
  return Number(text);
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
/** The DHCPv4-over-DHCPv6 settings given (flag or file) while --dhcp4o6 is off: they do nothing. */
function ignoredDhcp4o6Settings(flags: ServerFlags): string[] {
  if (flags.dhcp4o6 === true) return [];
  const settings: [string, unknown][] = [
    ["dhcp4o6-listen", flags.dhcp4o6Listen],
    ["dhcp4o6-interface", flags.dhcp4o6Interface],
    ["dhcp4o6-server-id", flags.dhcp4o6ServerId],
    ["dhcp4o6-allow", flags.dhcp4o6Allow],
    ["dhcp4o6-open", flags.dhcp4o6Open],
    ["dhcp4o6-identity", flags.dhcp4o6Identity],
    ["decline-probation", flags.declineProbation],
  ];
  return settings
    .filter(([, v]) => v !== undefined && v !== false && !(Array.isArray(v) && v.length === 0))
    .map(([name]) => `--${name}`);
}

function dhcp4o6Config(flags: ServerFlags, pools: readonly PoolConfig[]): ServerConfig["dhcp4o6"] {
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
  const allow = flags.dhcp4o6Allow;
  for (const prefix of allow ?? []) {
    if (!parseIPv6Prefix(prefix))
      throw new UsageError(
        `--dhcp4o6-allow: "${prefix}" is not an IPv6 prefix (e.g. 2001:db8:4::/64)`,
      );
  }
  const relays = flags.dhcp4o6Relay;
  for (const prefix of relays ?? []) {
    if (!parseIPv6Prefix(prefix))
      throw new UsageError(
        `--dhcp4o6-relay: "${prefix}" is not an IPv6 prefix (e.g. 2001:db8:7::/64)`,
      );
  }
  return {
    address: listen.address,
    port: listen.port,
    interfaces: flags.dhcp4o6Interface ?? [],
    serverId,
    allow: allow?.length ? allow : undefined,
    relays: relays?.length ? relays : undefined,
    declineProbation: probationSeconds(flags.declineProbation),
    identity: identityMode(flags.dhcp4o6Identity),
  };
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

/** The lease cap per host prefix and the rate limit per source prefix (./../lib/server/admission.ts). */
function admissionConfig(flags: ServerFlags): ServerConfig["admission"] {
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
