/**
 * `dstm tep` (run a tunnel end point) and `dstm tep stats`.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import {
  parseDuration,
  parseHostPort,
  parsePort,
  unicastIPv4,
  unicastIPv6,
} from "../lib/config/endpoints.ts";
import { readKeys } from "../lib/config/key_file.ts";
import { runtimeDir } from "../lib/config/paths.ts";
import { TEP_SCHEMA } from "../lib/config/tep_schema.ts";
import { type LogFormat, Logger, type LogLevel } from "../lib/control/log.ts";
import { planReload, type SettingsText } from "../lib/control/reload_plan.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { parseIPv4Prefix } from "../lib/net/prefix.ts";
import { TEP_CONTROL_PORT } from "../lib/server/tep_sync.ts";
import { getUnix, unixPermissionProblem } from "../lib/sys/http.ts";
import { interfaceOfIPv6 } from "../lib/sys/ifinfo.ts";
import { sdNotify } from "../lib/sys/sd_notify.ts";
import {
  BindingFileError,
  bindingTableSize,
  DEFAULT_MAX_BINDINGS,
  loadStaticBindings,
  type StaticBindings,
} from "../lib/tep/binding_file.ts";
import { type TepConfig, TepNode } from "../lib/tep/node.ts";
import { logStaticChange } from "../lib/tep/static_reload.ts";
import { MAX_BINDINGS } from "../lib/tunnel/binding.ts";
import { DSTM_PORT } from "../lib/wire/dstm_types.ts";
import { keyText, onHangup, stdoutLogger, untilSignal } from "./common.ts";
import { RuntimeError, UsageError } from "./errors.ts";
import { addSettings, commandSettings, explained } from "./options.ts";
import { addTepCheckCommand } from "./tep_check.ts";

const defaultStatsSocket = () => `${runtimeDir()}/tep.sock`;

export function tepCommand() {
  const command = new Command("tep")
    .enablePositionalOptions()
    .description(
      "run a TEP (tunnel end point): decapsulate to IPv4, encapsulate replies to the right host",
    );
  const tep = addSettings(command, TEP_SCHEMA)
    .addHelpText(
      "after",
      `
Examples:
  dstm tep --ipv6 2001:db8:1::1 --ipv4 192.0.2.1 --server 2001:db8:1::53 --route 198.51.100.0/24
  dstm tep ... --binding 198.51.100.9=2001:db8:1::99
  dstm tep ... --binding-file /etc/dstm/bindings.txt
      # a line of it: 198.51.100.10  2001:db8:1::a0  6/2/0   (port set: offset/PSID length/PSID)
  dstm tep --config /etc/dstm/tep.toml --check
  dstm tep stats`,
    )
    .action(async (_opts, cmd) => {
      const settings = commandSettings(cmd, TEP_SCHEMA);
      const flags = settings.values as unknown as TepFlags;
      const log = stdoutLogger(flags);
      const options = await explained(settings, () => resolveTep(flags, log));
      if (flags.check) {
        process.stdout.write(
          `dstm tep: configuration OK (${options.ipv6} / ${formatIPv4(options.ipv4)}, server ${[options.server.address, ...(options.moreServers ?? [])].join(", ")}, ${options.routes.length} route(s), ${options.staticBindings?.length ?? 0} static binding(s))\n`,
        );
        return;
      }
      const node = await TepNode.start(options);
      sdNotify("READY=1\nSTATUS=forwarding");
      let running = { flags, options };
      const stopHup = onHangup(
        log,
        () => {
          const nextFlags = commandSettings(cmd, TEP_SCHEMA).values as unknown as TepFlags;
          // Read and checked as at start, without logging the start's notes again.
          const next = resolveTep(nextFlags, new Logger({ sink: () => {} }));
          const now = tepSettings(running.flags, running.options);
          const then = tepSettings(nextFlags, next);
          const plan = planReload(now.fixed, then.fixed, now.live, then.live);
          if ("refused" in plan) throw new Error(plan.refused);
          // First, as it may refuse (a conflict with the server's bindings): then nothing changed.
          if (plan.changed.includes("binding"))
            logStaticChange(log, node.replaceStatic(next.staticBindings ?? []));
          const overlap = parseDuration(nextFlags.keyOverlap ?? "1h", "--key-overlap");
          const old = running.options.key;
          if (plan.changed.includes("key") && next.key) {
            node.rotateKey(next.key, overlap * 1000);
            if (old && old.id !== next.key.id)
              log.info("key-overlap", {
                keys: String(old.id),
                "overlap-s": overlap,
                detail: "server messages signed with the replaced key are accepted until then",
              });
          }
          running = { flags: nextFlags, options: next };
          return { level: nextFlags.logLevel ?? "info", changed: plan.changed };
        },
        node.metrics,
      );
      await untilSignal();
      stopHup();
      sdNotify("STOPPING=1");
      await node.stop();
    });
  tep
    .command("stats")
    .description("show a running TEP's bindings and its forward/drop counters")
    .option("--control <path>", `control socket of the TEP (default: ${defaultStatsSocket()})`)
    .addOption(new Option("--stats <path>", "deprecated: --control").hideHelp())
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  dstm tep stats\n  dstm tep stats --json --control /run/dstm/tep-b.sock",
    )
    .action(async (flags) => {
      if (flags.stats !== undefined)
        process.stderr.write("dstm: --stats is deprecated; use --control\n");
      const socket = flags.control ?? flags.stats ?? defaultStatsSocket();
      let stats: {
        ipv6: string;
        ipv4: string;
        bindings: number;
        serverBindings: number;
        staticBindings?: number;
        servers?: { server: string; connected: boolean; lastHeardS: number }[];
        counters: Record<string, number>;
        pathMtu?: { host: string; mtu: number; expiresIn: number }[];
      };
      try {
        stats = (await (await getUnix(socket, "/v1/stats")).json()) as typeof stats;
      } catch (error) {
        throw new RuntimeError(
          unixPermissionProblem(socket, error) ??
            `no dstm tep answers on ${socket}; is it running? (use --control PATH)`,
        );
      }
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(stats, null, 2)}\n`);
        return;
      }
      const lines = [
        `tep ${stats.ipv6} / ${stats.ipv4}: ${stats.bindings} bindings (${stats.serverBindings} from the server, ${stats.staticBindings ?? 0} static)`,
      ];
      for (const s of stats.servers ?? [])
        lines.push(
          `  server ${s.server}: ${s.connected ? "connected" : "NOT CONNECTED"} (last heard ${s.lastHeardS} s ago)`,
        );
      const width = Math.max(...Object.keys(stats.counters).map((k) => k.length));
      for (const [name, value] of Object.entries(stats.counters))
        lines.push(`  ${name.padEnd(width)}  ${value}`);
      for (const p of stats.pathMtu ?? [])
        lines.push(`  path MTU ${p.host} ${p.mtu} (expires in ${p.expiresIn} s)`);
      process.stdout.write(`${lines.join("\n")}\n`);
    });
  addTepCheckCommand(tep);
  return tep;
}

export interface TepFlags {
  ipv6?: string;
  ipv4?: string;
  server?: string | string[];
  serverPort?: string;
  route?: string[];
  binding?: string[];
  bindingFile?: string[];
  key?: string;
  keyOverlap?: string;
  insecureControl?: boolean;
  ifname: string;
  linkMtu: string;
  hairpin: boolean;
  icmpRate: string;
  mssClamp: boolean;
  offload: boolean;
  dscp: string;
  maxBindings?: string;
  tepPort?: string;
  control?: string;
  metrics?: string;
  logFormat?: LogFormat;
  logLevel?: LogLevel;
  config?: string;
  check?: boolean;
}

/** The TEP's options from its settings, checked (files read, nothing opened); --check stops here. */
function resolveTep(flags: TepFlags, log: Logger): TepConfig {
  // All the missing required settings at once, not one per try.
  const missing = [
    flags.ipv6 === undefined ? "--ipv6 V6" : "",
    flags.ipv4 === undefined ? "--ipv4 V4" : "",
    flags.server?.length ? "" : "--server V6",
    flags.route?.length ? "" : "--route CIDR",
  ].filter((m) => m !== "");
  if (missing.length > 1)
    throw new UsageError(
      `${missing.join(", ")} are required (e.g. dstm tep --ipv6 2001:db8:1::1 --ipv4 192.0.2.1 --server 2001:db8:1::53 --route 198.51.100.0/24)`,
    );
  if (flags.ipv6 === undefined) throw new UsageError("--ipv6: this TEP's IPv6 address is required");
  const ipv6 = unicastIPv6(flags.ipv6, "--ipv6", "this TEP's");
  if (flags.ipv4 === undefined) throw new UsageError("--ipv4: this TEP's IPv4 address is required");
  const ipv4 = unicastIPv4(flags.ipv4, "--ipv4", "this TEP's");
  const servers = typeof flags.server === "string" ? [flags.server] : (flags.server ?? []);
  if (servers.length === 0)
    throw new UsageError("--server: the DSTM server's IPv6 address is required");
  // The server may run on this host: loopback is fine, a group or "any" is not.
  const [server, ...moreServers] = servers.map((s) =>
    unicastIPv6(s, "--server", "the DSTM server's", { loopback: true }),
  ) as [string, ...string[]];
  const routes = flags.route ?? [];
  if (routes.length === 0)
    throw new UsageError("--route: name the IPv4 prefixes this TEP serves (the server's pools)");
  for (const r of routes)
    if (!parseIPv4Prefix(r)) throw new UsageError(`--route: "${r}" is not an IPv4 CIDR`);
  const number = (text: string, what: string, min: number, max: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new UsageError(`${what}: "${text}" is not ${min}–${max}`);
    return n;
  };
  const started = performance.now();
  const statics = loadStatics(flags.binding ?? [], flags.bindingFile ?? []);
  if (flags.bindingFile)
    log.info("binding-file", {
      files: flags.bindingFile.join(","),
      bindings: statics.size,
      "time-ms": Math.round(performance.now() - started),
    });
  const table = bindingTableSize(
    statics.size,
    flags.maxBindings === undefined
      ? undefined
      : number(flags.maxBindings, "--max-bindings", 1, MAX_BINDINGS),
  );
  if (typeof table === "string") throw new UsageError(table);
  if (table.size > DEFAULT_MAX_BINDINGS && flags.maxBindings === undefined)
    log.info("max-bindings-raised", {
      from: DEFAULT_MAX_BINDINGS,
      to: table.size,
      static: statics.size,
      "server-room": table.size - statics.size,
    });
  const key = flags.key ? readKeys(flags.key)[0] : undefined;
  parseDuration(flags.keyOverlap ?? "1h", "--key-overlap"); // checked now, used on reload
  if (!key) {
    const local = [server, ...moreServers].every((s) => s === "::1" || interfaceOfIPv6(s) !== null);
    if (!local && !flags.insecureControl)
      throw new UsageError(
        `--server ${server} is not an address of this host: give --key FILE (the server's --tep-key) to authenticate it, or --insecure-control`,
      );
    log.warn("control-auth-off", {
      server: [server, ...moreServers].join(","),
      detail: local
        ? "server on this host: BIND/UNBIND/SNAPSHOT accepted unsigned from its address and port"
        : "--insecure-control: BIND/UNBIND/SNAPSHOT accepted unsigned; anyone who can spoof the server's address can rebind hosts",
    });
  }
  return {
    ipv6,
    ipv4,
    server: { address: server, port: parsePort(flags.serverPort, "--server-port", DSTM_PORT) },
    moreServers: moreServers.length > 0 ? moreServers : undefined,
    key,
    routes,
    staticBindings: statics.bindings,
    ifname: flags.ifname,
    linkMtu: number(flags.linkMtu, "--link-mtu", 1280, 65575),
    hairpin: flags.hairpin,
    icmpRate: number(flags.icmpRate, "--icmp-rate", 0, 1_000_000),
    mssClamp: flags.mssClamp,
    offload: flags.offload,
    dscp: flags.dscp === "copy" ? -1 : number(flags.dscp, "--dscp", 0, 63),
    maxBindings: table.size,
    controlPort: parsePort(flags.tepPort, "--tep-port", TEP_CONTROL_PORT),
    statsSocket: flags.control ?? defaultStatsSocket(),
    metrics: flags.metrics ? parseHostPort(flags.metrics, "--metrics", 9605) : undefined,
    log,
  };
}

