/**
 * In-memory devices for the batched loops (lib/net/device.ts), so the TEP and client loops get
 * unit tests without root: a tunnel socket that hands out queued IPv4-in-IPv6 packets with
 * their outer source and records what is sent, and a TUN that hands out queued packets — a
 * TCP super-packet cut into segments by lib/net/gso.ts as the kernel's GSO would (a UDP
 * super-datagram into its datagrams by lib/net/udp_segment.ts), like lib/sys/tun_vnet.ts — and
 * records every write with its gso size; and a DTI for `--kernel-encap` that hands over whole
 * frames (virtio_net_hdr and packet) and keeps what is written back (the kernel's part).
 */
import type { FrameDevice } from "../../lib/dataplane/client_kernel_encap.ts";
import type { BatchDevice, TunnelBatchSocket } from "../../lib/net/device.ts";
import { tcpSegmentAt, tcpSegmentCount } from "../../lib/net/gso.ts";
import { udpSegmentCount, writeUdpSegment } from "../../lib/net/udp_segment.ts";

export interface Sent6 {
  packet: Uint8Array;
  dst6: Uint8Array;
  trafficClass: number;
  flowLabel: number;
}

/** A {@link TunnelBatchSocket} over queues. `batches` counts read/write calls that moved packets. */
export class FakeTunnelSocket implements TunnelBatchSocket {
  readonly fd = -1;
  readonly inbox: { packet: Uint8Array; src6: Uint8Array; trafficClass: number }[] = [];
  readonly sent: Sent6[] = [];
  readonly writeCalls: number[] = [];
  /** Says {@link pending} while its inbox holds packets (as the packet ring does); else absent. */
  tellsPending = false;
  /** The next read returns this -errno instead (once), when not 0. */
  failNext = 0;
  /** At most this many packets per read (a short read, as recvmmsg may return). */
  constructor(readonly perRead = 64) {}

  get pending(): boolean | undefined {
    return this.tellsPending ? this.inbox.length > 0 : undefined;
  }

  read(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    if (this.failNext !== 0) {
      const e = this.failNext;
      this.failNext = 0;
      return e;
    }
    let n = 0;
    while (n < Math.min(bufs.length, this.perRead) && this.inbox.length > 0) {
      const p = this.inbox.shift()!;
      bufs[n]!.set(p.packet, offset);
      sizes[n] = p.packet.length;
      addrs.set(p.src6, 16 * n);
      trafficClass[n] = p.trafficClass;
      n++;
    }
    return n;
  }

  write(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    count: number,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
    flowLabel: Int32Array,
  ): number {
    for (let i = 0; i < count; i++)
      this.sent.push({
        packet: bufs[i]!.slice(offset, offset + sizes[i]!),
        dst6: addrs.slice(16 * i, 16 * i + 16),
        trafficClass: trafficClass[i]!,
        flowLabel: flowLabel[i]!,
      });
    this.writeCalls.push(count);
    return count;
  }
}

export interface TunWrite {
  packet: Uint8Array;
  gsoSize: number;
  /** The bytes in front of the packet (the device's headroom) were free to overwrite. */
  headroom: number;
  /** The TCP checksum was left for the kernel to finish (NEEDS_CSUM). */
  partialChecksum: boolean;
}

/** A {@link BatchDevice} over queues; `inbox` entries with `gsoSize` > 0 are super-packets. */
export class FakeBatchTun implements BatchDevice {
  readonly fd = -1;
  readonly headroom: number;
  readonly inbox: { packet: Uint8Array; gsoSize: number }[] = [];
  readonly written: TunWrite[] = [];

  /**
   * Answer every UDP super-datagram write with -EINVAL (a kernel that took TUN_F_USO4 but
   * refuses the write after all).
   */
  refuseUdpGso = false;
  /** Writes refused (see {@link refuseUdpGso}). */
  refused = 0;

  /** `gsoUdp` (default: as `gso`): takes UDP super-datagrams, as a TUN with TUN_F_USO4. */
  constructor(
    readonly gso = true,
    headroom = 10,
    readonly gsoUdp = gso,
  ) {
    this.headroom = headroom;
  }

  read(bufs: readonly Uint8Array[], sizes: Int32Array, offset: number): number {
    const p = this.inbox.shift();
    if (!p) return 0;
    if (p.gsoSize === 0) {
      bufs[0]!.set(p.packet, offset);
      sizes[0] = p.packet.length;
      return 1;
    }
    const udp = p.packet[9] === 17;
    const count = udp
      ? udpSegmentCount(p.packet, 0, p.packet.length, p.gsoSize)
      : tcpSegmentCount(p.packet, 0, p.packet.length, p.gsoSize);
    if (count < 0 || count > bufs.length) return 0;
    for (let i = 0; i < count; i++)
      sizes[i] = udp
        ? writeUdpSegment(p.packet, 0, p.gsoSize, i, bufs[i]!, offset)
        : tcpSegmentAt(p.packet, 0, p.gsoSize, i, bufs[i]!, offset);
    return count;
  }

  write(
    buf: Uint8Array,
    offset: number,
    length: number,
    gsoSize: number,
    partialChecksum = false,
  ): number {
    if (offset < this.headroom) throw new Error(`offset ${offset} below the headroom`);
    if (gsoSize > 0 && !this.gso) throw new Error("super-packet written to a device without GSO");
    if (gsoSize > 0 && buf[offset + 9] === 17 && !this.gsoUdp)
      throw new Error("UDP super-datagram written to a device without UDP GSO");
    if (gsoSize > 0 && buf[offset + 9] === 17 && this.refuseUdpGso) {
      this.refused++;
      return -22;
    }
    if (partialChecksum && !this.gso)
      throw new Error("partial checksum to a device without offloads");
    this.written.push({
      packet: buf.slice(offset, offset + length),
      gsoSize,
      headroom: offset,
      partialChecksum,
    });
    return length;
  }
}

/**
 * A {@link FrameDevice} (lib/dataplane/client_kernel_encap.ts) over queues: `frames` are read
 * whole, what the loop writes back for the kernel to encapsulate lands in `back`.
 */
export class FakeFrameTun extends FakeBatchTun implements FrameDevice {
  readonly frames: Uint8Array[] = [];
  readonly back: Uint8Array[] = [];

  readFrame(frame: Uint8Array): number {
    const f = this.frames.shift();
    if (!f) return 0;
    frame.set(f);
    return f.length;
  }

  writeFrame(frame: Uint8Array, length: number): number {
    this.back.push(frame.slice(0, length));
    return length;
  }
}
