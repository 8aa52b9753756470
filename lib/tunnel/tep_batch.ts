/**
 * The TEP's two forwarding directions in batches (issue 14), over the device interfaces of
 * lib/net/device.ts only: the composition (forwarder_worker.ts) gives them lib/sys devices,
 * the tests in-memory fakes (test/helpers/fake_devices.ts).
 *
 * - {@link TepDecapBatch}: a vector of IPv4-in-IPv6 packets from the tunnel socket
 *   (recvmmsg) → `tepDecap` on every packet, each with its own outer source and traffic class,
 *   exactly as one by one → the packets it forwards go to the GROs, which write consecutive
 *   TCP segments of a flow as one super-packet (lib/tunnel/gro.ts) and consecutive UDP
 *   datagrams of a flow as one super-datagram (gro_udp.ts) into the TUN (when the device
 *   takes them) and everything else as it came, per flow in order; flushed at the end of
 *   every batch, but while the socket says more packets are already waiting (`pending`, the
 *   packet ring), for at most {@link HELD_BATCHES} batches: the kernel's GRO too flushes when
 *   its poll finds no more work (napi_complete). Longer trains, fewer TUN writes, and no
 *   waiting: the trains go out before the loop could wait for a packet. A packet that any
 *   check drops never reaches a GRO, so a coalesced packet carries only what the separate
 *   packets would have carried.
 * - {@link TepEncapBatch}: the TUN's packets (a super-packet the kernel handed over arrives
 *   already cut into segments by the device) → `tepEncap` on every segment → one vector to
 *   the tunnel socket (sendmmsg); ICMP errors go out through `sendIcmp4`.
 *
 * Fragments held until their first fragment came (fragments.ts) are replayed through the same
 * step right after the packet that released them, as the one-by-one loop does.
 *
 * Nothing is allocated per batch: buffers, vectors and metadata arrays are made once.
 *
 * @module
 */

import { completePartialChecksum } from "../net/csum_partial.ts";
import type { BatchDevice, TunnelBatchSocket } from "../net/device.ts";
import { writeIPv4Fragment } from "../net/ipv4_fragment.ts";
import { writeTcpSegment } from "../net/tcp_segment.ts";
import { BatchLookups } from "./batch_lookups.ts";
import { Counter } from "./counters.ts";
import type { TcpCoalescer } from "./gro.ts";
import { type UdpCoalescer, UdpHint } from "./gro_udp.ts";
import { type TepContext, tepDecap, tepEncap, tepSegmentCount, Verdict } from "./pipeline.ts";
import {
  type BatchLoopStats,
  buffers,
  countFailure,
  countReadFailure,
  SEGMENT_BYTES,
  SendVector,
} from "./send_vector.ts";

import { tunWriter } from "./tun_writer.ts";

export type { BatchLoopStats } from "./send_vector.ts";

const SEGMENTED = Counter["decap-tcp-segmented"];
/** Consecutive batches the GRO trains stay open while packets are pending (see the module comment). */
export const HELD_BATCHES = 4;
const DECAP_CHECKED = UdpHint.HEADER_CHECKED | UdpHint.IN_MEMORY;
const DECAP_COMPUTED = DECAP_CHECKED | UdpHint.UDP_CHECKSUM_COMPUTED;
const DECAP_PARTIAL = DECAP_CHECKED | UdpHint.UDP_CHECKSUM_PARTIAL;

export interface TepBatchOptions {
  /**
   * Packets per read at most. Default 256 decapsulating (datagrams of many interleaved flows
   * then still meet others of their flow in one batch; a buffer's untouched pages cost no
   * memory), 128 encapsulating.
   */
  batchSize?: number;
  /** The decapsulating loop's UDP trains (flows coalesced at once per batch). Default 64. */
  udpTrains?: number;
  /** Bytes per buffer, packet room after the headroom. Default 65,536 (any IPv4 packet). */
  bufferBytes?: number;
  /**
   * Coalesce TCP segments and UDP datagrams (each only when the TUN device takes such
   * super-packets). Default true.
   */
  gro?: boolean;
  /**
   * Decapsulating: sends the ICMPv6 source-policy error a tepDecap left in `tep.reply6` and
   * sets `tep.reply6Length` to 0 (pipeline.ts). Default: none sent.
   */
  sendIcmp6?: (tep: TepContext) => void;
}

/** IPv6 → IPv4, in batches. One per Worker. */
export class TepDecapBatch {
  readonly stats: BatchLoopStats = { readErrors: 0, writeErrors: 0, lastError: 0 };
  readonly gro: TcpCoalescer | null;
  readonly groUdp: UdpCoalescer | null;
  readonly #tep: TepContext;
  readonly #raw: TunnelBatchSocket;
  readonly #offset: number;
  readonly #bufs: Uint8Array[];
  readonly #sizes: Int32Array;
  readonly #addrs: Uint8Array;
  readonly #tclass: Uint8Array;
  readonly #spare: Uint8Array;
  readonly #spare6 = new Uint8Array(16);
  readonly #lookups = new BatchLookups();
  /** Batches read since the last flush. */
  #held = 0;

