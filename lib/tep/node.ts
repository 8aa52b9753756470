/**
 * A running TEP: the IPv4-side TUN device with routes for the pools it serves, a raw IPv6
 * socket for next header 4 bound to the TEP's IPv6 address, the two forwarding Workers, the
 * binding table they read, and the control plane that fills it from the DSTM server.
 *
 * Packets from the IPv4 network to a leased address are routed by the kernel into the TUN
 * device (`tep0`), whose MTU is large so that the RFC 2473 decision (ICMP "fragmentation
 * needed" with the tunnel MTU, or fragmenting the outer IPv6 packet) is ours, not the
 * kernel's with the wrong MTU. Decapsulated packets are written into the TUN device and
 * forwarded by the kernel, which also hairpins host-to-host traffic back into the TUN.
 *
 * @module
 */
import { DropSummary } from "../control/drop_summary.ts";
import type { Logger } from "../control/log.ts";
import { Metrics, metricsHandler } from "../control/metrics.ts";
import { Forwarder } from "../dataplane/forwarder.ts";
import { formatIPv4, formatIPv6, parseIPv6 } from "../net/addr.ts";
import { type HttpEndpoint, serveTcp, serveUnix } from "../sys/http.ts";
import { openIcmp6Sender, receiveUnicastOnly } from "../sys/icmp6_socket.ts";
import { linkSetMtu, linkSetTxQueueLen, linkSetUp, routeAdd } from "../sys/netlink.ts";
import { Raw4Socket } from "../sys/raw4.ts";
import { Raw6Socket } from "../sys/raw6.ts";
import { writeSysctl } from "../sys/sysctl.ts";
import { closeTun, openTun } from "../sys/tun_linux.ts";
import { VnetTunDevice } from "../sys/tun_vnet.ts";
import { BindingTable } from "../tunnel/binding.ts";
import { counterFamilies, counterSeries } from "../tunnel/counter_metrics.ts";
import { Counters, countersOf } from "../tunnel/counters.ts";
import { PathMtuTable } from "../tunnel/pmtu.ts";
import type { AuthKey } from "../wire/auth.ts";
import type { WireBinding } from "../wire/dstm_types.ts";
import { TepControl } from "./control.ts";
import { RxRing } from "./rx_ring.ts";
import type { StaticChange } from "./static_reload.ts";

export interface TepConfig {
  /** The TEP's IPv6 address (outer source of encapsulated packets, control endpoint). */
  readonly ipv6: string;
  /** The TEP's IPv4 address (source of its ICMPv4 errors). */
  readonly ipv4: number;
  readonly server: { readonly address: string; readonly port?: number };
  /** Further servers sharing the first one's lease database (repeated `--server`). */
  readonly moreServers?: readonly string[];
  readonly key?: AuthKey;
  /** IPv4 prefixes routed into the tunnel (the pools this TEP serves). */
  readonly routes: readonly string[];
  readonly staticBindings?: readonly WireBinding[];
  readonly ifname?: string;
  /** MTU of the IPv6 link towards the hosts; tunnel MTU = linkMtu − 40. Default 1500. */
  readonly linkMtu?: number;
  readonly hairpin?: boolean;
  readonly icmpRate?: number;
  /** Clamp the MSS of TCP SYNs to the tunnel / path MTU (RFC 4459 §3.2). Default true. */
  readonly mssClamp?: boolean;
  /**
   * Cut IPv4 packets above the tunnel MTU (DF clear) into IPv4 fragments, not the outer IPv6
   * packet (`--fragment inner`, RFC 4459 §3.4; lib/tunnel/pipeline.ts TepOptions). Default false.
   */
  readonly fragmentInner?: boolean;
  /**
   * TUN offloads and batched I/O (IFF_VNET_HDR, TSO4; recvmmsg/sendmmsg; GRO of forwarded
   * TCP segments): default true. False: one packet per system call, as before.
   */
  readonly offload?: boolean;
  /**
   * Receive plain IPv4-in-IPv6 packets through an AF_PACKET ring instead of the raw socket
   * (lib/sys/packet_ring.ts, with the nftables rule of lib/sys/nft_ring.ts); needs `offload`.
   * Default false. When the ring or the rule cannot be set up, the TEP says so and goes on
   * with the raw socket alone.
   */
  readonly rxRing?: boolean;
  /** Outer DSCP: −1 copies the inner one (default, RFC 2983), else 0–63. */
  readonly dscp?: number;
  readonly maxBindings?: number;
  readonly controlPort?: number;
  /** Unix socket for `dstm tep stats`; none when absent. */
  readonly statsSocket?: string;
  /** Serve Prometheus metrics on http://ADDRESS:PORT/metrics; none when absent. */
  readonly metrics?: { readonly address: string; readonly port: number };
  readonly syncIntervalMs?: number;
  readonly log: Logger;
}

