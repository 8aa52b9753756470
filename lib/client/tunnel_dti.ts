/**
 * The kernel DTI (`dstm client --dti kernel|ip6tnl|seg6`): the lease life is the node's as
 * always (lib/client/node.ts), but IPv4 is encapsulated by the kernel instead of the Workers,
 * so TCP super-packets are segmented after encapsulation (GSO) rather than one by one in
 * JavaScript. Two ways to have the kernel do it:
 * - `ip6tnl` (./ip6tnl_dti.ts): an ip6tnl device in mode ipip6, as the original DSTM clients;
 * - `seg6` (./seg6_dti.ts): seg6 encap.red routes out and an End.DX4 route in, for kernels
 *   built without ip6tnl (the same packets on the wire);
 * - `kernel`: ip6tnl, or seg6 when the kernel refuses the ip6tnl kind (logged once at info).
 *
 * What the kernel tunnel cannot do is refused before anything starts
 * ({@link kernelDtiRefusal}): on-demand mode (needs the Workers to hold the first packets),
 * --no-offload (the kernel always segments), a fixed --dscp on seg6 (traffic class 0 there).
 * A lease with a port set (a shared IPv4 address) needs NAPT, which only the Workers do: for
 * such a lease the userspace DTI (a TUN, ./kernel_dti.ts) is brought up instead, with a
 * warning, and the kernel DTI again for the next whole-address lease.
 *
 * The node's packet counters (docs/metrics.md, `dstm client status`) come from the Workers:
 * with the kernel DTI they stay at zero; the kernel's own counters of the device are in
 * `ip -s link show DTI` (ip6tnl) or those of the host's IPv6 link (seg6).
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv6 } from "../net/addr.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";
import type { RouteSpec } from "../sys/netlink.ts";
import { isUnknownKind } from "../sys/netlink_tunnel.ts";
import { ClientState } from "../tunnel/client_state.ts";
import type { Counters } from "../tunnel/counters.ts";
import { DtiError, type DtiHooks, type DtiInUse, type DtiMode } from "./dti.ts";
import { dtiMtu } from "./dti_mtu.ts";
import { DtiRouteKeeper, type KeptRoute, type PathMtuRoutes } from "./dti_routes.ts";
import {
  ip6tnlDown,
  ip6tnlRoutes,
  ip6tnlUp,
  type KernelTunnelSettings,
  noIp6tnlReason,
  removeStaleIp6tnl,
} from "./ip6tnl_dti.ts";
import { removeStaleKernelEncap } from "./kernel_encap.ts";
import type { NodeConfig } from "./node_config.ts";
import {
  checkSeg6Source,
  removeStaleSeg6,
  type Seg6DtiState,
  seg6Down,
  seg6Routes,
  seg6Up,
} from "./seg6_dti.ts";

/** The settings a kernel DTI is checked against. */
export type KernelDtiSettings = Pick<NodeConfig, "onDemand" | "offload" | "udpGro" | "dscp">;

/**
 * Why `mode` cannot run with `c`, as a one-line message for the user, or undefined when it
 * can (or `mode` is the userspace `tun`).
 */
export function kernelDtiRefusal(mode: DtiMode, c: KernelDtiSettings): string | undefined {
  if (mode === "tun") return undefined;
  if (c.onDemand)
    return `--on-demand needs the userspace DTI (--dti tun): the kernel tunnel (--dti ${mode}) cannot hold the first packets while a lease is obtained`;
  if (c.offload === false)
    return `--no-offload applies to the userspace DTI (--dti tun) only: the kernel tunnel (--dti ${mode}) always segments with GSO`;
  if (c.udpGro)
    return `--udp-gro applies to the userspace DTI (--dti tun) only: behind the kernel tunnel (--dti ${mode}) the kernel coalesces UDP for the sockets that ask (UDP_GRO)`;
  if (mode === "seg6" && c.dscp !== undefined && c.dscp > 0)
    return "--dscp N needs --dti ip6tnl or tun: seg6 encapsulation writes traffic class 0";
  return undefined;
}

