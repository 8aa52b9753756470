/**
 * The DSTM client with DTI offloads (IFF_VNET_HDR, TSO4) and batched socket I/O
 * (recvmmsg/sendmmsg): the loops of client_batch.ts on lib/sys devices, run by
 * forwarder_worker.ts. The error queue of the raw IPv6 socket is read by a Raw6Socket on the
 * same fd in the inbound Worker, between batches (RFC 2473 §8.3, as client_loops.ts does).
 *
 * @module
 */
import { Errno } from "../sys/libc.ts";
import { Raw6Socket, routePathMtu } from "../sys/raw6.ts";
import { Raw6Batch } from "../sys/raw6_batch.ts";
import { VnetTunDevice } from "../sys/tun_vnet.ts";
import type { WorkerContext } from "../sys/worker.ts";
import { ClientState } from "../tunnel/client_state.ts";
import { clientSentTo, relayTunnelError } from "../tunnel/icmp_relay.ts";
import { NaptTable, Translation } from "../tunnel/napt.ts";
import { PathMtuTable } from "../tunnel/pmtu.ts";
import { type ClientBatchInit, ClientInBatch, ClientOutBatch } from "./client_batch.ts";
import type { ForwarderInit, ForwarderStats } from "./forwarder.ts";
import { nowSeconds, TunnelErrors } from "./tunnel_errors.ts";

const EBADF = -Errno.EBADF;

/** Runs one direction of the client until stopped; returns its I/O stats. */
export function clientBatched(
  init: ForwarderInit,
  ctx: WorkerContext,
  counters: Float64Array,
): ForwarderStats {
  const pathMtu = init.client?.pathMtu ? PathMtuTable.attach(init.client.pathMtu) : null;
  const base: ClientBatchInit = {
    state: ClientState.attach(init.clientState!),
    napt: NaptTable.attach(init.napt!),
    counters,
    onDemand: init.onDemand === true,
    client: init.client,
    pathMtu,
  };
  // On-demand: a short poll, so that queued packets go soon after the lease arrives.
  const pollTimeoutMs = init.role === "client-out" && init.onDemand ? 20 : 200;
  const tun = VnetTunDevice.attach(init.tunFd, { pollTimeoutMs });
  const batch = new Raw6Batch(init.rawFd, { pollTimeoutMs: 200 });
  ctx.ready();
  if (init.role === "client-out") {
    const post = (globalThis as unknown as { postMessage(m: unknown): void }).postMessage;
    const loop = new ClientOutBatch(base, tun, batch, () => post({ kind: "dstm-need-lease" }));
    while (!ctx.stopRequested) if (loop.step() === EBADF) break;
    return loop.stats;
  }
  const raw = Raw6Socket.attach(init.rawFd, 200);
  raw.useTunnelOptions();
  // A new lease (maybe a new TEP): start from what the kernel already knows of the path, e.g.
  // from a Packet Too Big an earlier process got (this Worker is the table's only writer).
  const loop = new ClientInBatch(base, batch, tun, (context) => {
    if (!pathMtu) return;
    const mtu = routePathMtu(context.tep6);
    if (mtu >= 1280 && mtu - 40 < context.tunnelMtu)
      pathMtu.learn(context.tep6, 0, mtu, nowSeconds());
  });
  const stats = loop.stats;
  const reply = new Uint8Array(tun.headroom + 2048);
  // ICMPv6 errors about what the outbound Worker sent (RFC 2473 §8.3): relayed to the
  // application as ICMPv4 errors from the inner destination, written into the DTI.
  const errors = new TunnelErrors(raw, counters, (info, host6, inner, length) => {
    const context = loop.context;
    if (!context) return;
    if (!clientSentTo(counters, context.leasedIPv4, context.tep6, inner, 0, length, host6, 0))
      return;
    const now = nowSeconds();
    if (!relayTunnelError(context, info, host6, 0, inner, 0, length, 0, now)) return;
    if (
      loop.translate &&
      loop.translator.inbound(context.reply, 0, context.replyLength, now) !== Translation.OK
    )
      return;
    const off = tun.headroom;
    if (context.replyLength > reply.length - off) return;
    reply.set(context.reply.subarray(0, context.replyLength), off);
    const w = tun.write(reply, off, context.replyLength, 0);
    if (w < 0) {
      stats.writeErrors++;
      stats.lastError = w;
    }
  });
  while (!ctx.stopRequested) {
    if (batch.errorPending) {
      raw.errorPending = true;
      batch.errorPending = false;
    }
    loop.follow();
    errors.poll(pathMtu);
    if (loop.step() === EBADF) break;
  }
  return stats;
}
