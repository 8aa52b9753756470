/**
 * The packet device seen by the tunnel pipelines: a TUN device (the DTI, or the TEP's IPv4
 * side) or a raw socket. Modelled on wireguard-go's `tun.Device` (tun/tun.go): a handful of
 * methods, each with its contract. Implementations live in `lib/sys` (`TunDevice` in
 * `tun_linux.ts`, `Raw6Socket` in `raw6.ts`); test fakes live with the tests.
 *
 * Buffers belong to the caller and are reused: a device never keeps a reference to `buf`
 * after a call returns. The forwarding loops read at offset 0: the outer IPv6 header is never
 * in the buffer, because the raw IPv6 socket (protocol 4) strips it on receive and the kernel
 * builds it on send. The offset parameter lets a caller keep room in front of the packet.
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
