/**
 * `dstm client` (run the DSTM client: lease + DTI) and `dstm client status`.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { Dhcp4o6Client } from "../lib/client/dhcp4o6_client.ts";
import type { DtiMode } from "../lib/client/dti.ts";
import { failoverLeaseClient } from "../lib/client/failover.ts";
import { DstmNode } from "../lib/client/node.ts";
import { clearStaleKernelDti, kernelDtiRefusal } from "../lib/client/tunnel_dti.ts";
import { CLIENT_SCHEMA } from "../lib/config/client_schema.ts";
import type { LogFormat, Logger, LogLevel } from "../lib/control/log.ts";
import { logMessage } from "../lib/control/message_log.ts";
import { metricsHandler } from "../lib/control/metrics.ts";
import { planReload, type SettingsText } from "../lib/control/reload_plan.ts";
import { canonicalIPv6 } from "../lib/net/addr.ts";
import { parseIPv4Prefix } from "../lib/net/prefix.ts";
import {
  getUnix,
  type HttpEndpoint,
  HttpListenError,
  serveTcp,
  serveUnix,
  unixPermissionProblem,
} from "../lib/sys/http.ts";
import { sdNotify } from "../lib/sys/sd_notify.ts";
import type { NaptTimeouts } from "../lib/tunnel/napt.ts";
import { ALL_DHCP_RELAY_AGENTS_AND_SERVERS, DHCP6_SERVER_PORT } from "../lib/wire/dhcp4o6.ts";
import { DSTM_PORT } from "../lib/wire/dstm_types.ts";
import { keyText, onHangup, parsePort, readKeys, stdoutLogger, untilSignal } from "./common.ts";
import { parseDuration, parseHostPort, unicastIPv4, unicastIPv6 } from "./endpoints.ts";
import { RuntimeError, UsageError } from "./errors.ts";
import { addSettings, commandSettings, explained } from "./options.ts";
import { runtimeDir } from "./paths.ts";

const _collect = (value: string, previous: string[] = []) => [...previous, value];

/** Control socket of the client running the DTI `ifname`. */
export function clientSocket(ifname: string): string {
  return `${runtimeDir()}/client-${ifname}.sock`;
}

/**
 * `dstm client` (settings from flags and TOML, lib/config) and `dstm client status`. Exit
 * codes: 0, 1 when the client fails at run time, 2 on a usage error.
 */
export function clientCommand() {
  const command = new Command("client")
    .enablePositionalOptions()
    .description(
      "run the DSTM client: obtain an IPv4 lease, bring up the DTI (4over6 tunnel interface), renew, release on exit",
    );
  const client = addSettings(command, CLIENT_SCHEMA)
    .addHelpText(
      "after",
      `
Examples:
  dstm client --server 2001:db8:1::53
  dstm client --server 2001:db8:1::53 --route 192.0.2.0/24 --key /etc/dstm/key
  dstm client --server 2001:db8:1::53 --on-demand --idle 30s
  dstm client --config /etc/dstm/client.toml --check
  dstm client --protocol dhcp4o6 --server 2001:db8:1::547 --tep 2001:db8:1::1
  dstm client --protocol dhcp4o6 --server ff02::1:2%eth0 --tep 2001:db8:1::1
  dstm client status`,
    )
    .action(async (_opts, cmd) => {
      const settings = commandSettings(cmd, CLIENT_SCHEMA);
      const flags = settings.values as unknown as ClientFlags;
      const run = await explained(settings, () => resolveClient(flags));
      if (flags.check) {
        process.stdout.write(
          `dstm client: configuration OK (server ${flags.server}, ${flags.protocol}, dti ${flags.ifname})\n`,
        );
        return;
      }
      // SIGHUP (a closed terminal, or `kill -HUP`): read the flags and the file again and
      // apply the log level; the client keeps its lease and keeps running (like Kea).
      await runClient(
        flags,
        run,
        () => commandSettings(cmd, CLIENT_SCHEMA).values as unknown as ClientFlags,
      );
    });
  addStatusCommand(client);
  return client;
}

/**
 * `dstm client status`: asks the running client on its control socket (`/v1/status`) and
 * prints its lease, TEP, expiry and counters (or the JSON). Throws a RuntimeError (exit 1)
 * when no client answers or it reports an error.
 */
