/**
 * Generic receive offload in software: coalesces consecutive, in-order TCP segments of one flow
 * into one IPv4 super-packet, so that a TUN device with IFF_VNET_HDR takes 64 KiB in one write
 * (the kernel re-segments it, if it must, exactly as the segments came: see lib/net/gso.ts).
 *
 * The caller offers packets that passed every check of the pipeline, one by one, and receives
 * every packet back through its `emit` callback, coalesced or as it was, in an order that never
 * reorders the packets of one flow: a packet of a flow whose train cannot take it flushes that
 * train first. `flush()` at the end of every batch emits what is held.
 *
 * A segment joins a train, as the kernel's `tcp_gro_receive` decides, only when:
 * - IPv4 without options, not a fragment, TCP, header checksum right, and its TCP checksum
 *   verifies (a segment with an unfinished or wrong checksum is passed on as it is, never
 *   "repaired" by a recomputed checksum);
 * - flags ACK, optionally PSH (PSH closes the train); no SYN, FIN, RST, URG, ECE, CWR;
 * - same addresses, ports, TOS (so ECN marks stay per segment), TTL, DF, TCP header length,
 *   data offset, window, acknowledgment number and option bytes as the train;
 * - sequence number = the train's next, IP identification = the last + 1 (mod 2^16), also with
 *   DF: the kernel cuts a super-packet into identifications id, id + 1, … (`inet_gso_segment`;
 *   a virtio_net_hdr cannot ask for SKB_GSO_TCP_FIXEDID), so a train of equal ones (a stack
 *   that numbers its atomic datagrams 0, RFC 6864 §4.1) would arrive renumbered, unlike one by
 *   one (as gro_udp.ts);
 * - payload ≤ the train's first payload (`gsoSize`); a shorter one closes the train;
 * - the train stays ≤ 65,535 bytes.
 *
 * A TCP packet of a shape no train takes (IPv4 options, a fragment, shorter than its headers)
 * first emits every train to its destination: a non-first fragment carries data where the
 * ports were, so only its addresses tell which trains may hold its flow.
 *
 * A train of one segment is emitted untouched (`gsoSize` 0). A longer one carries the first
 * segment's headers with the total length, the PSH of its last segment, a new IPv4 header
 * checksum and a full TCP checksum (from the segments' payload sums: each byte summed once).
 *
 * Allocation-free after construction: trains live in one buffer, their state in typed arrays.
 * The caller's packet buffers may live in the same ArrayBuffer ({@link TcpCoalescer.buffers},
 * option `buffers`): a segment is then copied into its train with `copyWithin` (a memmove, no
 * view object; measured: ~100 ns for 1,400 bytes against ~230 ns for `set(subarray(…))`, and a
 * JavaScript byte loop takes ~1–2 µs). Packets in other buffers are copied with
 * `set(subarray(…))`, which allocates a view.
 *
 * @module
 */

import { checksumSum } from "../net/checksum.ts";
import { tcpPseudoHeaderSum } from "../net/gso.ts";
import { setIPv4TotalLength, writeIPv4HeaderChecksum } from "../net/ipv4.ts";
import { copyToTrain, sameIPv4Destination, trainSlot } from "./gro_slots.ts";

/**
 * Receives every packet: `buf[off, off+len)`, an IPv4 packet; `gsoSize` > 0 for a coalesced
 * super-packet (its segments' payload size, all but the last), 0 for a single packet;
 * `segments` the number of packets it stands for. The buffer is reused after the call.
 */
export type GroEmit = (
  buf: Uint8Array,
  off: number,
  len: number,
  gsoSize: number,
  segments: number,
  partialChecksum: boolean,
) => void;

/** Largest IPv4 packet, and the room of one train. */
const MAX_TRAIN = 65535;
const TCP_FLAGS_COALESCE = 0x10 | 0x08; // ACK, PSH

/** Counts since construction (plain numbers, read by the caller for its counters). */
export interface GroStats {
  /** Segments that joined a train behind its first. */
  merged: number;
  /** Trains of two or more segments emitted. */
  superPackets: number;
  /** Packets emitted as they came (not TCP, not eligible, or alone in their train). */
  single: number;
}

