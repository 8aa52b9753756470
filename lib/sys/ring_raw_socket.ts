/**
 * The TEP's receiving side with a packet ring (./packet_ring.ts) next to the raw IPv6 socket
 * (./raw6_batch.ts), as one {@link TunnelBatchSocket}: the ring carries the plain IPv4-in-IPv6
 * packets, the raw socket what the ring does not take (outer fragments after reassembly,
 * extension headers, 64 KiB TSO packets of a local sender). Each read takes from one of them:
 * the ring (a memory read, no system call), and the raw socket (a recvmmsg(2)) when the poll(2)
 * that waits on both says it has something, and otherwise first once the ring has handed over
 * {@link RAW_FIRST_AFTER} packets since it was last read or looked at by a poll, so that a busy
 * ring never starves it (about 1 ms at 1 Mpps). A poll that finds
 * the raw socket readable while the ring has packets too hands the ring's over and reads the
 * raw socket's at the next read. (Asking the raw socket first at every other read cost a
 * system call that found nothing per two batches of the ring's; at every 16th read, whether a
 * poll had just looked or not, 8,300 such calls a second at iperf3's 64-byte UDP, a few
 * packets per read: issue 14.)
 * Where the ring stopped at the mark of an outer fragment ({@link PacketRing.rawDue}), the
 * raw socket is asked for one packet first: the one that fragment completed, which came
 * before the ring's next frames (one by one, without the ring, the kernel's order); and the
 * raw socket's turn waits while such a mark is still ahead in the ring
 * ({@link PacketRing.markAhead}), so that the packet never goes before the frames in front
 * of its mark. Sending is the raw socket's.
 *
 * Naps (NAPI-like, issue 14): when a read of the ring returned fewer than {@link NAP_BELOW}
 * packets of fewer than {@link NAP_BELOW_BYTES} bytes in all (so never after a TSO packet of
 * a bulk TCP flow, whose batches are a few packets of 64 KiB: napping there left the reader
 * idle while a fast flow waited, 14.2 → 9.8 Gbit/s in one tcp1 run), the next read first
 * waits `napUs` µs on the raw socket alone (ppoll(2); the ring's packets do not wake it) and
 * then reads the ring, rather than reading it again at once or waking on its next packet.
 * At a moderate rate (iperf3's 64-byte UDP: a few packets per read, the ring seldom empty
 * after one) the reader otherwise paid a TUN write and a loop turn per 5–10 packets (napping
 * only when a read left the ring empty: still 6 per write on a quiet machine); the nap lets
 * a batch of up to rate × napUs packets gather (45–55 per write) and leaves the CPU
 * meanwhile to others (the IPv4 receiver on the same CPU). {@link pending} is false before a
 * nap, so that a loop holding coalesced trains writes them first. Only a reader that has
 * worked less than half a nap's time since it last waited naps: one busy more than a third
 * of the time (a flood) keeps reading, as it did before naps (napping at any load, the
 * 64-flow flood forwarded 843k instead of 985k pps, 8 % lost, with the TEP at 66 % CPU: the
 * CPU given up seems to come back late, after a CPU hog's time slice, while the ring fills;
 * with "less than a nap's time" still 5–13 % lost against 0–6 % at half). A packet
 * waits at most `napUs` plus the thread's timer slack (and its batch's processing): a lone
 * packet (a ping) is read when it comes, as before, since a nap follows only a read that
 * found packets, and a nap that finds nothing ends the naps until the next packet wakes the
 * poll. The raw socket's packets end a nap at once.
 *
 * @module
 */
import { SendsThrough } from "../net/device.ts";
import * as libc from "./libc.ts";
import { Errno } from "./libc.ts";
import type { PacketRing } from "./packet_ring.ts";
import type { Raw6Batch } from "./raw6_batch.ts";

/**
 * Packets from the ring after which the raw socket is asked first, unless a poll looked at it
 * in between (see the module comment).
 */
export const RAW_FIRST_AFTER = 1024;

/**
 * A read of fewer ring packets than this, of fewer than {@link NAP_BELOW_BYTES} bytes, the
 * ring then empty, is followed by a nap.
 */
export const NAP_BELOW = 32;
/** See {@link NAP_BELOW}: IPv4 bytes of a read (the sizes it returns) at most. */
export const NAP_BELOW_BYTES = 16384;

/** A read of `n` packets (`sizes`) that a nap may follow: see {@link NAP_BELOW}. */
function small(n: number, sizes: Int32Array): boolean {
  if (n >= NAP_BELOW) return false;
  let bytes = 0;
  for (let i = 0; i < n; i++) bytes += sizes[i]!;
  return bytes < NAP_BELOW_BYTES;
}

export class RingRawSocket extends SendsThrough {
  readonly #ring: PacketRing;
  readonly #raw: Raw6Batch;
  readonly #timeoutMs: number;
  readonly #pollFds = new Uint8Array(16);
  /** The raw socket's pollfd alone (a nap's). */
  readonly #napFd = new Uint8Array(8);
  readonly #napNs: number;
  /** A nap before the next read (see the module comment). */
  #napNext = false;
  /** When the reader last came back from a wait (a nap or a poll), ms of `#now`. */
  #awake: number;
  readonly #now: () => number;
  /** Packets from the ring since the raw socket was last read or looked at by a poll. */
  #unseen = 0;
  /** The caller's first buffer alone (a read of one packet), and the array it was taken from. */
  #one: Uint8Array[] = [];
  #oneOf: readonly Uint8Array[] | null = null;