export class TepNode {
  readonly metrics = new Metrics();
  readonly table: BindingTable;
  readonly counters: Counters;
  /** Path MTU per host, learned from ICMPv6 Packet Too Big (RFC 8201). */
  readonly pathMtu = PathMtuTable.create();
  #tunFd = -1;
  /** The TUN took UDP segmentation offload (Linux ≥ 6.2): datagrams are coalesced (gro_udp.ts). */
  #udpOffload = false;
  #raw: Raw6Socket | undefined;
  /** The packet ring and its nftables rule, when `rxRing` is on and both could be set up. */
  #rxRing: RxRing | undefined;
  #raw4: Raw4Socket | undefined;
  /**
   * 1 once the bindings are the server's (TepControl onInSync): from then on the decapsulating
   * Worker answers a packet without a binding with ICMPv6 1/5 (not while the table loads).
   */
  readonly #sourcePolicyReady = new Int32Array(new SharedArrayBuffer(4));
  /** Raw ICMPv6 socket from the TEP's address: ICMPv6 1/5 to hosts without a binding. */
  #icmp6: Raw6Socket | undefined;
  #forwarder: Forwarder | undefined;
  #control: TepControl | undefined;
  #stats: HttpEndpoint | undefined;
  #metricsEndpoint: HttpEndpoint | undefined;
  readonly #config: TepConfig;
  readonly #ifname: string;
  /** The data plane's drops, logged once per interval (lib/control/drop_summary.ts). */
  #drops: DropSummary | undefined;

  private constructor(config: TepConfig) {
    this.#config = config;
    this.#ifname = config.ifname ?? "tep0";
    this.table = BindingTable.create({ maxEntries: config.maxBindings ?? 1 << 17 });
    this.counters = Counters.create({ slices: 2 });
    for (const family of counterFamilies("tep")) this.metrics.counter(family.name, family.help);
    this.metrics.onCollect(() => {
      const snap = this.counters.snapshot();
      for (const s of counterSeries("tep")) this.metrics.set(s.metric, s.labels, snap[s.counter]);
    });
  }

  /** Brings the TEP up; on failure undoes what it did and throws a one-line error. */
  static async start(config: TepConfig): Promise<TepNode> {
    const node = new TepNode(config);
    try {
      await node.#open();
      return node;
    } catch (error) {
      await node.stop();
      throw error;
    }
  }

