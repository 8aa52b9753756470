/**
 * Worker entry: one forwarding direction of the TEP or of the DSTM client, as a blocking
 * loop over FFI reads (measured on these machines: a blocking loop per direction in a Worker
 * matches C; async FFI is 4–6× slower). The loop reads into one preallocated buffer, runs
 * the per-packet step of pipeline.ts, and writes; nothing is allocated per packet.
 *
 * @module
 */
import { ipv4Destination } from "../net/ipv4.ts";
import { writeIPv4Fragment } from "../net/ipv4_fragment.ts";
import { writeTcpSegment } from "../net/tcp_segment.ts";
import { pinThisThread } from "../sys/affinity.ts";
import * as libc from "../sys/libc.ts";
import { PacketRing } from "../sys/packet_ring.ts";
import { Raw4Socket } from "../sys/raw4.ts";
import { Raw6Socket, routePathMtu } from "../sys/raw6.ts";
import { Raw6Batch } from "../sys/raw6_batch.ts";
import { RingRawSocket } from "../sys/ring_raw_socket.ts";
import { attachTun } from "../sys/tun_linux.ts";
import { VnetTunDevice } from "../sys/tun_vnet.ts";
import { runWorker, type WorkerContext } from "../sys/worker.ts";
import { BindingTable } from "../tunnel/binding.ts";
import { Counter, Counters } from "../tunnel/counters.ts";
import { relayTunnelError, tepSentTo } from "../tunnel/icmp_relay.ts";
import { TepContext, tepDecap, tepEncap, tepSegmentCount, Verdict } from "../tunnel/pipeline.ts";
import { PathMtuTable } from "../tunnel/pmtu.ts";
import { type BatchLoopStats, TepDecapBatch, TepEncapBatch } from "../tunnel/tep_batch.ts";
import { clientBatched } from "./client_batched.ts";
import { clientIn, clientOut } from "./client_loops.ts";
import type { ForwarderInit, ForwarderStats } from "./forwarder.ts";
import { nowSeconds, TunnelErrors } from "./tunnel_errors.ts";
import { CLOSED, type LoopIO, readStops, writeFailed } from "./worker_loop.ts";

/**
 * The TEP's receive ring's nap (lib/sys/ring_raw_socket.ts), µs: the longest a packet that
 * arrives during a nap waits. `DSTM_RX_RING_NAP_US` overrides it (0: no naps), for A/B runs.
 */
const RING_NAP_US = napMicroseconds(process.env.DSTM_RX_RING_NAP_US, 100);
/** The decapsulating Worker's timer slack with a ring, ns (the kernel's default: 50,000). */
const RING_NAP_SLACK_NS = 5000;

/** `text` as a nap in µs (0 to 1,000), else `fallback`. */
function napMicroseconds(text: string | undefined, fallback: number): number {
  const n = Number(text);
  return text !== undefined && text !== "" && Number.isFinite(n) && n >= 0 && n <= 1000
    ? n
    : fallback;
}

/** Large enough for any IPv4 packet (the kernel reassembles before a raw socket sees it). */
const BUFFER_SIZE = 65536;

runWorker<ForwarderInit, ForwarderStats>((init, ctx) => {
  if (init.cpu !== undefined && init.cpu >= 0) pinThisThread(init.cpu);
  const counters = Counters.attach(init.counters).slice(init.slice);
  if (init.tep?.offload) return tepBatched(init, ctx, counters);
  if (init.client?.offload) return clientBatched(init, ctx, counters);
  // On-demand: a short poll, so that queued packets go soon after the lease arrives.
  const pollTimeoutMs = init.role === "client-out" && init.onDemand ? 20 : 200;
  const tun = attachTun(init.tunFd, { pollTimeoutMs });
  const raw = Raw6Socket.attach(init.rawFd, 200);
  raw.useTunnelOptions();
  const stats: ForwarderStats = { readErrors: 0, writeErrors: 0, lastError: 0 };
  const io: LoopIO = { init, ctx, counters, tun, raw, stats };
  ctx.ready();
  switch (init.role) {
    case "tep-decap":
      return tepDecapLoop(io);
    case "tep-encap":
      return tepEncapLoop(io);
    case "client-out":
      return clientOut(io);
    case "client-in":
      return clientIn(io, routePathMtu);
  }
});

