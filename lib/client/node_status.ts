/**
 * What `dstm client status` shows of a running node (./node.ts): its state and mode, the lease
 * (address, port set, TEP, expiry), the DTI's MTU and the learnt path MTU, the NAPT's live
 * mappings for a shared lease, and the packet counters (NodeStatus, ./node_config.ts).
 *
 * @module
 */
import { formatIPv4, parseIPv6 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";
import { type Counters, countersOf } from "../tunnel/counters.ts";
import type { NaptTable } from "../tunnel/napt.ts";
import { IPV6_MIN_MTU, type PathMtuTable } from "../tunnel/pmtu.ts";
import type { AcquireStatus } from "./acquire_state.ts";
import type { DtiInUse, DtiMode } from "./dti.ts";
import type { NodeDtiStatus, NodeState, NodeStatus } from "./node_config.ts";
import type { ClientLease } from "./protocol.ts";

/** The parts of a node its status is read from. */
export interface NodeStatusParts {
  readonly state: NodeState;
  readonly onDemand: boolean;
  readonly ifname: string;
  readonly host6: string;
  readonly lease: ClientLease | undefined;
  /** The TEP in use for `lease` (the configured one, else the lease's). */
  readonly tep6: string | null;
  /** The DTI's MTU (bytes), null before it is up. */
  readonly mtu: number | null;
  /** The DTI mode asked for, and what the DTI hooks say is up (./dti.ts). */
  readonly dtiRequested: DtiMode;
  readonly dtiInUse: DtiInUse | undefined;
  readonly pathMtu: PathMtuTable;
  /**
   * The kernel's path MTU towards the TEP (bytes; lib/sys/raw6_errors.ts routePathMtu: its
   * route, lowered by a Packet Too Big it recorded), or null/negative when unknown.
   */
  readonly kernelPathMtu?: number | null;
  readonly napt: NaptTable;
  readonly counters: Counters;
  /** Why the last tries to obtain a lease failed (./acquire_state.ts), null if they did not. */
  readonly acquire?: AcquireStatus | null;
  /** Whether the DTI is administratively up (lib/sys/ifinfo.ts linkIsUp), null when unknown. */
  readonly dtiLinkUp?: boolean | null;
}

/** The status of the node made of `p`, now. */
export function nodeStatus(p: NodeStatusParts): NodeStatus {
  const lease = p.lease;
  return {
    state: p.state,
    mode: p.onDemand ? "on-demand" : "always-on",
    ifname: p.ifname,
    host6: p.host6,
    ipv4: lease ? formatIPv4(lease.ipv4) : null,
    ports: lease ? formatPortSet(lease.portSet ?? { offset: 0, psidLength: 0, psid: 0 }) : null,
    tep6: lease ? p.tep6 : null,
    tep4: lease?.tep4 ? formatIPv4(lease.tep4) : null,
    mtu: p.mtu,
    dti: dtiStatus(p.dtiRequested, p.dtiInUse),
    dtiLinkUp: p.state === "bound" ? (p.dtiLinkUp ?? null) : null,
    pathMtu: pathMtuInForce(p),
    workersPathMtu: workersPathMtu(p.pathMtu, p.tep6),
    expiresAt: lease ? new Date(lease.expiresAt).toISOString() : null,
    leaseTime: lease?.leaseTime ?? null,
    napt:
      lease?.portSet && lease.portSet.psidLength > 0
        ? p.napt.census((Date.now() / 1000) | 0)
        : null,
    counters: countersOf("client", p.counters.snapshot()),
    acquire: p.acquire ?? null,
  };
}

/** The Workers' estimate towards `tep6` (bytes), null when they have none. */
function workersPathMtu(table: PathMtuTable, tep6: string | null): number | null {
  const bytes = tep6 === null ? null : parseIPv6(tep6);
  const mtu = bytes ? table.lookup(bytes, 0) : 0;
  return mtu > 0 ? mtu : null;
}

/**
 * The path MTU towards the TEP in force (bytes), or null while nothing limits the tunnel below
 * the DTI's MTU: the lower of the Workers' estimate for the lease's TEP (from Packet Too Big,
 * RFC 8201 §4, and the kernel's route, followed every second: KernelPathMtuFollower in
 * lib/dataplane/client_attach.ts) and the kernel's own now, when that one is below the DTI's
 * MTU + 40 (RFC 2473 §7.1): the kernel fragments or refuses by its value, also in the second
 * before the Workers follow it.
 */
export function pathMtuInForce(
  p: Pick<NodeStatusParts, "pathMtu" | "kernelPathMtu" | "mtu" | "tep6">,
): number | null {
  const tep6 = p.tep6 === null ? null : parseIPv6(p.tep6);
  const learned = tep6 ? p.pathMtu.lookup(tep6, 0) : 0;
  const kernel = p.kernelPathMtu ?? -1;
  const kernelLimits = kernel >= IPV6_MIN_MTU && p.mtu !== null && kernel - 40 < p.mtu;
  const candidates = [learned > 0 ? learned : null, kernelLimits ? kernel : null].filter(
    (m): m is number => m !== null,
  );
  return candidates.length > 0 ? Math.min(...candidates) : null;
}

/** The status's `dti` from the mode asked for and the one up. */
export function dtiStatus(requested: DtiMode, inUse: DtiInUse | undefined): NodeDtiStatus {
  const mode = inUse?.mode ?? null;
  return {
    requested,
    mode,
    fallback: inUse?.fallback ?? null,
    counters: mode === null ? null : mode === "tun" ? "workers" : "kernel",
    ...(inUse?.kernelEncap ? { kernelEncap: true as const } : {}),
  };
}

/**
 * The `dti` line of `dstm client status` after the name and MTU: `tun`, `kernel: seg6 (the
 * kernel has no ip6tnl); counters are the kernel's: ip -s link show of the host's IPv6 link…`… `dti` is the JSON's, so
 * anything missing (an older client) reads as unknown.
 */
export function dtiText(dti: Partial<NodeDtiStatus> | undefined): string {
  if (!dti?.requested) return "";
  const mode = dti.mode ?? "down";
  let text = dti.requested === mode ? mode : `${dti.requested}: ${mode}`;
  if (dti.fallback) text += ` (${dti.fallback})`;
  if (dti.counters === "kernel")
    text +=
      mode === "seg6"
        ? "; counters are the kernel's: ip -s link show of the host's IPv6 link (seg6 sends past the DTI)"
        : "; counters are the kernel's: ip -s link";
  if (dti.kernelEncap) text += "; encapsulation by the kernel (--kernel-encap)";
  return text;
}