  constructor(
    tep: TepContext,
    raw: TunnelBatchSocket,
    tun: BatchDevice,
    opts: TepBatchOptions = {},
  ) {
    this.#tep = tep;
    this.#raw = raw;
    this.#offset = tun.headroom;
    const n = opts.batchSize ?? 256;
    const bytes = this.#offset + (opts.bufferBytes ?? 65536);
    this.#sizes = new Int32Array(n);
    this.#addrs = new Uint8Array(16 * n);
    this.#tclass = new Uint8Array(n);
    const gro = opts.gro !== false;
    const writer = tunWriter(tun, this.stats, n, bytes, gro, true, opts.udpTrains ?? 64);
    this.gro = writer.gro;
    this.groUdp = writer.groUdp;
    this.#flush = writer.flush;
    this.#bufs = writer.bufs;
    this.#spare = writer.spare;
    this.#writeOne = writer.add;
    this.#segment = new Uint8Array(bytes);
    this.#sendIcmp6 =
      opts.sendIcmp6 ??
      ((t) => {
        t.reply6Length = 0;
      });
    // Its TUN finishes checksums: a kernel peer's TSO packet goes over as it came, and its
    // UDP datagrams' partial checksums are left to the UDP GRO (gro_udp.ts UdpHint).
    tep.deferLargePartialChecksum = this.gro !== null;
    tep.deferPartialUdpChecksum = this.groUdp !== null;
    // A run of one flow: its binding lookups answered within the batch (batch_lookups.ts).
    tep.batchLookups = this.#lookups;
  }

  readonly #writeOne: (buf: Uint8Array, off: number, len: number, hints?: number) => void;
  readonly #flush: () => void;
  readonly #segment: Uint8Array;
  readonly #sendIcmp6: (tep: TepContext) => void;

