/**
 * `dstm tep` (run a tunnel end point) and `dstm tep stats`.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { runtimeSocketDoc } from "../lib/config/common_schema.ts";
import { parseDuration } from "../lib/config/endpoints.ts";
import { readErrorText } from "../lib/config/errors.ts";
import { ipv4PrefixFlag } from "../lib/config/ipv4_prefix.ts";
import { readKeys } from "../lib/config/key_file.ts";
import {
  metricsBoundAddresses,
  refuseForeignAddresses,
  tepBoundAddresses,
} from "../lib/config/listen_address.ts";
import { runtimeDir } from "../lib/config/paths.ts";
import {
  maxBindingsFlag,
  type TepEndpoints,
  type TepFlags,
  tepEndpoints,
  tepNumbers,
} from "../lib/config/tep_resolve.ts";
import { TEP_SCHEMA } from "../lib/config/tep_schema.ts";
import { Logger, type LogLevel } from "../lib/control/log.ts";
import { planReload, type SettingsText } from "../lib/control/reload_plan.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { prefixContains } from "../lib/net/prefix.ts";
import { getUnix, unixPermissionProblem } from "../lib/sys/http.ts";
import { isLocalAddress } from "../lib/sys/local_address.ts";
import { sdNotify } from "../lib/sys/sd_notify.ts";
import {
  BindingFileError,
  bindingTableSize,
  DEFAULT_MAX_BINDINGS,
  loadStaticBindings,
  type StaticBindings,
} from "../lib/tep/binding_file.ts";
import { unsignedControlProblem } from "../lib/tep/control_auth.ts";
import { type TepConfig, TepNode } from "../lib/tep/node.ts";
import { logStaticChange } from "../lib/tep/static_reload.ts";
import type { AuthKey } from "../lib/wire/auth.ts";
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
  dstm tep --ipv6 2001:db8:1::1 --ipv4 192.0.2.1 --server 2001:db8:2::53 --route 198.51.100.0/24 --key /etc/dstm/tep.key
      # --key: the server's --tep-key file (required when the server is on another host)
  dstm tep ... --binding 198.51.100.9=2001:db8:1::99
  dstm tep ... --binding-file /etc/dstm/bindings.txt
      # a line of it: 198.51.100.10  2001:db8:1::a0  6/2/0   (port set: offset/PSID length/PSID)
  dstm tep --config /etc/dstm/tep.toml --check
  dstm tep stats`,
    )
    .action(async (_opts, cmd) => runTep(cmd));
  addTepStatsCommand(tep);
  addTepCheckCommand(tep);
  return tep;
}

/** `dstm tep`: runs the TEP until SIGINT/SIGTERM (`--check`: stops after the checks); SIGHUP reloads. */
async function runTep(cmd: Command<[], Record<string, unknown>>): Promise<void> {
  const settings = commandSettings(cmd, TEP_SCHEMA);
  const flags = settings.values as unknown as TepFlags;
  const log = stdoutLogger(flags);
  const options = await explained(settings, () => {
    const resolved = resolveTep(flags, log);
    // --check and start alike: --metrics on an address of another host could never listen.
    refuseForeignAddresses(metricsBoundAddresses(flags, resolved), isLocalAddress);
    // Its raw socket and control socket bind --ipv6: refused here, before the TUN is made, not
    // as "bind raw IPv6 socket: EADDRNOTAVAIL" after; --check asks the host (read only) too.
    refuseForeignAddresses(tepBoundAddresses(flags, resolved), isLocalAddress);
    return resolved;
  });
  if (flags.check) {
    // The ring needs nft(8) at start; without it the TEP runs on the raw socket alone.
    const ring = options.rxRing
      ? Bun.which("nft")
        ? ", rx-ring"
        : ", rx-ring: nft not found, the TEP would receive through the raw socket alone"
      : "";
    process.stdout.write(
      `dstm tep: configuration OK (${options.ipv6} / ${formatIPv4(options.ipv4)}, server ${[options.server.address, ...(options.moreServers ?? [])].join(", ")}, ${options.routes.length} route(s), ${options.staticBindings?.length ?? 0} static binding(s)${ring})\n`,
    );
    return;
  }
  const node = await TepNode.start(options);
  sdNotify("READY=1\nSTATUS=forwarding");
  const reread = () => commandSettings(cmd, TEP_SCHEMA).values as unknown as TepFlags;
  const stopHup = onHangup(log, reloader(node, { flags, options }, reread, log), node.metrics);
  await untilSignal();
  stopHup();
  sdNotify("STOPPING=1");
  await node.stop();
}

