/**
 * The kernel's half of `dstm client --kernel-encap` (the TUN DTI with userspace checks and
 * kernel encapsulation; the Worker's half is lib/dataplane/client_kernel_encap.ts): the
 * outbound Worker writes each checked IPv4 packet (a TCP super-packet whole) back into the
 * DTI, and the kernel forwards it to the TEP through a seg6 encap.red route, adding the outer
 * IPv6 header (next header 4, RFC 2473) and segmenting after encapsulation (GSO).
 *
 * What {@link kernelEncapUp} sets, all on the DTI only (the host's global settings — `all`,
 * `default`, `ip_forward` — are never touched):
 * - `net.ipv4.conf.DTI.forwarding=1`: IPv4 forwarding is decided per input device
 *   (IN_DEV_FORWARD of the DTI);
 * - `accept_local=1`: the packets' source is the leased address, a local one;
 * - `rp_filter=0` (the kernel applies the larger of `all` and the device's: with
 *   `all.rp_filter` 1 or 2 the reverse path is the DTI itself, which passes too);
 * - `net.ipv6.conf.DTI.force_forwarding=1` (Linux ≥ 6.17): the route's seg6 input redirect
 *   (seg6_input) encapsulates and then *forwards* the IPv6 packet (ip6_forward), which needs
 *   IPv6 forwarding from the input device. Older kernels have only the global switch: there
 *   `net.ipv6.conf.all.forwarding=1` must already be set by the administrator, else `up`
 *   refuses with a permanent DtiError;
 * - the IPv4 rule `iif DTI lookup 4608` (priority 4608) and, in table 4608, the route
 *   `default encap seg6 mode encap.red segs TEP6 dev DTI mtu (MTU + 64)` (lib/client/seg6_dti.ts
 *   SEG6_HEADROOM: what IPv4 then sees is the DTI MTU);
 * - the fence `iif DTI unreachable` (priority 4609): when table 4608 has no route (the DTI
 *   was set down and up: the kernel removed the seg6 route, the rule stays, until the route
 *   keeper ./dti_routes.ts puts the route back once the DTI is up; or the route was deleted
 *   by hand), what comes out of the DTI must not fall through to `main` and be forwarded,
 *   with the leased source, to the host's other networks (test/redteam_kernel_encap.test.ts).
 *   Added first, removed last.
 *
 * {@link kernelEncapDown} undoes them (the TUN's close takes the device's sysctls and route
 * anyway); a client killed before it could leaves the rule, which {@link removeStaleKernelEncap}
 * takes away at the next start.
 *
 * The seg6 input redirect takes the place of ip_forward: the IPv4 TTL is not lowered and the
 * IPv4 FORWARD netfilter hook is not crossed, but the IPv6 packet crosses the IPv6 FORWARD
 * hook: with a policy of DROP there (Docker sets one when it manages ip6tables) it must accept
 * `iif DTI`, or every packet is dropped after the Worker counted it in `client-kernel-encap`
 * (docs/kernel-dti.md).
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { type RouteSpec, routeAdd, routeDel } from "../sys/netlink.ts";
import { isUnknownKind, type RuleSpec, ruleAdd, ruleDel } from "../sys/netlink_tunnel.ts";
import { readSysctl, writeSysctl } from "../sys/sysctl.ts";
import { DtiError, type DtiMode } from "./dti.ts";
import type { NodeConfig } from "./node_config.ts";
import { SEG6_DTI_TABLE, SEG6_HEADROOM } from "./seg6_dti.ts";

/** The routing table of the kernel-encap route: next to seg6's SEG6_DTI_TABLE (4607). */
export const KERNEL_ENCAP_TABLE = SEG6_DTI_TABLE + 1;
/** The rule's priority (before `main`, 32766). */
const RULE_PRIORITY = KERNEL_ENCAP_TABLE;
/** The fence's priority: right after the rule. */
const FENCE_PRIORITY = RULE_PRIORITY + 1;
/** The DTI's sysctls (`net/ipvX/conf/DTI/…`) and the values kernel-encap needs. */
const SYSCTLS: readonly (readonly [string, string])[] = [
  ["ipv4/conf/%/forwarding", "1"],
  ["ipv4/conf/%/accept_local", "1"],
  ["ipv4/conf/%/rp_filter", "0"],
  ["ipv6/conf/%/force_forwarding", "1"],
];

/** The settings `--kernel-encap` is checked against. */
export type KernelEncapSettings = Pick<
  NodeConfig,
  "dtiMode" | "kernelEncap" | "offload" | "onDemand" | "dscp"
>;

/**
 * Why `--kernel-encap` cannot run with `c`, as a one-line message for the user, or undefined
 * when it can (or is off).
 */
export function kernelEncapRefusal(c: KernelEncapSettings): string | undefined {
  if (!c.kernelEncap) return undefined;
  const mode: DtiMode = c.dtiMode ?? "tun";
  if (mode !== "tun")
    return `--kernel-encap applies to the userspace DTI (--dti tun) only: --dti ${mode} encapsulates in the kernel already`;
  if (c.offload === false)
    return "--kernel-encap needs the DTI offloads (super-packets handed back whole): it cannot go with --no-offload";
  if (c.onDemand)
    return "--kernel-encap cannot go with --on-demand: the kernel's route to the TEP needs a lease";
  if (c.dscp !== undefined && c.dscp > 0)
    return "--dscp N cannot go with --kernel-encap: seg6 encapsulation writes traffic class 0";
  return undefined;
}

