/**
 * The DSTM client's two forwarding directions in batches (issue 14), over the device
 * interfaces of lib/net/device.ts only, like the TEP's (lib/tunnel/tep_batch.ts): the Worker
 * gives them lib/sys devices (client_batched.ts), the tests in-memory fakes
 * (test/helpers/fake_devices.ts).
 *
 * - {@link ClientOutBatch}: the DTI, a TUN with IFF_VNET_HDR and TSO, hands over vectors of
 *   packets; a 64 KiB TCP super-packet of the host arrives cut into segments of its gso_size
 *   (the DTI's MSS), as the kernel's GSO would have cut it (lib/net/gso.ts). Every segment
 *   goes through exactly the steps a packet read alone goes through: [on-demand queue] →
 *   NAPT (placeholder, port set; client_lease.ts) → `clientEncap` (anti-spoofing: the leased
 *   source; the port set; DF and path MTU, with the ICMPv4 error back into the DTI) → one
 *   vector to the TEP (sendmmsg).
 * - {@link ClientInBatch}: a vector of IPv4-in-IPv6 packets (recvmmsg) → `clientDecap` (the
 *   outer source must be the TEP, the inner destination the lease and its port set, ECN) →
 *   NAPT back → the GROs (lib/tunnel/tun_writer.ts), which write consecutive TCP segments of a
 *   flow as one super-packet (gro.ts) and consecutive UDP datagrams of a flow as one
 *   super-datagram (gro_udp.ts, when the DTI took TUN_F_USO4/6, Linux ≥ 6.2, and `udpGro`:
 *   `dstm client --udp-gro`; off by default, see {@link ClientBatchInit.udpGro}) into the DTI;
 *   flushed at the end of every batch. A packet that any check drops never reaches a GRO, so
 *   a coalesced packet carries only what the separate packets would have carried; the kernel
 *   cuts a super-datagram back into exactly those datagrams for the host's sockets.
 *
 * The lease comes from the main thread through ClientState; each loop rebuilds its context
 * when the state's generation changes (checked before and after every read). The clock is
 * read once per batch. Nothing is allocated per packet or per batch.
 *
 * @module
 */