/**
 * Before the client starts with a kernel DTI: removes the ip6tnl device named `ifname` that a
 * killed client left (the start-up check that the DTI can be made would otherwise find the
 * name taken), saying so at warn. Other interfaces of that name are left alone.
 */
export function clearStaleKernelDti(mode: DtiMode, ifname: string, log: Logger): void {
  if (mode !== "tun" && removeStaleIp6tnl(ifname)) _saidStale(log, ifname);
}

function _saidStale(log: Logger, ifname: string): void {
  log.warn("kernel-dti-stale", {
    ifname,
    detail: "removed an ip6tnl device of that name left by an earlier client",
  });
}

/** Why a kernel DTI runs on the TUN (status `dti.fallback`). */
const SHARED_LEASE_FALLBACK = "a shared lease (port set): NAPT needs the userspace DTI";

export interface TunnelDtiOptions {
  readonly mode: Exclude<DtiMode, "tun">;
  readonly ifname: string;
  readonly config: Pick<NodeConfig, "mtu" | "routes" | "mssClamp" | "dscp" | "port">;
  /** The host's IPv6 address now (the tunnel source; changes when the host is renumbered). */
  readonly host6: () => string;
  /** The node's lease state (lib/tunnel/client_state.ts): tells a shared lease apart. */
  readonly leaseState: SharedArrayBuffer;
  /** The userspace DTI, for leases with a port set. */
  readonly fallback: DtiHooks;
  readonly log: Logger;
  /** Where a route put back after the DTI was set down and up is counted (./dti_routes.ts). */
  readonly counters?: Counters;
}

export class TunnelDti implements DtiHooks {
  readonly #o: TunnelDtiOptions;
  readonly #lease: ClientState;
  /** ip6tnl or seg6; `kernel` settles on one at the first `up`. */
  #backend: "ip6tnl" | "seg6" | undefined;
  /** `kernel` found no ip6tnl; seg6 has been announced. */
  #fellBack = false;
  #saidSeg6 = false;
  /** What is up now. */
  #active: "ip6tnl" | "fallback" | Seg6DtiState | undefined;
  /** Puts the DTI's routes back after it was set down and up (./dti_routes.ts). */
  #keeper: DtiRouteKeeper | undefined;

  constructor(options: TunnelDtiOptions) {
    this.#o = options;
    this.#lease = ClientState.attach(options.leaseState);
    this.#backend = options.mode === "kernel" ? undefined : options.mode;
  }

  /**
   * Brings the DTI up with `address` to `tep6`; resolves with its MTU (bytes), rejects with a
   * DtiError (what it made is undone).
   */
  async up(
    address: number,
    tep6: Uint8Array | undefined,
    onNeedLease: (why?: "binding-lost") => void,
  ): Promise<number> {
    await this.down();
    try {
      return await this.#up(address, tep6, onNeedLease);
    } catch (error) {
      throw error instanceof DtiError
        ? error
        : new DtiError(`DTI ${this.#o.ifname}: ${(error as Error).message}`, { cause: error });
    }
  }