/** Sends an ICMPv4 packet built at `buf[off, off + len)`; bytes or -errno (0: no socket). */
type SendIcmp4 = (buf: Uint8Array, off: number, len: number) => number;

/**
 * A TEP Worker's ICMPv4 sender: the raw IPv4 socket, as a local packet (through the TUN it
 * would carry a local source: martian). Without one (no --raw4 fd) nothing is sent.
 */
function icmp4Sender(init: ForwarderInit): SendIcmp4 {
  const raw4 = init.raw4Fd === undefined ? undefined : Raw4Socket.attach(init.raw4Fd);
  return (b, o, l) => (raw4 ? raw4.send(b, o, l, ipv4Destination(b, o)) : 0);
}

/**
 * A TEP decapsulating Worker's ICMPv6 sender (the raw ICMPv6 socket bound to the TEP's address,
 * `init.icmp6Fd`): sends the source-policy error tepDecap left in `tep.reply6` (pipeline.ts)
 * and clears it. Without a socket nothing is sent.
 */
function icmp6Sender(init: ForwarderInit, stats: () => ForwarderStats): (tep: TepContext) => void {
  const sock = init.icmp6Fd === undefined ? undefined : Raw6Socket.attach(init.icmp6Fd, 0);
  return (tep) => {
    if (sock) {
      const w = sock.sendTo(tep.reply6, 0, tep.reply6Length, tep.reply6To, 0);
      if (w < 0) writeFailed(stats(), w);
    }
    tep.reply6Length = 0;
  };
}

/**
 * ICMPv6 errors about encapsulated packets (RFC 2473 §8), read from `raw`'s error queue off
 * the hot path: those about a packet this TEP sent to a bound host are relayed as ICMPv4 errors.
 */
function tepErrors(
  raw: Raw6Socket,
  tep: TepContext,
  sendIcmp4: SendIcmp4,
  stats: ForwarderStats,
): TunnelErrors {
  const counters = tep.counters;
  return new TunnelErrors(raw, counters, (info, host6, inner, n) => {
    if (!tepSentTo(tep.bindings, counters, inner, 0, n, host6, 0)) return;
    if (relayTunnelError(tep, info, host6, 0, inner, 0, n, tep.tepIPv4, nowSeconds())) {
      const w = sendIcmp4(tep.reply, 0, tep.replyLength);
      if (w < 0) writeFailed(stats, w);
    }
  });
}

/**
 * The TEP's IPv6 → IPv4 direction without offloads: raw IPv6 socket → tepDecap (binding
 * check) → TUN, a TSO packet cut to the tunnel MTU; ICMPv6 errors about encapsulated packets
 * (RFC 2473 §8) are read between packets and relayed as ICMPv4 on the raw IPv4 socket.
 */
