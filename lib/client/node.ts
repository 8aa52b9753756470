/**
 * The DSTM client as a running service on a dual-stack host in an IPv6-only network: it
 * obtains a lease, brings up the DTI (a TUN device with the leased address, the tunnel MTU
 * and the IPv4 routes), forwards IPv4 through the TEP in two Workers, renews at half the
 * lease time, and on stop releases the lease and removes the interface.
 *
 * States: `acquiring` (no lease; retrying with backoff and saying so) → `bound` (lease and
 * DTI up) → `renewing` (past T/2, REQUESTs going out) → back to `bound`, or, when the lease
 * runs out or the server refuses it, down again to `acquiring`.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv4, parseIPv6 } from "../net/addr.ts";
import { interfaceOfIPv6, linkMtu } from "../sys/ifinfo.ts";
import { addressAdd, linkSetMtu, linkSetTxQueueLen, linkSetUp, routeAdd } from "../sys/netlink.ts";
import { Raw6Socket } from "../sys/raw6.ts";
import { closeTun, openTun } from "../sys/tun_linux.ts";
import { sourceAddressFor } from "../sys/udp.ts";
import { Counters } from "../tunnel/counters.ts";
import { Forwarder } from "../tunnel/forwarder.ts";
import type { AuthKey } from "../wire/auth.ts";
import { messageTypeName } from "../wire/dstm.ts";
import { DSTM_PORT, Status } from "../wire/dstm_types.ts";
import { type ClientLease, DstmClient, DstmRefusedError, DstmTransport } from "./protocol.ts";

export interface NodeConfig {
  readonly server: string;
  readonly port?: number;
  /** The host's IPv6 address (tunnel source); default: the source the kernel picks towards the server. */
  readonly host6?: string;
  /** Use this TEP instead of the one in the lease. */
  readonly tep6?: string;
  readonly key?: AuthKey;
  readonly ifname?: string;
  /** IPv4 routes through the DTI; default the IPv4 default route. */
  readonly routes?: readonly string[];
  /** DTI MTU; default the MTU of the IPv6 link − 40. */
  readonly mtu?: number;
  /** Longest wait between two tries while acquiring (ms, default 30 s). */
  readonly maxBackoffMs?: number;
  readonly log: Logger;
}

export type NodeState = "acquiring" | "bound" | "renewing" | "stopped";

export interface NodeStatus {
  state: NodeState;
  ifname: string;
  host6: string;
  ipv4: string | null;
  tep6: string | null;
  tep4: string | null;
  mtu: number | null;
  expiresAt: string | null;
  leaseTime: number | null;
  counters: Record<string, number>;
}

export class DstmNode {
  readonly counters = Counters.create({ slices: 2 });
  #state: NodeState = "acquiring";
  #lease: ClientLease | undefined;
  #mtu: number | null = null;
  #tunFd = -1;
  #raw: Raw6Socket | undefined;
  #forwarder: Forwarder | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #bound!: () => void;
  readonly bound: Promise<void> = new Promise((resolve) => {
    this.#bound = resolve;
  });
  readonly #config: NodeConfig;
  readonly #ifname: string;
  readonly #transport: DstmTransport;
  readonly #client: DstmClient;

  private constructor(config: NodeConfig, transport: DstmTransport, host6: string) {
    this.#config = config;
    this.#ifname = config.ifname ?? "dti0";
    this.#transport = transport;
    this.#client = new DstmClient(transport, host6);
  }

  /** Opens the control socket and starts acquiring; `bound` resolves once the DTI is up. */
  static async start(config: NodeConfig): Promise<DstmNode> {
    const port = config.port ?? DSTM_PORT;
    const host6 = config.host6 ?? (await sourceAddressFor(config.server, port));
    const transport = await DstmTransport.open({
      server: config.server,
      port,
      key: config.key,
      bind: host6,
      // Say so at once, not only when every try has failed.
      onRetransmit: (attempt, type) =>
        config.log.warn("no-answer", {
          server: config.server,
          message: messageTypeName(type),
          attempt,
        }),
    });
    const node = new DstmNode(config, transport, host6);
    node.#loop = node.#acquire();
    return node;
  }

  status(): NodeStatus {
    const lease = this.#lease;
    return {
      state: this.#state,
      ifname: this.#ifname,
      host6: this.#client.host6,
      ipv4: lease ? formatIPv4(lease.ipv4) : null,
      tep6: lease ? this.#tep6(lease) : null,
      tep4: lease?.tep4 ? formatIPv4(lease.tep4) : null,
      mtu: this.#mtu,
      expiresAt: lease ? new Date(lease.expiresAt).toISOString() : null,
      leaseTime: lease?.leaseTime ?? null,
      counters: this.counters.snapshot(),
    };
  }