  /**
   * A forwarded packet to the TUN. Larger than the IPv6 link could carry in one piece: a kernel
   * sender's TSO packet, whole (lib/net/tcp_segment.ts): to a GSO device as one super-packet at
   * the tunnel MTU's segment size, else cut here as the NIC would.
   */
  #write(buf: Uint8Array, off: number, len: number): void {
    const tep = this.#tep;
    const count = tepSegmentCount(tep, buf, off);
    if (count === 0) {
      // Left partial for a super-packet that cannot be one after all: finish it here.
      if (tep.partialChecksum) completePartialChecksum(buf, off, len);
      // Every packet here is one of the writer's buffers (its GROs' ArrayBuffer), with the
      // IPv4 header checksum verified by tepDecap (and kept right by its changes).
      this.#writeOne(
        buf,
        off,
        len,
        tep.udpChecksumPartial
          ? DECAP_PARTIAL
          : tep.checksumCompleted
            ? DECAP_COMPUTED
            : DECAP_CHECKED,
      );
      return;
    }
    tep.counters[SEGMENTED]! += 1;
    if (this.gro) {
      const ihl = (buf[off]! & 0x0f) << 2;
      const headers = ihl + ((buf[off + ihl + 12]! >>> 4) << 2);
      this.gro.addSuper(buf, off, len, tep.tunnelMtu - headers, count, tep.partialChecksum);
      return;
    }
    const seg = this.#segment;
    for (let i = 0; i < count; i++) {
      const n = writeTcpSegment(buf, off, len, tep.tunnelMtu, i, seg, this.#offset);
      this.#writeOne(seg, this.#offset, n);
    }
  }

  /**
   * One batch: read, check and forward. Returns the packets read, 0 after the poll timeout,
   * or -errno (counted in {@link stats}).
   */
  step(): number {
    const n = this.#raw.read(this.#bufs, this.#sizes, this.#offset, this.#addrs, this.#tclass);
    if (n <= 0) {
      if (this.#held > 0) this.#flushHeld();
      return n < 0 ? countReadFailure(this.stats, n) : n;
    }
    const tep = this.#tep;
    const off = this.#offset;
    this.#lookups.forget();
    for (let i = 0; i < n; i++) {
      const buf = this.#bufs[i]!;
      if (
        tepDecap(tep, buf, off, this.#sizes[i]!, this.#addrs, 16 * i, this.#tclass[i]!) ===
        Verdict.FORWARD
      )
        this.#write(buf, off, tep.length);
      else if (tep.reply6Length !== 0) this.#sendIcmp6(tep);
      for (let m = tep.decapFragments.popReleased(this.#spare, off, this.#spare6, 0); m > 0; ) {
        if (
          tepDecap(tep, this.#spare, off, m, this.#spare6, 0, this.#tclass[i]!) === Verdict.FORWARD
        )
          this.#write(this.#spare, off, tep.length);
        else if (tep.reply6Length !== 0) this.#sendIcmp6(tep);
        m = tep.decapFragments.popReleased(this.#spare, off, this.#spare6, 0);
      }
    }
    if (++this.#held < HELD_BATCHES && this.#raw.pending === true) return n;
    this.#flushHeld();
    return n;
  }

  #flushHeld(): void {
    this.#held = 0;
    this.#flush();
  }
}

/** IPv4 → IPv6, in batches. One per Worker. */
export class TepEncapBatch {
  readonly stats: BatchLoopStats = { readErrors: 0, writeErrors: 0, lastError: 0 };
  readonly #tep: TepContext;
  readonly #tun: BatchDevice;
  readonly #sendIcmp4: (buf: Uint8Array, off: number, len: number) => number;
  readonly #offset: number;
  readonly #bufs: Uint8Array[];
  readonly #sizes: Int32Array;
  /** The vector handed to the tunnel socket: references into #bufs, never copies. */
  readonly #out: SendVector;
  readonly #spare: Uint8Array;

  /**
   * `sendIcmp4(buf, off, len)` sends an IPv4 ICMP error the step built (a raw IPv4 socket:
   * through the TUN it would carry a local source); returns bytes or -errno.
   */
  constructor(
    tep: TepContext,
    raw: TunnelBatchSocket,
    tun: BatchDevice,
    sendIcmp4: (buf: Uint8Array, off: number, len: number) => number,
    opts: TepBatchOptions = {},
  ) {
    this.#tep = tep;
    this.#tun = tun;
    this.#sendIcmp4 = sendIcmp4;
    this.#offset = tun.headroom;
    // A super-packet of 64 KiB cut at a small MSS gives many segments: room for 128. The
    // first buffer takes any packet; the others take segments (the device drops a
    // super-packet whose segments would not fit).
    const n = opts.batchSize ?? 128;
    const bytes = this.#offset + (opts.bufferBytes ?? 65536);
    this.#bufs = [new Uint8Array(bytes), ...buffers(n - 1, this.#offset + SEGMENT_BYTES)];
    this.#sizes = new Int32Array(n);
    this.#out = new SendVector(raw, n, this.#offset, this.stats);
    this.#spare = new Uint8Array(bytes);
  }

  /** Buffers of inner IPv4 fragments (--fragment inner), made at the first packet to cut. */
  #fragmentBufs: Uint8Array[] = [];
  readonly #host6 = new Uint8Array(16);

  /**
   * `--fragment inner` (tepEncap set `innerFragments`): the packet in `buf` is cut into IPv4
   * fragments (lib/net/ipv4_fragment.ts), each sent in its own outer packet to the host
   * tepEncap wrote at `addrs[16 count]`. What is queued goes first, so order is kept and the
   * fragment buffers are free; the fragments go at once.
   */
  #sendInnerFragments(buf: Uint8Array): void {
    const tep = this.#tep;
    const out = this.#out;
    const off = this.#offset;
    this.#host6.set(out.addrs.subarray(16 * out.count, 16 * out.count + 16));
    out.send();
    const pieces = tep.innerFragments;
    // Each piece holds up to the tunnel MTU: above a segment's room with a jumbo --link-mtu.
    const room = off + Math.max(SEGMENT_BYTES, tep.tunnelMtu);
    while (this.#fragmentBufs.length < pieces) this.#fragmentBufs.push(new Uint8Array(room));
    for (let j = 0; j < pieces; j++) {
      const frag = this.#fragmentBufs[j]!;
      const n = writeIPv4Fragment(buf, off, tep.length, tep.innerMtu, j, frag, off);
      out.addrs.set(this.#host6, 16 * out.count);
      out.add(frag, n, tep.trafficClass, tep.flowLabel);
    }
    out.send();
  }

  /** One batch; returns the packets read, 0 after the poll timeout, or -errno. */
  step(): number {
    const n = this.#tun.read(this.#bufs, this.#sizes, this.#offset);
    if (n <= 0) return n < 0 ? countReadFailure(this.stats, n) : n;
    const tep = this.#tep;
    const off = this.#offset;
    for (let i = 0; i < n; i++) {
      this.#handle(this.#bufs[i]!, this.#sizes[i]!);
      // A first fragment may have released fragments that came before it: they go now, after
      // what is queued (one at a time: they share the spare buffer).
      let m = tep.encapFragments.popReleased(this.#spare, off, null, 0);
      if (m > 0) this.#out.send();
      for (; m > 0; m = tep.encapFragments.popReleased(this.#spare, off, null, 0)) {
        this.#handle(this.#spare, m);
        this.#out.send();
      }
    }
    this.#out.send();
    return n;
  }

  #handle(buf: Uint8Array, len: number): void {
    const tep = this.#tep;
    const out = this.#out;
    const v = tepEncap(tep, buf, this.#offset, len, out.addrs, 16 * out.count);
    if (v === Verdict.FORWARD || v === Verdict.FORWARD_FRAGMENT) {
      if (v === Verdict.FORWARD_FRAGMENT && tep.innerFragments > 0) this.#sendInnerFragments(buf);
      else out.add(buf, tep.length, tep.trafficClass, tep.flowLabel);
    } else if (v === Verdict.ICMP) {
      const w = this.#sendIcmp4(tep.reply, 0, tep.replyLength);
      if (w < 0) countFailure(this.stats, w);
    }
  }
}