import type { BatchDevice, TunnelBatchSocket } from "../net/device.ts";
import { IPv4Problem, ipv4Source, validateIPv4 } from "../net/ipv4.ts";
import { Counter } from "../tunnel/counters.ts";
import type { TcpCoalescer } from "../tunnel/gro.ts";
import type { UdpCoalescer } from "../tunnel/gro_udp.ts";
import { type ClientTranslator, Translation } from "../tunnel/napt.ts";
import { type ClientContext, clientDecap, clientEncap, Verdict } from "../tunnel/pipeline.ts";
import {
  type BatchLoopStats,
  buffers,
  countFailure,
  countReadFailure,
  SEGMENT_BYTES,
  SendVector,
} from "../tunnel/send_vector.ts";
import { tunWriter } from "../tunnel/tun_writer.ts";
import {
  type ClientLoopInit,
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

const WRONG_SOURCE = Counter["client-encap-drop-wrong-source"];

/** What both directions are built from (client_lease.ts), and the batch options. */
export interface ClientBatchInit extends ClientLoopInit {
  /** Packets per read at most. Default 128 out (a super-packet's segments), 64 in. */
  batchSize?: number;
  /** Coalesce TCP segments into the DTI (only when it takes super-packets). Default true. */
  gro?: boolean;
  /**
   * Coalesce UDP datagrams into the DTI too (only when it takes UDP super-datagrams, and with
   * `gro`). Default false: until a socket's receive cuts it, a super-datagram is one packet in
   * the host's stack, and the host's netfilter rules (length, rate, packet counts) would match
   * it instead of each datagram; the kernel's own UDP GRO is for sockets that ask (UDP_GRO).
   */
  udpGro?: boolean;
}

/** A packet built at offset 0 (an ICMP error, a RST) into the DTI, copied behind its headroom. */
export class DtiReplies {
  readonly #tun: BatchDevice;
  readonly #stats: BatchLoopStats;
  readonly #scratch: Uint8Array;

  constructor(tun: BatchDevice, stats: BatchLoopStats) {
    this.#tun = tun;
    this.#stats = stats;
    this.#scratch = new Uint8Array(tun.headroom + QUEUE_PACKET_BYTES);
  }

  write(buf: Uint8Array, length: number): void {
    const off = this.#tun.headroom;
    const s = this.#scratch;
    if (length > s.length - off) return;
    for (let i = 0; i < length; i++) s[off + i] = buf[i]!;
    const w = this.#tun.write(s, off, length, 0);
    if (w < 0) countFailure(this.#stats, w);
  }
}

/** DTI → TEP, in batches. One per Worker. */
export class ClientOutBatch {
  readonly stats: BatchLoopStats = { readErrors: 0, writeErrors: 0, lastError: 0 };
  readonly translator: ClientTranslator;
  readonly #init: ClientBatchInit;
  readonly #follower: LeaseFollower;
  readonly #tun: BatchDevice;
  readonly #needLease: () => void;
  readonly #replies: DtiReplies;
  readonly #offset: number;
  readonly #bufs: Uint8Array[];
  readonly #sizes: Int32Array;
  /** The vector handed to the tunnel socket: references into #bufs / the queue, never copies. */
  readonly #out: SendVector;
  readonly #spare: Uint8Array;
  readonly #queue: Uint8Array[];
  readonly #queued = new Int32Array(QUEUE_PACKETS);
  #queueLength = 0;
  #askedFor = -1;
  #sent = 0;
  #now = 0;
  #nowMs = 0;

  /** `needLease()` is called (once per generation) when on-demand packets wait for a lease. */
  constructor(
    init: ClientBatchInit,
    tun: BatchDevice,
    raw: TunnelBatchSocket,
    needLease: () => void = () => {},
  ) {
    this.#init = init;
    this.#follower = new LeaseFollower(init, true);
    this.translator = this.#follower.translator;
    this.#tun = tun;
    this.#needLease = needLease;
    this.#replies = new DtiReplies(tun, this.stats);
    const off = tun.headroom;
    this.#offset = off;
    // The first buffer takes any packet; the others take segments of a super-packet (the
    // device drops one whose segments would not fit).
    const n = init.batchSize ?? 128;
    this.#bufs = [new Uint8Array(off + 65536), ...buffers(n - 1, off + SEGMENT_BYTES)];
    this.#sizes = new Int32Array(n);
    this.#out = new SendVector(raw, n, off, this.stats);
    this.#spare = new Uint8Array(off + 65536);
    this.#queue = buffers(QUEUE_PACKETS, off + QUEUE_PACKET_BYTES);
  }

  /** Packets held for a lease (on-demand). */
  get queued(): number {
    return this.#queueLength;
  }

  /**
   * One batch: read, check, translate and send. Returns the packets read, 0 after the poll
   * timeout, or -errno (counted in {@link stats}).
   */
  step(): number {
    const lease = this.#follower.lease;
    this.#follower.follow();
    this.#sendHeld();
    const n = this.#tun.read(this.#bufs, this.#sizes, this.#offset);
    if (n <= 0) return n < 0 ? countReadFailure(this.stats, n) : n;
    // The lease may have arrived while we were blocked in read(): what was held for it goes
    // before what this read brought (the packets of a flow keep their order).
    this.#follower.follow();
    this.#sendHeld();
    if (lease.context) {
      this.#clock();
      const off = this.#offset;
      const fragments = this.translator.outFragments;
      for (let i = 0; i < n; i++) {
        this.#handle(this.#bufs[i]!, this.#sizes[i]!);
        // Fragments that came before their first fragment (fragments.ts) go now, after what
        // is queued (one at a time: they share the spare buffer).
        let m = fragments.popReleased(this.#spare, off, null, 0);
        if (m > 0) this.#send();
        for (; m > 0; m = fragments.popReleased(this.#spare, off, null, 0)) {
          this.#handle(this.#spare, m);
          this.#send();
        }
      }
      this.#send();
      this.#touch();
      return n;
    }
    if (!this.#init.onDemand) {
      this.#init.counters[NO_LEASE]! += n;
      return n;
    }
    for (let i = 0; i < n; i++) this.#hold(this.#bufs[i]!, this.#sizes[i]!);
    if (this.#askedFor !== lease.generation) {
      this.#askedFor = lease.generation;
      this.#needLease();
    }
    return n;
  }

  /** On-demand: once there is a lease, the packets held for it go (in the order they came). */
  #sendHeld(): void {
    if (!this.#follower.lease.context || this.#queueLength === 0) return;
    this.#clock();
    for (let i = 0; i < this.#queueLength; i++) this.#handle(this.#queue[i]!, this.#queued[i]!);
    this.#queueLength = 0;
    this.#send();
    this.#touch();
  }

  #clock(): void {
    this.#nowMs = Date.now();
    this.#now = (this.#nowMs / 1000) | 0;
  }

  #send(): void {
    this.#sent += this.#out.send();
  }

  #touch(): void {
    if (this.#sent === 0) return;
    this.#sent = 0;
    this.#init.state.touch(this.#now);
  }

  #hold(buf: Uint8Array, n: number): void {
    const c = this.#init.counters;
    if (this.#queueLength < QUEUE_PACKETS && n <= QUEUE_PACKET_BYTES) {
      const q = this.#queue[this.#queueLength]!;
      const off = this.#offset;
      q.set(buf.subarray(off, off + n), off); // rare: waiting for the first lease
      this.#queued[this.#queueLength++] = n;
      c[QUEUED]! += 1;
    } else c[QUEUE_FULL]! += 1;
  }

  /** One packet (a segment of a super-packet alike) at `buf[offset …]`: every check, then the vector. */
  #handle(buf: Uint8Array, n: number): void {
    const lease = this.#follower.lease;
    const c = this.#init.counters;
    const off = this.#offset;
    if (
      !checkOutbound(lease, this.translator, c, this.#replies, buf, off, n, this.#now, this.#nowMs)
    )
      return;
    const context = lease.context!;
    const out = this.#out;
    if (out.full) this.#send();
    const a = 16 * out.count;
    const tep6 = context.tep6;
    for (let i = 0; i < 16; i++) out.addrs[a + i] = tep6[i]!;
    out.add(buf, context.length, context.trafficClass, context.flowLabel);
  }
}

/**
 * Every check and rewrite of the out path on one packet at `buf[off, off + n)` with a lease
 * (`lease.context` set): NAPT for a shared lease (placeholder, port set; a RST or ICMPv4 3/13
 * into the DTI when no port is free) for the leased or placeholder source only (another
 * source, e.g. a LAN host a forwarding host routes into the DTI, is counted in
 * `client-encap-drop-wrong-source` before it can take a port of the set or be answered: with
 * `--kernel-encap` the kernel would forward that answer to the TEP), then `clientEncap` (anti-spoofing: the leased source;
 * the port set; DF and path MTU, with "fragmentation needed" into the DTI). True when the
 * packet may go (`lease.context.length` its IPv4 length); every drop is counted.
 * `countForward`: see clientEncap.
 */
export function checkOutbound(
  lease: Lease,
  translator: ClientTranslator,
  counters: Float64Array,
  replies: DtiReplies,
  buf: Uint8Array,
  off: number,
  n: number,
  now: number,
  nowMs: number,
  countForward = true,
): boolean {
  const context = lease.context!;
  // The translator reads the headers, so it needs them checked first; without translation
  // clientEncap checks them (once).
  if (lease.translate) {
    if (validateIPv4(buf, off, n) !== IPv4Problem.NONE) {
      counters[ENCAP_MALFORMED]! += 1;
      return false;
    }
    const source = ipv4Source(buf, off);
    if (
      source !== context.leasedIPv4 &&
      (translator.placeholder === 0 || source !== translator.placeholder)
    ) {
      counters[WRONG_SOURCE]! += 1;
      return false;
    }
    const result = translator.outbound(buf, off, n, now, nowMs);
    if (result !== Translation.OK) {
      countTranslation(counters, result);
      // No port free: tell the application (a RST or ICMPv4 3/13) rather than stay silent.
      if (translator.replyLength > 0) replies.write(translator.reply, translator.replyLength);
      return false;
    }
  }
  const verdict = clientEncap(context, buf, off, n, countForward);
  if (verdict === Verdict.ICMP) {
    // "Fragmentation needed" for the application (RFC 2473 §7.1), translated back like any
    // packet from the tunnel.
    if (
      lease.translate &&
      translator.inbound(context.reply, 0, context.replyLength, now) !== Translation.OK
    )
      return false;
    replies.write(context.reply, context.replyLength);
    return false;
  }
  return verdict === Verdict.FORWARD;
}

/** TEP → DTI, in batches. One per Worker. */
export class ClientInBatch {
  readonly stats: BatchLoopStats = { readErrors: 0, writeErrors: 0, lastError: 0 };
  readonly translator: ClientTranslator;
  readonly gro: TcpCoalescer | null;
  /** The UDP coalescer, or null (a DTI without UDP GSO, or GRO off). */
  readonly groUdp: UdpCoalescer | null;
  readonly #init: ClientBatchInit;
  readonly #follower: LeaseFollower;
  readonly #raw: TunnelBatchSocket;
  readonly #onLease: (context: ClientContext) => void;
  readonly #offset: number;
  readonly #bufs: Uint8Array[];
  readonly #sizes: Int32Array;
  readonly #addrs: Uint8Array;
  readonly #tclass: Uint8Array;
  readonly #spare: Uint8Array;
  readonly #writeOne: (buf: Uint8Array, off: number, len: number) => void;
  readonly #flush: () => void;
  #now = 0;
  #nowMs = 0;
  #delivered = 0;

  /** `onLease(context)` is called at each new lease (the Worker seeds the path MTU from the kernel's). */
  constructor(
    init: ClientBatchInit,
    raw: TunnelBatchSocket,
    tun: BatchDevice,
    onLease: (context: ClientContext) => void = () => {},
  ) {
    this.#init = init;
    this.#follower = new LeaseFollower(init, false);
    this.translator = this.#follower.translator;
    this.#raw = raw;
    this.#onLease = onLease;
    const off = tun.headroom;
    this.#offset = off;
    const n = init.batchSize ?? 64;
    this.#sizes = new Int32Array(n);
    this.#addrs = new Uint8Array(16 * n);
    this.#tclass = new Uint8Array(n);
    const writer = tunWriter(
      tun,
      this.stats,
      n,
      off + 65536,
      init.gro !== false,
      init.udpGro === true,
    );
    this.gro = writer.gro;
    this.groUdp = writer.groUdp;
    this.#flush = writer.flush;
    this.#bufs = writer.bufs;
    this.#spare = writer.spare;
    this.#writeOne = writer.add;
  }

  /** The current lease's context (null: none), e.g. for relaying ICMPv6 errors. */
  get context(): ClientContext | null {
    return this.#follower.lease.context;
  }

  /** The lease as this loop follows it (for client_lease.ts applicationError). */
  get lease() {
    return this.#follower.lease;
  }

  /** Follows the lease now (the Worker calls it before relaying errors too). */
  follow(): void {
    const lease = this.#follower.lease;
    if (this.#follower.follow() && lease.context) this.#onLease(lease.context);
  }

  /** One batch; returns the packets read, 0 after the poll timeout, or -errno. */
  step(): number {
    this.follow();
    const n = this.#raw.read(this.#bufs, this.#sizes, this.#offset, this.#addrs, this.#tclass);
    if (n <= 0) return n < 0 ? countReadFailure(this.stats, n) : n;
    this.follow();
    const context = this.#follower.lease.context;
    if (!context) {
      this.#init.counters[NO_LEASE]! += n;
      return n;
    }
    this.#nowMs = Date.now();
    this.#now = (this.#nowMs / 1000) | 0;
    const off = this.#offset;
    const fragments = this.translator.inFragments;
    for (let i = 0; i < n; i++) {
      this.#deliver(context, this.#bufs[i]!, this.#sizes[i]!, 16 * i, this.#tclass[i]!);
      // Fragments that came before their first fragment (fragments.ts) go now; their outer
      // traffic class is gone, so no CE mark is carried for them.
      for (let m = fragments.popReleased(this.#spare, off, null, 0); m > 0; ) {
        this.#deliver(context, this.#spare, m, 16 * i, 0);
        m = fragments.popReleased(this.#spare, off, null, 0);
      }
    }
    this.#flush();
    if (this.#delivered > 0) {
      this.#delivered = 0;
      this.#init.state.touch(this.#now);
    }
    return n;
  }

  /** Decapsulates, translates (shared lease) and hands one packet to the GRO / the DTI. */
  #deliver(
    context: ClientContext,
    buf: Uint8Array,
    n: number,
    addrAt: number,
    trafficClass: number,
  ): void {
    const off = this.#offset;
    if (clientDecap(context, buf, off, n, this.#addrs, addrAt, trafficClass) !== Verdict.FORWARD)
      return;
    if (this.#follower.lease.translate) {
      const result = this.translator.inbound(buf, off, context.length, this.#now, this.#nowMs);
      if (result !== Translation.OK) {
        countTranslation(this.#init.counters, result);
        return;
      }
    }
    this.#writeOne(buf, off, context.length);
    this.#delivered++;
  }
}