function addStatusCommand(client: ReturnType<typeof clientCommand>): void {
  client
    .command("status")
    .description("show a running client's lease, TEP, expiry and traffic counters")
    .addOption(new Option("--ifname <name>", "DTI of the client to ask").default("dti0", "dti0"))
    .option("--control <path>", `status socket (default: ${clientSocket("IFNAME")})`)
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  dstm client status\n  dstm client status --ifname dti1 --json",
    )
    .action(async (flags) => {
      const socket = flags.control ?? clientSocket(flags.ifname);
      let status: Record<string, unknown>;
      try {
        status = (await (await getUnix(socket, "/v1/status")).json()) as Record<string, unknown>;
      } catch (error) {
        throw new RuntimeError(
          unixPermissionProblem(socket, error) ??
            `no dstm client answers on ${socket}; is it running (for --ifname ${flags.ifname})? (use --ifname NAME or --control PATH)`,
        );
      }
      if (typeof status.error === "string")
        throw new RuntimeError(`the dstm client on ${socket} answers: ${status.error}`);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
        return;
      }
      const counters = status.counters as Record<string, number>;
      process.stdout.write(
        [
          `state     ${status.state} (${status.mode})`,
          `dti       ${status.ifname} (mtu ${status.mtu ?? "-"}${status.pathMtu ? `, path MTU ${status.pathMtu}` : ""})`,
          `ipv4      ${status.ipv4 ?? "-"}${status.ports && status.ports !== "all" ? ` ports ${status.ports}` : ""}`,
          `host ipv6 ${status.host6}`,
          `tep       ${status.tep6 ?? "-"}${status.tep4 ? ` (${status.tep4})` : ""}`,
          `expires   ${status.expiresAt ?? "-"}`,
          `sent      ${counters["client-encap-forward"]} packets, ${counters["client-encap-forward-bytes"]} bytes`,
          `received  ${counters["client-decap-forward"]} packets, ${counters["client-decap-forward-bytes"]} bytes`,
          ...naptLines(status.napt as Record<string, number> | null, counters),
          `path MTU  ${counters["pmtu-learned"] ?? 0} learned, ${counters["client-encap-drop-too-big"] ?? 0} too big (ICMPv4 3/4 to the application)`,
          `relayed   ${counters["icmp-relay-frag-needed"] ?? 0} frag-needed, ${counters["icmp-relay-host-unreachable"] ?? 0} host-unreachable, ${counters["icmp-relay-admin-prohibited"] ?? 0} admin-prohibited (ICMPv6 errors from the path)`,
          `ecn       ${counters["client-decap-ecn-ce"] ?? 0} CE marked, ${counters["client-decap-drop-ecn"] ?? 0} dropped (outer CE, inner Not-ECT)`,
          `mss       ${(counters["client-encap-mss-clamped"] ?? 0) + (counters["client-decap-mss-clamped"] ?? 0)} SYNs clamped`,
          "",
        ].join("\n"),
      );
    });
}

export interface ClientFlags {
  protocol: "dstm" | "dhcp4o6";
  server?: string | string[];
  serverPort?: string;
  tep?: string;
  tep4?: string;
  host6?: string;
  ifname: string;
  dti: DtiMode;
  route?: string[];
  mtu?: string;
  mssClamp: boolean;
  offload: boolean;
  dscp: string;
  onDemand?: boolean;
  idle: string;
  naptTcpEstablished: string;
  naptTcpTransitory: string;
  naptUdp: string;
  naptIcmp: string;
  fragmentTimeout: string;
  key?: string;
  keyOverlap?: string;
  control?: string;
  metrics?: string;
  logFormat?: LogFormat;
  logLevel?: LogLevel;
  config?: string;
  check?: boolean;
}

