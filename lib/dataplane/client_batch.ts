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
 *   NAPT back → the GRO (lib/tunnel/gro.ts), which writes consecutive TCP segments of a flow as
 *   one super-packet into the DTI; flushed at the end of every batch. A segment that any
 *   check drops never reaches the GRO, so a coalesced packet carries only what the separate
 *   packets would have carried.
 *
 * The lease comes from the main thread through ClientState; each loop rebuilds its context
 * when the state's generation changes (checked before and after every read). The clock is
 * read once per batch. Nothing is allocated per packet or per batch.
 *
 * @module
 */
import type { BatchDevice, TunnelBatchSocket } from "../net/device.ts";
import { IPv4Problem, validateIPv4 } from "../net/ipv4.ts";
import type { ClientState } from "../tunnel/client_state.ts";
import { Counter } from "../tunnel/counters.ts";
import { TcpCoalescer } from "../tunnel/gro.ts";
import { ClientTranslator, type NaptTable, Translation } from "../tunnel/napt.ts";
import { type ClientContext, clientDecap, clientEncap, Verdict } from "../tunnel/pipeline.ts";
import type { PathMtuTable } from "../tunnel/pmtu.ts";
import type { BatchLoopStats } from "../tunnel/tep_batch.ts";
import {
  countTranslation,
  type Lease,
  type LeaseOptions,
  QUEUE_PACKET_BYTES,
  QUEUE_PACKETS,
  refreshLease,
} from "./client_lease.ts";
import type { ForwarderInit } from "./forwarder.ts";

const QUEUED = Counter["client-queued"];
const QUEUE_FULL = Counter["client-drop-queue-full"];
const NO_LEASE = Counter["client-drop-no-lease"];
const ENCAP_MALFORMED = Counter["client-encap-drop-malformed"];
/** Room of a segment buffer: a segment of up to a 9,000-byte (jumbo) MTU, plus slack. */
const SEGMENT_BYTES = 9216;

/** What both directions are built from (the Worker attaches the shared tables). */
export interface ClientBatchInit {
  state: ClientState;
  napt: NaptTable;
  counters: Float64Array;
  onDemand: boolean;
  client?: ForwarderInit["client"];
  pathMtu: PathMtuTable | null;
  /** Packets per read at most. Default 128 out (a super-packet's segments), 64 in. */
  batchSize?: number;
  /** Coalesce TCP segments into the DTI (only when it takes super-packets). Default true. */
  gro?: boolean;
}

function buffers(count: number, bytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(new Uint8Array(bytes));
  return out;
}

/** A packet built at offset 0 (an ICMP error, a RST) into the DTI, copied behind its headroom. */
class DtiReplies {
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
    if (w < 0) {
      this.#stats.writeErrors++;
      this.#stats.lastError = w;
    }
  }
}

