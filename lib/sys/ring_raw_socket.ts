/**
 * The TEP's receiving side with a packet ring (./packet_ring.ts) next to the raw IPv6 socket
 * (./raw6_batch.ts), as one {@link TunnelBatchSocket}: the ring carries the plain IPv4-in-IPv6
 * packets, the raw socket what the ring does not take (outer fragments after reassembly,
 * extension headers, 64 KiB TSO packets of a local sender). Each read takes from one of them,
 * alternating which is asked first, so that neither starves the other; when both are empty one
 * poll(2) waits on both. Sending is the raw socket's.
 *
 * @module
 */
import { SendsThrough } from "../net/device.ts";
import * as libc from "./libc.ts";
import { Errno } from "./libc.ts";
import type { PacketRing } from "./packet_ring.ts";
import type { Raw6Batch } from "./raw6_batch.ts";

export class RingRawSocket extends SendsThrough {
  readonly #ring: PacketRing;
  readonly #raw: Raw6Batch;
  readonly #timeoutMs: number;
  readonly #pollFds = new Uint8Array(16);
  #ringFirst = false;

  /** `raw` must not wait itself (pollTimeoutMs 0); this waits up to `pollTimeoutMs`. */
  constructor(ring: PacketRing, raw: Raw6Batch, pollTimeoutMs = 200) {
    super(raw);
    this.#ring = ring;
    this.#raw = raw;
    this.#timeoutMs = pollTimeoutMs;
    const v = new DataView(this.#pollFds.buffer);
    v.setInt32(0, ring.fd, true);
    v.setInt16(4, libc.POLLIN, true);
    v.setInt32(8, raw.fd, true);
    v.setInt16(12, libc.POLLIN, true);
  }

  /** See {@link TunnelBatchSocket.read}: 0 after the poll timeout. */
  read(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    this.#ringFirst = !this.#ringFirst;
    const n = this.#take(bufs, sizes, offset, addrs, trafficClass);
    if (n !== 0) return n;
    const ready = libc.poll(this.#pollFds, 2, this.#timeoutMs);
    if (ready <= 0) return ready === -Errno.EINTR ? 0 : ready;
    if ((this.#pollFds[14]! & libc.POLLERR) !== 0) this.#raw.errorPending = true;
    return this.#take(bufs, sizes, offset, addrs, trafficClass);
  }

  #take(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    if (this.#ringFirst) {
      const n = this.#ring.read(bufs, sizes, offset, addrs, trafficClass);
      if (n !== 0) return n;
      return this.#raw.read(bufs, sizes, offset, addrs, trafficClass);
    }
    const n = this.#raw.read(bufs, sizes, offset, addrs, trafficClass);
    if (n !== 0) return n;
    return this.#ring.read(bufs, sizes, offset, addrs, trafficClass);
  }
}