  async #up(
    address: number,
    tep6: Uint8Array | undefined,
    onNeedLease: (why?: "binding-lost") => void,
  ): Promise<number> {
    if (!tep6) throw new Error("the kernel DTI needs a TEP (on-demand mode needs --dti tun)");
    if (this.#lease.hasLease && this.#lease.portSet.psidLength > 0) {
      this.#o.log.warn("kernel-dti-fallback", {
        ifname: this.#o.ifname,
        detail:
          "the lease is a shared address with a port set: NAPT needs the userspace DTI (TUN), used for this lease",
      });
      const mtu = await this.#o.fallback.up(address, tep6, onNeedLease);
      this.#active = "fallback";
      return mtu;
    }
    const host6 = this.#o.host6();
    const hostLink = interfaceOfIPv6(host6);
    if (!hostLink) throw new Error(`the host's address ${host6} is on no interface`);
    const mtu = dtiMtu(this.#o.config.mtu, hostLink, this.#o.ifname, this.#o.log);
    const s: KernelTunnelSettings = {
      ifname: this.#o.ifname,
      routes: this.#o.config.routes ?? ["0.0.0.0/0"],
      mssClamp: this.#o.config.mssClamp !== false,
      dscp: this.#o.config.dscp ?? -1,
    };
    const tep = formatIPv6(tep6);
    // A killed --kernel-encap client's rule and fence (`iif NAME`) would apply to this DTI.
    removeStaleKernelEncap(s.ifname, this.#o.log);
    if (this.#backend !== "seg6") {
      if (removeStaleIp6tnl(s.ifname)) _saidStale(this.#o.log, s.ifname);
      // A killed seg6 DTI's rule would hand the TEP's packets to End.DX4 before ip6tnl.
      if (removeStaleSeg6(host6, hostLink))
        this.#o.log.warn("kernel-dti-stale", {
          ifname: s.ifname,
          detail: `removed a seg6 DTI's rule for ${host6} left by an earlier client`,
        });
      try {
        ip6tnlUp(s, address, host6, tep, mtu);
        this.#backend = "ip6tnl";
        this.#active = "ip6tnl";
        this.#keep(s.ifname, ip6tnlRoutes(s, address, mtu));
        return mtu;
      } catch (error) {
        if (!isUnknownKind(error)) throw error;
        if (this.#backend === "ip6tnl")
          throw new DtiError(`${noIp6tnlReason(s.ifname, s.dscp)} (${(error as Error).message})`, {
            cause: error,
            permanent: true,
          });
        this.#backend = "seg6";
        this.#fellBack = true;
      }
    }
    if (!this.#saidSeg6) {
      this.#saidSeg6 = true;
      this.#o.log.info("kernel-dti-seg6", {
        ifname: this.#o.ifname,
        detail: `${this.#fellBack ? "the kernel has no ip6tnl: " : ""}IPv4-in-IPv6 by seg6 encap.red and End.DX4 routes; the outer traffic class is 0 (no --dscp copy); IPv4 fragments the TEP sends in outer IPv6 fragments are lost (a TEP with --fragment inner sends none; or reassemble IPv6 before routing, nf_defrag_ipv6: docs/kernel-dti.md)`,
      });
    }
    if (s.dscp > 0)
      throw new DtiError(`DTI ${s.ifname}: ${kernelDtiRefusal("seg6", { dscp: s.dscp })}`, {
        permanent: true,
      });
    await checkSeg6Source(host6, tep, this.#o.config.port ?? 4607, "--dti seg6");
    this.#active = seg6Up(s, address, host6, hostLink, tep, mtu);
    // seg6 tells IPv4 nothing of a narrower path: the routes follow it (./dti_routes.ts).
    this.#keep(s.ifname, seg6Routes(s, address, tep, mtu), {
      tep6,
      mtu,
      routes: (m) => _kept(seg6Routes(s, address, tep, m)),
    });
    return mtu;
  }

  #keep(ifname: string, routes: readonly RouteSpec[], pathMtu?: PathMtuRoutes): void {
    this.#keeper = DtiRouteKeeper.start({
      ifname,
      routes: _kept(routes),
      log: this.#o.log,
      counters: this.#o.counters,
      pathMtu,
    });
  }

  /** Which DTI is up (./dti.ts DtiInUse), undefined when none. */
  inUse(): DtiInUse | undefined {
    const active = this.#active;
    if (active === undefined) return undefined;
    if (active === "fallback") return { mode: "tun", fallback: SHARED_LEASE_FALLBACK };
    if (active === "ip6tnl") return { mode: "ip6tnl" };
    return this.#fellBack
      ? { mode: "seg6", fallback: "the kernel has no ip6tnl" }
      : { mode: "seg6" };
  }

  /** Takes down whatever is up. Never rejects. */
  async down(): Promise<void> {
    this.#keeper?.stop();
    this.#keeper = undefined;
    const active = this.#active;
    this.#active = undefined;
    if (active === "fallback") await this.#o.fallback.down();
    else if (active === "ip6tnl") ip6tnlDown(this.#o.ifname);
    else if (active) seg6Down(active);
  }
}

function _kept(routes: readonly RouteSpec[]): KeptRoute[] {
  return routes.map((route) => ({ route, event: "dti-route-restored" }));
}