  /** Counters, bindings and configuration, as `dstm tep stats` shows them. */
  stats(): {
    ifname: string;
    ipv6: string;
    ipv4: string;
    bindings: number;
    serverBindings: number;
    staticBindings: number;
    /** Each `--server` and whether it answers (none without a server). */
    servers: { server: string; connected: boolean; lastHeardS: number }[];
    counters: Record<string, number>;
    pathMtu: { host: string; mtu: number; expiresIn: number }[];
  } {
    const now = Date.now() / 1000;
    return {
      ifname: this.#ifname,
      ipv6: this.#config.ipv6,
      ipv4: formatIPv4(this.#config.ipv4),
      bindings: this.table.size,
      serverBindings: this.#control?.count ?? 0,
      staticBindings: this.#control?.staticCount ?? 0,
      servers: this.#control?.servers() ?? [],
      counters: countersOf("tep", this.counters.snapshot()),
      pathMtu: this.pathMtu
        .entries()
        .filter((e) => e.expiresSeconds > now)
        .map((e) => ({
          host: formatIPv6(e.host6),
          mtu: e.mtu,
          expiresIn: Math.round(e.expiresSeconds - now),
        })),
    };
  }

  async #open(): Promise<void> {
    const c = this.#config;
    const tep6 = parseIPv6(c.ipv6);
    if (!tep6) throw new Error(`--ipv6: "${c.ipv6}" is not an IPv6 address`);
    const tun = this.#openTun();
    this.#raw = Raw6Socket.open({ receiveBuffer: 4 << 20, sendBuffer: 4 << 20 });
    this.#raw.bindAddress(tep6);
    // No 4over6 packet to a multicast group or in a link-layer multicast frame (RFC 4443
    // §2.4 (e.3), (e.4): no 1/5 about it).
    if (!receiveUnicastOnly(this.#raw))
      c.log.warn("multicast-not-refused", {
        detail: "IPV6_MULTICAST_ALL or the PACKET_HOST filter refused by the kernel",
      });
    this.#raw.enableTunnelOptions();
    this.#raw4 = Raw4Socket.open();
    this.#icmp6 = openIcmp6Sender(tep6);
    if (c.rxRing && c.offload !== false)
      this.#rxRing = RxRing.open({ ipv6: c.ipv6, tep6, tunName: tun.name, log: c.log });
    const rx = this.#rxRing;
    const ring = rx ? { fd: rx.fd, geometry: rx.geometry } : undefined;
    this.#forwarder = await Forwarder.tep({
      tunFd: tun.fd,
      rawFd: this.#raw.fd,
      raw4Fd: this.#raw4.fd,
      icmp6Fd: this.#icmp6.fd,
      ring,
      bindings: this.table,
      counters: this.counters,
      tep: {
        tepIPv4: c.ipv4,
        linkMtu: c.linkMtu,
        hairpin: c.hairpin,
        icmpRate: c.icmpRate,
        tep6,
        sourcePolicyReady: this.#sourcePolicyReady.buffer as SharedArrayBuffer,
        pathMtu: this.pathMtu.buffer,
        mssClamp: c.mssClamp,
        fragmentInner: c.fragmentInner,
        offload: c.offload !== false,
        dscp: c.dscp,
      },
    });
    this.#control = await this.#startControl();
    await this.#serveStats();
    if (c.metrics)
      this.#metricsEndpoint = serveTcp(
        c.metrics.address,
        c.metrics.port,
        metricsHandler(this.metrics),
      );
    this.#drops = new DropSummary({
      counters: () => countersOf("tep", this.counters.snapshot()),
      log: c.log,
    });
    this.#drops.start();
    c.log.info("tep-start", {
      ifname: this.#ifname,
      ipv6: c.ipv6,
      ipv4: formatIPv4(c.ipv4),
      routes: c.routes.join(","),
      server: [c.server.address, ...(c.moreServers ?? [])].join(","),
      static: c.staticBindings?.length ?? 0,
      "tunnel-mtu": (c.linkMtu ?? 1500) - 40,
      // TCP offloads always (with --offload); UDP's only from Linux 6.2 (TUN_F_USO4/6).
      offload: c.offload === false ? "off" : this.#udpOffload ? "tcp,udp" : "tcp",
      "rx-ring": this.#rxRing ? "on" : "off",
      metrics: this.#metricsEndpoint?.where,
    });
  }

  /** The TUN (`tep0`): offloads, MTU, queue, IPv6 off, up, the IPv4 routes; forwarding on. */
  #openTun(): { fd: number; name: string } {
    const c = this.#config;
    const tun = openTun(this.#ifname, { vnetHeader: c.offload !== false });
    this.#tunFd = tun.fd;
    // The offloads the kernel takes (the Workers set the same on the same fd): logged at start.
    if (c.offload !== false) this.#udpOffload = VnetTunDevice.attach(tun.fd).gsoUdp;
    linkSetMtu(tun.name, 65000);
    linkSetTxQueueLen(tun.name, 5000);
    writeSysctl(`net/ipv6/conf/${tun.name}/disable_ipv6`, "1"); // slashes: a name may hold a dot
    linkSetUp(tun.name);
    for (const route of c.routes) routeAdd({ dst: route, dev: tun.name });
    writeSysctl("net.ipv4.ip_forward", "1");
    // Decapsulated packets come out of the TUN with the hosts' leased sources: no reverse-path drop.
    writeSysctl(`net/ipv4/conf/${tun.name}/rp_filter`, "0");
    return tun;
  }

  /** The binding control endpoint (./control.ts) writing into this TEP's table. */
  #startControl(): Promise<TepControl> {
    const c = this.#config;
    return TepControl.start({
      listen: { address: c.ipv6, port: c.controlPort ?? 4608 },
      server: c.server,
      moreServers: c.moreServers,
      tep6: c.ipv6,
      tep4: c.ipv4,
      key: c.key,
      table: {
        set: (ipv4, portSet, host6) => this.table.set(ipv4, portSet, host6),
        delete: (ipv4, psid) => void this.table.delete(ipv4, psid),
        replaceAll: (entries) => void this.table.replaceAll(entries),
      },
      staticBindings: c.staticBindings,
      syncIntervalMs: c.syncIntervalMs,
      log: c.log,
      metrics: this.metrics,
      onInSync: () => Atomics.store(this.#sourcePolicyReady, 0, 1),
    });
  }

  /** The stats socket (`/v1/stats`, `/metrics`), when asked for. */
  async #serveStats(): Promise<void> {
    const c = this.#config;
    if (c.statsSocket) {
      this.#stats = await serveUnix(c.statsSocket, (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/v1/ping") return Response.json({ ok: true });
        if (path === "/v1/stats") return Response.json(this.stats());
        if (path === "/metrics") return metricsHandler(this.metrics)(request);
        return Response.json({ error: `no such endpoint ${path}` }, { status: 404 });
      });
    }
  }

  /**
   * Reload (SIGHUP): signs SYNC with `key` from now on; the key it replaces is still accepted
   * from the server for `overlapMs` (lib/tep/control.ts).
   */
  rotateKey(key: AuthKey, overlapMs: number): void {
    this.#control?.rotateKey(key, overlapMs);
  }

  /**
   * Reload (SIGHUP) of `--binding` / `--binding-file`: added bindings installed, removed ones
   * withdrawn, the server's untouched; throws, changing nothing, on a conflict
   * (lib/tep/static_reload.ts).
   */
  replaceStatic(bindings: readonly WireBinding[]): StaticChange | undefined {
    return this.#control?.replaceStatic(bindings);
  }

  /** Stops forwarding and removes the TUN device (its routes go with it). */
  async stop(): Promise<void> {
    this.#drops?.stop();
    this.#control?.close();
    this.#stats?.close();
    this.#metricsEndpoint?.close();
    await this.#forwarder?.stop();
    // After the Workers: the rule kept the ring's packets from the raw socket until then.
    this.#rxRing?.close();
    this.#raw?.close();
    this.#raw4?.close();
    this.#icmp6?.close();
    if (this.#tunFd >= 0) closeTun(this.#tunFd);
    this.#tunFd = -1;
    this.#config.log.info("tep-stop", { ifname: this.#ifname });
    this.#config.log.flush();
  }
}
