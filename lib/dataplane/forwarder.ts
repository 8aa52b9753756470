/**
 * Starts and stops the forwarding Workers of a TEP or a DSTM client: two per node, one per
 * direction, each owning a counter slice and reading the shared binding table.
 *
 * @module
 */

import { cpuCount } from "../sys/affinity.ts";
import type { RingGeometry } from "../sys/packet_ring.ts";
import { startWorker, type WorkerHandle } from "../sys/worker.ts";
import type { BindingTable } from "../tunnel/binding.ts";
import type { Counters } from "../tunnel/counters.ts";

export type ForwarderRole = "tep-decap" | "tep-encap" | "client-out" | "client-in";

/** Outer-header and path MTU settings of either end (pipeline.ts TunnelHeaderOptions). */
export interface TunnelForwarding {
  /** PathMtuTable.buffer: path MTU per host, written by the Worker that reads ICMPv6 errors. */
  pathMtu?: SharedArrayBuffer;
  mssClamp?: boolean;
  dscp?: number;
  ecnNormal?: boolean;
  flowLabel?: boolean;
}

export interface TepForwarding extends TunnelForwarding {
  tepIPv4: number;
  linkMtu?: number;
  hairpin?: boolean;
  icmpRate?: number;
  /** Cut IPv4 packets above the tunnel MTU (DF clear) instead of the outer IPv6 (TepOptions.fragmentInner). */
  fragmentInner?: boolean;
  /** The TEP's IPv6 address: ICMPv6 1/5 to hosts whose source no binding allows (pipeline.ts). */
  tep6?: Uint8Array;
  /** An Int32 that is 1 once the TEP's bindings are the server's (TepOptions.sourcePolicyReady). */
  sourcePolicyReady?: SharedArrayBuffer;
  /** The TUN was opened with IFF_VNET_HDR: batched loops with GSO/GRO (tep_batch.ts). */
  offload?: boolean;
}

export interface ClientForwarding extends TunnelForwarding {
  /** The DTI MTU: the largest IPv4 packet the tunnel carries. */
  tunnelMtu?: number;
  /** ClientState.buffer: the lease, written by the main thread. */
  state: SharedArrayBuffer;
  /** NaptTable.buffer: the port mappings of a shared lease. */
  napt: SharedArrayBuffer;
  /** Queue packets and ask for a lease when there is none (instead of dropping them). */
  onDemand: boolean;
  /** The DTI was opened with IFF_VNET_HDR: batched loops with GSO/GRO (client_batch.ts). */
  offload?: boolean;
  /** With `offload`: coalesce UDP datagrams into the DTI too (ClientBatchInit.udpGro). */
  udpGro?: boolean;
  /**
   * With `offload`: the outbound Worker hands checked packets back to the kernel through the
   * DTI instead of encapsulating them (client_kernel_encap.ts; `dstm client --kernel-encap`).
   */
  kernelEncap?: boolean;
}

/** What a forwarding Worker is given. */
export interface ForwarderInit {
  role: ForwarderRole;
  tunFd: number;
  rawFd: number;
  /** TEP: raw IPv4 socket for the ICMP errors it sends. */
  raw4Fd?: number;
  /** TEP decapsulation: raw ICMPv6 socket bound to the TEP's address, for ICMPv6 1/5 (pipeline.ts). */
  icmp6Fd?: number;
  /** TEP decapsulation: a packet ring next to the raw socket (lib/sys/packet_ring.ts). */
  ring?: { fd: number; geometry: RingGeometry };
  counters: SharedArrayBuffer;
  slice: number;
  /** CPU to pin the Worker to (-1: leave it to the scheduler). */
  cpu?: number;
  bindings?: SharedArrayBuffer;
  tep?: TepForwarding;
  clientState?: SharedArrayBuffer;
  napt?: SharedArrayBuffer;
  onDemand?: boolean;
  /** Client: outer-header settings and the DTI MTU. */
  client?: TunnelForwarding & {
    tunnelMtu?: number;
    offload?: boolean;
    udpGro?: boolean;
    kernelEncap?: boolean;
  };
}

/** I/O failures a Worker saw (the per-packet verdicts are in the counters). */
export interface ForwarderStats {
  readErrors: number;
  writeErrors: number;
  /** Last -errno seen, 0 if none. */
  lastError: number;
}

// In a `bun build --compile` executable the Worker module is an extra entry point stored at
// its path under the bundle root (see compile.sh); from source it sits next to this file.
const WORKER_URL = import.meta.url.includes("$bunfs")
  ? "/$bunfs/root/lib/dataplane/forwarder_worker.ts"
  : new URL("./forwarder_worker.ts", import.meta.url).href;