/** DTI → TEP, in batches. One per Worker. */
export class ClientOutBatch {
  readonly stats: BatchLoopStats = { readErrors: 0, writeErrors: 0, lastError: 0 };
  readonly translator: ClientTranslator;
  readonly #state: ClientState;
  readonly #counters: Float64Array;
  readonly #onDemand: boolean;
  readonly #options: LeaseOptions;
  readonly #tun: BatchDevice;
  readonly #raw: TunnelBatchSocket;
  readonly #needLease: () => void;
  readonly #replies: DtiReplies;
  readonly #lease: Lease = { generation: -1, context: null, translate: false };
  readonly #offset: number;
  readonly #bufs: Uint8Array[];
  readonly #sizes: Int32Array;
  /** The vector handed to the tunnel socket: references into #bufs / the queue, never copies. */
  readonly #out: Uint8Array[];
  readonly #outSizes: Int32Array;
  readonly #addrs: Uint8Array;
  readonly #tclass: Uint8Array;
  readonly #flow: Int32Array;
  readonly #spare: Uint8Array;
  readonly #queue: Uint8Array[];
  readonly #queued = new Int32Array(QUEUE_PACKETS);
  #queueLength = 0;
  #askedFor = -1;
  #count = 0;
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
    this.#state = init.state;
    this.#counters = init.counters;
    this.#onDemand = init.onDemand;
    this.#options = { client: init.client, pathMtu: init.pathMtu };
    this.translator = new ClientTranslator(init.napt, { counters: init.counters });
    this.#tun = tun;
    this.#raw = raw;
    this.#needLease = needLease;
    this.#replies = new DtiReplies(tun, this.stats);
    const off = tun.headroom;
    this.#offset = off;
    // The first buffer takes any packet; the others take segments of a super-packet (the
    // device drops one whose segments would not fit).
    const n = init.batchSize ?? 128;
    this.#bufs = [new Uint8Array(off + 65536), ...buffers(n - 1, off + SEGMENT_BYTES)];
    this.#sizes = new Int32Array(n);
    this.#out = this.#bufs.slice();
    this.#outSizes = new Int32Array(n);
    this.#addrs = new Uint8Array(16 * n);
    this.#tclass = new Uint8Array(n);
    this.#flow = new Int32Array(n);
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
    const lease = this.#lease;
    if (this.#state.generation !== lease.generation) this.#refresh();
    if (lease.context && this.#queueLength > 0) {
      this.#clock();
      for (let i = 0; i < this.#queueLength; i++) this.#handle(this.#queue[i]!, this.#queued[i]!);
      this.#queueLength = 0;
      this.#send();
      this.#touch();
    }
    const n = this.#tun.read(this.#bufs, this.#sizes, this.#offset);
    if (n <= 0) {
      if (n < 0) {
        this.stats.readErrors++;
        this.stats.lastError = n;
      }
      return n;
    }
    // The lease may have arrived while we were blocked in read().
    if (this.#state.generation !== lease.generation) this.#refresh();
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
    if (!this.#onDemand) {
      this.#counters[NO_LEASE]! += n;
      return n;
    }
    for (let i = 0; i < n; i++) this.#hold(this.#bufs[i]!, this.#sizes[i]!);
    if (this.#askedFor !== lease.generation) {
      this.#askedFor = lease.generation;
      this.#needLease();
    }
    return n;
  }

  #refresh(): void {
    refreshLease(
      this.#lease,
      this.#state,
      this.translator,
      this.#counters,
      this.#onDemand,
      true,
      this.#options,
    );
  }

  #clock(): void {
    this.#nowMs = Date.now();
    this.#now = (this.#nowMs / 1000) | 0;
  }

  #touch(): void {
    if (this.#sent === 0) return;
    this.#sent = 0;
    this.#state.touch(this.#now);
  }

  #hold(buf: Uint8Array, n: number): void {
    const c = this.#counters;
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
    const lease = this.#lease;
    const context = lease.context!;
    const off = this.#offset;
    const translator = this.translator;
    // The translator reads the headers, so it needs them checked first; without translation
    // clientEncap checks them (once).
    if (lease.translate) {
      if (validateIPv4(buf, off, n) !== IPv4Problem.NONE) {
        this.#counters[ENCAP_MALFORMED]! += 1;
        return;
      }
      const result = translator.outbound(buf, off, n, this.#now, this.#nowMs);
      if (result !== Translation.OK) {
        countTranslation(this.#counters, result);
        // No port free: tell the application (a RST or ICMPv4 3/13) rather than stay silent.
        if (translator.replyLength > 0)
          this.#replies.write(translator.reply, translator.replyLength);
        return;
      }
    }
    const verdict = clientEncap(context, buf, off, n);
    if (verdict === Verdict.ICMP) {
      // "Fragmentation needed" for the application (RFC 2473 §7.1), translated back like any
      // packet from the tunnel.
      if (
        lease.translate &&
        translator.inbound(context.reply, 0, context.replyLength, this.#now) !== Translation.OK
      )
        return;
      this.#replies.write(context.reply, context.replyLength);
      return;
    }
    if (verdict !== Verdict.FORWARD) return;
    if (this.#count === this.#out.length) this.#send();
    const k = this.#count;
    this.#out[k] = buf;
    this.#outSizes[k] = context.length;
    const a = 16 * k;
    const tep6 = context.tep6;
    for (let i = 0; i < 16; i++) this.#addrs[a + i] = tep6[i]!;
    this.#tclass[k] = context.trafficClass;
    this.#flow[k] = context.flowLabel;
    this.#count = k + 1;
  }

  #send(): void {
    const k = this.#count;
    if (k === 0) return;
    this.#count = 0;
    const w = this.#raw.write(
      this.#out,
      this.#outSizes,
      k,
      this.#offset,
      this.#addrs,
      this.#tclass,
      this.#flow,
    );
    if (w > 0) this.#sent += w;
    if (w < 0) this.#fail(w);
    else if (w < k) this.#fail(-11); // some refused (EAGAIN or a per-packet error)
  }

  #fail(code: number): void {
    this.stats.writeErrors++;
    this.stats.lastError = code;
  }
}