/** The client's settings, checked without side effects (--check stops after this). */
function resolveClient(flags: ClientFlags) {
  const dhcp4o6 = flags.protocol === "dhcp4o6";
  const servers = typeof flags.server === "string" ? [flags.server] : (flags.server ?? []);
  const [serverFlag, ...otherServers] = servers;
  if (dhcp4o6 && otherServers.length > 0)
    throw new UsageError("--protocol dhcp4o6 takes one --server");
  if (!serverFlag)
    throw new UsageError(
      dhcp4o6
        ? "--server V6 is required (the 4o6 server's IPv6 address, or ff02::1:2)"
        : "--server V6 is required (the DSTM server's IPv6 address)",
    );
  const [serverAddress = "", zone] = serverFlag.split("%", 2);
  const server = canonicalIPv6(dhcp4o6 ? serverAddress : serverFlag);
  if (!server) throw new UsageError(`--server: "${serverFlag}" is not an IPv6 address`);
  // The one group a client may send to is All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
  if (!(dhcp4o6 && server === ALL_DHCP_RELAY_AGENTS_AND_SERVERS))
    unicastIPv6(server, "--server", "the server's", { loopback: true });
  const others = otherServers.map((text) =>
    unicastIPv6(text, "--server", "the server's", { loopback: true }),
  );
  const tep6 = flags.tep === undefined ? undefined : unicastIPv6(flags.tep, "--tep", "the TEP's");
  const host6 =
    flags.host6 === undefined ? undefined : unicastIPv6(flags.host6, "--host6", "this host's");
  for (const route of flags.route ?? []) {
    if (!parseIPv4Prefix(route))
      throw new UsageError(`--route: "${route}" is not an IPv4 CIDR (e.g. 192.0.2.0/24)`);
  }
  const mtu = flags.mtu === undefined ? undefined : Number(flags.mtu);
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535))
    throw new UsageError(`--mtu: "${flags.mtu}" is not 576–65535`);
  const idle = parseDuration(flags.idle, "--idle");
  if (idle > 86400) throw new UsageError(`--idle: "${flags.idle}" is not 1s–1d`);
  const tep4 =
    flags.tep4 === undefined ? undefined : unicastIPv4(flags.tep4, "--tep4", "the TEP's");
  if (dhcp4o6) {
    if (tep6 === undefined)
      throw new UsageError(
        "--tep V6 is required with --protocol dhcp4o6 (DHCP does not say which TEP to use)",
      );
    if (flags.key)
      throw new UsageError("--key signs native DSTM messages; dhcp4o6 has no such signature");
  } else if (flags.tep4 !== undefined) {
    throw new UsageError("--tep4 is for --protocol dhcp4o6 (the DSTM server names the TEP)");
  }
  const key = flags.key ? readKeys(flags.key)[0] : undefined;
  const keyOverlap = parseDuration(flags.keyOverlap ?? "1h", "--key-overlap");
  const napt = naptTimeouts(flags);
  const port = parsePort(
    flags.serverPort,
    "--server-port",
    dhcp4o6 ? DHCP6_SERVER_PORT : DSTM_PORT,
  );
  const dscp = dscpFlag(flags.dscp);
  const dtiRefusal = kernelDtiRefusal(flags.dti, { ...flags, dscp });
  if (dtiRefusal) throw new UsageError(dtiRefusal);
  const metrics = flags.metrics ? parseHostPort(flags.metrics, "--metrics", 9606) : undefined;
  return {
    metrics,
    dhcp4o6,
    zone,
    serverFlag,
    server,
    others,
    tep6,
    host6,
    mtu,
    idle,
    tep4,
    key,
    keyOverlap,
    napt,
    port,
    dscp,
  };
}

type ResolvedClient = ReturnType<typeof resolveClient>;

/** The client's settings as text: those a restart changes, and those a reload applies live. */
function clientSettings(
  flags: ClientFlags,
  r: ResolvedClient,
): { fixed: SettingsText; live: SettingsText } {
  return {
    fixed: {
      protocol: flags.protocol,
      server: [r.serverFlag, ...r.others].join(","),
      "server-port": String(r.port),
      tep: r.tep6 ?? "-",
      tep4: r.tep4 === undefined ? "-" : String(r.tep4),
      host6: r.host6 ?? "-",
      ifname: flags.ifname,
      dti: flags.dti,
      route: (flags.route ?? []).join(","),
      mtu: r.mtu === undefined ? "-" : String(r.mtu),
      "mss-clamp": String(flags.mssClamp),
      dscp: String(r.dscp),
      "on-demand": String(flags.onDemand === true),
      control: flags.control ?? clientSocket(flags.ifname),
      metrics: r.metrics ? `[${r.metrics.address}]:${r.metrics.port}` : "off",
      "log-format": flags.logFormat ?? "text",
      // Turning signatures on or off changes what the server sees: a restart.
      key: r.key ? "on" : "off",
    },
    live: {
      key: keyText(r.key),
      "key-overlap": String(r.keyOverlap),
      idle: String(r.idle),
      napt: JSON.stringify(r.napt),
      "log-level": flags.logLevel ?? "info",
    },
  };
}

