/**
 * The DSTM client's two forwarding loops (run in Workers by forwarder_worker.ts):
 *
 * - out: DTI → [queue while on-demand and no lease] → translate (placeholder, port set) →
 *   clientEncap → raw IPv6 socket to the TEP;
 * - in: raw IPv6 socket → clientDecap → translate back → DTI.
 *
 * The lease comes from the main thread through ClientState; each loop rebuilds its context
 * when the state's generation changes. Nothing is allocated per packet.
 *
 * @module
 */
import { IPv4Problem, validateIPv4 } from "../net/ipv4.ts";
import type { Raw6Socket } from "../sys/raw6.ts";
import type { TunDevice } from "../sys/tun_linux.ts";
import type { WorkerContext } from "../sys/worker.ts";
import type { ClientState } from "../tunnel/client_state.ts";
import type { TunnelError } from "../tunnel/icmp_relay.ts";
import { type ClientTranslator, Translation } from "../tunnel/napt.ts";
import { type ClientContext, clientDecap, clientEncap, Verdict } from "../tunnel/pipeline.ts";
import type { PathMtuTable } from "../tunnel/pmtu.ts";
import { attachClientLoop, KernelPathMtuFollower, seedPathMtu } from "./client_attach.ts";
import {
  applicationError,
  countTranslation,
  ENCAP_MALFORMED,
  type Lease,
  LeaseFollower,
  NO_LEASE,
  QUEUE_FULL,
  QUEUE_PACKET_BYTES,
  QUEUE_PACKETS,
  QUEUED,
} from "./client_lease.ts";
import type { ForwarderStats } from "./forwarder.ts";
import { LocalSourcesFollower } from "./local_sources_follower.ts";
import { nowSeconds, postBindingLost, TunnelErrors } from "./tunnel_errors.ts";
import { type LoopIO, readStops, writeFailed } from "./worker_loop.ts";

/** DTI → TEP. */
export function clientOut(io: LoopIO): ForwarderStats {
  return new ClientOutLoop(io).run(io.ctx);
}

/** TEP → DTI. `routePathMtu` tells the kernel's path MTU towards an address (or -errno). */
export function clientIn(
  io: LoopIO,
  routePathMtu: (dst6: Uint8Array) => number = () => -1,
): ForwarderStats {
  return new ClientInLoop(io, routePathMtu).run(io.ctx);
}

/**
 * The outbound loop's state and steps: read from the DTI, hold while on-demand has no lease
 * (at most QUEUE_PACKETS of QUEUE_PACKET_BYTES), translate, encapsulate, send to the TEP.
 * Buffers are made once; each step is a method with explicit arguments (no per-packet objects).
 */
class ClientOutLoop {
  readonly #state: ClientState;
  readonly #follower: LeaseFollower;
  readonly #translator: ClientTranslator;
  readonly #onDemand: boolean;
  readonly #buf = new Uint8Array(65536);
  readonly #replay = new Uint8Array(65536);
  readonly #lease: Lease;
  readonly #queue = Array.from({ length: QUEUE_PACKETS }, () => new Uint8Array(QUEUE_PACKET_BYTES));
  readonly #queued = new Int32Array(QUEUE_PACKETS);
  #queueLength = 0;
  /** The lease generation for which the main thread was last asked for a lease. */
  #askedFor = -1;

  readonly counters: Float64Array;
  readonly tun: TunDevice;
  readonly raw: Raw6Socket;
  readonly stats: ForwarderStats;

  constructor(io: LoopIO) {
    ({ counters: this.counters, tun: this.tun, raw: this.raw, stats: this.stats } = io);
    const loop = attachClientLoop(io.init, io.counters);
    this.#state = loop.state;
    this.#follower = new LeaseFollower(loop, true);
    this.#translator = this.#follower.translator;
    this.#lease = this.#follower.lease;
    this.#onDemand = loop.onDemand;
  }

