/**
 * Generic receive offload for UDP, in software: coalesces consecutive datagrams of one UDP flow
 * into one IPv4 "super-datagram" that a TUN device with IFF_VNET_HDR and TUN_F_USO4 takes in
 * one write (gso_type UDP_L4, Linux ≥ 6.2); the kernel cuts it back into the same datagrams
 * (lib/net/udp_segment.ts does the same cut), as wireguard-go's tun/offload_linux.go does.
 * A run of 64-byte datagrams costs one write(2) instead of one each.
 *
 * The caller offers datagrams that passed every check of the pipeline, one by one, and
 * receives every packet back through its `emit` callback (gro.ts {@link GroEmit}), coalesced
 * or as it was, never reordered within a flow; `flush()` at the end of every batch emits what
 * is held. A datagram joins a train only as the kernel's `udp_gro_receive_segment` and
 * `inet_gro_receive` would let it:
 *
 * - IPv4 without options, header checksum right, not a fragment (DF alone is allowed);
 * - UDP length = IPv4 payload length (no padding), some payload, a non-zero checksum (the
 *   kernel refuses zero "for symmetry with GSO": the cut datagrams get a checksum) that
 *   verifies: a datagram with a wrong checksum is passed on as it is, never "repaired" by the
 *   checksum the kernel computes for each cut datagram;
 * - same addresses and ports (the 5-tuple), TOS (so ECN marks stay per datagram), TTL and DF
 *   as the train; IP identification = the last + 1 (mod 2^16), also with DF: the kernel's cut
 *   (`inet_gso_segment`) numbers the datagrams id, id + 1, …, so a train of equal ids (an
 *   unconnected Linux socket sends 0 with DF) would arrive renumbered, unlike one by one;
 * - payload = the train's first payload (`gsoSize`, the datagram size the kernel cuts at). The
 *   kernel would take a shorter last datagram, but checks a super-datagram against the next
 *   link's MTU by `gsoSize` (`skb_gso_validate_network_len`): with DF, a train of datagrams too
 *   big for that link would take a shorter one that fits down with it (one by one it gets
 *   through). So a shorter one starts a train of its own;
 * - at most {@link UDP_GRO_MAX_SEGMENTS} datagrams and 65,535 bytes per train.
 *
 * A datagram that cannot join (a fragment, options, a zero checksum…) first emits every train
 * between the same two addresses, so it never overtakes a held datagram of its flow.
 *
 * A train of one datagram is emitted as it came (`gsoSize` 0; a partial UDP checksum completed,
 * see {@link UdpHint}). A longer one carries the first datagram's headers with the total
 * length, a new IPv4 header checksum, and in the UDP checksum field the pseudo-header sum
 * only, marked partial: the kernel finishes every cut datagram's checksum (NEEDS_CSUM is
 * required for UDP_L4: `__udp_gso_segment`).
 *
 * Allocation-free after construction. Its trains may live in the ArrayBuffer of the caller's
 * read buffers (option `memory`): datagrams are then copied with `copyWithin`.
 *
 * @module
 */

import { checksumSum, checksumSumWords } from "../net/checksum.ts";
import { completePartialChecksum } from "../net/csum_partial.ts";
import { setIPv4TotalLength, writeIPv4HeaderChecksum } from "../net/ipv4.ts";
import { udpPseudoHeaderSum } from "../net/udp_segment.ts";
import type { GroEmit, GroStats } from "./gro.ts";
import { copyToTrain, sameIPv4Destination, trainSlot } from "./gro_slots.ts";

/**
 * What the caller of {@link UdpCoalescer.add} already knows of a datagram (bits; issue 14: the
 * checks below cost about a fifth of the decapsulating loop's time at 64 bytes).
 * - `HEADER_CHECKED`: its IPv4 header checksum was verified (and any later change to the
 *   header updated it incrementally), as `validateIPv4` in every pipeline does.
 * - `UDP_CHECKSUM_COMPUTED`: its UDP checksum was computed over the datagram as it is now
 *   (completed from the sender's CHECKSUM_PARTIAL state, lib/net/csum_partial.ts): right by
 *   construction, so verifying it again would only repeat the sum. One by one the datagram
 *   leaves with that same checksum, so a train carries nothing it would not.
 * - `IN_MEMORY`: the datagram lies in the coalescer's ArrayBuffer (option `memory`, e.g. the
 *   TCP coalescer's buffers): copied with a memmove, checksummed by 32-bit words.
 * - `UDP_CHECKSUM_PARTIAL`: its UDP checksum is still in the sender's CHECKSUM_PARTIAL state
 *   (the field holds the pseudo-header sum, lib/net/csum_partial.ts `hasPartialUdpChecksum`):
 *   nothing to verify, the checksum is yet to be computed. In a super-datagram the kernel
 *   computes every cut datagram's checksum (NEEDS_CSUM) over the same bytes; a datagram that
 *   leaves alone is completed here first (`completePartialChecksum`, what the caller would
 *   otherwise have done for every datagram): the same checksum either way, and a pass over
 *   the datagram saved for each one that joins a train.
 * Without a bit the coalescer checks for itself; callers pass only what they did.
 */