/**
 * SIGHUP: the settings read again (`reread`) and checked as at start; the static bindings,
 * the key (the old one accepted for `--key-overlap`) and the log level change live, anything
 * else refuses the reload (lib/control/reload_plan.ts).
 */
function reloader(
  node: TepNode,
  start: { flags: TepFlags; options: TepConfig },
  reread: () => TepFlags,
  log: Logger,
): () => { level: LogLevel; changed: readonly string[] } {
  let running = start;
  return () => {
    const nextFlags = reread();
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
  };
}

/** What a running TEP's control socket answers on `/v1/stats`. */
interface TepStats {
  ipv6: string;
  ipv4: string;
  bindings: number;
  serverBindings: number;
  staticBindings?: number;
  servers?: { server: string; connected: boolean; lastHeardS: number }[];
  counters: Record<string, number>;
  pathMtu?: { host: string; mtu: number; expiresIn: number }[];
}

/** `dstm tep stats`: a running TEP's bindings and counters, from its control socket. */
function addTepStatsCommand(tep: Command): void {
  tep
    .command("stats")
    .description("show a running TEP's bindings and its forward/drop counters")
    .option(
      "--control <path>",
      `control socket of the TEP (default: ${runtimeSocketDoc("tep.sock")})`,
    )
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
      let stats: TepStats;
      try {
        stats = (await (await getUnix(socket, "/v1/stats")).json()) as TepStats;
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
      process.stdout.write(`${tepStatsLines(stats).join("\n")}\n`);
    });
}

/** `dstm tep stats` as text: bindings, servers, counters, path MTUs. */
function tepStatsLines(stats: TepStats): string[] {
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
  return lines;
}

/** The TEP's options from its settings, checked (files read, nothing opened); --check stops here. */
function resolveTep(flags: TepFlags, log: Logger): TepConfig {
  const endpoints = tepEndpoints(flags);
  const inRoute = ownAddressRouted(endpoints);
  if (inRoute) throw new UsageError(inRoute);
  const statics = staticBindings(flags, log);
  const unrouted = bindingOutsideRoutes(endpoints, statics);
  if (unrouted) throw new UsageError(unrouted);
  if (flags.rxRing && flags.offload === false)
    throw new UsageError(
      "--rx-ring needs the offloads (batched I/O): it cannot go with --no-offload",
    );
  const maxBindings = bindingTable(flags, statics, log);
  const key = controlKey(flags, endpoints, log);
  const n = tepNumbers(flags);
  return {
    ipv6: endpoints.ipv6,
    ipv4: endpoints.ipv4,
    server: { address: endpoints.server, port: n.serverPort },
    moreServers: endpoints.moreServers.length > 0 ? [...endpoints.moreServers] : undefined,
    key,
    routes: endpoints.routes,
    staticBindings: statics.bindings,
    ifname: n.ifname,
    linkMtu: n.linkMtu,
    hairpin: flags.hairpin,
    icmpRate: n.icmpRate,
    mssClamp: flags.mssClamp,
    offload: flags.offload,
    rxRing: flags.rxRing,
    fragmentInner: flags.fragment === "inner",
    dscp: n.dscp,
    maxBindings,
    controlPort: n.controlPort,
    statsSocket: flags.control ?? defaultStatsSocket(),
    metrics: n.metrics,
    log,
  };
}

