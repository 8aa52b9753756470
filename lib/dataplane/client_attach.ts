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
 * A new lease (maybe a new TEP): start from what the kernel already knows of the path to the
 * TEP, e.g. from a Packet Too Big an earlier process got (the inbound Worker is the table's
 * only writer). `routePathMtu(tep6)` is the route's path MTU in bytes, or -errno.
 */
export function seedPathMtu(
  pathMtu: PathMtuTable | null,
  context: ClientContext | null,
  routePathMtu: (dst6: Uint8Array) => number,
): void {
  if (!pathMtu || !context) return;
  const mtu = routePathMtu(context.tep6);
  if (mtu >= 1280 && mtu - 40 < context.tunnelMtu)
    pathMtu.learn(context.tep6, 0, mtu, nowSeconds());
}