export interface TcpCoalescerOptions {
  /** Trains held at once (flows in one batch); the least recently used is flushed. Default 8. */
  trains?: number;
  /**
   * Bytes kept free in front of each train for the caller (e.g. a virtio_net_hdr): trains are
   * emitted at this offset of their own view, so pass the offset the caller's packets are at.
   * Default 0.
   */
  headroom?: number;
  /**
   * Packet buffers for the caller, made in the trains' ArrayBuffer so that their segments are
   * copied without allocating: `count` buffers of `bytes` each ({@link TcpCoalescer.buffers}).
   * Default none.
   */
  buffers?: { count: number; bytes: number };
  /**
   * Bytes more in the same ArrayBuffer for another coalescer's trains (gro_udp.ts option
   * `memory`), as {@link TcpCoalescer.reserved}. Default 0.
   */
  reserve?: number;
}

/** See the module comment. */
export class TcpCoalescer {
  readonly stats: GroStats = { merged: 0, superPackets: 0, single: 0 };
  readonly #emit: GroEmit;
  readonly #slots: number;
  readonly #stride: number;
  readonly #headroom: number;
  readonly #buf: Uint8Array;
  /** The caller's buffers (option `buffers`), views into the same ArrayBuffer as `#buf`. */
  readonly buffers: readonly Uint8Array[];
  /** The `reserve` bytes (option), in the same ArrayBuffer as {@link buffers}. */
  readonly reserved: Uint8Array;
  /** Train `s` as its own view: emitted at offset `headroom` like the caller's packets. */
  readonly #views: Uint8Array[];
  readonly #len: Int32Array; // 0 = free
  readonly #gsoSize: Int32Array;
  readonly #segments: Int32Array;
  readonly #nextSeq: Float64Array;
  readonly #lastId: Int32Array;
  readonly #payloadSum: Float64Array;
  readonly #payloadLen: Int32Array;
  readonly #closed: Uint8Array;
  readonly #used: Float64Array;
  #clock = 0;

