/**
 * The kernel DTI on kernels without ip6tnl (`--dti seg6`, or `--dti kernel` when the kernel
 * refuses the ip6tnl kind): the same packets on the wire, made by the kernel's seg6
 * lightweight tunnels (RFC 8986) instead of a tunnel device.
 *
 * - Out: each IPv4 route of the DTI carries `encap seg6 mode encap.red segs TEP6`. With one
 *   segment H.Encaps.Red adds only an outer IPv6 header (no SRH), next header 4: RFC 2473
 *   IPv4-in-IPv6 to the TEP, after GSO as the kernel does it. The outer source is the seg6
 *   tunnel source (`ip sr tunsrc`), else the address the kernel picks towards the TEP: `up`
 *   refuses when that is not the host's address the lease is bound to (the TEP would drop
 *   every packet).
 * - In: IPv4-in-IPv6 addressed to the host's address goes to an End.DX4 route (table 4607,
 *   `HOST6/128 encap seg6local action End.DX4 nh4 0.0.0.0`), which removes the outer header
 *   and routes the IPv4 packet to the leased address. A rule `from TEP6/128 to HOST6/128
 *   ipproto 4 lookup 4607` selects it (only from the TEP: End.DX4 checks no source); it must come before the `local` table, whose rule the kernel puts at
 *   priority 0, so the `local` rule is moved to priority 1 while the DTI is up (what VRF
 *   set-ups do) and put back at 0 on `down`. Everything else to the host's address (the DSTM
 *   protocol, ICMPv6…) still takes the `local` table.
 * - The leased /32 sits on a TUN device named like the DTI, held open and never read: the
 *   kernel has no dummy device here. The routes name it; encap sends past it.
 * - Path MTU (RFC 8201 §4, RFC 2473 §7): the kernel applies a Packet Too Big to its route
 *   cache only in the handler of the quoted packet's protocol, and for next header 4 that is
 *   ip6_tunnel's (absent where seg6 stands in for ip6tnl) or a raw socket's. Without one, a
 *   narrower link between host and TEP was never learned (`ip -6 route get TEP` kept the
 *   link's MTU) and every outer packet above it was lost for ever, a 1478-byte IPv4 datagram
 *   without DF included (test/ver17_narrow_kernel_dti.test.ts). So while the DTI is up a raw
 *   IPv6 socket of next header 4, bound to the host's address and connected to the TEP, is
 *   held open and never read: the kernel then records the path MTU (Linux net/ipv6/raw.c
 *   `rawv6_err`, connected socket) and fragments the outer packets at it (RFC 2473 §7.2). The
 *   packets from the TEP never reach it (the rule below hands them to End.DX4 before local
 *   delivery); its receive buffer is the smallest the kernel allows.
 *
 * MTU: for an lwtunnel route the kernel takes the route's MTU as the outer packet's and
 * subtracts the encapsulation's headroom from it: the 40-byte IPv6 header and room for an SRH
 * (24 bytes for one segment), although encap.red with one segment sends no SRH (measured: a
 * route MTU of 1484 let 1420-byte IPv4 packets through). The routes get the tunnel MTU + 64
 * so that what IPv4 sees is the tunnel MTU (test/client_kernel_dti.test.ts checks with ping).
 *
 * Limits: one seg6 DTI per network namespace (the rule and table are shared); the inner DSCP
 * is not copied (the kernel writes traffic class 0 for IPv4 inside seg6); with strict reverse
 * path filtering on the host's IPv6 link (rp_filter 1) decapsulated packets are dropped,
 * since they arrive on that link while their source is routed through the DTI.
 *
 * @module
 */
import { formatIPv4, formatIPv6, parseIPv6 } from "../net/addr.ts";
import { Errno, SysError } from "../sys/libc.ts";
import {
  addressAdd,
  linkSetMtu,
  linkSetUp,
  type RouteSpec,
  routeAdd,
  routeDel,
} from "../sys/netlink.ts";
import { type RuleSpec, ruleAdd, ruleDel } from "../sys/netlink_tunnel.ts";
import { Raw6Socket } from "../sys/raw6.ts";
import { seg6TunnelSource } from "../sys/seg6_tunsrc.ts";
import { writeSysctl } from "../sys/sysctl.ts";
import { closeTun, openTun } from "../sys/tun_linux.ts";
import { sourceAddressFor } from "../sys/udp.ts";
import type { KernelTunnelSettings } from "./ip6tnl_dti.ts";