/** TEP → DTI, in batches. One per Worker. */
export class ClientInBatch {
  readonly stats: BatchLoopStats = { readErrors: 0, writeErrors: 0, lastError: 0 };
  readonly translator: ClientTranslator;
  readonly gro: TcpCoalescer | null;
  readonly #state: ClientState;
  readonly #counters: Float64Array;
  readonly #onDemand: boolean;
  readonly #options: LeaseOptions;
  readonly #tun: BatchDevice;
  readonly #raw: TunnelBatchSocket;
  readonly #onLease: (context: ClientContext) => void;
  readonly #lease: Lease = { generation: -1, context: null, translate: false };
  readonly #offset: number;
  readonly #bufs: Uint8Array[];
  readonly #sizes: Int32Array;
  readonly #addrs: Uint8Array;
  readonly #tclass: Uint8Array;
  readonly #spare: Uint8Array;
  readonly #writeOne: (buf: Uint8Array, off: number, len: number) => void;
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
    this.#state = init.state;
    this.#counters = init.counters;
    this.#onDemand = init.onDemand;
    this.#options = { client: init.client, pathMtu: init.pathMtu };
    this.translator = new ClientTranslator(init.napt, { counters: init.counters });
    this.#raw = raw;
    this.#tun = tun;
    this.#onLease = onLease;
    const off = tun.headroom;
    this.#offset = off;
    const n = init.batchSize ?? 64;
    this.#sizes = new Int32Array(n);
    this.#addrs = new Uint8Array(16 * n);
    this.#tclass = new Uint8Array(n);
    const write = (
      buf: Uint8Array,
      o: number,
      len: number,
      gsoSize: number,
      _segments: number,
      partial: boolean,
    ) => {
      const w = this.#tun.write(buf, o, len, gsoSize, partial);
      if (w < 0) {
        this.stats.writeErrors++;
        this.stats.lastError = w;
      }
    };
    // The read buffers (and the spare for released fragments) live with the GRO's trains, so
    // that coalescing copies without allocating (gro.ts).
    const bytes = off + 65536;
    this.gro =
      tun.gso && init.gro !== false
        ? new TcpCoalescer(write, { headroom: off, buffers: { count: n + 1, bytes } })
        : null;
    const bufs = this.gro ? this.gro.buffers.slice() : buffers(n + 1, bytes);
    this.#spare = bufs.pop()!;
    this.#bufs = bufs;
    this.#writeOne = this.gro
      ? (b, o, l) => this.gro!.add(b, o, l)
      : (b, o, l) => write(b, o, l, 0, 1, false);
  }

  /** The current lease's context (null: none), e.g. for relaying ICMPv6 errors. */
  get context(): ClientContext | null {
    return this.#lease.context;
  }

  /** True when the current lease translates (NAPT or on-demand placeholder). */
  get translate(): boolean {
    return this.#lease.translate;
  }

  /** Follows the lease now (the Worker calls it before relaying errors too). */
  follow(): void {
    if (this.#state.generation === this.#lease.generation) return;
    refreshLease(
      this.#lease,
      this.#state,
      this.translator,
      this.#counters,
      this.#onDemand,
      false,
      this.#options,
    );
    if (this.#lease.context) this.#onLease(this.#lease.context);
  }

  /** One batch; returns the packets read, 0 after the poll timeout, or -errno. */
  step(): number {
    this.follow();
    const n = this.#raw.read(this.#bufs, this.#sizes, this.#offset, this.#addrs, this.#tclass);
    if (n <= 0) {
      if (n < 0) {
        this.stats.readErrors++;
        this.stats.lastError = n;
      }
      return n;
    }
    this.follow();
    const context = this.#lease.context;
    if (!context) {
      this.#counters[NO_LEASE]! += n;
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
    this.gro?.flush();
    if (this.#delivered > 0) {
      this.#delivered = 0;
      this.#state.touch(this.#now);
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
    if (this.#lease.translate) {
      const result = this.translator.inbound(buf, off, context.length, this.#now, this.#nowMs);
      if (result !== Translation.OK) {
        countTranslation(this.#counters, result);
        return;
      }
    }
    this.#writeOne(buf, off, context.length);
    this.#delivered++;
  }
}
