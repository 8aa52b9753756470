/**
 * `dstm client`'s settings (flags over the config file, lib/config/merge.ts) checked: the
 * server(s) and protocol, the TEP and host addresses, the DTI, NAPT timeouts, keys. Each
 * check throws a one-line {@link UsageError} naming the flag.
 *
 * @module
 */

import { canonicalIPv6 } from "../net/addr.ts";
import type { NaptTimeouts } from "../tunnel/napt.ts";
import { ALL_DHCP_RELAY_AGENTS_AND_SERVERS, DHCP6_SERVER_PORT } from "../wire/dhcp4o6.ts";
import { DSTM_PORT } from "../wire/dstm_types.ts";
import type { DaemonFlags } from "./common_schema.ts";
import { parseDuration, parseHostPort, parsePort, unicastIPv4, unicastIPv6 } from "./endpoints.ts";
import { UsageError } from "./errors.ts";
import { interfaceName } from "./ifname.ts";
import { ipv4PrefixFlags } from "./ipv4_prefix.ts";
import { readKeys } from "./key_file.ts";

/** The client's settings in flag form (camelCase names of lib/config/client_schema.ts). */
export interface ClientFlags extends DaemonFlags {
  protocol: "dstm" | "dhcp4o6";
  server?: string | string[];
  serverPort?: string;
  tep?: string;
  tep4?: string;
  host6?: string;
  ifname: string;
  /** The DTI mode (lib/client/dti.ts DtiMode; the schema's choices). */
  dti: "tun" | "kernel" | "ip6tnl" | "seg6";
  route?: string[];
  mtu?: string;
  mssClamp: boolean;
  offload: boolean;
  udpGro?: boolean;
  /** `--kernel-encap` (lib/client/kernel_encap.ts). */
  kernelEncap?: boolean;
  dscp: string;
  onDemand?: boolean;
  idle: string;
  releaseWait?: string;
  naptTcpEstablished: string;
  naptTcpTransitory: string;
  naptUdp: string;
  naptIcmp: string;
  fragmentTimeout: string;
  key?: string;
  keyOverlap?: string;
  control?: string;
}

/**
 * The client's settings, checked without side effects (`--check` stops after this): files
 * read (the key), nothing opened. Throws {@link UsageError} naming the flag.
 */
export function resolveClientSettings(flags: ClientFlags) {
  const dhcp4o6 = flags.protocol === "dhcp4o6";
  const { serverFlag, zone, server, others } = clientServers(flags, dhcp4o6);
  const tep6 = flags.tep === undefined ? undefined : unicastIPv6(flags.tep, "--tep", "the TEP's");
  const host6 =
    flags.host6 === undefined ? undefined : unicastIPv6(flags.host6, "--host6", "this host's");
  // The DTI's name: a kernel DTI would otherwise fail only at lease time, over and over, and
  // the default control socket path (client-IFNAME.sock) would take a '/' (Linux dev_valid_name).
  interfaceName(flags.ifname ?? "dti0");
  ipv4PrefixFlags(flags.route ?? [], "--route");
  const mtu = flags.mtu === undefined ? undefined : Number(flags.mtu);
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535))
    throw new UsageError(`--mtu: "${flags.mtu}" is not 576–65535`);
  const idle = parseDuration(flags.idle, "--idle");
  if (idle > 86400) throw new UsageError(`--idle: "${flags.idle}" is not 1s–1d`);
  const releaseWait = parseDuration(flags.releaseWait ?? "2s", "--release-wait");
  if (releaseWait < 1 || releaseWait > 60)
    throw new UsageError(`--release-wait: "${flags.releaseWait}" is not 1s–60s`);
  if (flags.udpGro === true && flags.offload === false)
    throw new UsageError("--udp-gro needs the DTI offloads: it cannot go with --no-offload");
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
  const key = flags.key ? readKeys(flags.key, { setting: "key", holder: "client" })[0] : undefined;
  const keyOverlap = parseDuration(flags.keyOverlap ?? "1h", "--key-overlap");
  const napt = naptTimeouts(flags);
  const port = parsePort(
    flags.serverPort,
    "--server-port",
    dhcp4o6 ? DHCP6_SERVER_PORT : DSTM_PORT,
  );
  const dscp = dscpFlag(flags.dscp);
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
    releaseWait,
    tep4,
    key,
    keyOverlap,
    napt,
    port,
    dscp,
  };
}

/**
 * `--server`: one (dhcp4o6: a unicast address, or ff02::1:2 with `%ZONE`, RFC 8415 §7.1) or
 * several native DSTM servers, the first tried first.
 */
function clientServers(flags: ClientFlags, dhcp4o6: boolean) {
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
  if (!server && zone !== undefined && canonicalIPv6(serverAddress)) {
    // A scoped (link-local) server: the host would send from its link-local address, the
    // lease would be bound to it, and no TEP off the link could reach it (RFC 4291 §2.5.6).
    throw new UsageError(
      `--server: "${serverFlag}" is scoped to a link; the native protocol binds the lease to the address the host sends from, which would be link-local and unreachable for the TEP: give the server's global address${dhcp4o6 ? "" : " (or use --protocol dhcp4o6 with --server ff02::1:2%IFNAME)"}`,
    );
  }
  if (!server) throw new UsageError(`--server: "${serverFlag}" is not an IPv6 address`);
  // The one group a client may send to is All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
  if (!(dhcp4o6 && server === ALL_DHCP_RELAY_AGENTS_AND_SERVERS))
    unicastIPv6(server, "--server", "the server's", { loopback: true });
  const others = otherServers.map((text) =>
    unicastIPv6(text, "--server", "the server's", { loopback: true }),
  );
  return { serverFlag, zone, server, others };
}

/** The client's checked settings ({@link resolveClientSettings}). */
export type ClientSettings = ReturnType<typeof resolveClientSettings>;

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

/** `--dscp copy` → −1 (copy the inner DSCP), else 0–63. */
function dscpFlag(text: string): number {
  if (text === "copy") return -1;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 63)
    throw new UsageError(`--dscp: "${text}" is not copy or 0–63`);
  return n;
}
