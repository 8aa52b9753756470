/**
 * `dstm tep`'s settings (flags over the config file, lib/config/merge.ts) checked: its
 * addresses, the servers it obeys, the prefixes it serves, and the numbers of its data plane.
 * Each check throws a one-line {@link UsageError} naming the flag. The static bindings, the
 * binding table's size and the control channel's key are checked by cli/tep.ts, which logs
 * what it decided.
 *
 * @module
 */

import { TEP_CONTROL_PORT } from "../server/tep_sync.ts";
import { MAX_BINDINGS } from "../tunnel/binding.ts";
import { DSTM_PORT } from "../wire/dstm_types.ts";
import type { DaemonFlags } from "./common_schema.ts";
import { type HostPort, parseHostPort, parsePort, unicastIPv4, unicastIPv6 } from "./endpoints.ts";
import { UsageError } from "./errors.ts";
import { interfaceName } from "./ifname.ts";
import { ipv4PrefixFlags } from "./ipv4_prefix.ts";

/** The TEP's settings in flag form (camelCase names of lib/config/tep_schema.ts). */
export interface TepFlags extends DaemonFlags {
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
  /** `--rx-ring`: the AF_PACKET receive ring (lib/sys/packet_ring.ts). */
  rxRing?: boolean;
  /** `--fragment`: where an IPv4 packet above the tunnel MTU without DF is cut. */
  fragment?: "outer" | "inner";
  dscp: string;
  maxBindings?: string;
  tepPort?: string;
  control?: string;
}

/** This TEP's addresses, the DSTM servers it obeys (the first, then the others) and its IPv4 routes. */
export interface TepEndpoints {
  readonly ipv6: string;
  readonly ipv4: number;
  readonly server: string;
  readonly moreServers: readonly string[];
  readonly routes: string[];
}

/**
 * `--ipv6`, `--ipv4`, `--server` (one or more; loopback allowed: the server may run on this
 * host) and `--route`, all required: several missing are named at once, not one per try.
 */
export function tepEndpoints(flags: TepFlags): TepEndpoints {
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
  // The same server twice would be sent every SYNC twice and listed twice (a newcomer's typo).
  const twice = [server, ...moreServers].find((s, i, all) => all.indexOf(s) !== i);
  if (twice !== undefined) throw new UsageError(`--server ${twice} is given twice`);
  const routes = flags.route ?? [];
  if (routes.length === 0)
    throw new UsageError("--route: name the IPv4 prefixes this TEP serves (the server's pools)");
  ipv4PrefixFlags(routes, "--route");
  return { ipv6, ipv4, server, moreServers, routes };
}

/** `--max-bindings` (1 to the table's limit), or undefined for the default size. */
export function maxBindingsFlag(flags: TepFlags): number | undefined {
  return flags.maxBindings === undefined
    ? undefined
    : boundedNumber(flags.maxBindings, "--max-bindings", 1, MAX_BINDINGS);
}

/** The TEP's ports, data-plane numbers and endpoints, checked. */
export interface TepNumbers {
  readonly serverPort: number;
  /** Bytes. */
  readonly linkMtu: number;
  /** ICMP errors per second. */
  readonly icmpRate: number;
  /** −1: copy the inner DSCP; else 0–63. */
  readonly dscp: number;
  readonly controlPort: number;
  readonly metrics?: HostPort;
  /** The tunnel interface's name (`--ifname`), checked as the kernel checks it (./ifname.ts). */
  readonly ifname: string;
}

/** `--server-port`, `--link-mtu`, `--icmp-rate`, `--dscp`, `--tep-port`, `--metrics` and `--ifname`. */
export function tepNumbers(flags: TepFlags): TepNumbers {
  return {
    serverPort: parsePort(flags.serverPort, "--server-port", DSTM_PORT),
    linkMtu: boundedNumber(flags.linkMtu, "--link-mtu", 1280, 65575),
    icmpRate: boundedNumber(flags.icmpRate, "--icmp-rate", 0, 1_000_000),
    dscp: flags.dscp === "copy" ? -1 : boundedNumber(flags.dscp, "--dscp", 0, 63),
    controlPort: parsePort(flags.tepPort, "--tep-port", TEP_CONTROL_PORT),
    metrics: flags.metrics ? parseHostPort(flags.metrics, "--metrics", 9605) : undefined,
    ifname: interfaceName(flags.ifname),
  };
}

/** A whole number from `min` to `max`. */
function boundedNumber(text: string, what: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${what}: "${text}" is not ${min}–${max}`);
  return n;
}
