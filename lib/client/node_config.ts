/**
 * The DSTM client service's settings ({@link NodeConfig}: server, tunnel source, DTI name,
 * routes and MTU, offloads, on-demand idle time, NAPT timeouts, back-off) and what it reports
 * ({@link NodeState}, {@link NodeStatus}, the shape `dstm client status` prints). Plain data;
 * times in seconds unless the name says ms, MTUs in bytes.
 *
 * @module
 */

import type { Logger } from "../control/log.ts";
import type { NaptCensus, NaptTimeouts } from "../tunnel/napt.ts";
import type { AuthKey } from "../wire/auth.ts";
import type { AcquireStatus } from "./acquire_state.ts";
import type { DtiHooks, DtiMode } from "./dti.ts";
import type { ExchangeWarnings } from "./exchange_warnings.ts";
import type { LeaseClient } from "./protocol.ts";

export interface NodeConfig {
  readonly server: string;
  readonly port?: number;
  /**
   * The host's IPv6 address (tunnel source). Default: the source the kernel picks towards
   * `sourceTowards` (default the server), followed when the host is renumbered.
   */
  readonly host6?: string;
  /** Where the default source address points (dhcp4o6: the TEP; default: the server). */
  readonly sourceTowards?: string;
  /**
   * The kernel's source address towards `address`:`port` (default lib/sys/udp.ts
   * `sourceAddressFor`; tests inject one). Rejects with a UdpBindError when there is no route.
   */
  readonly sourceFor?: (address: string, port: number) => Promise<string>;
  /** Use this TEP instead of the one in the lease. */
  readonly tep6?: string;
  readonly key?: AuthKey;
  readonly ifname?: string;
  /** IPv4 routes through the DTI; default the IPv4 default route. */
  readonly routes?: readonly string[];
  /** DTI MTU; default the MTU of the IPv6 link − 40. */
  readonly mtu?: number;
  /** Clamp the MSS of TCP SYNs to the tunnel / path MTU (RFC 4459 §3.2). Default true. */
  readonly mssClamp?: boolean;
  /**
   * DTI offloads and batched I/O (IFF_VNET_HDR, TSO4; recvmmsg/sendmmsg; GRO of checked
   * segments: lib/dataplane/client_batch.ts). Default true.
   */
  readonly offload?: boolean;
  /**
   * Also coalesce checked UDP datagrams into the DTI (UDP_L4 super-datagrams, Linux ≥ 6.2;
   * with `offload`). Default false: the host's netfilter would see each run as one packet.
   */
  readonly udpGro?: boolean;
  /**
   * With the userspace DTI (`tun`) and `offload`: the outbound Worker checks and hands each
   * packet back to the kernel through the DTI, which encapsulates it (seg6) and segments after
   * encapsulation (./kernel_encap.ts, lib/dataplane/client_kernel_encap.ts). Default false.
   */
  readonly kernelEncap?: boolean;
  /** Outer DSCP: −1 copies the inner one (default, RFC 2983), else 0–63. */
  readonly dscp?: number;
  /** On-demand mode: lease only while IPv4 traffic flows; release after `idleSeconds` without. */
  readonly onDemand?: boolean;
  readonly idleSeconds?: number;
  /**
   * The allocation protocol; default the native DSTM protocol to `server`:`port`. Given the
   * host's IPv6 address (the tunnel source), and the node's no-answer / ICMPv6 unreachable
   * warnings (./exchange_warnings.ts) for a native client to report to.
   */
  readonly leaseClient?: (host6: string, warnings: ExchangeWarnings) => Promise<LeaseClient>;
  /** NAPT idle timeouts and fragment tracking time (s) for shared leases; RFC defaults. */
  readonly napt?: Partial<NaptTimeouts>;
  /**
   * At stop: how long to wait for the server to acknowledge the RELEASE (ms, default
   * {@link DEFAULT_RELEASE_WAIT_MS}); then the client stops anyway, logging `release-failed`.
   */
  readonly releaseWaitMs?: number;
  /** Longest wait between two tries while acquiring (ms, default 30 s). */
  readonly maxBackoffMs?: number;
  /** The real DTI: the userspace TUN (default) or the kernel's tunnel (./tunnel_dti.ts). */
  readonly dtiMode?: DtiMode;
  /** Stands in for the real DTI (TUN, routes, raw socket, Workers): see ./dti.ts. */
  readonly dti?: DtiHooks;
  readonly log: Logger;
}

export type NodeState = "acquiring" | "bound" | "renewing" | "idle" | "stopped";

export interface NodeStatus {
  state: NodeState;
  mode: "always-on" | "on-demand";
  ifname: string;
  host6: string;
  ipv4: string | null;
  ports: string | null;
  tep6: string | null;
  tep4: string | null;
  mtu: number | null;
  /** Which DTI carries the traffic now (./node_status.ts NodeDtiStatus). */
  dti: NodeDtiStatus;
  /**
   * While a lease is bound: whether the DTI is administratively up (false: set down by hand;
   * its routes come back when it is up again, lib/client/dti_routes.ts); null otherwise.
   */
  dtiLinkUp: boolean | null;
  /**
   * The path MTU towards the TEP in force (bytes): the lower of the Workers' estimate (Packet
   * Too Big, RFC 8201) and the kernel's when that limits the DTI; null if neither does
   * (./node_status.ts pathMtuInForce).
   */
  pathMtu: number | null;
  /**
   * The estimate the Workers check DF packets against (bytes), null when they have none: from
   * Packet Too Big (RFC 8201 §4) and the kernel's route, followed every second
   * (lib/dataplane/client_attach.ts KernelPathMtuFollower).
   */
  workersPathMtu: number | null;
  expiresAt: string | null;
  leaseTime: number | null;
  /** Shared lease: live NAPT mappings by protocol and TCP phase; null for a whole address. */
  napt: NaptCensus | null;
  counters: Record<string, number>;
  /** Why the last tries to obtain a lease failed (./acquire_state.ts), null if they did not. */
  acquire?: AcquireStatus | null;
}

/**
 * The DTI in the status: the mode asked for (`--dti`), the one up now (null while none is, or
 * when a test's stand-in does not say), why they differ (`fallback`), and whose counters
 * `counters` are: the Workers' (`tun`) or the kernel's (ip6tnl, seg6: `ip -s link`; the
 * status counters then stay at zero).
 */
export interface NodeDtiStatus {
  requested: DtiMode;
  mode: "tun" | "ip6tnl" | "seg6" | null;
  fallback: string | null;
  counters: "workers" | "kernel" | null;
  /** Present (true) while the TUN DTI hands checked packets to the kernel (`--kernel-encap`). */
  kernelEncap?: true;
}

/** At stop, the longest wait for the RELEASE's answer (ms): `--release-wait` 2s. */
export const DEFAULT_RELEASE_WAIT_MS = 2000;