  constructor(emit: GroEmit, opts: TcpCoalescerOptions = {}) {
    this.#emit = emit;
    this.#slots = opts.trains ?? 8;
    this.#headroom = opts.headroom ?? 0;
    this.#stride = this.#headroom + MAX_TRAIN + 1;
    const trains = this.#slots * this.#stride;
    const count = opts.buffers?.count ?? 0;
    const bytes = opts.buffers?.bytes ?? 0;
    const reserve = opts.reserve ?? 0;
    // One ArrayBuffer: the trains first (#buf spans it all, so offsets into it are absolute),
    // then the reserved bytes, then the buffers.
    this.#buf = new Uint8Array(trains + reserve + count * bytes);
    this.reserved = this.#buf.subarray(trains, trains + reserve);
    const own: Uint8Array[] = [];
    const first = trains + reserve;
    for (let i = 0; i < count; i++)
      own.push(this.#buf.subarray(first + i * bytes, first + (i + 1) * bytes));
    this.buffers = own;
    this.#views = [];
    for (let s = 0; s < this.#slots; s++)
      this.#views.push(this.#buf.subarray(s * this.#stride, (s + 1) * this.#stride));
    this.#len = new Int32Array(this.#slots);
    this.#gsoSize = new Int32Array(this.#slots);
    this.#segments = new Int32Array(this.#slots);
    this.#nextSeq = new Float64Array(this.#slots);
    this.#lastId = new Int32Array(this.#slots);
    this.#payloadSum = new Float64Array(this.#slots);
    this.#payloadLen = new Int32Array(this.#slots);
    this.#closed = new Uint8Array(this.#slots);
    this.#used = new Float64Array(this.#slots);
  }

  /** Offers one IPv4 packet `buf[off, off+len)` that passed every check; see the module comment. */
  add(buf: Uint8Array, off: number, len: number): void {
    if (len < 40 || buf[off] !== 0x45 || buf[off + 9] !== 6) {
      // A TCP packet of a shape no train takes (IPv4 options, or shorter than a TCP header)
      // must not overtake the held segments of its flow: its destination's trains go first.
      if (len >= 20 && buf[off + 9] === 6) this.flushTo(buf, off);
      this.#single(buf, off, len);
      return;
    }
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    const tcp = off + 20;
    const tcpLen = (buf[tcp + 12]! >>> 4) << 2;
    if (
      total > len ||
      tcpLen < 20 ||
      20 + tcpLen > total ||
      (((buf[off + 6]! << 8) | buf[off + 7]!) & 0x3fff) !== 0
    ) {
      // As above: shorter than its TCP header says, or a fragment (RFC 791): a non-first one
      // has payload where the ports were, so its flow's train cannot be found by them (and
      // letting it pass would hand the receiver the packet it completes before that train).
      this.flushTo(buf, off);
      this.#single(buf, off, len);
      return;
    }
    const slot = this.#find(buf, off);
    const payload = total - 20 - tcpLen;
    const flags = buf[tcp + 13]!;
    const eligible =
      payload > 0 &&
      (flags & 0x10) !== 0 &&
      (flags & ~TCP_FLAGS_COALESCE) === 0 &&
      checksumSum(buf, off, 20) === 0xffff;
    // The payload's sum, and the segment's TCP checksum verified with it.
    let payloadSum = 0;
    let ok = eligible;
    if (ok) {
      payloadSum = checksumSum(buf, tcp + tcpLen, payload);
      ok =
        checksumSum(
          buf,
          tcp,
          tcpLen,
          tcpPseudoHeaderSum(buf, off, tcpLen + payload) + payloadSum,
        ) === 0xffff;
    }
    if (slot >= 0) {
      if (ok && this.#append(slot, buf, off, tcpLen, payload, payloadSum, flags)) return;
      this.#flushSlot(slot);
    }
    if (!ok) {
      this.#single(buf, off, len);
      return;
    }
    this.#start(buf, off, total, payload, payloadSum, flags);
  }

  /**
   * Passes on a TCP super-packet that is already whole (a kernel peer's TSO packet) with the
   * segment payload size it is to be cut at (and whether its checksum is still partial): its
   * flow's train, if any, is emitted first.
   */
  addSuper(
    buf: Uint8Array,
    off: number,
    len: number,
    gsoSize: number,
    segments: number,
    partialChecksum: boolean,
  ): void {
    // With IPv4 options the ports are not where #find reads them: its destination's trains.
    if (buf[off] !== 0x45) this.flushTo(buf, off);
    else {
      const slot = this.#find(buf, off);
      if (slot >= 0) this.#flushSlot(slot);
    }
    this.stats.superPackets++;
    this.#emit(buf, off, len, gsoSize, segments, partialChecksum);
  }

  /** Emits every held train (call at the end of each batch). */
  flush(): void {
    for (let s = 0; s < this.#slots; s++) if (this.#len[s]! > 0) this.#flushSlot(s);
  }

  /**
   * Emits every train to the destination of the IPv4 packet at `buf[off …]` (at least 20
   * bytes): call it before writing an ICMP message to that host, which must not overtake its
   * segments (an error about one of its flows, RFC 792, from the peer or a router on the way).
   */
  flushTo(buf: Uint8Array, off: number): void {
    const t = this.#buf;
    for (let s = 0; s < this.#slots; s++) {
      const o = s * this.#stride + this.#headroom;
      if (this.#len[s]! > 0 && sameIPv4Destination(t, o, buf, off)) this.#flushSlot(s);
    }
  }

  #single(buf: Uint8Array, off: number, len: number): void {
    this.stats.single++;
    this.#emit(buf, off, len, 0, 1, false);
  }

  /** The slot holding this packet's flow (addresses and ports), or -1. */
  #find(buf: Uint8Array, off: number): number {
    const t = this.#buf;
    for (let s = 0; s < this.#slots; s++) {
      if (this.#len[s] === 0) continue;
      const o = s * this.#stride + this.#headroom;
      let same = true;
      for (
        let i = 12;
        i < 24;
        i++ // source, destination, source port, destination port
      )
        if (t[o + i] !== buf[off + i]) {
          same = false;
          break;
        }
      if (same) return s;
    }
    return -1;
  }

  #append(
    s: number,
    buf: Uint8Array,
    off: number,
    tcpLen: number,
    payload: number,
    payloadSum: number,
    flags: number,
  ): boolean {
    if (this.#closed[s] || payload > this.#gsoSize[s]! || this.#len[s]! + payload > MAX_TRAIN)
      return false;
    const t = this.#buf;
    const o = s * this.#stride + this.#headroom;
    const tcp = off + 20;
    // TOS, DF/flags word, TTL must match; the identification must follow.
    if (
      t[o + 1] !== buf[off + 1] ||
      t[o + 6] !== buf[off + 6] ||
      t[o + 7] !== buf[off + 7] ||
      t[o + 8] !== buf[off + 8]
    )
      return false;
    const id = (buf[off + 4]! << 8) | buf[off + 5]!;
    const last = this.#lastId[s]!;
    if (id !== ((last + 1) & 0xffff)) return false;
    if ((t[o + 20 + 12]! >>> 4) << 2 !== tcpLen) return false;
    const seq =
      ((buf[tcp + 4]! << 24) | (buf[tcp + 5]! << 16) | (buf[tcp + 6]! << 8) | buf[tcp + 7]!) >>> 0;
    if (seq !== this.#nextSeq[s]) return false;
    // Acknowledgment number, data offset, window, options: byte for byte (flags apart).
    for (let i = 8; i < tcpLen; i++) {
      if (i === 13 || i === 16 || i === 17) continue; // flags, checksum
      if (t[o + 20 + i] !== buf[tcp + i]) return false;
    }
    const at = this.#len[s]!;
    this.#copy(buf, tcp + tcpLen, payload, o + at);
    // A payload that starts at an odd byte of the train adds its sum byte-swapped (RFC 1071 §2(B)).
    const add =
      this.#payloadLen[s]! & 1 ? ((payloadSum & 0xff) << 8) | (payloadSum >>> 8) : payloadSum;
    this.#payloadSum[s] = this.#payloadSum[s]! + add;
    this.#payloadLen[s] = this.#payloadLen[s]! + payload;
    this.#len[s] = at + payload;
    this.#segments[s] = this.#segments[s]! + 1;
    this.#nextSeq[s] = (seq + payload) >>> 0;
    this.#lastId[s] = id;
    this.#used[s] = ++this.#clock;
    if (flags & 0x08) {
      t[o + 20 + 13] = t[o + 20 + 13]! | 0x08;
      this.#closed[s] = 1;
    }
    if (payload < this.#gsoSize[s]!) this.#closed[s] = 1;
    this.stats.merged++;
    return true;
  }

  #start(
    buf: Uint8Array,
    off: number,
    total: number,
    payload: number,
    payloadSum: number,
    flags: number,
  ): void {
    const s = trainSlot(this.#len, this.#used, this.#slots);
    if (this.#len[s]! > 0) this.#flushSlot(s);
    const o = s * this.#stride + this.#headroom;
    this.#copy(buf, off, total, o);
    const tcp = off + 20;
    this.#len[s] = total;
    this.#gsoSize[s] = payload;
    this.#segments[s] = 1;
    this.#nextSeq[s] =
      ((((buf[tcp + 4]! << 24) | (buf[tcp + 5]! << 16) | (buf[tcp + 6]! << 8) | buf[tcp + 7]!) >>>
        0) +
        payload) >>>
      0;
    this.#lastId[s] = (buf[off + 4]! << 8) | buf[off + 5]!;
    this.#payloadSum[s] = payloadSum;
    this.#payloadLen[s] = payload;
    this.#closed[s] = flags & 0x08 ? 1 : 0;
    this.#used[s] = ++this.#clock;
  }

  /** Copies `buf[from, from+len)` to `#buf[to …]`: a memmove when `buf` is one of {@link buffers}. */
  #copy(buf: Uint8Array, from: number, len: number, to: number): void {
    copyToTrain(this.#buf, this.#buf, buf, from, len, to);
  }

  #flushSlot(s: number): void {
    const o = s * this.#stride + this.#headroom;
    const len = this.#len[s]!;
    const segments = this.#segments[s]!;
    this.#len[s] = 0;
    if (segments === 1) {
      this.stats.single++;
      this.#emit(this.#views[s]!, this.#headroom, len, 0, 1, false);
      return;
    }
    const t = this.#buf;
    setIPv4TotalLength(t, o, len);
    writeIPv4HeaderChecksum(t, o); // a 20-byte header: coalesced packets carry no options
    const tcp = o + 20;
    const tcpLen = (t[tcp + 12]! >>> 4) << 2;
    t[tcp + 16] = 0;
    t[tcp + 17] = 0;
    let sum = checksumSum(
      t,
      tcp,
      tcpLen,
      tcpPseudoHeaderSum(t, o, len - 20) + this.#payloadSum[s]!,
    );
    sum = (sum & 0xffff) + (sum >>> 16);
    const c = ~sum & 0xffff;
    t[tcp + 16] = c >>> 8;
    t[tcp + 17] = c;
    this.stats.superPackets++;
    this.#emit(this.#views[s]!, this.#headroom, len, this.#gsoSize[s]!, segments, false);
  }
}