/** The routing table of the End.DX4 route (the DSTM port number, 4607). */
export const SEG6_DTI_TABLE = 4607;
/** What the kernel subtracts from an encap.red route's MTU: IPv6 header + a one-segment SRH (bytes). */
export const SEG6_HEADROOM = 40 + 24;
const RT_TABLE_LOCAL = 255;
const IPPROTO_IPIP = 4;
const LOCAL_RULE_MOVED = 1;

/** What `seg6Up` made, for `seg6Down`. */
export interface Seg6DtiState {
  readonly tunFd: number;
  /** The raw socket that makes the kernel learn the path MTU to the TEP (module text). */
  pmtu: Raw6Socket | undefined;
  readonly host6: string;
  readonly hostLink: string;
  /** The TEP: the only outer source the decapsulating rule takes. */
  readonly tep6: string;
  decap: boolean;
  rule: boolean;
}

/**
 * Brings the seg6 DTI up with `address` (IPv4 as a number) for `host6` (on `hostLink`) and
 * `tep6`, MTU `mtu` bytes. Throws a SysError after undoing what it did.
 */
export function seg6Up(
  s: KernelTunnelSettings,
  address: number,
  host6: string,
  hostLink: string,
  tep6: string,
  mtu: number,
): Seg6DtiState {
  const tun = openTun(s.ifname);
  const state: Seg6DtiState = {
    tunFd: tun.fd,
    pmtu: undefined,
    host6,
    hostLink,
    tep6,
    decap: false,
    rule: false,
  };
  try {
    linkSetMtu(s.ifname, mtu);
    writeSysctl(`net/ipv6/conf/${s.ifname}/disable_ipv6`, "1"); // slashes: a name may hold a dot
    addressAdd(s.ifname, `${formatIPv4(address)}/32`);
    linkSetUp(s.ifname);
    // Left by a client that was killed (SIGKILL) before it could take them away (a rule
    // without a source deletes one from any TEP).
    _quietly(() => ruleDel(_decapRule(host6)));
    _quietly(() => routeDel({ dst: `${host6}/128`, dev: hostLink, table: SEG6_DTI_TABLE }));
    routeAdd({
      dst: `${host6}/128`,
      dev: hostLink,
      table: SEG6_DTI_TABLE,
      encap: { kind: "seg6local-end-dx4" },
    });
    state.decap = true;
    _moveLocalRule(1);
    ruleAdd(_decapRule(host6, tep6));
    state.rule = true;
    for (const route of seg6Routes(s, address, tep6, mtu)) routeAdd(route);
    state.pmtu = _pathMtuListener(host6, tep6);
    return state;
  } catch (error) {
    seg6Down(state);
    throw error;
  }
}

/**
 * The IPv4 routes of the seg6 DTI: each of `s.routes` through it, source the leased
 * `address`, `encap seg6 mode encap.red segs TEP6`, MTU `mtu` + 64 (and advmss `mtu` − 40
 * with MSS clamping). What ./dti_routes.ts puts back after the DTI was set down and up.
 */
export function seg6Routes(
  s: KernelTunnelSettings,
  address: number,
  tep6: string,
  mtu: number,
): RouteSpec[] {
  return s.routes.map((dst) => ({
    dst,
    dev: s.ifname,
    src: formatIPv4(address),
    mtu: mtu + SEG6_HEADROOM,
    advmss: s.mssClamp ? mtu - 40 : undefined,
    encap: { kind: "seg6-encap-red", segment: tep6 },
  }));
}

/** Removes the rule, the End.DX4 route and the TUN (address and routes go with it). Never throws. */
export function seg6Down(state: Seg6DtiState): void {
  if (state.rule) _quietly(() => ruleDel(_decapRule(state.host6, state.tep6)));
  state.rule = false;
  _quietly(() => _moveLocalRule(0));
  if (state.decap) {
    _quietly(() =>
      routeDel({ dst: `${state.host6}/128`, dev: state.hostLink, table: SEG6_DTI_TABLE }),
    );
  }
  state.decap = false;
  state.pmtu?.close();
  state.pmtu = undefined;
  if (state.tunFd >= 0) closeTun(state.tunFd);
}

