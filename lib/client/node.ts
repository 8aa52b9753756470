/**
 * The DSTM client as a running service on a dual-stack host in an IPv6-only network: it
 * obtains a lease, brings up the DTI (a TUN device with the IPv4 address, the tunnel MTU and
 * the IPv4 routes), forwards IPv4 through the TEP in two Workers, renews at T1 (DHCPv4) or half the lease
 * time, and on stop releases the lease and removes the interface.
 *
 * Two modes:
 * - **always on** (default): `acquiring` → `bound` (DTI up with the leased address) ⇄
 *   `renewing`; a lost lease takes the DTI down and starts over.
 * - **on-demand** (the paper's Host Agent: know when an IPv4 session starts and ends): the
 *   DTI comes up at once with the placeholder 192.0.0.2 (RFC 6333) and no lease (`idle`).
 *   The first IPv4 packet makes the outbound Worker hold it and ask for a lease; once bound,
 *   the held packets leave translated to the leased address. When no packet has gone either
 *   way for the idle time, the lease is released (`idle` again); the next packet starts over.
 *   Applications never see the leased address, so their sockets survive lease changes.
 *
 * A shared lease (a port set) is used the same way in both modes: the Workers map each
 * flow's ports into the set (lib/tunnel/napt.ts).
 *
 * Here: the lease life (acquire with back-off, renew, lose, release, renumber) and status.
 * The real DTI is ./kernel_dti.ts, the settings ./node_config.ts, the allocation protocol
 * ./lease_client.ts, when to renew ./lease_life.ts, the metrics ./node_metrics.ts, the status ./node_status.ts, the acquire
 * loop ./acquire_loop.ts and its warnings ./acquire_warnings.ts.
 *
 * @module
 */
