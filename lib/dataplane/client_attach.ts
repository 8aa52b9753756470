/**
 * What a DSTM client Worker attaches from its ForwarderInit, once, whichever loop it runs (one
 * packet at a time, client_loops.ts, or in batches, client_batched.ts): the lease state the
 * main thread publishes, the NAPT table and the path-MTU table, all in shared memory; and the
 * path MTU seeded from the kernel's at each new lease; and the inbound batch socket that keeps
 * the host's local addresses current before each batch is checked (./local_sources_follower.ts).
 *
 * @module
 */
import { SendsThrough, type TunnelBatchSocket } from "../net/device.ts";
import { ClientState } from "../tunnel/client_state.ts";
import { NaptTable } from "../tunnel/napt.ts";
import type { ClientContext } from "../tunnel/pipeline.ts";
import { PathMtuTable } from "../tunnel/pmtu.ts";
import type { ClientLoopInit } from "./client_lease.ts";
import type { ForwarderInit } from "./forwarder.ts";
import { nowSeconds } from "./tunnel_errors.ts";

/** The shared tables of `init` attached in this Worker, with its counter slice. */
export function attachClientLoop(init: ForwarderInit, counters: Float64Array): ClientLoopInit {
  return {
    state: ClientState.attach(init.clientState!),
    napt: NaptTable.attach(init.napt!),
    counters,
    onDemand: init.onDemand === true,
    client: init.client,
    pathMtu: init.client?.pathMtu ? PathMtuTable.attach(init.client.pathMtu) : null,
  };
}

/**
 * `raw` whose every read calls `refresh` before it returns the packets (the inbound Worker's
 * LocalSourcesFollower.refresh: an address added before they arrived is in the list they are
 * checked against), and after a poll timeout too. Nothing allocated per read.
 */
export class RefreshingBatchSocket extends SendsThrough {
  readonly #raw: TunnelBatchSocket;
  readonly #refresh: () => void;

  constructor(raw: TunnelBatchSocket, refresh: () => void) {
    super(raw);
    this.#raw = raw;
    this.#refresh = refresh;
  }

  read(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    const n = this.#raw.read(bufs, sizes, offset, addrs, trafficClass);
    if (n >= 0) this.#refresh();
    return n;
  }
}

/**
 * What the kernel knows of the path to the lease's TEP, into the estimate the Workers check
 * DF packets against (PathMtuTable.follow; the inbound Worker is the table's only writer):
 * at a new lease (maybe a new TEP; e.g. a Packet Too Big an earlier process got) and then
 * every {@link KERNEL_PATH_MTU_CHECK_MS} ({@link KernelPathMtuFollower}). `routePathMtu(tep6)`
 * is the route's path MTU in bytes, or -errno (then nothing changes).
 */
export function seedPathMtu(
  pathMtu: PathMtuTable | null,
  context: ClientContext | null,
  routePathMtu: (dst6: Uint8Array) => number,
): void {
  if (!pathMtu || !context) return;
  const mtu = routePathMtu(context.tep6);
  // The outer header is 40 bytes (RFC 2473 §3.1): the tunnel MTU plus 40 needs no estimate.
  if (mtu >= 1280) pathMtu.follow(context.tep6, 0, mtu, context.tunnelMtu + 40, nowSeconds());
}

/** How often the inbound Worker asks the kernel for its path MTU towards the TEP, ms. */
export const KERNEL_PATH_MTU_CHECK_MS = 1000;

/**
 * Follows the kernel's path MTU towards the lease's TEP while the lease lasts: the kernel
 * records Packet Too Big messages the Workers' raw socket never sees — about packets the
 * kernel encapsulated itself (`--kernel-encap`) or another socket sent — and a route may carry
 * an operator's `mtu`. Without this, DF packets above the new path MTU would be handed on
 * (and fragmented outside or lost) instead of answered with ICMPv4 "fragmentation needed"
 * (RFC 2473 §7.1) until the next lease. One route lookup (a socket, connect, getsockopt) per
 * {@link KERNEL_PATH_MTU_CHECK_MS} at most; `poll` is cheap otherwise (one clock read).
 */
export class KernelPathMtuFollower {
  #next = 0;

  constructor(
    readonly pathMtu: PathMtuTable | null,
    readonly routePathMtu: (dst6: Uint8Array) => number,
    readonly intervalMs = KERNEL_PATH_MTU_CHECK_MS,
  ) {}

  /** Looks at the kernel's value when the interval has passed and there is a lease. */
  poll(context: ClientContext | null): void {
    if (this.pathMtu === null || context === null) return;
    const now = performance.now();
    if (now < this.#next) return;
    this.#next = now + this.intervalMs;
    seedPathMtu(this.pathMtu, context, this.routePathMtu);
  }
}
