/**
 * A TUN device with IFF_VNET_HDR as a {@link BatchDevice}: every read(2) and write(2) carries
 * a 10-byte `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h, native byte order) in
 * front of the packet, so the kernel and dstm exchange 64 KiB TCP super-packets and
 * unfinished checksums instead of one system call per 1,500 bytes, as wireguard-go does
 * (tun/offload_linux.go).
 *
 * - Offloads: `TUNSETOFFLOAD` with TUN_F_CSUM | TUN_F_TSO4 (when `tso` is on) lets the kernel
 *   hand over TCP/IPv4 super-packets (gso_type TCPV4, gso_size) with the checksum left to us
 *   (NEEDS_CSUM: csum_start, csum_offset, the pseudo-header sum in the field). {@link read}
 *   cuts them into segments with lib/net/gso.ts and completes every NEEDS_CSUM checksum, so the
 *   caller sees ordinary packets with finished checksums.
 * - Writes: a plain packet goes with a zero header; a TCP super-packet coalesced by
 *   lib/tunnel/gro.ts (checksums finished) with gso_type TCPV4 and its gso_size, so the kernel
 *   forwards it as one packet and segments it only where it must.
 * - UDP (Linux ≥ 6.2): TUN_F_USO4 | TUN_F_USO6 (the kernel takes them only together,
 *   drivers/net/tun.c `set_offload`) lets dstm write a run of datagrams of one flow coalesced by
 *   lib/tunnel/gro_udp.ts as one super-datagram (gso_type UDP_L4, gso_size = the datagram
 *   size, NEEDS_CSUM at the UDP checksum), and the kernel may hand over such super-datagrams,
 *   cut here into their datagrams (lib/net/udp_segment.ts). An older kernel refuses the flags
 *   (EINVAL): the device then keeps TCP offloads only and says so in {@link VnetTunDevice.gsoUdp}.
 *
 * The header goes into the 10 bytes in front of the packet (`headroom`): callers read and
 * write at offset ≥ 10, so no copy is needed to add or strip it.
 *
 * @module
 */
import { checksumSum } from "../net/checksum.ts";
import type { BatchDevice } from "../net/device.ts";
import { tcpSegmentAt, tcpSegmentCount } from "../net/gso.ts";
import { udpSegmentCount, writeUdpSegment } from "../net/udp_segment.ts";
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";

/** sizeof(struct virtio_net_hdr). */
export const VNET_HDR_LEN = 10;
const TUNSETOFFLOAD = 0x400454d0;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_USO4 = 0x20;
const TUN_F_USO6 = 0x40;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_UDP_L4 = 5;
export const GSO_ECN = 0x80;

export interface VnetTunOptions {
  pollTimeoutMs?: number;
  /** Ask for TCP super-packets on read (TUN_F_TSO4). Default true. */
  tso?: boolean;
  /**
   * Ask for UDP segmentation offload (TUN_F_USO4/6): UDP super-datagrams both ways. Default
   * true; refused by the kernel (before 6.2), the device goes on without ({@link gsoUdp}).
   */
  uso?: boolean;
}

/** Counters of what {@link VnetTunDevice} did, read by the caller. */
export interface VnetTunStats {
  /** Super-packets read and cut. */
  gsoReads: number;
  /** Segments those gave. */
  gsoSegments: number;
  /** Packets read that could not be used (unknown gso type, malformed, too many segments). */
  readDrops: number;
  /** Super-packets written (gso_type TCPV4 or UDP_L4). */
  gsoWrites: number;
}

/** See the module comment. One per thread (it owns its staging buffer). */
export class VnetTunDevice implements BatchDevice {
  readonly fd: number;
  readonly headroom = VNET_HDR_LEN;
  readonly gso = true;
  /** The kernel took TUN_F_USO4/6: UDP super-datagrams may be written (and read). */
  readonly gsoUdp: boolean;
  readonly pollTimeoutMs: number;
  readonly stats: VnetTunStats = { gsoReads: 0, gsoSegments: 0, readDrops: 0, gsoWrites: 0 };
  readonly #stage = new Uint8Array(VNET_HDR_LEN + 65536);
  readonly #pollIn = new Uint8Array(8);
  readonly #pollOut = new Uint8Array(8);