function tepDecapLoop({ init, ctx, counters, tun, raw, stats }: LoopIO): ForwarderStats {
  const buf = new Uint8Array(BUFFER_SIZE);
  const addr6 = new Uint8Array(16);
  const tep = tepContext(init, counters);
  const errors = tepErrors(raw, tep, icmp4Sender(init), stats);
  const segment = new Uint8Array(BUFFER_SIZE);
  const segmented = Counter["decap-tcp-segmented"];
  const sendIcmp6 = icmp6Sender(init, () => stats);
  return loop(
    ctx,
    stats,
    () => {
      errors.poll(tep.pathMtu);
      return raw.recvFrom(buf, 0, addr6, 0);
    },
    (n) => {
      if (tepDecap(tep, buf, 0, n, addr6, 0, raw.trafficClass) !== Verdict.FORWARD) {
        if (tep.reply6Length !== 0) sendIcmp6(tep);
        return;
      }
      // Larger than the IPv6 link could carry in one piece: a kernel sender's TSO packet,
      // whole (lib/net/tcp_segment.ts). Cut it as the NIC would, to the tunnel MTU.
      const count = tepSegmentCount(tep, buf, 0);
      if (count === 0) {
        const w = tun.write(buf, 0, tep.length);
        if (w < 0) writeFailed(stats, w);
        return;
      }
      counters[segmented]! += 1;
      for (let i = 0; i < count; i++) {
        const len = writeTcpSegment(buf, 0, tep.length, tep.tunnelMtu, i, segment, 0);
        const w = tun.write(segment, 0, len);
        if (w < 0) writeFailed(stats, w);
      }
    },
    // Fragments held until their first fragment came (fragments.ts), with their outer source.
    () => tep.decapFragments.popReleased(buf, 0, addr6, 0),
  );
}

/**
 * The TEP's IPv4 → IPv6 direction without offloads: TUN → tepEncap (binding lookup) → raw
 * IPv6 socket to the host; an ICMPv4 error made here (e.g. Fragmentation Needed) leaves on
 * the raw IPv4 socket.
 */
function tepEncapLoop({ init, ctx, counters, tun, raw, stats }: LoopIO): ForwarderStats {
  const buf = new Uint8Array(BUFFER_SIZE);
  const addr6 = new Uint8Array(16);
  const tep = tepContext(init, counters);
  /** One inner IPv4 fragment at a time (--fragment inner): at most the tunnel MTU. */
  const fragment = new Uint8Array(tep.fragmentInner ? BUFFER_SIZE : 0);
  const sendIcmp4 = icmp4Sender(init);
  return loop(
    ctx,
    stats,
    () => tun.read(buf, 0),
    (n) => {
      const verdict = tepEncap(tep, buf, 0, n, addr6, 0);
      if (verdict === Verdict.FORWARD_FRAGMENT && tep.innerFragments > 0) {
        // --fragment inner: each IPv4 fragment in its own outer packet (RFC 4459 §3.4).
        for (let j = 0; j < tep.innerFragments; j++) {
          const m = writeIPv4Fragment(buf, 0, tep.length, tep.innerMtu, j, fragment, 0);
          const w = raw.sendTo(fragment, 0, m, addr6, 0, tep.trafficClass, tep.flowLabel);
          if (w < 0) writeFailed(stats, w);
        }
      } else if (verdict === Verdict.FORWARD || verdict === Verdict.FORWARD_FRAGMENT) {
        const w = raw.sendTo(buf, 0, tep.length, addr6, 0, tep.trafficClass, tep.flowLabel);
        if (w < 0) writeFailed(stats, w);
      } else if (verdict === Verdict.ICMP) {
        const w = sendIcmp4(tep.reply, 0, tep.replyLength);
        if (w < 0) writeFailed(stats, w);
      }
    },
    () => tep.encapFragments.popReleased(buf, 0, null, 0),
  );
}

/** Reads until stopped; `read` returns a length, 0 on poll timeout, or -errno. */
function loop(
  ctx: WorkerContext,
  stats: ForwarderStats,
  read: () => number,
  handle: (n: number) => void,
  released?: () => number,
): ForwarderStats {
  while (!ctx.stopRequested) {
    const n = read();
    if (n > 0) {
      handle(n);
      // A first fragment may have released fragments that came before it: handle them now.
      if (released) for (let m = released(); m > 0; m = released()) handle(m);
    } else if (n < 0 && readStops(stats, n)) break; // closed under us: nothing more to read
  }
  return stats;
}

const RING = Counter["decap-ring"];
const RING_LONG = Counter["decap-ring-long"];
const RING_LOST = Counter["decap-ring-lost"];

