/**
 * The DSTM client with DTI offloads (IFF_VNET_HDR, TSO4) and batched socket I/O
 * (recvmmsg/sendmmsg): the loops of client_batch.ts on lib/sys devices, run by
 * forwarder_worker.ts. The error queue of the raw IPv6 socket is read by a Raw6Socket on the
 * same fd in the inbound Worker, between batches (RFC 2473 §8.3, as client_loops.ts does).
 * With `kernelEncap` the outbound Worker runs client_kernel_encap.ts instead. The inbound
 * Worker refuses the host's own IPv4 addresses and its subnets' broadcast addresses as inner
 * sources (with `kernelEncap` the DTI accepts local sources; without, a broadcast source
 * passed the kernel where rp_filter is 0: lib/tunnel/local_sources.ts), re-reading them when
 * the kernel says an address changed, before each batch it read is checked
 * (local_sources_follower.ts).
 *
 * @module
 */
import { Raw6Socket, routePathMtu } from "../sys/raw6.ts";
import { Raw6Batch } from "../sys/raw6_batch.ts";
import { VnetTunDevice } from "../sys/tun_vnet.ts";
import type { WorkerContext } from "../sys/worker.ts";
import {
  attachClientLoop,
  KernelPathMtuFollower,
  RefreshingBatchSocket,
  seedPathMtu,
} from "./client_attach.ts";
import { ClientInBatch, ClientOutBatch, DtiReplies } from "./client_batch.ts";
import { ClientKernelEncapOut } from "./client_kernel_encap.ts";
import { applicationError } from "./client_lease.ts";
import type { ForwarderInit, ForwarderStats } from "./forwarder.ts";
import { LocalSourcesFollower } from "./local_sources_follower.ts";
import { nowSeconds, postBindingLost, TunnelErrors } from "./tunnel_errors.ts";
import { CLOSED } from "./worker_loop.ts";

/** Runs one direction of the client until stopped; returns its I/O stats. */
export function clientBatched(
  init: ForwarderInit,
  ctx: WorkerContext,
  counters: Float64Array,
): ForwarderStats {
  const base = attachClientLoop(init, counters);
  const pathMtu = base.pathMtu;
  // On-demand: a short poll, so that queued packets go soon after the lease arrives.
  const pollTimeoutMs = init.role === "client-out" && init.onDemand ? 20 : 200;
  const tun = VnetTunDevice.attach(init.tunFd, { pollTimeoutMs });
  const batch = new Raw6Batch(init.rawFd, { pollTimeoutMs: 200 });
  ctx.ready();
  if (init.role === "client-out" && init.client?.kernelEncap) {
    const loop = new ClientKernelEncapOut(base, tun);
    while (!ctx.stopRequested) if (loop.step() === CLOSED) break;
    return loop.stats;
  }
  if (init.role === "client-out") {
    const post = (globalThis as unknown as { postMessage(m: unknown): void }).postMessage;
    const loop = new ClientOutBatch(base, tun, batch, () => post({ kind: "dstm-need-lease" }));
    while (!ctx.stopRequested) if (loop.step() === CLOSED) break;
    return loop.stats;
  }
  const raw = Raw6Socket.attach(init.rawFd, 200);
  raw.useTunnelOptions();
  const local = new LocalSourcesFollower({ counters });
  const loop = new ClientInBatch(
    { ...base, udpGro: init.client?.udpGro === true, localSources: local.local },
    new RefreshingBatchSocket(batch, () => local.refresh()),
    tun,
    (context) => seedPathMtu(pathMtu, context, routePathMtu),
  );
  const stats = loop.stats;
  const replies = new DtiReplies(tun, stats);
  // ICMPv6 errors about what the outbound Worker sent (RFC 2473 §8.3): relayed to the
  // application as ICMPv4 errors from the inner destination, written into the DTI.
  const errors = new TunnelErrors(raw, counters, (info, host6, inner, length) => {
    if (
      applicationError(
        loop.lease,
        loop.translator,
        counters,
        info,
        host6,
        inner,
        length,
        nowSeconds(),
        postBindingLost,
      )
    )
      replies.write(loop.context!.reply, loop.context!.replyLength);
  });
  const kernelPathMtu = new KernelPathMtuFollower(pathMtu, routePathMtu);
  try {
    while (!ctx.stopRequested) {
      kernelPathMtu.poll(loop.context);
      if (batch.errorPending) {
        raw.errorPending = true;
        batch.errorPending = false;
      }
      loop.follow();
      errors.poll(pathMtu);
      if (loop.step() === CLOSED) break;
    }
  } finally {
    local.close();
  }
  return stats;
}