/**
 * The refusal when `--ipv4` lies inside one of the TEP's own `--route` prefixes: the TEP routes
 * those back through the tunnel to the hosts, so it would route its own address away from
 * itself (and the server would lease it to a host); else undefined.
 */
function ownAddressRouted(endpoints: TepEndpoints): string | undefined {
  const route = endpoints.routes.find((r) =>
    prefixContains(ipv4PrefixFlag(r, "--route"), endpoints.ipv4),
  );
  if (route === undefined) return undefined;
  const address = formatIPv4(endpoints.ipv4);
  return `--ipv4 ${address} is inside --route ${route}: this TEP routes that prefix through the tunnel to the hosts, its own address included; give the TEP an IPv4 address outside its routes`;
}

/**
 * The refusal of a static binding whose IPv4 address is in none of the TEP's `--route`
 * prefixes: the TEP routes only those back through the tunnel, so replies to that host would
 * never reach it (a newcomer's binding was accepted and silently useless); else undefined.
 */
function bindingOutsideRoutes(
  endpoints: TepEndpoints,
  statics: StaticBindings,
): string | undefined {
  const prefixes = endpoints.routes.map((r) => ipv4PrefixFlag(r, "--route"));
  const outside = statics.bindings.find((b) => !prefixes.some((p) => prefixContains(p, b.host4)));
  if (outside === undefined) return undefined;
  return `${statics.whereOf(outside.host4)}: ${formatIPv4(outside.host4)} is outside every --route (${endpoints.routes.join(", ")}): this TEP routes only those back to the hosts, so nothing would reach this one; add its prefix to --route or remove the binding`;
}

/** `--binding` and `--binding-file`, read and checked; logs how long the files took. */
function staticBindings(flags: TepFlags, log: Logger): StaticBindings {
  const started = performance.now();
  const statics = loadStatics(flags.binding ?? [], flags.bindingFile ?? []);
  if (flags.bindingFile)
    log.info("binding-file", {
      files: flags.bindingFile.join(","),
      bindings: statics.size,
      "time-ms": Math.round(performance.now() - started),
    });
  return statics;
}

/** The binding table's size: `--max-bindings`, or the default raised to hold the static bindings (logged). */
function bindingTable(flags: TepFlags, statics: StaticBindings, log: Logger): number {
  const table = bindingTableSize(statics.size, maxBindingsFlag(flags));
  if (typeof table === "string") throw new UsageError(table);
  if (table.size > DEFAULT_MAX_BINDINGS && flags.maxBindings === undefined)
    log.info("max-bindings-raised", {
      from: DEFAULT_MAX_BINDINGS,
      to: table.size,
      static: statics.size,
      "server-room": table.size - statics.size,
    });
  return table.size;
}

/** The control channel's key (`--key`), or none where that is allowed (lib/tep/control_auth.ts). */
function controlKey(flags: TepFlags, endpoints: TepEndpoints, log: Logger): AuthKey | undefined {
  const key = flags.key ? readKeys(flags.key, { setting: "key", holder: "tep" })[0] : undefined;
  parseDuration(flags.keyOverlap ?? "1h", "--key-overlap"); // checked now, used on reload
  if (!key) {
    const servers = [endpoints.server, ...endpoints.moreServers];
    const problem = unsignedControlProblem(servers, flags.insecureControl === true, log);
    if (problem) throw new UsageError(problem);
  }
  return key;
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
      "rx-ring": String(c.rxRing === true),
      fragment: c.fragmentInner ? "inner" : "outer",
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
    if (error instanceof BindingFileError)
      throw new UsageError(
        error.file === undefined
          ? error.message
          : `--binding-file: cannot read ${error.file}: ${readErrorText(error.cause)}`,
      );
    throw error;
  }
}