/** The TEP's settings as text: those a restart changes, and those a reload applies live. */
function tepSettings(flags: TepFlags, c: TepConfig): { fixed: SettingsText; live: SettingsText } {
  return {
    fixed: {
      ipv6: c.ipv6,
      ipv4: String(c.ipv4),
      // Every server the TEP obeys (lib/tep/control.ts), not only the first.
      server: [c.server.address, ...(c.moreServers ?? [])]
        .map((a) => `[${a}]:${c.server.port}`)
        .join(","),
      route: c.routes.join(","),
      ifname: c.ifname ?? "tep0",
      "link-mtu": String(c.linkMtu),
      hairpin: String(c.hairpin),
      "icmp-rate": String(c.icmpRate),
      "mss-clamp": String(c.mssClamp),
      offload: String(c.offload),
      dscp: String(c.dscp),
      "max-bindings": String(c.maxBindings),
      "tep-port": String(c.controlPort),
      control: c.statsSocket ?? "-",
      metrics: c.metrics ? `[${c.metrics.address}]:${c.metrics.port}` : "off",
      "insecure-control": String(flags.insecureControl === true),
      "log-format": flags.logFormat ?? "text",
      // Turning the channel's authentication on or off: a restart (the server's too).
      key: c.key ? "on" : "off",
    },
    live: {
      key: keyText(c.key),
      "key-overlap": String(parseDuration(flags.keyOverlap ?? "1h", "--key-overlap")),
      "log-level": flags.logLevel ?? "info",
      binding: JSON.stringify(c.staticBindings ?? []),
    },
  };
}

/** The `--binding` flags, then every `--binding-file` (lib/tep), a bad one a UsageError. */
function loadStatics(flags: readonly string[], files: readonly string[]): StaticBindings {
  try {
    return loadStaticBindings(flags, files);
  } catch (error) {
    if (error instanceof BindingFileError) throw new UsageError(error.message);
    throw error;
  }
}