  run(ctx: WorkerContext): ForwarderStats {
    const { tun, stats } = this;
    const buf = this.#buf;
    while (!ctx.stopRequested) {
      this.#follower.follow();
      if (this.#lease.context && this.#queueLength > 0) this.#sendQueued();
      const n = tun.read(buf, 0);
      if (n <= 0) {
        if (n < 0 && readStops(stats, n)) break;
        continue;
      }
      // The lease may have arrived while we were blocked in read().
      this.#follower.follow();
      if (this.#lease.context) this.#sendWithReleased(buf, n);
      else if (!this.#onDemand) this.counters[NO_LEASE]! += 1;
      else this.#hold(buf, n);
    }
    return stats;
  }

  /** A lease came: the packets held while on-demand had none go now, in order. */
  #sendQueued(): void {
    for (let i = 0; i < this.#queueLength; i++) this.#send(this.#queue[i]!, this.#queued[i]!);
    this.#queueLength = 0;
  }

  /** Sends `packet`, then the fragments that came before their first fragment (fragments.ts). */
  #sendWithReleased(packet: Uint8Array, n: number): void {
    this.#send(packet, n);
    const replay = this.#replay;
    const fragments = this.#translator.outFragments;
    for (let m = fragments.popReleased(replay, 0, null, 0); m > 0; ) {
      this.#send(replay, m);
      m = fragments.popReleased(replay, 0, null, 0);
    }
  }

  /** On-demand without a lease: hold the packet (or count it dropped) and ask for a lease once. */
  #hold(packet: Uint8Array, n: number): void {
    const counters = this.counters;
    if (this.#queueLength < QUEUE_PACKETS && n <= QUEUE_PACKET_BYTES) {
      this.#queue[this.#queueLength]!.set(packet.subarray(0, n));
      this.#queued[this.#queueLength++] = n;
      counters[QUEUED]! += 1;
    } else counters[QUEUE_FULL]! += 1;
    const generation = this.#lease.generation;
    if (this.#askedFor !== generation) {
      this.#askedFor = generation;
      (globalThis as unknown as { postMessage(m: unknown): void }).postMessage({
        kind: "dstm-need-lease",
      });
    }
  }

  /** Translates (shared lease), encapsulates and sends one packet to the TEP. */
  #send(packet: Uint8Array, n: number): void {
    const lease = this.#lease;
    const context = lease.context!;
    const translator = this.#translator;
    // The translator reads the headers, so it needs them checked first; without translation
    // clientEncap checks them (once).
    if (lease.translate && validateIPv4(packet, 0, n) !== IPv4Problem.NONE) {
      this.counters[ENCAP_MALFORMED]! += 1;
      return;
    }
    const nowMs = Date.now();
    const now = (nowMs / 1000) | 0;
    if (lease.translate) {
      const result = translator.outbound(packet, 0, n, now, nowMs);
      if (result !== Translation.OK) {
        countTranslation(this.counters, result);
        // No port free: tell the application (a RST or ICMPv4 3/13) rather than stay silent.
        if (translator.replyLength > 0) {
          const w = this.tun.write(translator.reply, 0, translator.replyLength);
          if (w < 0) writeFailed(this.stats, w);
        }
        return;
      }
    }
    const verdict = clientEncap(context, packet, 0, n);
    if (verdict === Verdict.ICMP) {
      // "Fragmentation needed" for the application (RFC 2473 §7.1), translated back like any
      // packet from the tunnel.
      this.#toApplication(context.reply, context.replyLength, now);
      return;
    }
    if (verdict !== Verdict.FORWARD) return;
    const w = this.raw.sendTo(
      packet,
      0,
      context.length,
      context.tep6,
      0,
      context.trafficClass,
      context.flowLabel,
    );
    if (w < 0) writeFailed(this.stats, w);
    this.#state.touch(now);
  }

  /** Writes an ICMPv4 reply made here into the DTI, translated back for a shared lease. */
  #toApplication(reply: Uint8Array, length: number, now: number): void {
    if (this.#lease.translate && this.#translator.inbound(reply, 0, length, now) !== Translation.OK)
      return;
    const w = this.tun.write(reply, 0, length);
    if (w < 0) writeFailed(this.stats, w);
  }
}

/**
 * The inbound loop's state and steps: poll ICMPv6 errors about what was sent (RFC 2473 §8.3),
 * receive from the TEP, decapsulate, translate back, write into the DTI. Buffers are made once;
 * each step is a method with explicit arguments (no per-packet objects).
 */
class ClientInLoop {
  readonly #state: ClientState;
  readonly #follower: LeaseFollower;
  readonly #translator: ClientTranslator;
  readonly #buf = new Uint8Array(65536);
  readonly #replay = new Uint8Array(65536);
  readonly #from6 = new Uint8Array(16);
  readonly #lease: Lease;
  readonly #pathMtu: PathMtuTable | null;
  readonly #errors: TunnelErrors;
  readonly #kernelPathMtu: KernelPathMtuFollower;
  /** The host's addresses clientDecap refuses as sources (local_sources_follower.ts). */
  readonly #local: LocalSourcesFollower;

