/**
 * The TUN side of a loop that forwards into a TUN in batches (the TEP's decapsulating loop,
 * tep_batch.ts; the client's inbound loop, lib/dataplane/client_batch.ts): its read buffers
 * and the GROs that write consecutive checked TCP segments of a flow as one super-packet
 * (gro.ts) and consecutive checked UDP datagrams of a flow as one super-datagram (gro_udp.ts)
 * when the device takes them. The read buffers live in the GROs' ArrayBuffer, so that
 * coalescing copies without allocating.
 *
 * @module
 */
import { completePartialChecksum } from "../net/csum_partial.ts";
import type { BatchDevice } from "../net/device.ts";
import { udpSegmentCount, writeUdpSegment } from "../net/udp_segment.ts";
import { type GroEmit, TcpCoalescer } from "./gro.ts";
import { UdpCoalescer, UdpHint } from "./gro_udp.ts";
import { type BatchLoopStats, buffers, countFailure } from "./send_vector.ts";

export interface TunWriter {
  /** The TCP coalescer, or null (a device without GSO, or GRO off). */
  readonly gro: TcpCoalescer | null;
  /** The UDP coalescer, or null (a device without UDP GSO, or GRO off). */
  readonly groUdp: UdpCoalescer | null;
  /** `count` read buffers of `bytes`. */
  readonly bufs: Uint8Array[];
  /** One more, for fragments released by a later packet (fragments.ts). */
  readonly spare: Uint8Array;
  /**
   * A packet that passed every check: to a GRO, or straight into the TUN. `hints`: what the
   * caller knows of a UDP datagram (gro_udp.ts {@link UdpHint}; default none). A datagram
   * with a partial checksum (`UDP_CHECKSUM_PARTIAL`) is completed unless it joins a
   * super-datagram: pass that hint only where {@link groUdp} is not null.
   */
  readonly add: (buf: Uint8Array, off: number, len: number, hints?: number) => void;
  /** Emits what the GROs hold (at the end of every batch). */
  readonly flush: () => void;
  /** Straight into the TUN (write errors counted in the loop's stats). */
  readonly write: GroEmit;
}

/** UDP trains held at once by default: flows per batch that coalesce. */
const UDP_TRAINS = 8;
/** -EINVAL (Linux): what a TUN answers a write whose offload metadata it does not take. */
const EINVAL = -22;
const ICMP = 1;

/**
 * See the module comment. `gro: false` writes every packet as it came; `udpGro: true` adds the
 * UDP GRO (the caller must then call {@link TunWriter.flush}, not only `gro.flush()`).
 */
export function tunWriter(
  tun: BatchDevice,
  stats: BatchLoopStats,
  count: number,
  bytes: number,
  gro: boolean,
  udpGro = false,
  udpTrains = UDP_TRAINS,
): TunWriter {
  // A kernel that took TUN_F_USO4 but refuses a UDP_L4 write after all: that super-datagram
  // goes as its datagrams, and UDP coalescing stops for good (never a datagram lost to it).
  let udpOn = true;
  let scratch: Uint8Array | null = null;
  const write: GroEmit = (buf, off, len, gsoSize, _segments, partial) => {
    const w = tun.write(buf, off, len, gsoSize, partial);
    if (w >= 0) return;
    if (w !== EINVAL || gsoSize === 0 || buf[off + 9] !== 17) {
      countFailure(stats, w);
      return;
    }
    udpOn = false;
    stats.lastError = w;
    scratch ??= new Uint8Array(tun.headroom + 65536);
    const n = udpSegmentCount(buf, off, len, gsoSize);
    for (let i = 0; i < n; i++) {
      const m = writeUdpSegment(buf, off, gsoSize, i, scratch, tun.headroom);
      const r = tun.write(scratch, tun.headroom, m, 0, false);
      if (r < 0) countFailure(stats, r);
    }
  };
  const udpBytes = tun.gsoUdp && gro && udpGro ? UdpCoalescer.bytes(udpTrains, tun.headroom) : 0;
  const tcp =
    tun.gso && gro
      ? new TcpCoalescer(write, {
          headroom: tun.headroom,
          buffers: { count: count + 1, bytes },
          reserve: udpBytes,
        })
      : null;
  const udp =
    tcp && udpBytes > 0
      ? new UdpCoalescer(write, {
          trains: udpTrains,
          headroom: tun.headroom,
          memory: tcp.reserved,
        })
      : null;
  const bufs = tcp ? tcp.buffers.slice() : buffers(count + 1, bytes);
  const spare = bufs.pop()!;
  let add: (b: Uint8Array, o: number, l: number, hints?: number) => void;
  // An ICMP message to a host never goes before the segments and datagrams held for it: one
  // by one it would come after them (an error about its flow, from the peer or a router).
  if (udp && tcp)
    add = (b, o, l, hints = 0) => {
      const protocol = b[o + 9];
      if (protocol !== 17) {
        if (protocol === ICMP && l >= 20) {
          udp.flushTo(b, o);
          tcp.flushTo(b, o);
        }
        tcp.add(b, o, l);
      } else if (udpOn) udp.add(b, o, l, hints);
      else {
        udp.flush(); // what it still holds goes first (as datagrams), so no flow reorders
        if ((hints & UdpHint.UDP_CHECKSUM_PARTIAL) !== 0) completePartialChecksum(b, o, l);
        write(b, o, l, 0, 1, false);
      }
    };
  else if (tcp)
    add = (b, o, l) => {
      if (b[o + 9] === ICMP && l >= 20) tcp.flushTo(b, o);
      tcp.add(b, o, l);
    };
  else add = (b, o, l) => write(b, o, l, 0, 1, false);
  const flush = () => {
    udp?.flush();
    tcp?.flush();
  };
  return { gro: tcp, groUdp: udp, bufs, spare, add, flush, write };
}