/** The running Workers of one node. */
export class Forwarder {
  readonly #workers: WorkerHandle<ForwarderStats>[];

  private constructor(workers: WorkerHandle<ForwarderStats>[]) {
    this.#workers = workers;
  }

  /** TEP: decapsulation (raw IPv6 → TUN) and encapsulation (TUN → raw IPv6). Counter slices 0 and 1. */
  static async tep(o: {
    tunFd: number;
    rawFd: number;
    raw4Fd: number;
    icmp6Fd?: number;
    ring?: { fd: number; geometry: RingGeometry };
    bindings: BindingTable;
    counters: Counters;
    tep: TepForwarding;
  }): Promise<Forwarder> {
    const base = {
      tunFd: o.tunFd,
      rawFd: o.rawFd,
      raw4Fd: o.raw4Fd,
      icmp6Fd: o.icmp6Fd,
      ring: o.ring,
      counters: o.counters.buffer,
      bindings: o.bindings.buffer,
      tep: o.tep,
    };
    return Forwarder.#start(
      [
        { ...base, role: "tep-decap", slice: 0 },
        { ...base, role: "tep-encap", slice: 1 },
      ],
      true,
    );
  }

  /** Client: outbound (DTI → raw IPv6 to the TEP) and inbound (raw IPv6 → DTI). Counter slices 0 and 1. */
  static async client(o: {
    tunFd: number;
    rawFd: number;
    counters: Counters;
    client: ClientForwarding;
    /** Called when the outbound Worker holds packets and there is no lease (on-demand). */
    /**
     * Also called with "binding-lost" when the inbound Worker got ICMPv6 1/5 from the TEP
     * about the leased address (client_lease.ts): the TEP has no binding, renew now.
     */
    onNeedLease?: (why?: "binding-lost") => void;
  }): Promise<Forwarder> {
    const base = {
      tunFd: o.tunFd,
      rawFd: o.rawFd,
      counters: o.counters.buffer,
      clientState: o.client.state,
      napt: o.client.napt,
      onDemand: o.client.onDemand,
      client: {
        pathMtu: o.client.pathMtu,
        mssClamp: o.client.mssClamp,
        dscp: o.client.dscp,
        ecnNormal: o.client.ecnNormal,
        flowLabel: o.client.flowLabel,
        tunnelMtu: o.client.tunnelMtu,
        offload: o.client.offload,
        udpGro: o.client.udpGro,
        kernelEncap: o.client.kernelEncap,
      },
    };
    const forwarder = await Forwarder.#start([
      { ...base, role: "client-out", slice: 0 },
      { ...base, role: "client-in", slice: 1 },
    ]);
    const out = forwarder.#workers[0]!.worker;
    out.addEventListener("message", (event: MessageEvent) => {
      if ((event.data as { kind?: string })?.kind === "dstm-need-lease") o.onNeedLease?.();
    });
    forwarder.#workers[1]!.worker.addEventListener("message", (event: MessageEvent) => {
      if ((event.data as { kind?: string })?.kind === "dstm-binding-lost")
        o.onNeedLease?.("binding-lost");
    });
    return forwarder;
  }

  static async #start(inits: ForwarderInit[], pinned = false): Promise<Forwarder> {
    // A TEP's two directions on different CPUs (DSTM_NO_PIN=1 leaves placement to the
    // scheduler). Clients are not pinned: a host's CPUs are its applications', and where a
    // client shares the machine with a TEP (the lab), pinning both put each direction's two
    // stages on one CPU (measured: UDP through the TEP 190k → 137k pps).
    const cpus = cpuCount();
    const pin = pinned && cpus >= 2 && !process.env.DSTM_NO_PIN;
    const workers = inits.map((init, i) =>
      startWorker<ForwarderInit, ForwarderStats>(
        WORKER_URL,
        { ...init, cpu: pin ? i % cpus : -1 },
        { name: `dstm-${init.role}` },
      ),
    );
    try {
      await Promise.all(workers.map((w) => w.ready));
    } catch (error) {
      await Promise.all(workers.map((w) => w.stop(500)));
      throw error;
    }
    return new Forwarder(workers);
  }

  /** Stops every Worker (each finishes its current packet); resolves with their I/O stats. */
  async stop(): Promise<ForwarderStats[]> {
    const results = await Promise.all(this.#workers.map((w) => w.stop(2000)));
    return results.map((r) => r.result ?? { readErrors: 0, writeErrors: 0, lastError: 0 });
  }
}