  /** Releases the lease (best effort), removes the DTI and its routes, stops the Workers. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#timer);
    const lease = this.#lease;
    await this.#down();
    if (lease) {
      try {
        await this.#client.release(lease.ipv4);
        this.#config.log.info("release", { ipv4: formatIPv4(lease.ipv4) });
      } catch (error) {
        this.#config.log.warn("release-failed", {
          ipv4: formatIPv4(lease.ipv4),
          detail: (error as Error).message,
        });
      }
    }
    this.#transport.close();
    this.#state = "stopped";
    this.#config.log.flush();
  }

  async #acquire(): Promise<void> {
    const log = this.#config.log;
    let backoff = 1000;
    this.#state = "acquiring";
    while (!this.#stopping) {
      try {
        const lease = await this.#client.discover();
        if (this.#stopping) {
          await this.#client.release(lease.ipv4).catch(() => {});
          return;
        }
        await this.#up(lease);
        return;
      } catch (error) {
        if (this.#stopping) return;
        const refused = error instanceof DstmRefusedError;
        log.warn(refused ? "refused" : "server-unreachable", {
          server: this.#config.server,
          detail: (error as Error).message,
          retryIn: `${Math.round(backoff / 1000)}s`,
        });
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, this.#config.maxBackoffMs ?? 30_000);
      }
    }
  }

  async #up(lease: ClientLease): Promise<void> {
    const c = this.#config;
    const tep6 = this.#tep6(lease);
    const tep6Bytes = parseIPv6(tep6)!;
    const ifname = this.#ifname;
    const tun = openTun(ifname);
    this.#tunFd = tun.fd;
    try {
      const hostLink = interfaceOfIPv6(this.#client.host6);
      this.#mtu = c.mtu ?? (hostLink ? (linkMtu(hostLink) ?? 1500) : 1500) - 40;
      linkSetMtu(ifname, this.#mtu);
      // The default 500 drops under TCP bursts (measured); 5000 does not.
      linkSetTxQueueLen(ifname, 5000);
      addressAdd(ifname, `${formatIPv4(lease.ipv4)}/32`);
      linkSetUp(ifname);
      for (const route of c.routes ?? ["0.0.0.0/0"])
        routeAdd({ dst: route, dev: ifname, src: formatIPv4(lease.ipv4) });
      const raw = Raw6Socket.open({ receiveBuffer: 4 << 20, sendBuffer: 4 << 20 });
      this.#raw = raw;
      raw.bindAddress(parseIPv6(this.#client.host6)!);
      raw.connect(tep6Bytes);
      this.#forwarder = await Forwarder.client({
        tunFd: tun.fd,
        rawFd: raw.fd,
        counters: this.counters,
        client: { leasedIPv4: lease.ipv4, portSet: lease.portSet, tep6: tep6Bytes },
      });
    } catch (error) {
      await this.#down();
      throw error;
    }
    this.#lease = lease;
    this.#state = "bound";
    c.log.info("bound", {
      ipv4: formatIPv4(lease.ipv4),
      ifname,
      tep6,
      mtu: this.#mtu,
      lease: `${lease.leaseTime}s`,
      routes: (c.routes ?? ["0.0.0.0/0"]).join(","),
    });
    this.#bound();
    this.#scheduleRenewal(lease.leaseTime * 500);
  }

  #scheduleRenewal(inMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#renew(), Math.max(0, inMs));
  }

  /** T/2 has passed: REQUEST until renewed, refused, or expired. */
  async #renew(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#stopping) return;
    this.#state = "renewing";
    try {
      const renewed = await this.#client.request(lease.ipv4);
      if (this.#stopping) return;
      if (renewed.ipv4 !== lease.ipv4 || this.#tep6(renewed) !== this.#tep6(lease)) {
        throw new DstmRefusedError(Status.NO_SUCH_LEASE, "the server changed the address or TEP");
      }
      this.#lease = renewed;
      this.#state = "bound";
      this.#config.log.info("renewed", {
        ipv4: formatIPv4(renewed.ipv4),
        lease: `${renewed.leaseTime}s`,
      });
      this.#scheduleRenewal(renewed.leaseTime * 500);
    } catch (error) {
      if (this.#stopping) return;
      const remaining = lease.expiresAt - Date.now();
      if (error instanceof DstmRefusedError || remaining <= 1000) {
        this.#config.log.warn("lease-lost", {
          ipv4: formatIPv4(lease.ipv4),
          detail: (error as Error).message,
        });
        await this.#down();
        this.#lease = undefined;
        this.#loop = this.#acquire();
        return;
      }
      this.#config.log.warn("renew-failed", {
        ipv4: formatIPv4(lease.ipv4),
        detail: (error as Error).message,
        retryIn: `${Math.round(remaining / 2000)}s`,
      });
      this.#scheduleRenewal(remaining / 2);
    }
  }

  async #down(): Promise<void> {
    const forwarder = this.#forwarder;
    this.#forwarder = undefined;
    await forwarder?.stop();
    this.#raw?.close();
    this.#raw = undefined;
    // Closing the last fd deletes the TUN device, and with it its address and routes.
    if (this.#tunFd >= 0) closeTun(this.#tunFd);
    this.#tunFd = -1;
  }

  #tep6(lease: ClientLease): string {
    return this.#config.tep6 ?? lease.tep6;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#timer = setTimeout(resolve, ms);
    });
  }
}
