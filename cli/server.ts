/**
 * `dstm server`: flags and config file → ServerConfig → running server until a signal.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { SERVER_CONTROL_DOC } from "../lib/config/common_schema.ts";
import { readConfigFile } from "../lib/config/file.ts";
import { refuseForeignAddresses, serverBoundAddresses } from "../lib/config/listen_address.ts";
import { mergeSettings, type Settings } from "../lib/config/merge.ts";
import { defaultControlSocket } from "../lib/config/paths.ts";
import {
  type ResolveServerOptions,
  resolveServerSettings,
  type ServerFlags,
} from "../lib/config/server_resolve.ts";
import { SERVER_SCHEMA } from "../lib/config/server_schema.ts";
import { camel } from "../lib/config/setting.ts";
import { Logger } from "../lib/control/log.ts";
import { isPostgresUrl } from "../lib/lease/postgres.ts";
import {
  serverConfigProblem,
  serverConfigSummary,
  serverConfigWarnings,
} from "../lib/server/config_check.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { logPoolSharing } from "../lib/server/sharing_log.ts";
import { postUnix, unixPermissionProblem } from "../lib/sys/http.ts";
import { stdoutIsJournal } from "../lib/sys/journal.ts";
import { isLocalAddress } from "../lib/sys/local_address.ts";
import { sdNotify } from "../lib/sys/sd_notify.ts";
import { refuseDatabaseDirectory } from "./db_path.ts";
import { RuntimeError, UsageError } from "./errors.ts";
import { addSettings } from "./options.ts";

export function serverCommand(): Command {
  const command = new Command("server").description(
    "run the DSTM server: IPv4 pool, lease table, answers DISCOVER/REQUEST/RELEASE over UDP/IPv6",
  );
  command.enablePositionalOptions();
  addReloadCommand(command);
  addSettings(command, SERVER_SCHEMA);
  refuseRepeatedTep(command);
  return command
    .addHelpText(
      "after",
      `
Examples:
  dstm server --pool 198.51.100.0/24 --tep 2001:db8:1::1,192.0.2.1 --key /etc/dstm/key --tep-key /etc/dstm/tep.key
      # keys: dstm keygen /etc/dstm/key && dstm keygen /etc/dstm/tep.key (the TEP's --key is tep.key)
  dstm server --pool 198.51.100.0/25 --pool 203.0.113.0/24 --tep 2001:db8::1 --key /etc/dstm/key --tep-key /etc/dstm/tep.key --metrics '[::1]:9604'
  dstm server --pool 198.51.100.0/24 --share 4 --tep 2001:db8::1 --key /etc/dstm/key --tep-key /etc/dstm/tep.key   # 4 hosts per address, 16,128 ports each
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
      // The request paths run once before listening: first hosts answered as fast as later ones.
      const server = await DstmServer.start({ ...config, warmUp: true });
      for (const pool of server.engine.pools()) logPoolSharing(config.log, pool);
      // Reload (SIGHUP, `dstm server reload`): flags and the file read again; all or nothing.
      server.onReload(() => ({
        ...resolveServerConfig(flags, stdoutSink, { fromCli, log: config.log }),
        pinnedByFlags: pinnedByFlags(flags.config, fromCli),
      }));
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

/**
 * `--tep` twice: before, the last one silently won. The `--pool` flags share one `--tep` (the
 * TEP of every flag pool); a TEP per pool is written in the config file, one `[[pool]]` table
 * with its own `tep` each (README "Configuration file"). So a second `--tep` is refused
 * (commander's InvalidArgumentError: exit 2, one line) rather than guessed at.
 */
function refuseRepeatedTep(command: Command): void {
  const tep = command.options.find((o) => o.long === "--tep");
  tep?.argParser((value: string, previous: unknown) => {
    if (previous !== undefined)
      throw new InvalidArgumentError(
        `--tep given twice (${String(previous)}, then ${value}): one --tep is the TEP of every --pool; for a TEP per pool, write [[pool]] tables with their own tep in --config`,
      );
    return value;
  });
}

/**
 * With `--config`: the reloadable settings given as flags (a reload keeps them over the file),
 * each with whether the file sets it too. Empty without a config file (a reload then only
 * reads the key files again).
 */
function pinnedByFlags(
  configPath: string | undefined,
  fromCli: (key: string) => boolean,
): { name: string; inFile: boolean }[] {
  if (configPath === undefined) return [];
  let inFile: ReadonlyMap<string, unknown> = new Map();
  try {
    inFile = readConfigFile(configPath, SERVER_SCHEMA).values;
  } catch {
    // resolveServerConfig read it a moment ago and refuses the reload if it is wrong.
  }
  return SERVER_SCHEMA.settings
    .filter((s) => s.reloadable && fromCli(camel(s.name)))
    .map((s) => ({ name: s.name, inFile: inFile.has(s.name) }));
}

/** `dstm server reload`: the running server reads its flags and config file again. */
function addReloadCommand(server: Command): void {
  server
    .command("reload")
    .description(
      "make the running server read its configuration again (like SIGHUP): pools, keys, lease times, log level, limits; leases and bindings are kept",
    )
    .option("--control <path>", `control socket of the server (default: ${SERVER_CONTROL_DOC})`)
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
 * directory; lib/server/config_check.ts). Throws {@link UsageError} (exit 2). What start would
 * warn about (no `--key`) follows the summary as `dstm server: warning: …`; the exit code stays 0.
 */
function checkServerConfig(config: ServerConfig): void {
  const problem = serverConfigProblem(config);
  if (problem) throw new UsageError(problem);
  process.stdout.write(`${serverConfigSummary(config)}\n`);
  for (const warning of serverConfigWarnings(config))
    process.stdout.write(`dstm server: ${warning}\n`);
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
 * over defaults (lib/config/server_resolve.ts) and makes the logger; throws UsageError on
 * anything wrong, naming the flag or `FILE:LINE:COL`.
 */
export function resolveServerConfig(
  flags: ServerFlags,
  sink: (text: string) => void = stdoutSink,
  opts: ResolveOptions = {},
): ServerConfig {
  // The server's defaults are applied by resolveServerSettings (some depend on other settings).
  const settings = mergeSettings(SERVER_SCHEMA, flags as Record<string, unknown>, {
    fromCli: opts.fromCli,
    defaults: false,
  });
  try {
    return buildServerConfig(settings, sink, opts);
  } catch (error) {
    throw settings.explain(error);
  }
}

function buildServerConfig(
  settings: Settings,
  sink: (text: string) => void,
  opts: ResolveOptions,
): ServerConfig {
  const resolveOpts: ResolveServerOptions = {
    prepareDatabase: (db) => {
      if (isPostgresUrl(db)) return;
      refuseDatabaseDirectory(db);
      if (!opts.check) ensureDirectory(db, "--db");
    },
  };
  const config = resolveServerSettings(settings.values as ServerFlags, settings, resolveOpts);
  // --check and start alike (not a reload: what it binds is fixed): an address of another host
  // could never be bound (lib/config/listen_address.ts).
  if (!opts.log)
    refuseForeignAddresses(
      serverBoundAddresses(settings.values as ServerFlags, config),
      isLocalAddress,
    );
  const log =
    opts.log ??
    new Logger({
      format: config.logFormat,
      level: config.logLevel,
      sink,
      priorityPrefix: sink === stdoutSink && stdoutIsJournal(),
    });
  return { ...config, log };
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
