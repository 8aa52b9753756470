/**
 * The real DTI (./dti.ts's {@link DtiHooks}, root needed): a TUN device with the leased IPv4
 * address (/32), the tunnel MTU and the IPv4 routes, IPv6 off on it; a raw IPv6 socket bound to
 * the host's address (next header 4, RFC 2473), connected to the TEP once it is known; and the
 * two forwarding Workers (lib/dataplane/forwarder.ts) sharing the lease state, NAPT table and
 * path MTU table with the node.
 *
 * MTU: the configured one, else the MTU of the link of the host's IPv6 address − 40 bytes (the
 * outer IPv6 header, RFC 2473 §6.1). Closing the TUN fd deletes the device, and with it its
 * address and routes. `up` undoes what it did and rejects when a step fails (no root, name
 * taken, no such address); `down` never rejects.
 *
 * `--kernel-encap` (NodeConfig.kernelEncap): the outbound Worker hands checked packets back to
 * the kernel through the TUN, which encapsulates them to the TEP (./kernel_encap.ts).
 *
 * The DTI set down and up by hand loses its routes (the kernel deletes them at `down`): while
 * it is up, ./dti_routes.ts puts them back (and the kernel-encap route of table 4608).
 *
 * @module
 */

import type { Logger } from "../control/log.ts";
import { Forwarder } from "../dataplane/forwarder.ts";
import { formatIPv4, formatIPv6, parseIPv6 } from "../net/addr.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";
import { addressAdd, linkSetMtu, linkSetTxQueueLen, linkSetUp, routeAdd } from "../sys/netlink.ts";
import { Raw6Socket } from "../sys/raw6.ts";
import { writeSysctl } from "../sys/sysctl.ts";
import { closeTun, openTun } from "../sys/tun_linux.ts";
import type { Counters } from "../tunnel/counters.ts";
import { DtiError, type DtiHooks, type DtiInUse } from "./dti.ts";
import { dtiMtu } from "./dti_mtu.ts";
import { DtiRouteKeeper, type KeptRoute, type PathMtuRoutes } from "./dti_routes.ts";
import {
  type KernelEncapState,
  kernelEncapDown,
  kernelEncapRoute,
  kernelEncapUp,
  removeStaleKernelEncap,
} from "./kernel_encap.ts";
import type { NodeConfig } from "./node_config.ts";
import { checkSeg6Source, removeStaleSeg6 } from "./seg6_dti.ts";

/** What the kernel DTI shares with the node: its settings and the Workers' shared tables. */
export interface KernelDtiOptions {
  readonly ifname: string;
  readonly config: Pick<
    NodeConfig,
    | "mtu"
    | "routes"
    | "offload"
    | "udpGro"
    | "onDemand"
    | "mssClamp"
    | "dscp"
    | "kernelEncap"
    | "port"
  >;
  /** The host's IPv6 address now (the tunnel source; changes when the host is renumbered). */
  readonly host6: () => string;
  readonly counters: Counters;
  /** Shared buffers: ClientState, NaptTable, PathMtuTable (lib/tunnel). */
  readonly leaseState: SharedArrayBuffer;
  readonly napt: SharedArrayBuffer;
  readonly pathMtu: SharedArrayBuffer;
  /** Where a removed leftover of a killed kernel DTI is said (warn). */
  readonly log?: Logger;
}

export class KernelDti implements DtiHooks {
  #tunFd = -1;
  #raw: Raw6Socket | undefined;
  #forwarder: Forwarder | undefined;
  /** --kernel-encap: the rule, route and sysctls (./kernel_encap.ts). */
  #encap: KernelEncapState | undefined;
  /** Puts the routes back after the DTI was set down and up (./dti_routes.ts). */
  #keeper: DtiRouteKeeper | undefined;
  readonly #o: KernelDtiOptions;

  constructor(options: KernelDtiOptions) {
    this.#o = options;
  }