import { DropSummary } from "../control/drop_summary.ts";
import { Metrics } from "../control/metrics.ts";
import { formatIPv4, parseIPv6 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";
import { linkIsUp } from "../sys/ifinfo.ts";
import { routePathMtu } from "../sys/raw6.ts";
import { closeTun, openTun } from "../sys/tun_linux.ts";
import { sourceAddressFor, UdpBindError } from "../sys/udp.ts";
import { ClientState } from "../tunnel/client_state.ts";
import { Counters, countersOf } from "../tunnel/counters.ts";
import { NaptTable, type NaptTimeouts, PLACEHOLDER_IPV4 } from "../tunnel/napt.ts";
import { PathMtuTable } from "../tunnel/pmtu.ts";
import type { AuthKey } from "../wire/auth.ts";
import { DSTM_PORT, Status } from "../wire/dstm_types.ts";
import { acquireLoop } from "./acquire_loop.ts";
import { AcquireState } from "./acquire_state.ts";
import { AddressFollower } from "./address_follower.ts";
import { BindingLostNotices } from "./binding_lost.ts";
import { DtiError, type DtiHooks } from "./dti.ts";
import { createDti } from "./dti_factory.ts";
import { ExchangeWarnings } from "./exchange_warnings.ts";
import { leaseClientFor } from "./lease_client.ts";
import {
  afterFailedRenewal,
  LeaseExpiredError,
  leaseInUseHere,
  releaseLogged,
  renewalDelay,
} from "./lease_life.ts";
import {
  DEFAULT_RELEASE_WAIT_MS,
  type NodeConfig,
  type NodeState,
  type NodeStatus,
} from "./node_config.ts";
import { declareNodeMetrics } from "./node_metrics.ts";
import { dtiStatus, dtiText, nodeStatus } from "./node_status.ts";
import { type ClientLease, DstmRefusedError, type LeaseClient } from "./protocol.ts";

export type { NodeConfig, NodeState, NodeStatus } from "./node_config.ts";

export class DstmNode {
  readonly counters = Counters.create({ slices: 2 });
  readonly #leaseState = ClientState.create();
  readonly #napt = NaptTable.create();
  readonly #pathMtu = PathMtuTable.create({ capacity: 16 });
  /** Why acquiring fails, for the status and the metrics (./acquire_state.ts). */
  readonly #acquireState = new AcquireState();
  #state: NodeState = "acquiring";
  #lease: ClientLease | undefined;
  #mtu: number | null = null;
  /** The DTI: ./kernel_dti.ts, or NodeConfig.dti. */
  readonly #dti: DtiHooks;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #acquiring: Promise<void> | undefined;
  #stopping = false;
  #bound!: () => void;
  /** Resolves when the node is first ready: bound (always on) or the DTI up and idle (on-demand). */
  readonly ready: Promise<void> = new Promise((resolve) => {
    this.#bound = resolve;
  });
  #fail!: (error: DtiError) => void;
  /** Resolves when the DTI can never be made (DtiError.permanent): the lease is released; stop. */
  readonly failed: Promise<DtiError> = new Promise((resolve) => {
    this.#fail = resolve;
  });
  #config: NodeConfig;
  readonly #ifname: string;
  #client: LeaseClient;
  /** Watches the host's IPv6 addresses (renumbering); absent when host6 was given. */
  #addresses: AddressFollower | undefined;
  /** Early renewals on the TEP's word, at most one per 10 s (./binding_lost.ts). */
  readonly #bindingLost: BindingLostNotices;
  /** Wakes the acquiring loop out of its back-off sleep. */
  #wake: (() => void) | undefined;

  /** Prometheus metrics: the client's packet counters and its lease (docs/metrics.md). */
  readonly metrics = new Metrics();
  /** The data plane's drops, logged once per interval (lib/control/drop_summary.ts). */
  readonly #drops: DropSummary;

  /** No-answer and ICMPv6 unreachable warnings of the native exchanges (./exchange_warnings.ts). */
  readonly #warnings: ExchangeWarnings;

  private constructor(config: NodeConfig, client: LeaseClient, warnings: ExchangeWarnings) {
    this.#config = config;
    this.#warnings = warnings;
    this.#bindingLost = new BindingLostNotices({
      log: config.log,
      lease: () => {
        const lease = this.#lease;
        return lease ? { ipv4: lease.ipv4, tep6: this.#tep6(lease) } : null;
      },
      bound: () => !this.#stopping && this.#state === "bound",
      renewNow: () => this.#scheduleRenewal(0),
    });
    declareNodeMetrics(
      this.metrics,
      this.counters,
      () => this.#lease,
      this.#acquireState,
      () => warnings.icmpUnreachable,
    );
    const counters = () => countersOf("client", this.counters.snapshot());
    this.#drops = new DropSummary({ counters, log: config.log });
    this.#napt.setTimeouts(config.napt ?? {});
    this.#ifname = config.ifname ?? "dti0";
    this.#client = client;
    this.#dti =
      config.dti ??
      createDti({
        ifname: this.#ifname,
        config,
        host6: () => this.#client.host6,
        counters: this.counters,
        leaseState: this.#leaseState.buffer,
        napt: this.#napt.buffer,
        pathMtu: this.#pathMtu.buffer,
      });
  }

  /** Starts the node: acquiring at once (always on), or the DTI up and waiting for traffic (on-demand). */
  static async start(config: NodeConfig): Promise<DstmNode> {
    const port = config.port ?? DSTM_PORT;
    // Fail now, not after a lease, when the DTI cannot be made (no root, no TUN, name taken).
    if (!config.dti) closeTun(openTun(config.ifname ?? "dti0").fd);
    const towards = config.sourceTowards ?? config.server;
    const sourceFor = config.sourceFor ?? sourceAddressFor;
    const host6 = config.host6 ?? (await _sourceTowards(sourceFor, towards, port, config));
    const warnings = new ExchangeWarnings(config.log, config.server);
    const client = await leaseClientFor(config, port, host6, warnings);
    const node = new DstmNode(config, client, warnings);
    node.#drops.start();
    // Kernel DTIs have no Workers' raw socket for the TEP's ICMPv6 1/5: a raw ICMPv6 watch.
    if (!config.dti && (config.dtiMode ?? "tun") !== "tun")
      node.#bindingLost.watchKernel(node.counters, () => node.#client.host6);
    if (config.host6 === undefined) {
      node.#addresses = AddressFollower.start({
        current: () => node.#client.host6,
        pick: () => sourceFor(towards, port),
        onGone: (gone, next) => node.#renumber(gone, next, port),
        log: config.log,
      });
    }
    if (config.onDemand) {
      try {
        await node.#dtiUp(PLACEHOLDER_IPV4, undefined);
      } catch (error) {
        client.close();
        throw error;
      }
      node.#state = "idle";
      node.#idleTimer = setInterval(() => void node.#checkIdle(), 1000);
      config.log.info("on-demand", {
        ifname: node.#ifname,
        address: "192.0.0.2",
        "idle-s": config.idleSeconds ?? 60,
        mtu: node.#mtu ?? undefined,
      });
      node.#bound();
    } else node.#acquiring = node.#acquire();
    return node;
  }

  /** What `dstm client status` shows (./node_status.ts). */
  status(): NodeStatus {
    const lease = this.#lease;
    return nodeStatus({
      state: this.#state,
      onDemand: this.#config.onDemand === true,
      ifname: this.#ifname,
      host6: this.#client.host6,
      lease,
      tep6: lease ? this.#tep6(lease) : null,
      mtu: this.#mtu,
      dtiRequested: this.#config.dtiMode ?? "tun",
      dtiInUse: this.#dti.inUse?.(),
      pathMtu: this.#pathMtu,
      // What the kernel holds for the path to the TEP now (./node_status.ts pathMtuInForce).
      kernelPathMtu:
        lease && !this.#config.dti ? routePathMtu(parseIPv6(this.#tep6(lease))!) : null,
      napt: this.#napt,
      counters: this.counters,
      acquire: this.#acquireState.status(),
      dtiLinkUp: linkIsUp(this.#ifname),
    });
  }

  /**
   * Reload (SIGHUP): what may change while the node runs. `rotateKey`: sign with it from now
   * on, the key it replaces still accepted in answers for `keyOverlapMs`; the on-demand idle
   * time; the NAPT timeouts (the Workers take them from the next lease on).
   */
  reconfigure(next: {
    rotateKey?: AuthKey;
    keyOverlapMs: number;
    idleSeconds?: number;
    napt?: Partial<NaptTimeouts>;
  }): void {
    if (next.rotateKey) this.#client.rotateKey?.(next.rotateKey, next.keyOverlapMs);
    if (next.napt) this.#napt.setTimeouts(next.napt);
    this.#config = {
      ...this.#config,
      key: next.rotateKey ?? this.#config.key,
      idleSeconds: next.idleSeconds ?? this.#config.idleSeconds,
      napt: next.napt ?? this.#config.napt,
    };
  }

  /** Releases the lease (best effort), removes the DTI and its routes, stops the Workers. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#timer);
    clearInterval(this.#idleTimer);
    this.#drops.stop();
    this.#bindingLost.stop();
    this.#addresses?.stop();
    this.#wake?.();
    const lease = this.#lease;
    await this.#dtiDown();
    // Bounded (--release-wait, default 2 s): a stop must not wait on a silent server.
    const within = this.#config.releaseWaitMs ?? DEFAULT_RELEASE_WAIT_MS;
    if (lease) await releaseLogged(this.#client, lease, "release", this.#config.log, within);
    this.#client.close();
    this.#state = "stopped";
    this.#config.log.flush();
  }

  /** DISCOVER until a lease is granted (or the node stops), then use it (./acquire_loop.ts). */
  #acquire(): Promise<void> {
    if (this.#acquiring) return this.#acquiring;
    const client = this.#client;
    this.#state = "acquiring";
    const running: Promise<void> = acquireLoop(client, {
      log: this.#config.log,
      server: this.#config.server,
      maxBackoffMs: this.#config.maxBackoffMs ?? 30_000,
      // A renumbering replaces the client and starts another loop: this one then ends.
      current: () => !this.#stopping && client === this.#client,
      use: (lease) => this.#use(lease),
      sleep: (ms) => this.#sleep(ms),
      fail: (error) => this.#fail(error),
      state: this.#acquireState,
    }).finally(() => {
      if (this.#acquiring === running) this.#acquiring = undefined;
    });
    this.#acquiring = running;
    return running;
  }

  /** A lease was granted: bring the DTI up with it (always on) or hand it to the Workers (on-demand). */
  async #use(lease: ClientLease): Promise<void> {
    const inUse = await leaseInUseHere(lease);
    if (inUse) throw inUse; // not released: the other client's (./lease_life.ts)
    const tep6 = parseIPv6(this.#tep6(lease))!;
    this.#leaseState.setLease(lease.ipv4, lease.portSet, tep6);
    // The idle clock starts now, not at the last packet of an earlier lease.
    this.#leaseState.touch((Date.now() / 1000) | 0);
    if (!this.#config.onDemand) {
      try {
        await this.#dtiUp(lease.ipv4, tep6);
      } catch (error) {
        this.#leaseState.clearLease();
        if (error instanceof DtiError && error.permanent)
          await releaseLogged(this.#client, lease, "release", this.#config.log);
        throw error;
      }
    }
    this.#lease = lease;
    this.#state = "bound";
    this.#config.log.info("bound", {
      ipv4: formatIPv4(lease.ipv4),
      ports:
        lease.portSet && lease.portSet.psidLength > 0 ? formatPortSet(lease.portSet) : undefined,
      ifname: this.#ifname,
      tep6: this.#tep6(lease),
      mtu: this.#mtu ?? undefined,
      "lease-time-s": lease.leaseTime,
      routes: (this.#config.routes ?? ["0.0.0.0/0"]).join(","),
      dti: dtiText(dtiStatus(this.#config.dtiMode ?? "tun", this.#dti.inUse?.())) || undefined,
    });
    this.#bound();
    this.#scheduleRenewal(renewalDelay(lease));
  }

  /** Brings the DTI up with `address` (./kernel_dti.ts, or the configured hooks). */
  async #dtiUp(address: number, tep6: Uint8Array | undefined): Promise<void> {
    this.#mtu = await this.#dti.up(address, tep6, (why) =>
      why === "binding-lost" ? this.#bindingLost.notice() : this.#onDemand(),
    );
  }

  /** On-demand: the outbound Worker holds packets and there is no lease. */
  #onDemand(): void {
    if (this.#stopping || this.#lease || this.#acquiring) return;
    this.#config.log.info("demand", {
      ifname: this.#ifname,
      detail: "IPv4 traffic and no lease: acquiring",
    });
    void this.#acquire();
  }

  /** On-demand: release the lease when nothing has gone through for the idle time. */
  async #checkIdle(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#stopping || this.#state !== "bound") return;
    const idle = this.#config.idleSeconds ?? 60;
    const quiet = Date.now() / 1000 - this.#leaseState.lastActivity;
    if (quiet < idle) return;
    this.#leaseState.clearLease();
    this.#lease = undefined;
    clearTimeout(this.#timer);
    this.#state = "idle";
    await releaseLogged(this.#client, lease, "idle-release", this.#config.log);
  }

  #scheduleRenewal(inMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#renew(), Math.max(0, inMs));
  }

  /**
   * T1 (the protocol's, else half the lease) has passed: REQUEST until renewed, refused, or
   * expired. The exchange is bounded by the lease's expiry, and a timer takes the lease (and the
   * DTI) down at the expiry whatever the exchange is still doing (RFC 2131 §4.4.5: at expiry
   * the client stops using the address; a silent server, or several tried in turn, must not
   * keep it in use past then).
   */
  async #renew(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#stopping) return;
    this.#state = "renewing";
    let expiry: ReturnType<typeof setTimeout> | undefined;
    try {
      const left = Math.max(0, lease.expiresAt - Date.now());
      const expired = new Promise<never>((_, reject) => {
        expiry = setTimeout(
          () => reject(new LeaseExpiredError("the lease expired with no answer to the renewal")),
          left,
        );
      });
      const renewed = await Promise.race([
        this.#client.request(lease.ipv4, { withinMs: left }),
        expired,
      ]);
      clearTimeout(expiry);
      if (this.#stopping || this.#lease !== lease) return;
      if (renewed.ipv4 !== lease.ipv4 || this.#tep6(renewed) !== this.#tep6(lease)) {
        throw new DstmRefusedError(Status.NO_SUCH_LEASE, "the server changed the address or TEP");
      }
      this.#lease = renewed;
      this.#state = "bound";
      this.#config.log.info("renewed", {
        ipv4: formatIPv4(renewed.ipv4),
        "lease-time-s": renewed.leaseTime,
      });
      this.#scheduleRenewal(renewalDelay(renewed));
    } catch (error) {
      clearTimeout(expiry);
      if (this.#stopping || this.#lease !== lease) return;
      const next = afterFailedRenewal(error, lease);
      if (next.lost) {
        this.#config.log.warn("lease-lost", {
          ipv4: formatIPv4(lease.ipv4),
          detail: (error as Error).message,
        });
        this.#leaseState.clearLease();
        this.#lease = undefined;
        if (this.#config.onDemand) {
          this.#state = "idle"; // the next packet asks again
          return;
        }
        await this.#dtiDown();
        void this.#acquire();
        return;
      }
      this.#config.log.warn("renew-failed", {
        ipv4: formatIPv4(lease.ipv4),
        detail: (error as Error).message,
        "retry-in-s": Math.round(next.retryInMs / 1000),
      });
      this.#scheduleRenewal(next.retryInMs);
    }
  }

  #dtiDown(): Promise<void> {
    return this.#dti.down();
  }

  #tep6(lease: ClientLease): string {
    return this.#config.tep6 ?? lease.tep6;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(this.#timer);
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
      this.#timer = setTimeout(done, ms);
    });
  }

  /**
   * The address the lease is for is gone from the host (renumbered): drop the lease and the
   * DTI, ask the server to release it from the old socket (best effort: the kernel still
   * sends from an address just removed, so the server can free it at once instead of at
   * expiry), and start over from `next`.
   */
  async #renumber(gone: string, next: string, port: number): Promise<void> {
    if (this.#stopping) return;
    const old = this.#client;
    const lease = this.#lease;
    this.#config.log.warn("address-gone", {
      host6: gone,
      next,
      ipv4: lease ? formatIPv4(lease.ipv4) : undefined,
      detail: "the host's IPv6 address was removed: starting over from a live one",
    });
    clearTimeout(this.#timer);
    this.#leaseState.clearLease();
    this.#lease = undefined;
    await this.#dtiDown();
    if (lease)
      void old
        .release(lease.ipv4)
        .catch(() => {})
        .finally(() => old.close());
    else old.close();
    this.#client = await leaseClientFor(this.#config, port, next, this.#warnings);
    if (this.#stopping) return;
    if (this.#config.onDemand) {
      await this.#dtiUp(PLACEHOLDER_IPV4, undefined);
      this.#state = "idle";
      return;
    }
    this.#wake?.();
    this.#acquiring = undefined; // the old loop (if any) ends on its own: its client is gone
    void this.#acquire();
  }
}

/**
 * The host's tunnel address: the kernel's source towards `towards` (the server, or with
 * DHCPv4-over-DHCPv6 the TEP: the multicast server address has no route). With no route
 * there, a UdpBindError whose message names what the address was looked up for and what to
 * do, not the lookup's port (547 for dhcp4o6, which means nothing to the TEP).
 */
async function _sourceTowards(
  sourceFor: (address: string, port: number) => Promise<string>,
  towards: string,
  port: number,
  config: NodeConfig,
): Promise<string> {
  try {
    return await sourceFor(towards, port);
  } catch (error) {
    if (!(error instanceof UdpBindError)) throw error;
    const what =
      config.sourceTowards !== undefined
        ? `the TEP ${towards} given by --tep`
        : `the server ${towards} given by --server`;
    throw new UdpBindError(
      `no IPv6 route to ${what} (${error.code}): this host's tunnel address is its source address towards it; give this host a global IPv6 address and a route towards it, or give --host6`,
      error.code,
    );
  }
}