  private constructor(fd: number, pollTimeoutMs: number, gsoUdp: boolean) {
    this.fd = fd;
    this.gsoUdp = gsoUdp;
    this.pollTimeoutMs = pollTimeoutMs;
    const a = new DataView(this.#pollIn.buffer);
    a.setInt32(0, fd, true);
    a.setInt16(4, libc.POLLIN, true);
    const b = new DataView(this.#pollOut.buffer);
    b.setInt32(0, fd, true);
    b.setInt16(4, libc.POLLOUT, true);
  }

  /**
   * Wraps a TUN fd opened with `vnetHeader: true` (lib/sys/tun_linux.ts openTun), possibly in
   * another thread, and sets its offloads (UDP's only when the kernel takes them). Throws a
   * {@link SysError} when the fd is not one.
   */
  static attach(fd: number, opts: VnetTunOptions = {}): VnetTunDevice {
    const r = libc.setNonBlocking(fd);
    if (r < 0) throw new SysError(`attach TUN fd ${fd}`, r, "not an open file descriptor");
    const flags = TUN_F_CSUM | (opts.tso === false ? 0 : TUN_F_TSO4);
    let uso = opts.uso !== false;
    let o = uso ? libc.ioctlValue(fd, TUNSETOFFLOAD, flags | TUN_F_USO4 | TUN_F_USO6) : -1;
    if (o < 0) {
      // EINVAL: a kernel without TUN UDP segmentation offload; the TCP offloads alone.
      uso = false;
      o = libc.ioctlValue(fd, TUNSETOFFLOAD, flags);
    }
    if (o < 0) throw new SysError("TUNSETOFFLOAD", o, "is the TUN opened with IFF_VNET_HDR?");
    return new VnetTunDevice(fd, opts.pollTimeoutMs ?? 200, uso);
  }

  /** See {@link BatchDevice.read}. One read(2); a super-packet gives its segments. */
  read(bufs: readonly Uint8Array[], sizes: Int32Array, offset: number): number {
    const stage = this.#stage;
    let n = libc.read(this.fd, stage, 0, stage.length);
    if (n === -Errno.EAGAIN) {
      const ready = libc.poll(this.#pollIn, 1, this.pollTimeoutMs);
      if (ready <= 0) return ready === -Errno.EINTR ? 0 : ready;
      n = libc.read(this.fd, stage, 0, stage.length);
      if (n === -Errno.EAGAIN) return 0;
    }
    if (n < 0) return n;
    const len = n - VNET_HDR_LEN;
    if (len <= 0) return 0;
    const flags = stage[0]!;
    const gsoType = stage[1]! & ~GSO_ECN;
    const gsoSize = stage[4]! | (stage[5]! << 8);
    if (gsoType === GSO_NONE) {
      if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        const start = stage[6]! | (stage[7]! << 8);
        const field = start + (stage[8]! | (stage[9]! << 8));
        if (!completeChecksum(stage, VNET_HDR_LEN, len, start, field)) {
          this.stats.readDrops++;
          return 0;
        }
      }
      bufs[0]!.set(stage.subarray(VNET_HDR_LEN, n), offset);
      sizes[0] = len;
      return 1;
    }
    const udp = gsoType === GSO_UDP_L4;
    const count =
      gsoType === GSO_TCPV4
        ? tcpSegmentCount(stage, VNET_HDR_LEN, len, gsoSize)
        : udp
          ? udpSegmentCount(stage, VNET_HDR_LEN, len, gsoSize)
          : -1;
    const ihl = (stage[VNET_HDR_LEN]! & 0x0f) << 2;
    const room = offset + ihl + 60 + gsoSize; // headers (TCP options at most 40) + a payload
    if (count < 0 || count > bufs.length || (count > 1 && room > bufs[count - 1]!.length)) {
      this.stats.readDrops++;
      return 0;
    }
    for (let i = 0; i < count; i++)
      sizes[i] = udp
        ? writeUdpSegment(stage, VNET_HDR_LEN, gsoSize, i, bufs[i]!, offset)
        : tcpSegmentAt(stage, VNET_HDR_LEN, gsoSize, i, bufs[i]!, offset);
    this.stats.gsoReads++;
    this.stats.gsoSegments += count;
    return count;
  }

  /**
   * One read(2) as the kernel hands it: `frame[0, 10)` the virtio_net_hdr, then the packet
   * (a super-packet stays whole, its checksum partial). Returns the bytes read with the
   * header, 0 after the poll timeout (or a short read), or -errno. For the kernel-encap out
   * path (lib/dataplane/client_kernel_encap.ts), which writes it back with {@link writeFrame}.
   */
  readFrame(frame: Uint8Array): number {
    let n = libc.read(this.fd, frame, 0, frame.length);
    if (n === -Errno.EAGAIN) {
      const ready = libc.poll(this.#pollIn, 1, this.pollTimeoutMs);
      if (ready <= 0) return ready === -Errno.EINTR ? 0 : ready;
      n = libc.read(this.fd, frame, 0, frame.length);
      if (n === -Errno.EAGAIN) return 0;
    }
    return n < 0 || n > VNET_HDR_LEN ? n : 0;
  }

  /**
   * Writes `frame[0, length)`, a virtio_net_hdr and its packet, as it is (a super-packet read
   * by {@link readFrame} goes back with its gso_type, gso_size and NEEDS_CSUM). Returns the
   * bytes written with the header, or -errno. A full queue waits up to the poll timeout once.
   */
  writeFrame(frame: Uint8Array, length: number): number {
    let w = libc.write(this.fd, frame, 0, length);
    if (w === -Errno.EAGAIN) {
      libc.poll(this.#pollOut, 1, this.pollTimeoutMs);
      w = libc.write(this.fd, frame, 0, length);
    }
    return w;
  }

  /** See {@link BatchDevice.write}. A full queue waits up to the poll timeout once. */
  write(
    buf: Uint8Array,
    offset: number,
    length: number,
    gsoSize: number,
    partialChecksum = false,
  ): number {
    const h = offset - VNET_HDR_LEN;
    buf.fill(0, h, offset);
    const ihl = (buf[offset]! & 0x0f) << 2;
    const udp = buf[offset + 9] === 17;
    if (partialChecksum) {
      // The TCP / UDP checksum field holds the pseudo-header sum: the kernel finishes it from
      // byte ihl (and for UDP_L4 must: __udp_gso_segment wants CHECKSUM_PARTIAL there).
      buf[h] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      buf[h + 6] = ihl;
      buf[h + 7] = ihl >>> 8;
      buf[h + 8] = udp ? 6 : 16;
    }
    if (gsoSize > 0) {
      const headers = udp ? ihl + 8 : ihl + ((buf[offset + ihl + 12]! >>> 4) << 2);
      buf[h + 1] = udp ? GSO_UDP_L4 : GSO_TCPV4;
      buf[h + 2] = headers;
      buf[h + 3] = headers >>> 8;
      buf[h + 4] = gsoSize;
      buf[h + 5] = gsoSize >>> 8;
      this.stats.gsoWrites++;
    }
    let w = libc.write(this.fd, buf, h, length + VNET_HDR_LEN);
    if (w === -Errno.EAGAIN) {
      libc.poll(this.#pollOut, 1, this.pollTimeoutMs);
      w = libc.write(this.fd, buf, h, length + VNET_HDR_LEN);
    }
    return w < 0 ? w : w - VNET_HDR_LEN;
  }
}

/**
 * Finishes a NEEDS_CSUM checksum (here and in the kernel-encap out path): the field at `pkt[off + field]` holds the pseudo-header sum,
 * the checksum covers `pkt[off + start, off + len)`. False when the offsets are out of range.
 */
export function completeChecksum(
  pkt: Uint8Array,
  off: number,
  len: number,
  start: number,
  field: number,
): boolean {
  if (start >= len || field + 2 > len) return false;
  let c = ~checksumSum(pkt, off + start, len - start) & 0xffff;
  if (c === 0 && pkt[off + 9] === 17) c = 0xffff; // UDP sends a zero sum as all ones (RFC 768)
  pkt[off + field] = c >>> 8;
  pkt[off + field + 1] = c;
  return true;
}