  /**
   * `raw` must not wait itself (pollTimeoutMs 0); this waits up to `pollTimeoutMs`, and naps
   * `napUs` µs (0: never; see the module comment).
   */
  constructor(
    ring: PacketRing,
    raw: Raw6Batch,
    pollTimeoutMs = 200,
    napUs = 0,
    now: () => number = () => performance.now(),
  ) {
    super(raw);
    this.#ring = ring;
    this.#raw = raw;
    this.#timeoutMs = pollTimeoutMs;
    this.#napNs = Math.max(0, Math.round(napUs * 1000));
    this.#now = now;
    this.#awake = now();
    const v = new DataView(this.#pollFds.buffer);
    v.setInt32(0, ring.fd, true);
    v.setInt16(4, libc.POLLIN, true);
    v.setInt32(8, raw.fd, true);
    v.setInt16(12, libc.POLLIN, true);
    const w = new DataView(this.#napFd.buffer);
    w.setInt32(0, raw.fd, true);
    w.setInt16(4, libc.POLLIN, true);
  }

  /**
   * The ring's next frame holds a packet (one memory read) and the next read takes it at once,
   * without a nap first: see {@link TunnelBatchSocket.pending} (a loop holding coalesced
   * trains writes them before a nap, so that they never wait through it).
   */
  get pending(): boolean {
    return !this.#napNext && this.#ring.ready;
  }

  /** See {@link TunnelBatchSocket.read}: 0 after the poll timeout. */
  read(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    const ring = this.#ring;
    const raw = this.#raw;
    if (ring.rawDue) {
      const n = this.#due(bufs, sizes, offset, addrs, trafficClass);
      if (n !== 0) return n;
    }
    // Not while a last fragment's mark waits in the ring: its packet, maybe on the raw socket
    // already, goes when the ring gets there (the turn is kept for the next read).
    if (this.#unseen >= RAW_FIRST_AFTER && !ring.markAhead) {
      this.#unseen = 0;
      const n = raw.read(bufs, sizes, offset, addrs, trafficClass);
      if (n !== 0) return n;
    }
    if (this.#napNext) {
      // The nap, before the ring is read again: the raw socket alone ends it early (a poll
      // that looks at it).
      this.#napNext = false;
      const r = libc.pollNs(this.#napFd, 1, this.#napNs);
      this.#awake = this.#now();
      if (r < 0) return r === -Errno.EINTR ? 0 : r;
      const m = this.#afterWait(this.#napFd[6]!, bufs, sizes, offset, addrs, trafficClass);
      if (m !== 0) return m;
      // Nothing came: wait for the next packet as without naps.
    } else {
      const n = this.#fromRing(bufs, sizes, offset, addrs, trafficClass);
      if (n !== 0) {
        this.#unseen += n;
        this.#napNext = this.#napAfter(n, sizes);
        return n;
      }
    }
    this.#napNext = false;
    // Both are waited on at once: the raw socket's readiness comes back in its revents.
    const ready = libc.poll(this.#pollFds, 2, this.#timeoutMs);
    this.#awake = this.#now();
    if (ready === 0) this.#unseen = 0; // the raw socket looked at: nothing there
    if (ready <= 0) return ready === -Errno.EINTR ? 0 : ready;
    return this.#afterWait(this.#pollFds[14]!, bufs, sizes, offset, addrs, trafficClass);
  }

  /**
   * Whether a read of `n` ring packets (`sizes`) is followed by a nap: a small one (see
   * {@link NAP_BELOW}), by a reader that has worked less than half a nap's time since it last
   * waited (busy less than a third of the time: a loaded one keeps its CPU, see the module
   * comment).
   */
  #napAfter(n: number, sizes: Int32Array): boolean {
    return this.#napNs > 0 && small(n, sizes) && (this.#now() - this.#awake) * 2e6 < this.#napNs;
  }

  /**
   * After a poll or a nap that looked at the raw socket (`rawEvents`, its revents): the ring's
   * packets, the raw socket asked first at the next read when it is readable; else the raw
   * socket's.
   */
  #afterWait(
    rawEvents: number,
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    const raw = this.#raw;
    if ((rawEvents & libc.POLLERR) !== 0) raw.errorPending = true;
    const rawReady = (rawEvents & libc.POLLIN) !== 0;
    // Readable: asked first at the next read, if the ring's packets go now.
    const m = this.#fromRing(bufs, sizes, offset, addrs, trafficClass);
    this.#unseen = rawReady ? RAW_FIRST_AFTER : m;
    this.#napNext = m !== 0 && this.#napAfter(m, sizes);
    if (m !== 0 || !rawReady) return m;
    this.#unseen = 0;
    return raw.read(bufs, sizes, offset, addrs, trafficClass);
  }

  /**
   * The ring's packets up to its next mark of a last fragment, and there the raw socket's
   * packet (see the module comment); 0 when neither has one. Each turn of the loop takes at
   * least a mark from the ring.
   */
  #fromRing(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    const ring = this.#ring;
    for (;;) {
      if (ring.rawDue) {
        const n = this.#due(bufs, sizes, offset, addrs, trafficClass);
        if (n !== 0) return n;
      }
      const n = ring.read(bufs, sizes, offset, addrs, trafficClass);
      if (n !== 0 || !ring.rawDue) return n;
    }
  }

  /** One packet from the raw socket where the ring stopped at a mark ({@link PacketRing.rawDue}). */
  #due(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    this.#ring.rawDue = false;
    if (this.#oneOf !== bufs) {
      this.#oneOf = bufs;
      this.#one = [bufs[0]!];
    }
    return this.#raw.read(this.#one, sizes, offset, addrs, trafficClass);
  }
}
