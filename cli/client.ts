/**
 * `dstm client` (run the DSTM client: lease + DTI) and `dstm client status`.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { Dhcp4o6Client } from "../lib/client/dhcp4o6_client.ts";
import { dtiInUse } from "../lib/client/dti_in_use.ts";
import { failoverLeaseClient } from "../lib/client/failover.ts";
import { kernelHasIp6tnl, noIp6tnlReason } from "../lib/client/ip6tnl_dti.ts";
import { kernelEncapRefusal } from "../lib/client/kernel_encap.ts";
import { naptMinimumWarnings, warnNaptMinimums } from "../lib/client/napt_minimums.ts";
import { DstmNode, type NodeConfig } from "../lib/client/node.ts";
import { clearStaleKernelDti, kernelDtiRefusal } from "../lib/client/tunnel_dti.ts";
import {
  type ClientFlags,
  type ClientSettings,
  resolveClientSettings,
} from "../lib/config/client_resolve.ts";
import { CLIENT_SCHEMA } from "../lib/config/client_schema.ts";
import {
  clientBoundAddresses,
  metricsBoundAddresses,
  refuseForeignAddresses,
} from "../lib/config/listen_address.ts";
import type { Logger, LogLevel } from "../lib/control/log.ts";
import { logMessage } from "../lib/control/message_log.ts";
import { metricsHandler } from "../lib/control/metrics.ts";
import { planReload, type SettingsText } from "../lib/control/reload_plan.ts";
import { type HttpEndpoint, HttpListenError, serveTcp, serveUnix } from "../lib/sys/http.ts";
import { interfaceExists } from "../lib/sys/ifinfo.ts";
import { isLocalAddress } from "../lib/sys/local_address.ts";
import { sdNotify } from "../lib/sys/sd_notify.ts";
import { UdpBindError } from "../lib/sys/udp.ts";
import { ALL_DHCP_RELAY_AGENTS_AND_SERVERS } from "../lib/wire/dhcp4o6.ts";
import { addStatusCommand, clientSocket } from "./client_status.ts";
import { keyText, onHangup, stdoutLogger, untilSignal } from "./common.ts";
import { RuntimeError, UsageError } from "./errors.ts";
import { addSettings, commandSettings, explained } from "./options.ts";

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
  dstm client --server 2001:db8:1::53 --dti kernel          # the kernel's 4over6 tunnel as the DTI
  dstm client --server 2001:db8:1::53 --kernel-encap        # Workers check, the kernel encapsulates
  dstm client --config /etc/dstm/client.toml --check
  dstm client --protocol dhcp4o6 --server 2001:db8:1::547 --tep 2001:db8:1::1
  dstm client --protocol dhcp4o6 --server ff02::1:2%eth0 --tep 2001:db8:1::1
  dstm client status`,
    )
    .action(async (_opts, cmd) => {
      const settings = commandSettings(cmd, CLIENT_SCHEMA);
      const flags = settings.values as unknown as ClientFlags;
      const run = await explained(settings, () => {
        const r = resolveClientSettings(flags);
        const refusal =
          kernelDtiRefusal(flags.dti, { ...flags, dscp: r.dscp }) ??
          kernelEncapRefusal({ ...flags, dtiMode: flags.dti, dscp: r.dscp });
        if (refusal) throw new UsageError(refusal);
        // --check and start alike: --metrics on an address of another host could never listen.
        refuseForeignAddresses(metricsBoundAddresses(flags, r), isLocalAddress);
        // Nor could it send from a --host6 of another host (asked read-only, also by --check).
        refuseForeignAddresses(clientBoundAddresses(flags, r), isLocalAddress);
        // Nor send to ff02::1:2 on an interface this host lacks (it would wait for answers forever).
        if (
          r.server === ALL_DHCP_RELAY_AGENTS_AND_SERVERS &&
          r.zone &&
          !/^\d+$/.test(r.zone) &&
          !interfaceExists(r.zone)
        )
          throw new UsageError(
            `--server ${r.serverFlag}: no interface ${r.zone} on this host (see ip link)`,
          );
        return r;
      });
      // --idle only counts with --on-demand: given without it, it does nothing.
      const idleGiven = cmd.getOptionValueSource("idle") === "cli" || settings.fromFile("idle");
      if (idleGiven && flags.onDemand !== true)
        process.stderr.write(
          `dstm: ${settings.fromFile("idle") ? `${settings.fromFile("idle")}: idle` : "--idle"} has no effect without --on-demand (TOML: on-demand = true): an always-on client keeps its lease\n`,
        );
      if (flags.check) {
        for (const line of naptMinimumWarnings(run.napt)) process.stderr.write(`dstm: ${line}\n`);
        // Read-only, as a start would find it: another client's DTI name or control socket.
        const taken = await dtiInUse(flags.ifname, flags.control ?? clientSocket(flags.ifname));
        if (taken) throw new UsageError(taken);
        // As a start finds out (lib/client/tunnel_dti.ts), before it has taken a lease: a
        // kernel built without ip6tnl refuses the kind (as non-root this cannot be asked).
        if (flags.dti === "ip6tnl" && kernelHasIp6tnl() === false)
          throw new UsageError(noIp6tnlReason(flags.ifname, run.dscp));
        process.stdout.write(
          `dstm client: configuration OK (server ${flags.server}, ${flags.protocol}, dti ${flags.ifname}: ${flags.dti}${flags.kernelEncap ? ", encapsulation by the kernel (--kernel-encap)" : ""})\n`,
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

type ControlEndpoint = Awaited<ReturnType<typeof serveUnix>>;

/** The client's settings as text: those a restart changes, and those a reload applies live. */
function clientSettings(
  flags: ClientFlags,
  r: ClientSettings,
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
      "kernel-encap": String(flags.kernelEncap === true),
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

/** Runs the client until SIGINT/SIGTERM (then releases); SIGHUP reads its settings again. */
async function runClient(
  flags: ClientFlags,
  r: ClientSettings,
  reread: () => ClientFlags,
): Promise<void> {
  const log = stdoutLogger(flags);
  warnNaptMinimums(r.napt, log);
  // The control socket before the lease: one in use must stop us before we take a lease.
  let node: DstmNode | undefined;
  const control = await serveControl(flags.control ?? clientSocket(flags.ifname), () => node);
  clearStaleKernelDti(flags.dti, flags.ifname, log);
  try {
    node = await DstmNode.start(nodeOptions(flags, r, log));
  } catch (error) {
    control.close();
    // The client has no --listen: the address it could not bind is --host6's (gone since the
    // check above): a configuration error, exit 2, as the check's refusal.
    if (error instanceof UdpBindError && error.code === "EADDRNOTAVAIL" && r.host6 !== undefined)
      throw new UsageError(
        `--host6 ${flags.host6}: no interface of this host has this address (the client sends from it); check --host6 and that IPv6 is configured`,
      );
    throw error;
  }
  const metricsEndpoint = await serveMetrics(r, node, control, log);
  sdNotify("READY=1\nSTATUS=lease bound, DTI up");
  const stopHup = onHangup(log, reloader(node, { flags, r }, reread, log), node.metrics);
  // A DTI that can never be made (lib/client/dti.ts DtiError.permanent) ends the client as a
  // startup refusal does: exit 2 with the reason (the node released the lease).
  const failed = await Promise.race([untilSignal().then(() => undefined), node.failed]);
  stopHup();
  sdNotify("STOPPING=1");
  metricsEndpoint?.close();
  control.close();
  await node.stop();
  if (failed) throw new UsageError(failed.message);
}

/** The client's control socket: `/v1/status` (and `/v1/ping`) of the node once it runs. */
async function serveControl(
  socket: string,
  running: () => DstmNode | undefined,
): Promise<ControlEndpoint> {
  try {
    return await serveUnix(socket, (request) => {
      const node = running();
      return !node
        ? Response.json({ error: "starting" }, { status: 503 })
        : new URL(request.url).pathname === "/v1/status" ||
            new URL(request.url).pathname === "/v1/ping"
          ? Response.json(node.status())
          : Response.json({ error: "no such endpoint" }, { status: 404 });
    });
  } catch (error) {
    throw error instanceof HttpListenError ? new UsageError(error.message) : error;
  }
}

/** What DstmNode.start takes, from the flags and their checked values. */
function nodeOptions(flags: ClientFlags, r: ClientSettings, log: Logger): NodeConfig {
  return {
    server: r.dhcp4o6 ? r.serverFlag : r.server,
    port: r.port,
    // dhcp4o6: the tunnel source is the address towards the TEP (ff02::1:2 has no route).
    // Without --host6 the client follows the host's addresses (renumbering).
    host6: r.host6,
    sourceTowards: r.dhcp4o6 ? r.tep6 : undefined,
    tep6: r.tep6,
    leaseClient: leaseClientOf(r, log),
    key: r.key,
    ifname: flags.ifname,
    dtiMode: flags.dti,
    routes: flags.route,
    mtu: r.mtu,
    mssClamp: flags.mssClamp,
    offload: flags.offload,
    udpGro: flags.udpGro === true,
    kernelEncap: flags.kernelEncap === true,
    dscp: r.dscp,
    onDemand: flags.onDemand === true,
    idleSeconds: r.idle,
    releaseWaitMs: r.releaseWait * 1000,
    napt: r.napt,
    log,
  };
}

/**
 * The lease client: DHCPv4-over-DHCPv6, or native DSTM failing over between several
 * servers; undefined for the node's own native client of one server.
 */
function leaseClientOf(r: ClientSettings, log: Logger): NodeConfig["leaseClient"] {
  const { server, zone, port } = r;
  if (r.dhcp4o6) {
    const multicast = server === ALL_DHCP_RELAY_AGENTS_AND_SERVERS;
    return (source) =>
      Dhcp4o6Client.open({
        server: zone === undefined ? server : `${server}%${zone}`,
        ifname: multicast ? zone : undefined,
        host6: source,
        tep6: r.tep6!,
        tep4: r.tep4,
        serverPort: port,
        log,
      }).catch((error: Error) => {
        // A bad address or ff02::1:2 without an interface: the user's to fix.
        throw error instanceof RangeError ? new UsageError(`--server: ${error.message}`) : error;
      });
  }
  if (r.others.length === 0) return undefined;
  return (source, warnings) =>
    failoverLeaseClient({
      servers: [server, ...r.others].map((address) => ({ address, port })),
      host6: source,
      key: r.key,
      onFailover: (from, to) => log.warn("server-failover", { from, to }),
      onRetransmit: (to, attempt, message) => warnings.retransmit(attempt, message, to),
      onUnreachable: (to, type, detail) => warnings.unreachable(type, to, detail),
      onMessage: (direction, message, peer) => {
        if (direction === "received") warnings.answered();
        logMessage(log, direction, message, peer);
      },
    });
}

/** The Prometheus endpoint (`--metrics`), if asked for; a failure to listen stops the client. */
async function serveMetrics(
  r: ClientSettings,
  node: DstmNode,
  control: ControlEndpoint,
  log: Logger,
): Promise<HttpEndpoint | undefined> {
  if (!r.metrics) return undefined;
  let endpoint: HttpEndpoint;
  try {
    endpoint = serveTcp(r.metrics.address, r.metrics.port, metricsHandler(node.metrics));
  } catch (error) {
    control.close();
    await node.stop();
    throw error instanceof HttpListenError ? new RuntimeError(error.message) : error;
  }
  log.info("metrics", { listen: endpoint.where });
  return endpoint;
}

/**
 * SIGHUP: the settings read again (`reread`) and checked; what may change live (key, idle,
 * NAPT timeouts, log level) is applied, anything else refuses the reload (lib/control/reload_plan.ts).
 */
function reloader(
  node: DstmNode,
  start: { flags: ClientFlags; r: ClientSettings },
  reread: () => ClientFlags,
  log: Logger,
): () => { level: LogLevel; changed: readonly string[] } {
  let running = start;
  return () => {
    const nextFlags = reread();
    const next = resolveClientSettings(nextFlags);
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
  };
}