/** Runs the client until SIGINT/SIGTERM (then releases); SIGHUP sets the log level again. */
async function runClient(
  flags: ClientFlags,
  r: ReturnType<typeof resolveClient>,
  reread: () => ClientFlags,
): Promise<void> {
  const { dhcp4o6, zone, serverFlag, server, others, tep6, host6, mtu, idle, tep4, key } = r;
  const { napt, port, dscp } = r;
  let running = { flags, r };
  const log = stdoutLogger(flags);
  warnNaptMinimums(napt, log);
  const multicast = dhcp4o6 && server === ALL_DHCP_RELAY_AGENTS_AND_SERVERS;
  // The control socket before the lease: one in use must stop us before we take a lease.
  const socket = flags.control ?? clientSocket(flags.ifname);
  let node: DstmNode | undefined;
  let control: Awaited<ReturnType<typeof serveUnix>>;
  try {
    control = await serveUnix(socket, (request) =>
      !node
        ? Response.json({ error: "starting" }, { status: 503 })
        : new URL(request.url).pathname === "/v1/status" ||
            new URL(request.url).pathname === "/v1/ping"
          ? Response.json(node.status())
          : Response.json({ error: "no such endpoint" }, { status: 404 }),
    );
  } catch (error) {
    throw error instanceof HttpListenError ? new UsageError(error.message) : error;
  }
  clearStaleKernelDti(flags.dti, flags.ifname, log);
  try {
    node = await DstmNode.start({
      server: dhcp4o6 ? serverFlag : server,
      port,
      // dhcp4o6: the tunnel source is the address towards the TEP (ff02::1:2 has no route).
      // Without --host6 the client follows the host's addresses (renumbering).
      host6,
      sourceTowards: dhcp4o6 ? tep6 : undefined,
      tep6,
      leaseClient: dhcp4o6
        ? (source) =>
            Dhcp4o6Client.open({
              server: zone === undefined ? server : `${server}%${zone}`,
              ifname: multicast ? zone : undefined,
              host6: source,
              tep6: tep6!,
              tep4,
              serverPort: port,
              log,
            }).catch((error: Error) => {
              // A bad address or ff02::1:2 without an interface: the user's to fix.
              throw error instanceof RangeError
                ? new UsageError(`--server: ${error.message}`)
                : error;
            })
        : others.length > 0
          ? (source) =>
              failoverLeaseClient({
                servers: [server, ...others].map((address) => ({ address, port })),
                host6: source,
                key,
                onFailover: (from, to) => log.warn("server-failover", { from, to }),
                onMessage: (direction, message, peer) => logMessage(log, direction, message, peer),
              })
          : undefined,
      key,
      ifname: flags.ifname,
      dtiMode: flags.dti,
      routes: flags.route,
      mtu,
      mssClamp: flags.mssClamp,
      offload: flags.offload,
      dscp,
      onDemand: flags.onDemand === true,
      idleSeconds: idle,
      napt,
      log,
    });
  } catch (error) {
    control.close();
    throw error;
  }
  let metricsEndpoint: HttpEndpoint | undefined;
  if (r.metrics) {
    try {
      metricsEndpoint = serveTcp(r.metrics.address, r.metrics.port, metricsHandler(node.metrics));
    } catch (error) {
      control.close();
      await node.stop();
      throw error instanceof HttpListenError ? new RuntimeError(error.message) : error;
    }
    log.info("metrics", { listen: metricsEndpoint.where });
  }
  sdNotify("READY=1\nSTATUS=lease bound, DTI up");
  const stopHup = onHangup(
    log,
    () => {
      const nextFlags = reread();
      const next = resolveClient(nextFlags);
      const now = clientSettings(running.flags, running.r);
      const then = clientSettings(nextFlags, next);
      const plan = planReload(now.fixed, then.fixed, now.live, then.live);
      if ("refused" in plan) throw new Error(plan.refused);
      node.reconfigure({
        rotateKey: plan.changed.includes("key") ? next.key : undefined,
        keyOverlapMs: next.keyOverlap * 1000,
        idleSeconds: next.idle,
        napt: next.napt,
      });
      const old = running.r.key;
      if (plan.changed.includes("key") && old && next.key && old.id !== next.key.id)
        log.info("key-overlap", {
          keys: String(old.id),
          "overlap-s": next.keyOverlap,
          detail: "answers signed with the replaced key are accepted until then",
        });
      running = { flags: nextFlags, r: next };
      return { level: nextFlags.logLevel ?? "info", changed: plan.changed };
    },
    node.metrics,
  );
  await untilSignal();
  stopHup();
  sdNotify("STOPPING=1");
  metricsEndpoint?.close();
  control.close();
  await node.stop();
}