  readonly counters: Float64Array;
  readonly tun: TunDevice;
  readonly raw: Raw6Socket;
  readonly stats: ForwarderStats;

  constructor(
    io: LoopIO,
    readonly routePathMtu: (dst6: Uint8Array) => number,
  ) {
    ({ counters: this.counters, tun: this.tun, raw: this.raw, stats: this.stats } = io);
    const loop = attachClientLoop(io.init, io.counters);
    this.#state = loop.state;
    this.#local = new LocalSourcesFollower({ counters: io.counters });
    this.#follower = new LeaseFollower({ ...loop, localSources: this.#local.local }, false);
    this.#translator = this.#follower.translator;
    this.#lease = this.#follower.lease;
    this.#pathMtu = loop.pathMtu;
    this.#kernelPathMtu = new KernelPathMtuFollower(loop.pathMtu, routePathMtu);
    // ICMPv6 errors about what the outbound Worker sent (RFC 2473 §8.3): relayed to the
    // application as ICMPv4 errors from the inner destination, written into the DTI.
    this.#errors = new TunnelErrors(io.raw, io.counters, (info, host6, inner, length) =>
      this.#relayError(info, host6, inner, length),
    );
  }

  run(ctx: WorkerContext): ForwarderStats {
    const { raw, stats } = this;
    const buf = this.#buf;
    const from6 = this.#from6;
    try {
      while (!ctx.stopRequested) {
        this.#errors.poll(this.#pathMtu);
        this.#follow();
        this.#kernelPathMtu.poll(this.#lease.context);
        const n = raw.recvFrom(buf, 0, from6, 0);
        // After the read: an address added while we waited is in the list the packet is
        // checked against (also after a poll timeout, to drain the notifications).
        if (n >= 0) this.#local.refresh();
        if (n <= 0) {
          if (n < 0 && readStops(stats, n)) break;
          continue;
        }
        this.#follow();
        const context = this.#lease.context;
        if (!context) {
          this.counters[NO_LEASE]! += 1;
          continue;
        }
        this.#deliverWithReleased(context, buf, n, raw.trafficClass);
      }
    } finally {
      this.#local.close();
    }
    return stats;
  }

  /** Takes the lease the main thread published, if it changed, and seeds its path MTU. */
  #follow(): void {
    if (this.#follower.follow()) seedPathMtu(this.#pathMtu, this.#lease.context, this.routePathMtu);
  }

  /** An ICMPv6 error about a sent packet: its ICMPv4 counterpart into the DTI. */
  #relayError(info: TunnelError, host6: Uint8Array, inner: Uint8Array, length: number): void {
    const lease = this.#lease;
    if (
      !applicationError(
        lease,
        this.#translator,
        this.counters,
        info,
        host6,
        inner,
        length,
        nowSeconds(),
        postBindingLost,
      )
    )
      return;
    const context = lease.context!;
    const w = this.tun.write(context.reply, 0, context.replyLength);
    if (w < 0) writeFailed(this.stats, w);
  }

  /**
   * Delivers `packet`, then the fragments that came before their first fragment
   * (fragments.ts); their outer traffic class is gone, so no CE mark is carried for them.
   */
  #deliverWithReleased(
    context: ClientContext,
    packet: Uint8Array,
    n: number,
    trafficClass: number,
  ): void {
    this.#deliver(context, packet, n, trafficClass);
    const replay = this.#replay;
    const fragments = this.#translator.inFragments;
    for (let m = fragments.popReleased(replay, 0, null, 0); m > 0; ) {
      this.#deliver(context, replay, m, 0);
      m = fragments.popReleased(replay, 0, null, 0);
    }
  }

  /** Decapsulates, translates (shared lease) and writes one packet into the DTI. */
  #deliver(context: ClientContext, packet: Uint8Array, n: number, trafficClass: number): void {
    if (clientDecap(context, packet, 0, n, this.#from6, 0, trafficClass) !== Verdict.FORWARD)
      return;
    const nowMs = Date.now();
    const now = (nowMs / 1000) | 0;
    if (this.#lease.translate) {
      const result = this.#translator.inbound(packet, 0, context.length, now, nowMs);
      if (result !== Translation.OK) {
        countTranslation(this.counters, result);
        return;
      }
    }
    const w = this.tun.write(packet, 0, context.length);
    if (w < 0) writeFailed(this.stats, w);
    this.#state.touch(now);
  }
}
