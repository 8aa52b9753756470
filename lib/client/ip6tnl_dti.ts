/**
 * The kernel DTI on an ip6tnl device (`dstm client --dti ip6tnl`, or `--dti kernel` where the
 * kernel has ip6tnl): the DTI of the original DSTM clients. The kernel encapsulates IPv4 in
 * IPv6 (next header 4, RFC 2473) from the host's address to the TEP and decapsulates what the
 * TEP sends back; TCP super-packets (GSO) are cut after encapsulation, not in JavaScript.
 *
 * Made over rtnetlink (lib/sys/netlink_tunnel.ts): `ip link add NAME type ip6tnl mode ipip6
 * local HOST6 remote TEP6 encaplimit none hoplimit 64 tclass inherit|DSCP` with the tunnel
 * MTU, IPv6 off on it, the leased IPv4 /32, up, then the IPv4 routes through it (source the
 * leased address; advmss MTU − 40 with MSS clamping on). Deleting the device takes its address
 * and routes with it.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { formatIPv4 } from "../net/addr.ts";
import { Errno, SysError } from "../sys/libc.ts";
import {
  addressAdd,
  linkDelete,
  linkSetMtu,
  linkSetUp,
  type RouteSpec,
  routeAdd,
} from "../sys/netlink.ts";
import { ip6tnlCreate, isUnknownKind } from "../sys/netlink_tunnel.ts";
import { writeSysctl } from "../sys/sysctl.ts";

/** The outer hop limit (RFC 2473 §3: the tunnel entry point's choice; 64 as `ip` defaults). */
export const TUNNEL_HOP_LIMIT = 64;

export interface KernelTunnelSettings {
  readonly ifname: string;
  /** IPv4 routes through the DTI (CIDR). */
  readonly routes: readonly string[];
  /** Set TCP's advertised MSS of the routes to MTU − 40 (the kernel's MSS clamping). */
  readonly mssClamp: boolean;
  /** Outer DSCP: −1 copies the inner one, else 0–63. */
  readonly dscp: number;
}

/**
 * Why `--dti ip6tnl` cannot be on a kernel built without CONFIG_IPV6_TUNNEL, and what to use
 * instead: seg6 cannot write a `dscp` > 0, so then only the userspace DTI. The start
 * (./tunnel_dti.ts) and `dstm client --check` (cli/client.ts) say the same.
 */
export function noIp6tnlReason(ifname: string, dscp: number): string {
  return `DTI ${ifname}: --dti ip6tnl: this kernel has no ip6tnl (CONFIG_IPV6_TUNNEL); use ${dscp > 0 ? "--dti tun (seg6 cannot write --dscp)" : "--dti seg6 or kernel"}`;
}

/**
 * Whether this kernel makes ip6tnl devices, found out as a start finds out (./tunnel_dti.ts):
 * an ip6tnl device is created (down, no address, no route: nothing is sent through it) under a
 * name of this process's own and deleted at once. false: the kernel refused the kind
 * (isUnknownKind: EOPNOTSUPP, built without CONFIG_IPV6_TUNNEL); undefined: it could not be
 * asked (EPERM without CAP_NET_ADMIN, or another refusal that says nothing of the kind); true
 * otherwise, also EEXIST (a device of that kind is there already).
 */
export function kernelHasIp6tnl(): boolean | undefined {
  const name = `dstmchk${process.pid % 10_000_000}`;
  try {
    ip6tnlCreate({ name, local: "2001:db8::1", remote: "2001:db8::2", hopLimit: 1, dscp: -1 });
  } catch (error) {
    if (isUnknownKind(error)) return false;
    return error instanceof SysError && error.errno === Errno.EEXIST ? true : undefined;
  }
  ip6tnlDown(name);
  return true;
}

/**
 * Creates the ip6tnl DTI with `address` (IPv4 as a number) from `host6` to `tep6`, MTU `mtu`
 * (bytes). Throws a SysError (EOPNOTSUPP: the kernel has no ip6tnl) after removing what it made.
 */
export function ip6tnlUp(
  s: KernelTunnelSettings,
  address: number,
  host6: string,
  tep6: string,
  mtu: number,
): void {
  ip6tnlCreate({
    name: s.ifname,
    local: host6,
    remote: tep6,
    hopLimit: TUNNEL_HOP_LIMIT,
    dscp: s.dscp,
    mtu,
  });
  try {
    // Again after creation: the kernel may size the device from the underlying route when it
    // registers it (ip6_tnl_link_config), whatever IFLA_MTU said.
    linkSetMtu(s.ifname, mtu);
    // An IPv4-only interface: no IPv6 link-local address, no router solicitations into the tunnel.
    writeSysctl(`net/ipv6/conf/${s.ifname}/disable_ipv6`, "1"); // slashes: a name may hold a dot
    addressAdd(s.ifname, `${formatIPv4(address)}/32`);
    linkSetUp(s.ifname);
    for (const route of ip6tnlRoutes(s, address, mtu)) routeAdd(route);
  } catch (error) {
    ip6tnlDown(s.ifname);
    throw error;
  }
}

/**
 * The IPv4 routes through the ip6tnl DTI: each of `s.routes` with the leased `address` as
 * source and, with MSS clamping, advmss `mtu` − 40 (what ./dti_routes.ts puts back after the
 * DTI was set down and up).
 */
export function ip6tnlRoutes(s: KernelTunnelSettings, address: number, mtu: number): RouteSpec[] {
  return s.routes.map((dst) => ({
    dst,
    dev: s.ifname,
    src: formatIPv4(address),
    advmss: s.mssClamp ? mtu - 40 : undefined,
  }));
}

/** ARPHRD_TUNNEL6 (include/uapi/linux/if_arp.h): the link type of ip6tnl devices. */
const ARPHRD_TUNNEL6 = 769;

/**
 * Deletes `ifname` if it is an ip6tnl device (one a killed client left behind); true if it
 * did. Any other kind of interface of that name is left alone (then creating fails: EEXIST).
 */
export function removeStaleIp6tnl(ifname: string): boolean {
  let type: number;
  try {
    type = Number(readFileSync(`/sys/class/net/${ifname}/type`, "utf8").trim());
  } catch {
    return false;
  }
  if (type !== ARPHRD_TUNNEL6) return false;
  ip6tnlDown(ifname);
  return true;
}

/** Deletes the ip6tnl DTI (its address and routes go with it). Never throws. */
export function ip6tnlDown(ifname: string): void {
  try {
    linkDelete(ifname);
  } catch {
    // Gone already (or never made): nothing to undo.
  }
}