/**
 * `step` that also copies the packet ring's counts into `counters` after each batch, and adds
 * the kernel's drops (PACKET_STATISTICS, a system call) about once a second of batches.
 */
function ringCounted(ring: PacketRing, counters: Float64Array, step: () => number): () => number {
  let batches = 0;
  let kernelDrops = 0;
  return () => {
    const r = step();
    counters[RING]! = ring.packets;
    counters[RING_LONG]! = ring.long;
    if ((++batches & 1023) === 0 || r === 0) {
      const d = ring.takeDrops();
      if (d > 0) kernelDrops += d;
    }
    counters[RING_LOST]! = ring.truncated + kernelDrops;
    return r;
  };
}

function tepContext(init: ForwarderInit, counters: Float64Array): TepContext {
  const tep = init.tep!;
  return new TepContext({
    tep6: tep.tep6,
    sourcePolicyReady: tep.sourcePolicyReady ? new Int32Array(tep.sourcePolicyReady) : undefined,
    bindings: BindingTable.attach(init.bindings!),
    counters,
    tepIPv4: tep.tepIPv4,
    linkMtu: tep.linkMtu,
    hairpin: tep.hairpin,
    icmpRate: tep.icmpRate,
    pathMtu: tep.pathMtu ? PathMtuTable.attach(tep.pathMtu) : undefined,
    mssClamp: tep.mssClamp,
    dscp: tep.dscp,
    ecnNormal: tep.ecnNormal,
    flowLabel: tep.flowLabel,
    fragmentInner: tep.fragmentInner,
  });
}

/**
 * The TEP with TUN offloads (IFF_VNET_HDR) and batched socket I/O: the loops of tep_batch.ts
 * on lib/sys devices. The error queue is read by a Raw6Socket on the same fd, between batches.
 */
function tepBatched(
  init: ForwarderInit,
  ctx: WorkerContext,
  counters: Float64Array,
): ForwarderStats {
  const tep = tepContext(init, counters);
  const tun = VnetTunDevice.attach(init.tunFd, { pollTimeoutMs: 200 });
  const raw = Raw6Socket.attach(init.rawFd, 200);
  raw.useTunnelOptions();
  // With a packet ring (decapsulation only), the raw socket does not wait: RingRawSocket
  // polls both.
  const ring =
    init.ring && init.role === "tep-decap"
      ? PacketRing.attach(init.ring.fd, init.ring.geometry)
      : undefined;
  const batch = new Raw6Batch(init.rawFd, { pollTimeoutMs: ring ? 0 : 200 });
  // The ring's naps end within a few µs of their time (ring_raw_socket.ts).
  if (ring) libc.setTimerSlack(RING_NAP_SLACK_NS);
  const sendIcmp4 = icmp4Sender(init);
  ctx.ready();
  let step: () => number;
  let stats: BatchLoopStats;
  if (init.role === "tep-decap") {
    const loop: TepDecapBatch = new TepDecapBatch(
      tep,
      ring ? new RingRawSocket(ring, batch, 200, RING_NAP_US) : batch,
      tun,
      { sendIcmp6: icmp6Sender(init, () => loop.stats) },
    );
    stats = loop.stats;
    // ICMPv6 errors about encapsulated packets (RFC 2473 §8): read here, between batches.
    const errors = tepErrors(raw, tep, sendIcmp4, stats);
    step = () => {
      if (batch.errorPending) {
        raw.errorPending = true;
        batch.errorPending = false;
      }
      errors.poll(tep.pathMtu);
      return loop.step();
    };
  } else {
    const loop = new TepEncapBatch(tep, batch, tun, sendIcmp4);
    stats = loop.stats;
    step = () => loop.step();
  }
  if (ring) {
    const inner = step;
    step = ringCounted(ring, counters, inner);
  }
  while (!ctx.stopRequested) if (step() === CLOSED) break;
  ring?.unmap();
  return stats;
}