/**
 * A raw IPv6 socket of next header 4 from `host6` to `tep6`, never read: its only use is that
 * the kernel applies the Packet Too Big messages about our outer packets (see the module
 * text). Throws a SysError (closed first) when it cannot be bound or connected.
 */
function _pathMtuListener(host6: string, tep6: string): Raw6Socket {
  const sock = Raw6Socket.open({ receiveBuffer: 1 });
  try {
    sock.bindAddress(parseIPv6(host6)!);
    sock.connect(parseIPv6(tep6)!);
    return sock;
  } catch (error) {
    sock.close();
    throw error;
  }
}

/**
 * seg6 takes the outer source from the kernel's choice (`ip sr tunsrc`, else the source it
 * picks towards `tep6`): it must be `host6`, the address the lease is bound to, or the TEP
 * drops every packet. Throws an Error naming `what` (the option) otherwise.
 */
export async function checkSeg6Source(
  host6: string,
  tep6: string,
  port: number,
  what: string,
): Promise<void> {
  const host = formatIPv6(parseIPv6(host6)!);
  // A tunnel source set with `ip sr tunsrc set` wins over the route's choice (RFC 8986 §5).
  const tunsrc = seg6TunnelSource();
  if (tunsrc !== null && tunsrc !== host) {
    throw new Error(
      `${what}: the kernel's seg6 tunnel source (ip sr tunsrc) is ${tunsrc}, not the leased host address ${host6}: the TEP would drop every packet; run \`ip sr tunsrc set ${host6}\` or \`ip sr tunsrc set ::\`, or use --dti tun (without --kernel-encap) or ip6tnl`,
    );
  }
  if (tunsrc !== null) return;
  const picked = await sourceAddressFor(tep6, port);
  if (formatIPv6(parseIPv6(picked)!) !== host) {
    throw new Error(
      `${what}: the kernel sends to the TEP ${tep6} from ${picked}, not from the leased host address ${host6}; use --dti tun (without --kernel-encap) or ip6tnl, or make ${host6} the preferred source`,
    );
  }
}

/**
 * IPv4-in-IPv6 from the TEP to the host goes to End.DX4. Only from the TEP: End.DX4 itself
 * takes any outer source, so without `from` anyone who can reach the host's address could
 * deliver IPv4 with any source to it (the userspace DTI drops those: drop-wrong-tep).
 */
/**
 * Removes what a killed seg6 DTI left for `host6`: its decapsulating rule (from any TEP) and
 * its End.DX4 route on `hostLink`. Left in place they take the TEP's IPv4-in-IPv6 away from
 * any other DTI of the host (the rule comes before the `local` table): a TUN DTI would then
 * see none of it, its checks and NAPT bypassed. True when a rule was removed. Never throws.
 */
export function removeStaleSeg6(host6: string, hostLink: string | undefined): boolean {
  let removed = false;
  // One rule per TEP a killed client had; a few at most.
  for (let i = 0; i < 8; i++) {
    try {
      ruleDel(_decapRule(host6));
      removed = true;
    } catch {
      break;
    }
  }
  if (hostLink)
    _quietly(() => routeDel({ dst: `${host6}/128`, dev: hostLink, table: SEG6_DTI_TABLE }));
  return removed;
}

function _decapRule(host6: string, tep6?: string): RuleSpec {
  const rule = { priority: 0, dst: `${host6}/128`, ipProto: IPPROTO_IPIP, table: SEG6_DTI_TABLE };
  return tep6 === undefined ? rule : { ...rule, src: `${tep6}/128` };
}

/** Puts the `local` rule at priority `to` (0 or 1), removing it from the other. */
function _moveLocalRule(to: 0 | 1): void {
  const from = to === 0 ? LOCAL_RULE_MOVED : 0;
  try {
    ruleAdd({ priority: to, table: RT_TABLE_LOCAL });
  } catch (error) {
    if (!(error instanceof SysError && error.errno === Errno.EEXIST)) throw error;
  }
  try {
    ruleDel({ priority: from, table: RT_TABLE_LOCAL });
  } catch (error) {
    if (!(error instanceof SysError && error.errno === Errno.ENOENT)) throw error;
  }
}

function _quietly(undo: () => void): void {
  try {
    undo();
  } catch {
    // Best effort: gone already, or the namespace is going away.
  }
}
