/**
 * `dstm tep` (run a tunnel end point) and `dstm tep stats`.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
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
  SERVER_ROOM,
} from "../lib/tep/binding_file.ts";
import { TepNode } from "../lib/tep/node.ts";
import { MAX_BINDINGS } from "../lib/tunnel/binding.ts";
import { DSTM_PORT } from "../lib/wire/dstm_types.ts";
import {
  logFormatOption,
  logLevelOption,
  parsePort,
  readKeys,
  stdoutLogger,
  untilSignal,
} from "./common.ts";
import { unicastIPv4, unicastIPv6 } from "./endpoints.ts";
import { UsageError } from "./errors.ts";
import { runtimeDir } from "./paths.ts";
import { addTepCheckCommand } from "./tep_check.ts";

const collect = (value: string, previous: string[] = []) => [...previous, value];
const defaultStatsSocket = () => `${runtimeDir()}/tep.sock`;

export function tepCommand() {
  const tep = new Command("tep")
    .enablePositionalOptions()
    .description(
      "run a TEP (tunnel end point): decapsulate to IPv4, encapsulate replies to the right host",
    )
    .option("--ipv6 <addr>", "this TEP's IPv6 address (tunnel end point, control endpoint)")
    .option("--ipv4 <addr>", "this TEP's IPv4 address (source of its ICMPv4 errors)")
    .option("--server <v6>", "the DSTM server that installs bindings here")
    .option("--server-port <n>", `the server's port (default ${DSTM_PORT})`)
    .option(
      "--route <cidr>",
      "IPv4 prefix served (the server's pools), routed into the tunnel (repeatable)",
      collect,
    )
    .option(
      "--binding <v4=v6>",
      "a static binding, kept besides the server's (repeatable)",
      collect,
    )
    .option(
      "--binding-file <file>",
      "static bindings, one a line: IPV4 IPV6 [OFFSET/PSIDLEN/PSID], # comments (repeatable)",
      collect,
    )
    .option(
      "--key <file>",
      "the server-TEP key (the server's --tep-key FILE, never the hosts' key): require it on BIND/UNBIND/SNAPSHOT, sign SYNC",
    )
    .option(
      "--insecure-control",
      "accept unsigned BIND/UNBIND/SNAPSHOT from a server on another host (anyone who can spoof its address can rebind hosts)",
    )
    .option("--ifname <name>", "name of the IPv4-side TUN device", "tep0")
    .option("--link-mtu <n>", "MTU of the IPv6 link to the hosts; tunnel MTU = this − 40", "1500")
    .option("--no-hairpin", "drop host-to-host traffic instead of turning it around")
    .option("--icmp-rate <n>", "ICMP errors per second at most", "100")
    .option("--no-mss-clamp", "leave the MSS of TCP SYNs alone (default: clamp to the path MTU)")
    .option("--dscp <copy|n>", "outer DSCP: copy the inner one, or a fixed 0–63", "copy")
    .option(
      "--max-bindings <n>",
      `binding table size (default ${DEFAULT_MAX_BINDINGS}, or the static bindings + ${SERVER_ROOM} when more)`,
    )
    .option(
      "--control-port <n>",
      `UDP port for the server's messages (default ${TEP_CONTROL_PORT})`,
    )
    .option("--stats <path>", "stats socket for `dstm tep stats` (default /run/dstm/tep.sock)")
    .addOption(logFormatOption())
    .addOption(logLevelOption())
    .addHelpText(
      "after",
      `
Examples:
  dstm tep --ipv6 2001:db8:1::1 --ipv4 192.0.2.1 --server 2001:db8:1::53 --route 198.51.100.0/24
  dstm tep ... --binding 198.51.100.9=2001:db8:1::99
  dstm tep ... --binding-file /etc/dstm/bindings.txt
      # a line of it: 198.51.100.10  2001:db8:1::a0  6/2/0   (port set: offset/PSID length/PSID)
  dstm tep stats`,
    )
    .action(async (flags) => {
      if (flags.ipv6 === undefined)
        throw new UsageError("--ipv6: this TEP's IPv6 address is required");
      const ipv6 = unicastIPv6(flags.ipv6, "--ipv6", "this TEP's");
      if (flags.ipv4 === undefined)
        throw new UsageError("--ipv4: this TEP's IPv4 address is required");
      const ipv4 = unicastIPv4(flags.ipv4, "--ipv4", "this TEP's");
      if (flags.server === undefined)
        throw new UsageError("--server: the DSTM server's IPv6 address is required");
      // The server may run on this host: loopback is fine, a group or "any" is not.
      const server = unicastIPv6(flags.server, "--server", "the DSTM server's", {
        loopback: true,
      });
      const routes = flags.route ?? [];
      if (routes.length === 0)
        throw new UsageError(
          "--route: name the IPv4 prefixes this TEP serves (the server's pools)",
        );
      for (const r of routes)
        if (!parseIPv4Prefix(r)) throw new UsageError(`--route: "${r}" is not an IPv4 CIDR`);
      const number = (text: string, what: string, min: number, max: number) => {
        const n = Number(text);
        if (!Number.isInteger(n) || n < min || n > max)
          throw new UsageError(`${what}: "${text}" is not ${min}–${max}`);
        return n;
      };
      const log = stdoutLogger(flags);
      const started = performance.now();
      const statics = usageOnBindingError(() =>
        loadStaticBindings(flags.binding ?? [], flags.bindingFile ?? []),
      );
      if (flags.bindingFile)
        log.info("binding-file", {
          files: flags.bindingFile.join(","),
          bindings: statics.size,
          ms: Math.round(performance.now() - started),
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
          serverRoom: table.size - statics.size,
        });
      const key = flags.key ? readKeys(flags.key)[0] : undefined;
      if (!key) {
        const local = server === "::1" || interfaceOfIPv6(server) !== null;
        if (!local && !flags.insecureControl)
          throw new UsageError(
            `--server ${server} is not an address of this host: give --key FILE (the server's --tep-key) to authenticate it, or --insecure-control`,
          );
        log.warn("control-auth-off", {
          server,
          detail: local
            ? "server on this host: BIND/UNBIND/SNAPSHOT accepted unsigned from its address and port"
            : "--insecure-control: BIND/UNBIND/SNAPSHOT accepted unsigned; anyone who can spoof the server's address can rebind hosts",
        });
      }
      const node = await TepNode.start({
        ipv6,
        ipv4,
        server: { address: server, port: parsePort(flags.serverPort, "--server-port", DSTM_PORT) },
        key,
        routes,
        staticBindings: statics.bindings,
        ifname: flags.ifname,
        linkMtu: number(flags.linkMtu, "--link-mtu", 1280, 65575),
        hairpin: flags.hairpin,
        icmpRate: number(flags.icmpRate, "--icmp-rate", 0, 1_000_000),
        mssClamp: flags.mssClamp,
        dscp: flags.dscp === "copy" ? -1 : number(flags.dscp, "--dscp", 0, 63),
        maxBindings: table.size,
        controlPort: parsePort(flags.controlPort, "--control-port", TEP_CONTROL_PORT),
        statsSocket: flags.stats ?? defaultStatsSocket(),
        log,
      });
      sdNotify("READY=1\nSTATUS=forwarding");
      await untilSignal();
      await node.stop();
    });
  tep
    .command("stats")
    .description("show a running TEP's bindings and its forward/drop counters")
    .option("--stats <path>", "stats socket (default /run/dstm/tep.sock)")
    .option("--json", "print JSON")
    .action(async (flags) => {
      const socket = flags.stats ?? defaultStatsSocket();
      let stats: {
        ipv6: string;
        ipv4: string;
        bindings: number;
        serverBindings: number;
        staticBindings?: number;
        counters: Record<string, number>;
        pathMtu?: { host: string; mtu: number; expiresIn: number }[];
      };
      try {
        stats = (await (await getUnix(socket, "/v1/stats")).json()) as typeof stats;
      } catch (error) {
        throw new UsageError(
          unixPermissionProblem(socket, error) ??
            `no dstm tep answers on ${socket}; is it running?`,
        );
      }
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(stats, null, 2)}\n`);
        return;
      }
      const lines = [
        `tep ${stats.ipv6} / ${stats.ipv4}: ${stats.bindings} bindings (${stats.serverBindings} from the server, ${stats.staticBindings ?? 0} static)`,
      ];
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

/** `load()`, its BindingFileError (a bad `--binding` or `--binding-file`) a UsageError. */
function usageOnBindingError<T>(load: () => T): T {
  try {
    return load();
  } catch (error) {
    if (error instanceof BindingFileError) throw new UsageError(error.message);
    throw error;
  }
}