export const UdpHint = {
  HEADER_CHECKED: 1,
  UDP_CHECKSUM_COMPUTED: 2,
  IN_MEMORY: 4,
  UDP_CHECKSUM_PARTIAL: 8,
} as const;

/** Datagrams per train at most: the kernel's UDP GRO stops at 64 (UDP_GRO_CNT_MAX). */
export const UDP_GRO_MAX_SEGMENTS = 64;
const MAX_TRAIN = 65535;
/** Hint table size − 1 (a power of two, more than the trains a TEP holds). */
const HINT_MASK = 255;
const PROTO_UDP = 17;

export interface UdpCoalescerOptions {
  /** Trains held at once (flows in one batch); the least recently used is flushed. Default 8. */
  trains?: number;
  /** Bytes kept free in front of each train for the caller (a virtio_net_hdr). Default 0. */
  headroom?: number;
  /**
   * Where the trains live: at least {@link UdpCoalescer.bytes} bytes, ideally a view into the
   * ArrayBuffer of the caller's read buffers (copies are then memmoves). Default its own.
   */
  memory?: Uint8Array;
}

/** See the module comment. */
export class UdpCoalescer {
  readonly stats: GroStats = { merged: 0, superPackets: 0, single: 0 };
  readonly #emit: GroEmit;
  readonly #slots: number;
  readonly #stride: number;
  readonly #headroom: number;
  /** The trains' memory, and the whole ArrayBuffer it is in (for copyWithin). */
  readonly #mem: Uint8Array;
  readonly #whole: Uint8Array;
  /** #whole as 32-bit words (checksums of datagrams in that ArrayBuffer). */
  readonly #words: Int32Array;
  /** Per {@link flowKey} & HINT_MASK, the slot its train was last started in (a hint). */
  readonly #hint: Int32Array;
  readonly #views: Uint8Array[] = [];
  readonly #len: Int32Array; // 0 = free
  readonly #gsoSize: Int32Array;
  readonly #segments: Int32Array;
  readonly #lastId: Int32Array;
  readonly #used: Float64Array;
  /** Per train, its flow's {@link flowKey}. */
  readonly #key: Int32Array;
  /** Per train, 1 when its first datagram's checksum is partial (UdpHint.UDP_CHECKSUM_PARTIAL). */
  readonly #partial: Uint8Array;
  #clock = 0;

  /** Bytes of memory `trains` trains need with `headroom`. */
  static bytes(trains: number, headroom: number): number {
    return trains * (headroom + MAX_TRAIN + 1);
  }