  /** Creates the DTI with `address`, its routes, the raw socket and the Workers. */
  async up(
    address: number,
    tep6: Uint8Array | undefined,
    onNeedLease: (why?: "binding-lost") => void,
  ): Promise<number> {
    const { ifname, config: c } = this.#o;
    const tun = openTun(ifname, { vnetHeader: c.offload !== false });
    this.#tunFd = tun.fd;
    try {
      const hostLink = interfaceOfIPv6(this.#o.host6());
      // A killed seg6 DTI's rule would hand the TEP's packets to End.DX4, not to this DTI.
      if (removeStaleSeg6(this.#o.host6(), hostLink ?? undefined))
        this.#o.log?.warn("kernel-dti-stale", {
          ifname,
          detail: `removed a seg6 DTI's rule for ${this.#o.host6()} left by an earlier client (End.DX4 took the TEP's packets before this DTI)`,
        });
      const mtu = dtiMtu(c.mtu, hostLink, ifname, this.#o.log);
      linkSetMtu(ifname, mtu);
      // The default 500 drops under TCP bursts (measured); 5000 does not.
      linkSetTxQueueLen(ifname, 5000);
      // An IPv4-only interface: no IPv6 link-local address, no router solicitations into the tunnel.
      writeSysctl(`net/ipv6/conf/${ifname}/disable_ipv6`, "1"); // slashes: a name may hold a dot
      addressAdd(ifname, `${formatIPv4(address)}/32`);
      linkSetUp(ifname);
      const kept: KeptRoute[] = [];
      /** The DTI's IPv4 routes; with a tunnel MTU below the DTI's they carry it (`mtu`). */
      const dtiRoutes = (m: number): KeptRoute[] =>
        (c.routes ?? ["0.0.0.0/0"]).map((dst) => ({
          route: { dst, dev: ifname, src: formatIPv4(address), mtu: m < mtu ? m : undefined },
          event: "dti-route-restored",
        }));
      for (const k of dtiRoutes(mtu)) {
        routeAdd(k.route);
        kept.push(k);
      }
      let pathMtu: PathMtuRoutes | undefined;
      // A killed --kernel-encap client's rule (its route and sysctls went with its TUN).
      removeStaleKernelEncap(ifname, this.#o.log);
      if (c.kernelEncap) {
        if (!tep6) throw new DtiError(`DTI ${ifname}: --kernel-encap needs a TEP`);
        const tep = formatIPv6(tep6);
        await checkSeg6Source(this.#o.host6(), tep, c.port ?? 4607, "--kernel-encap");
        this.#encap = kernelEncapUp(ifname, tep, mtu);
        // First: until it is back, what the DTI's routes send in is refused by the fence.
        const encapRoute: KeptRoute = {
          route: kernelEncapRoute(ifname, tep, mtu),
          event: "kernel-encap-route-restored",
        };
        kept.unshift(encapRoute);
        // The kernel encapsulates what the Worker hands back but fragments none of it: the
        // host's own packets must be cut to the path's size before (./dti_routes.ts).
        pathMtu = { tep6, mtu, routes: (m) => [encapRoute, ...dtiRoutes(m)] };
      }
      const raw = Raw6Socket.open({ receiveBuffer: 4 << 20, sendBuffer: 4 << 20 });
      this.#raw = raw;
      raw.bindAddress(parseIPv6(this.#o.host6())!);
      raw.enableTunnelOptions();
      // With a known TEP, let the kernel filter what reaches us; on-demand learns it later.
      if (tep6) raw.connect(tep6);
      this.#forwarder = await Forwarder.client({
        tunFd: tun.fd,
        rawFd: raw.fd,
        counters: this.#o.counters,
        client: {
          state: this.#o.leaseState,
          napt: this.#o.napt,
          onDemand: c.onDemand === true,
          tunnelMtu: mtu,
          pathMtu: this.#o.pathMtu,
          mssClamp: c.mssClamp,
          dscp: c.dscp,
          offload: c.offload !== false,
          udpGro: c.udpGro === true,
          kernelEncap: c.kernelEncap === true,
        },
        onNeedLease,
      });
      this.#keeper = DtiRouteKeeper.start({
        ifname,
        routes: kept,
        pathMtu,
        log: this.#o.log,
        counters: this.#o.counters,
      });
      return mtu;
    } catch (error) {
      await this.down();
      throw error;
    }
  }

  /** `tun` while the TUN is open (./dti.ts DtiInUse), else undefined. */
  inUse(): DtiInUse | undefined {
    if (this.#tunFd < 0) return undefined;
    return this.#encap ? { mode: "tun", kernelEncap: true } : { mode: "tun" };
  }

  /** Stops the Workers, closes the raw socket and the TUN (device, address, routes go). */
  async down(): Promise<void> {
    this.#keeper?.stop();
    this.#keeper = undefined;
    const forwarder = this.#forwarder;
    this.#forwarder = undefined;
    await forwarder?.stop();
    if (this.#encap) kernelEncapDown(this.#encap);
    this.#encap = undefined;
    this.#raw?.close();
    this.#raw = undefined;
    // Closing the last fd deletes the TUN device, and with it its address and routes.
    if (this.#tunFd >= 0) closeTun(this.#tunFd);
    this.#tunFd = -1;
  }
}
