/**
 * What a DSTM client Worker attaches from its ForwarderInit, once, whichever loop it runs (one
 * packet at a time, client_loops.ts, or in batches, client_batched.ts): the lease state the
 * main thread publishes, the NAPT table and the path-MTU table, all in shared memory; and the
 * path MTU seeded from the kernel's at each new lease.
 *
 * @module
 */
import { localIPv4Addresses } from "../sys/ipv4_addresses.ts";
import { ClientState } from "../tunnel/client_state.ts";
import { LocalSources } from "../tunnel/local_sources.ts";
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

/** How often the inbound Worker re-reads the host's IPv4 addresses, ms. */
export const LOCAL_SOURCES_REFRESH_MS = 1000;

/**
 * The host's IPv4 addresses and subnet broadcast addresses, which the inbound loop's
 * clientDecap refuses as inner sources (lib/tunnel/local_sources.ts), and `refresh()`, which
 * re-reads them from the kernel when {@link LOCAL_SOURCES_REFRESH_MS} have passed (call it
 * between reads; it read them once already). A failed read keeps the last list.
 */
export function followLocalSources(): { local: LocalSources; refresh: () => void } {
  const local = new LocalSources();
  let at = 0;
  const refresh = () => {
    const now = Date.now();
    if (now - at < LOCAL_SOURCES_REFRESH_MS) return;
    at = now;
    try {
      local.set(localIPv4Addresses());
    } catch {
      // Keep the last list (the leased address is refused whatever it holds).
    }
  };
  refresh();
  return { local, refresh };
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