/** The NAPT flags, checked; below an RFC minimum is allowed (tests, labs) but warned about. */
function naptTimeouts(flags: {
  naptTcpEstablished: string;
  naptTcpTransitory: string;
  naptUdp: string;
  naptIcmp: string;
  fragmentTimeout: string;
}): NaptTimeouts {
  const t: NaptTimeouts = {
    tcpEstablished: parseDuration(flags.naptTcpEstablished, "--napt-tcp-established"),
    tcpTransitory: parseDuration(flags.naptTcpTransitory, "--napt-tcp-transitory"),
    udp: parseDuration(flags.naptUdp, "--napt-udp"),
    icmp: parseDuration(flags.naptIcmp, "--napt-icmp"),
    fragment: parseDuration(flags.fragmentTimeout, "--fragment-timeout"),
  };
  return t;
}

/** Below an RFC minimum is allowed (tests, labs) but warned about. */
function warnNaptMinimums(t: NaptTimeouts, log: Logger): void {
  const minimums: [keyof NaptTimeouts, number, string][] = [
    ["tcpEstablished", 7440, "RFC 5382 REQ-5"],
    ["tcpTransitory", 240, "RFC 5382 REQ-5"],
    ["udp", 120, "RFC 4787 REQ-5"],
    ["icmp", 60, "RFC 5508 REQ-1"],
  ];
  for (const [key, minimum, rule] of minimums)
    if (t[key] < minimum)
      log.warn("napt-timeout-below-minimum", {
        timeout: key,
        "timeout-s": t[key],
        "minimum-s": minimum,
        rule,
      });
}

/** Status lines for a shared lease: mappings by state, fragments, no-port answers. */
function naptLines(napt: Record<string, number> | null, c: Record<string, number>): string[] {
  if (!napt) return [];
  const frag = (d: string) =>
    `${c[`client-${d}-frag-tracked`]} tracked, ${c[`client-${d}-frag-held`]} held, dropped ${c[`client-${d}-frag-drop-timeout`]} timeout / ${c[`client-${d}-frag-drop-no-room`]} no room`;
  return [
    `napt tcp  ${napt.tcpEstablished} established, ${napt.tcpHalfOpen} half-open, ${napt.tcpClosing} closing, ${napt.tcpClosed} closed`,
    `napt      ${napt.udp} udp, ${napt.icmp} icmp echo mappings`,
    `no port   ${c["client-napt-drop-no-port"]} dropped: ${c["client-napt-no-port-rst"]} RST, ${c["client-napt-no-port-icmp"]} ICMP 3/13 sent, ${c["client-napt-no-port-rate-limited"]} rate limited; ${c["client-napt-tcp-reuse-closed"]} closed TCP ports reused (${c["client-napt-drop-closed"]} late segments of their old connections dropped)`,
    `frag out  ${frag("out")}`,
    `frag in   ${frag("in")}`,
  ];
}

/** `--dscp copy` → −1 (copy the inner DSCP), else 0–63. */
function dscpFlag(text: string): number {
  if (text === "copy") return -1;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 63)
    throw new UsageError(`--dscp: "${text}" is not copy or 0–63`);
  return n;
}
