/**
 * The packet devices the tunnel loops see, as interfaces only, below both lib/tunnel (which
 * uses them) and lib/sys (which implements them): so neither layer imports the other
 * (docs/architecture.md). Modelled on wireguard-go's `tun.Device` (tun/tun.go).
 *
 * - {@link PacketDevice}: one packet per call (the first data plane).
 * - {@link BatchDevice}: vectors of packets per read, `read(bufs, sizes, offset)` as
 *   wireguard-go's; a TUN with IFF_VNET_HDR (lib/sys/tun_vnet.ts) cuts the super-packets it
 *   reads into segments (GSO) and writes the super-packets a loop coalesced from checked
 *   segments (GRO, lib/tunnel/gro.ts), so a loop checks ordinary packets and the kernel sees
 *   few, large ones.
 * - {@link TunnelBatchSocket}: the IPv6 side of the tunnel in batches (recvmmsg/sendmmsg on a
 *   raw IPv6 socket for next header 4, lib/sys/raw6_batch.ts), with each packet's outer
 *   address, traffic class and flow label.
 *
 * Buffers belong to the caller and are reused: a device never keeps a reference to a buffer
 * after a call returns. `offset` leaves room in front of every packet: a device may write its
 * own header there (`headroom` bytes, e.g. a virtio_net_hdr), so `offset >= headroom`.
 * In-memory fakes for the tests are in test/helpers/fake_devices.ts.
 *
 * @module
 */

/**
 * One packet device, blocking with a timeout, used from one thread (one Worker). The timeout
 * lets a forwarding loop check its stop flag between reads.
 */
export interface PacketDevice {
  /** The file descriptor; valid until the device is closed. Another thread may wrap it too. */
  readonly fd: number;
  /**
   * Reads one packet into `buf` starting at `offset` (at most `buf.length - offset` bytes;
   * a longer packet is truncated). Returns its length, 0 when nothing arrived within the
   * poll timeout (or the wait was interrupted), or `-errno` on failure. Never throws.
   */
  read(buf: Uint8Array, offset: number): number;
  /**
   * Writes `buf[offset, offset+length)` as one packet. Returns the bytes written (all of
   * them: a packet is never split) or `-errno` on failure. Never throws.
   */
  write(buf: Uint8Array, offset: number, length: number): number;
}

/**
 * A TUN-like device that reads vectors of IP packets per call and writes single packets or
 * TCP super-packets; one thread uses it. (A TUN takes one packet per write(2) whatever the
 * API, so the write side is per packet; its batching is GSO: one write for many segments.)
 */
export interface BatchDevice {
  readonly fd: number;
  /** Bytes the device may write in front of each packet: callers pass `offset >= headroom`. */
  readonly headroom: number;
  /** True when {@link write} takes TCP/IPv4 super-packets (`gsoSize > 0`). */
  readonly gso: boolean;
  /**
   * True when {@link write} also takes UDP/IPv4 super-datagrams (`gsoSize > 0` on a UDP
   * packet, the datagram size: lib/tunnel/gro_udp.ts), and a read may cut one into datagrams.
   * Absent: false.
   */
  readonly gsoUdp?: boolean;
  /**
   * Reads packets into `bufs[i][offset …]`, lengths into `sizes[i]`, at most `bufs.length`
   * (one super-packet read from the kernel comes back as its segments, cut as the kernel
   * would: lib/net/gso.ts). Returns how many, 0 when nothing came within the poll timeout
   * (or a packet was dropped: too many segments, malformed offload metadata), or `-errno`.
   * Never throws.
   */
  read(bufs: readonly Uint8Array[], sizes: Int32Array, offset: number): number;
  /**
   * Writes `buf[offset, offset+length)`: one IPv4 packet, or with `gsoSize > 0` (only when
   * {@link gso}) a TCP super-packet that the kernel may segment into `gsoSize`-byte payloads
   * (a UDP one, only when {@link gsoUdp}: cut into datagrams of `gsoSize` payload bytes).
   * Checksums are finished, unless `partialChecksum` (only when {@link gso}): then the TCP or
   * UDP checksum field holds the pseudo-header sum and the kernel finishes it
   * (CHECKSUM_PARTIAL; a UDP super-datagram is always partial).
   * May overwrite `buf[offset - headroom, offset)`. Returns the bytes of the packet written or
   * `-errno`. Never throws.
   */
  write(
    buf: Uint8Array,
    offset: number,
    length: number,
    gsoSize: number,
    partialChecksum?: boolean,
  ): number;
}

/** The IPv6 side of a 4over6 tunnel in batches: inner IPv4 packets, outer metadata beside. */
export interface TunnelBatchSocket {
  readonly fd: number;
  /**
   * True when packets are already waiting (the next {@link read} returns some without waiting
   * or a system call); absent when the socket cannot tell that cheaply. The TEP's decapsulating
   * loop then keeps its GRO trains open across reads (lib/tunnel/tep_batch.ts).
   */
  readonly pending?: boolean;
  /**
   * Receives up to `bufs.length` packets: the inner IPv4 packet of packet `i` into
   * `bufs[i][offset …]`, its length into `sizes[i]`, its outer IPv6 source into
   * `addrs[16 i, 16 i + 16)` and its outer traffic class into `trafficClass[i]`. Returns how
   * many, 0 after the poll timeout, or `-errno`. Never throws.
   */
  read(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number;
  /**
   * Sends packet `i < count`, `bufs[i][offset, offset+sizes[i])`, inside IPv6 to
   * `addrs[16 i …]` with traffic class `trafficClass[i]` and flow label `flowLabel[i]`.
   * Returns the number sent (`count` when all went), or `-errno` when none did.
   */
  write(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    count: number,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
    flowLabel: Int32Array,
  ): number;
}

/**
 * A {@link TunnelBatchSocket} that receives its own way (a subclass's `read`) and sends
 * through `sender` as it is: the TEP's ring beside the raw socket (lib/sys/ring_raw_socket.ts),
 * the client's socket that refreshes the local sources before each batch
 * (lib/dataplane/client_attach.ts).
 */
export abstract class SendsThrough implements TunnelBatchSocket {
  readonly fd: number;
  readonly #sender: TunnelBatchSocket;

  constructor(sender: TunnelBatchSocket) {
    this.fd = sender.fd;
    this.#sender = sender;
  }

  abstract read(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number;

  /** See {@link TunnelBatchSocket.write}: the sender's. */
  write(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    count: number,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
    flowLabel: Int32Array,
  ): number {
    return this.#sender.write(bufs, sizes, count, offset, addrs, trafficClass, flowLabel);
  }
}