/** What {@link kernelEncapUp} made, for {@link kernelEncapDown}. */
export interface KernelEncapState {
  readonly ifname: string;
  /** The DTI sysctls as they were, to put back. */
  readonly saved: [string, string][];
  route: boolean;
  rule: boolean;
  fence: boolean;
}

/**
 * Sets up the kernel's encapsulation for the DTI `ifname` (up, with its address) towards
 * `tep6`, DTI MTU `mtu` bytes. Throws a permanent DtiError when the kernel has no seg6
 * lightweight tunnels, else the SysError of the step that failed, after undoing what it did.
 */
export function kernelEncapUp(ifname: string, tep6: string, mtu: number): KernelEncapState {
  const state: KernelEncapState = { ifname, saved: [], route: false, rule: false, fence: false };
  try {
    ruleAdd(_fence(ifname));
    state.fence = true;
    for (const [name, value] of SYSCTLS) {
      const key = `net/${name.replace("%", ifname)}`; // slashes: a name may hold a dot
      let was: string;
      try {
        was = readSysctl(key);
      } catch (error) {
        if (!name.includes("force_forwarding")) throw error;
        // Before Linux 6.17 IPv6 forwarding is only global: leave it to the administrator.
        if (readSysctl("net.ipv6.conf.all.forwarding") !== "0") continue;
        throw new DtiError(
          `DTI ${ifname}: --kernel-encap needs IPv6 forwarding from the DTI: Linux 6.17 or later (net.ipv6.conf.${ifname}.force_forwarding, set by dstm) or net.ipv6.conf.all.forwarding=1 (a host-wide setting dstm does not change); run without --kernel-encap`,
          { cause: error, permanent: true },
        );
      }
      state.saved.push([key, was]);
      writeSysctl(key, value);
    }
    try {
      routeAdd(kernelEncapRoute(ifname, tep6, mtu));
    } catch (error) {
      if (!isUnknownKind(error)) throw error;
      throw new DtiError(
        `DTI ${ifname}: --kernel-encap needs the kernel's seg6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL), which this kernel lacks; run without --kernel-encap (${(error as Error).message})`,
        { cause: error, permanent: true },
      );
    }
    state.route = true;
    ruleAdd(_rule(ifname));
    state.rule = true;
    return state;
  } catch (error) {
    kernelEncapDown(state);
    throw error;
  }
}

/**
 * The seg6 route of table 4608 for the DTI `ifname` towards `tep6`, DTI MTU `mtu` bytes:
 * `default encap seg6 mode encap.red segs TEP6 dev DTI table 4608 mtu (MTU + 64)`. What
 * {@link kernelEncapUp} adds, and what ./dti_routes.ts puts back after the DTI was set down and
 * up (the kernel deletes it then).
 */
export function kernelEncapRoute(ifname: string, tep6: string, mtu: number): RouteSpec {
  return {
    dst: "0.0.0.0/0",
    dev: ifname,
    table: KERNEL_ENCAP_TABLE,
    mtu: mtu + SEG6_HEADROOM,
    encap: { kind: "seg6-encap-red", segment: tep6 },
  };
}

/** Removes the rule and the route, puts the DTI's sysctls back, removes the fence. Never throws. */
export function kernelEncapDown(state: KernelEncapState): void {
  if (state.rule) _quietly(() => ruleDel(_rule(state.ifname)));
  state.rule = false;
  if (state.route)
    _quietly(() => routeDel({ dst: "0.0.0.0/0", dev: state.ifname, table: KERNEL_ENCAP_TABLE }));
  state.route = false;
  for (const [key, value] of state.saved.reverse()) _quietly(() => writeSysctl(key, value));
  state.saved.length = 0;
  if (state.fence) _quietly(() => ruleDel(_fence(state.ifname)));
  state.fence = false;
}

/**
 * Removes the rules `iif ifname lookup 4608` and `iif ifname unreachable` (4609) a killed
 * client left (its route and sysctls went with its TUN), saying so at warn. True when one was
 * removed. Never throws.
 */
export function removeStaleKernelEncap(ifname: string, log?: Logger): boolean {
  let removed = false;
  for (const rule of [_rule(ifname), _fence(ifname)])
    for (let i = 0; i < 8; i++) {
      try {
        ruleDel(rule);
        removed = true;
      } catch {
        break; // ENOENT: none (left)
      }
    }
  if (removed)
    log?.warn("kernel-dti-stale", {
      ifname,
      detail: `removed a --kernel-encap rule (iif ${ifname} lookup ${KERNEL_ENCAP_TABLE} or unreachable) left by an earlier client`,
    });
  return removed;
}

function _rule(ifname: string): RuleSpec {
  return { ipv4: true, priority: RULE_PRIORITY, iif: ifname, table: KERNEL_ENCAP_TABLE };
}

function _fence(ifname: string): RuleSpec {
  return { ipv4: true, priority: FENCE_PRIORITY, iif: ifname, table: 0, unreachable: true };
}

function _quietly(undo: () => void): void {
  try {
    undo();
  } catch {
    // Best effort: gone already (the TUN closed), or the namespace is going away.
  }
}