  constructor(emit: GroEmit, opts: UdpCoalescerOptions = {}) {
    this.#emit = emit;
    this.#slots = opts.trains ?? 8;
    this.#headroom = opts.headroom ?? 0;
    this.#stride = this.#headroom + MAX_TRAIN + 1;
    const need = UdpCoalescer.bytes(this.#slots, this.#headroom);
    if (opts.memory && opts.memory.length < need)
      throw new Error(`UdpCoalescer: memory of ${opts.memory.length} bytes, ${need} needed`);
    this.#mem = opts.memory ?? new Uint8Array(need);
    this.#whole = new Uint8Array(this.#mem.buffer);
    this.#words = new Int32Array(this.#mem.buffer, 0, this.#whole.length >>> 2);
    this.#hint = new Int32Array(HINT_MASK + 1).fill(-1);
    for (let s = 0; s < this.#slots; s++)
      this.#views.push(this.#mem.subarray(s * this.#stride, (s + 1) * this.#stride));
    this.#len = new Int32Array(this.#slots);
    this.#gsoSize = new Int32Array(this.#slots);
    this.#segments = new Int32Array(this.#slots);
    this.#lastId = new Int32Array(this.#slots);
    this.#used = new Float64Array(this.#slots);
    this.#key = new Int32Array(this.#slots);
    this.#partial = new Uint8Array(this.#slots);
  }

  /**
   * Offers one IPv4 UDP packet `buf[off, off+len)` that passed every check; `hints`: what the
   * caller knows of it ({@link UdpHint} bits, default none).
   */
  add(buf: Uint8Array, off: number, len: number, hints = 0): void {
    if (!this.#eligible(buf, off, len, hints)) {
      if ((hints & UdpHint.UDP_CHECKSUM_PARTIAL) !== 0) completePartialChecksum(buf, off, len);
      this.#passOn(buf, off, len);
      return;
    }
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    const key = flowKey(buf, off);
    const slot = this.#findFlow(buf, off, key);
    if (slot >= 0) {
      if (this.#append(slot, buf, off, total - 28, hints)) return;
      this.#flushSlot(slot);
    }
    this.#start(buf, off, total, key, hints);
  }

  /** Emits every held train (call at the end of each batch). */
  flush(): void {
    for (let s = 0; s < this.#slots; s++) if (this.#len[s]! > 0) this.#flushSlot(s);
  }

  /**
   * Emits every train to the destination of the IPv4 packet at `buf[off …]` (at least 20
   * bytes): call it before writing an ICMP message to that host, which must not overtake its
   * datagrams (an error about one of its flows, RFC 792, from the peer or a router on the way).
   */
  flushTo(buf: Uint8Array, off: number): void {
    const t = this.#mem;
    for (let s = 0; s < this.#slots; s++) {
      const o = s * this.#stride + this.#headroom;
      if (this.#len[s]! > 0 && sameIPv4Destination(t, o, buf, off)) this.#flushSlot(s);
    }
  }

  /** A packet that cannot join: the trains between its two addresses go first, then it. */
  #passOn(buf: Uint8Array, off: number, len: number): void {
    if (len >= 20)
      for (let s = this.#find(buf, off, 20); s >= 0; s = this.#find(buf, off, 20))
        this.#flushSlot(s);
    this.stats.single++;
    this.#emit(buf, off, len, 0, 1, false);
  }

  /** A held train whose bytes 12 to `end` (addresses; with 24, ports too) are the packet's, or -1. */
  #find(buf: Uint8Array, off: number, end: number): number {
    for (let s = 0; s < this.#slots; s++) {
      if (this.#len[s] !== 0 && this.#holds(s, buf, off, end)) return s;
    }
    return -1;
  }

  /**
   * The held train of the datagram's flow (`key`: its {@link flowKey}), or -1: the slot the
   * key's hint names first (with many flows in turn, one look instead of a scan of every
   * train), else the trains whose key is the same, the bytes compared on a match.
   */
  #findFlow(buf: Uint8Array, off: number, key: number): number {
    const h = this.#hint[key & HINT_MASK]!;
    if (h >= 0 && this.#len[h] !== 0 && this.#key[h] === key && this.#holds(h, buf, off, 24))
      return h;
    for (let s = 0; s < this.#slots; s++) {
      if (this.#len[s] !== 0 && this.#key[s] === key && this.#holds(s, buf, off, 24)) return s;
    }
    return -1;
  }

  /** Whether train `s` has the packet's bytes 12 to `end`. */
  #holds(s: number, buf: Uint8Array, off: number, end: number): boolean {
    const t = this.#mem;
    const o = s * this.#stride + this.#headroom;
    let i = 12;
    while (i < end && t[o + i] === buf[off + i]) i++;
    return i === end;
  }

  /**
   * May this IPv4 packet join a UDP train (see the module comment)? Verifies the IPv4 header
   * checksum and the UDP checksum, but what `hints` says was done.
   */
  #eligible(buf: Uint8Array, off: number, len: number, hints: number): boolean {
    if (len < 29 || buf[off] !== 0x45 || buf[off + 9] !== PROTO_UDP) return false;
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    const udpLength = (buf[off + 24]! << 8) | buf[off + 25]!;
    if (total > len || udpLength !== total - 20 || udpLength <= 8) return false;
    if ((((buf[off + 6]! << 8) | buf[off + 7]!) & 0x3fff) !== 0) return false;
    if (buf[off + 26] === 0 && buf[off + 27] === 0) return false;
    if ((hints & UdpHint.HEADER_CHECKED) === 0 && checksumSum(buf, off, 20) !== 0xffff)
      return false;
    if ((hints & (UdpHint.UDP_CHECKSUM_COMPUTED | UdpHint.UDP_CHECKSUM_PARTIAL)) !== 0) return true;
    const pseudo = udpPseudoHeaderSum(buf, off, udpLength);
    const sum =
      (hints & UdpHint.IN_MEMORY) !== 0
        ? checksumSumWords(buf, off + 20, udpLength, pseudo, this.#words)
        : checksumSum(buf, off + 20, udpLength, pseudo);
    return sum === 0xffff;
  }

  #append(s: number, buf: Uint8Array, off: number, payload: number, hints: number): boolean {
    if (
      payload !== this.#gsoSize[s]! ||
      this.#len[s]! + payload > MAX_TRAIN ||
      this.#segments[s]! >= UDP_GRO_MAX_SEGMENTS
    )
      return false;
    const t = this.#mem;
    const o = s * this.#stride + this.#headroom;
    // TOS, flags (DF), TTL must match; the identification must follow.
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
    const at = this.#len[s]!;
    this.#copy(buf, off + 28, payload, o + at, hints);
    this.#len[s] = at + payload;
    this.#segments[s] = this.#segments[s]! + 1;
    this.#lastId[s] = id;
    this.#used[s] = ++this.#clock;
    this.stats.merged++;
    return true;
  }

  #start(buf: Uint8Array, off: number, total: number, key: number, hints: number): void {
    const s = trainSlot(this.#len, this.#used, this.#slots);
    if (this.#len[s]! > 0) this.#flushSlot(s);
    this.#copy(buf, off, total, s * this.#stride + this.#headroom, hints);
    this.#len[s] = total;
    this.#gsoSize[s] = total - 28;
    this.#segments[s] = 1;
    this.#lastId[s] = (buf[off + 4]! << 8) | buf[off + 5]!;
    this.#key[s] = key;
    this.#partial[s] = (hints & UdpHint.UDP_CHECKSUM_PARTIAL) !== 0 ? 1 : 0;
    this.#hint[key & HINT_MASK] = s;
    this.#used[s] = ++this.#clock;
  }

  /** Copies `buf[from, from+len)` to the trains' memory at `to`: a memmove when it can. */
  #copy(buf: Uint8Array, from: number, len: number, to: number, hints: number): void {
    if ((hints & UdpHint.IN_MEMORY) !== 0) {
      const at = buf.byteOffset + from;
      this.#whole.copyWithin(this.#mem.byteOffset + to, at, at + len);
    } else copyToTrain(this.#whole, this.#mem, buf, from, len, to);
  }

  #flushSlot(s: number): void {
    const o = s * this.#stride + this.#headroom;
    const len = this.#len[s]!;
    const segments = this.#segments[s]!;
    this.#len[s] = 0;
    const t = this.#mem;
    if (segments === 1) {
      if (this.#partial[s] === 1) completePartialChecksum(t, o, len);
      this.stats.single++;
      this.#emit(this.#views[s]!, this.#headroom, len, 0, 1, false);
      return;
    }
    setIPv4TotalLength(t, o, len);
    writeIPv4HeaderChecksum(t, o); // a 20-byte header: coalesced packets carry no options
    const udpLength = len - 20;
    t[o + 24] = udpLength >>> 8;
    t[o + 25] = udpLength;
    const pseudo = udpPseudoHeaderSum(t, o, udpLength);
    t[o + 26] = pseudo >>> 8;
    t[o + 27] = pseudo;
    this.stats.superPackets++;
    this.#emit(this.#views[s]!, this.#headroom, len, this.#gsoSize[s]!, segments, true);
  }
}

/**
 * A 32-bit key of the UDP flow of the IPv4 packet at `buf[off …]`: its addresses and ports
 * (bytes 12 to 23, a 20-byte header), mixed so that flows that differ in one port differ. A
 * filter before the byte comparison, never the comparison itself.
 */
function flowKey(buf: Uint8Array, off: number): number {
  let h = 0;
  for (let i = 12; i < 24; i += 4) {
    const w =
      (buf[off + i]! << 24) |
      (buf[off + i + 1]! << 16) |
      (buf[off + i + 2]! << 8) |
      buf[off + i + 3]!;
    h = Math.imul(h ^ w, 0x9e3779b1);
    h ^= h >>> 15;
  }
  return h;
}
