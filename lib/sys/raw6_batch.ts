/**
 * A raw IPv6 socket for next header 4 in batches, as a {@link TunnelBatchSocket}: recvmmsg(2)
 * and sendmmsg(2) move up to `batchSize` packets per system call, each with its outer address
 * and traffic class (IPV6_RECVTCLASS / IPV6_TCLASS ancillary data) and, on send, its flow label
 * (sin6_flowinfo, IPV6_FLOWINFO_SEND). The socket itself is opened and configured by
 * lib/sys/raw6.ts (`Raw6Socket.open`, `enableTunnelOptions`); this class wraps its fd in the
 * Worker that forwards, next to the `Raw6Socket` that reads the error queue.
 *
 * Nothing is allocated per call: the mmsghdr vector, addresses, iovecs and control buffers are
 * built once; an iovec is re-pointed only when the caller passes another buffer.
 *
 * @module
 */
import type { TunnelBatchSocket } from "../net/device.ts";
import * as libc from "./libc.ts";
import { Errno } from "./libc.ts";
import { isIcmpErrno } from "./raw6_errors.ts";
import {
  CMSG_HDR,
  CMSG_SPACE_INT,
  IOVEC_SIZE,
  IPV6_TCLASS,
  MMSG_LEN,
  MMSGHDR_SIZE,
  MSG_CONTROL,
  MSG_CONTROLLEN,
  MSG_DONTWAIT,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_NAME,
  MSG_NAMELEN,
  putPointer,
  SIN6_ADDR,
  SIN6_FLOWINFO,
  SOCKADDR_IN6_SIZE,
} from "./socket_abi.ts";

/** Each message's sockaddr_in6, 8-byte aligned. */
const ADDR_STRIDE = 32;
/** Each message's control buffer: room for one IPV6_TCLASS message (or what else arrives). */
const CONTROL_STRIDE = 64;

/** The vectors' size and the read timeout of a {@link Raw6Batch}. */
export interface Raw6BatchOptions {
  /** Packets per system call at most (and the vectors' size). Default 64. */
  batchSize?: number;
  pollTimeoutMs?: number;
}

/** See the module comment. One per thread and direction (it owns its vectors). */
export class Raw6Batch implements TunnelBatchSocket {
  readonly fd: number;
  readonly batchSize: number;
  readonly pollTimeoutMs: number;
  /** The last send error of the last {@link write} (0: none), also when others went. */
  lastError = 0;
  /** An ICMPv6 error is (probably) waiting on the error queue (POLLERR, or an ICMP errno). */
  errorPending = false;
  readonly #vec: Uint8Array;
  readonly #vecView: DataView;
  readonly #addrs: Uint8Array;
  readonly #addrView: DataView;
  readonly #iov: Uint8Array;
  readonly #iovView: DataView;
  readonly #control: Uint8Array;
  readonly #controlView: DataView;
  /** The buffer and offset each iovec points at now. */
  readonly #iovBuf: (Uint8Array | null)[];
  readonly #iovOff: Int32Array;
  readonly #pollIn = new Uint8Array(8);
  readonly #pollOut = new Uint8Array(8);
  #controlFor: "send" | "recv" | null = null;
  /** Receive: the vector the iovecs point into, and how many messages the kernel last filled. */
  #readBufs: readonly Uint8Array[] | null = null;
  #readOffset = -1;
  #dirty = 0;

  constructor(fd: number, opts: Raw6BatchOptions = {}) {
    this.fd = fd;
    const n = opts.batchSize ?? 64;
    this.batchSize = n;
    this.pollTimeoutMs = opts.pollTimeoutMs ?? 200;
    this.#vec = new Uint8Array(n * MMSGHDR_SIZE);
    this.#vecView = new DataView(this.#vec.buffer);
    this.#addrs = new Uint8Array(n * ADDR_STRIDE);
    this.#addrView = new DataView(this.#addrs.buffer);
    this.#iov = new Uint8Array(n * IOVEC_SIZE);
    this.#iovView = new DataView(this.#iov.buffer);
    this.#control = new Uint8Array(n * CONTROL_STRIDE);
    this.#controlView = new DataView(this.#control.buffer);
    this.#iovBuf = new Array(n).fill(null);
    this.#iovOff = new Int32Array(n).fill(-1);
    const v = this.#vecView;
    for (let i = 0; i < n; i++) {
      const m = i * MMSGHDR_SIZE;
      putPointer(v, m + MSG_NAME, libc.addressOf(this.#addrs, i * ADDR_STRIDE));
      putPointer(v, m + MSG_IOV, libc.addressOf(this.#iov, i * IOVEC_SIZE));
      putPointer(v, m + MSG_IOVLEN, 1);
      putPointer(v, m + MSG_CONTROL, libc.addressOf(this.#control, i * CONTROL_STRIDE));
      this.#addrView.setUint16(i * ADDR_STRIDE, libc.AF_INET6, true);
    }
    for (const [p, ev] of [
      [this.#pollIn, libc.POLLIN],
      [this.#pollOut, libc.POLLOUT],
    ] as const) {
      const d = new DataView(p.buffer);
      d.setInt32(0, fd, true);
      d.setInt16(4, ev, true);
    }
  }

  /** See {@link TunnelBatchSocket.read}. */
  read(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    const count = Math.min(bufs.length, this.batchSize);
    const v = this.#vecView;
    // Set up every message only when the buffers or the mode changed; else only those the
    // kernel filled last time (it rewrote their name and control lengths). A call that brings
    // one packet costs no 64-entry loop.
    let dirty = this.#dirty;
    if (this.#controlFor !== "recv" || bufs !== this.#readBufs || offset !== this.#readOffset) {
      for (let i = 0; i < count; i++) this.#point(i, bufs[i]!, offset);
      this.#controlFor = "recv";
      this.#readBufs = bufs;
      this.#readOffset = offset;
      dirty = count;
    }
    for (let i = 0; i < dirty; i++) {
      const m = i * MMSGHDR_SIZE;
      v.setUint32(m + MSG_NAMELEN, SOCKADDR_IN6_SIZE, true);
      putPointer(v, m + MSG_CONTROLLEN, CONTROL_STRIDE);
    }
    this.#dirty = 0;
    let n = libc.recvmmsg(this.fd, this.#vec, count, MSG_DONTWAIT);
    if (n === -Errno.EAGAIN) {
      // 0: the caller waits itself (./ring_raw_socket.ts polls the ring and this socket).
      if (this.pollTimeoutMs === 0) return 0;
      const ready = libc.poll(this.#pollIn, 1, this.pollTimeoutMs);
      if (ready <= 0) return ready === -Errno.EINTR ? 0 : ready;
      if ((this.#pollIn[6]! & libc.POLLERR) !== 0) this.errorPending = true;
      n = libc.recvmmsg(this.fd, this.#vec, count, MSG_DONTWAIT);
      if (n === -Errno.EAGAIN) return 0;
    }
    if (n < 0) {
      this.#dirty = count; // an error other than EAGAIN: set every message up again
      // The pending error of an ICMPv6 error (IPV6_RECVERR): the packet is on the error queue.
      if (isIcmpErrno(n)) {
        this.errorPending = true;
        return 0;
      }
      return n;
    }
    const c = this.#controlView;
    this.#dirty = n;
    for (let i = 0; i < n; i++) {
      const m = i * MMSGHDR_SIZE;
      sizes[i] = v.getUint32(m + MMSG_LEN, true);
      const a = i * ADDR_STRIDE + SIN6_ADDR;
      for (let k = 0; k < 16; k++) addrs[16 * i + k] = this.#addrs[a + k]!;
      let tclass = 0;
      const controlLength = v.getUint32(m + MSG_CONTROLLEN, true);
      const base = i * CONTROL_STRIDE;
      for (let at = 0; at + CMSG_HDR <= controlLength; ) {
        const len = c.getUint32(base + at, true);
        if (len < CMSG_HDR) break;
        if (
          c.getInt32(base + at + 8, true) === libc.IPPROTO_IPV6 &&
          c.getInt32(base + at + 12, true) === IPV6_TCLASS
        ) {
          tclass = c.getInt32(base + at + CMSG_HDR, true) & 0xff;
          break;
        }
        at += (len + 7) & ~7;
      }
      trafficClass[i] = tclass;
    }
    return n;
  }

  /**
   * See {@link TunnelBatchSocket.write}: every packet `i < count`, also above
   * {@link batchSize} (then in vectors of that size, in order: the TEP's encapsulating loop
   * hands over up to 128, the segments of one TUN super-packet). A full send buffer waits up
   * to the poll timeout once per vector.
   */
  write(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    count: number,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
    flowLabel: Int32Array,
  ): number {
    const n = this.batchSize;
    if (count <= n) return this.#write(bufs, sizes, count, offset, addrs, trafficClass, flowLabel);
    // Rare (more than one vector): views of the caller's arrays, a vector at a time.
    let ok = 0;
    let error = 0;
    for (let base = 0; base < count; base += n) {
      const k = Math.min(n, count - base);
      const r = this.#write(
        bufs.slice(base, base + k),
        sizes.subarray(base),
        k,
        offset,
        addrs.subarray(16 * base),
        trafficClass.subarray(base),
        flowLabel.subarray(base),
      );
      if (r > 0) ok += r;
      if (this.lastError !== 0) error = this.lastError;
    }
    this.lastError = error;
    return ok > 0 || error === 0 ? ok : error;
  }

  /** {@link write} of at most {@link batchSize} packets. */
  #write(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    count: number,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
    flowLabel: Int32Array,
  ): number {
    const total = Math.min(count, this.batchSize);
    const v = this.#vecView;
    const c = this.#controlView;
    if (this.#controlFor !== "send") {
      // Every message's IPV6_TCLASS header, once (a receive overwrites the control buffers).
      for (let i = 0; i < this.batchSize; i++) {
        const b = i * CONTROL_STRIDE;
        putPointer(c, b, CMSG_HDR + 4);
        c.setInt32(b + 8, libc.IPPROTO_IPV6, true);
        c.setInt32(b + 12, IPV6_TCLASS, true);
      }
      this.#controlFor = "send";
    }
    for (let i = 0; i < total; i++) {
      this.#point(i, bufs[i]!, offset, sizes[i]!);
      const m = i * MMSGHDR_SIZE;
      const a = i * ADDR_STRIDE;
      for (let k = 0; k < 16; k++) this.#addrs[a + SIN6_ADDR + k] = addrs[16 * i + k]!;
      this.#addrView.setUint32(a + SIN6_FLOWINFO, flowLabel[i]! & 0xfffff, false);
      v.setUint32(m + MSG_NAMELEN, SOCKADDR_IN6_SIZE, true);
      putPointer(v, m + MSG_CONTROLLEN, CMSG_SPACE_INT);
      c.setInt32(i * CONTROL_STRIDE + CMSG_HDR, trafficClass[i]!, true);
    }
    // `next`: the first message not yet handed over; a message the kernel refuses (EMSGSIZE
    // after a Packet Too Big, no route) is skipped and the rest still go.
    let next = 0;
    let ok = 0;
    let error = 0;
    let retried = false;
    let retriedAt = -1;
    while (next < total) {
      const vec = next === 0 ? this.#vec : this.#vec.subarray(next * MMSGHDR_SIZE); // rare: partial
      const r = libc.sendmmsg(this.fd, vec, total - next, 0);
      if (r > 0) {
        next += r;
        ok += r;
      } else if (r === -Errno.EAGAIN && !retried) {
        retried = true;
        libc.poll(this.#pollOut, 1, this.pollTimeoutMs);
      } else if (r < 0 && isIcmpErrno(r) && retriedAt !== next) {
        // The pending error of an ICMPv6 error about an earlier packet (IPV6_RECVERR) fails one
        // send, not this packet's fault: note it for the error-queue reader and retry once.
        this.errorPending = true;
        retriedAt = next;
      } else {
        error = r < 0 ? r : -Errno.EAGAIN;
        next++;
      }
    }
    this.lastError = error;
    return ok > 0 || error === 0 ? ok : error;
  }

  /** Points iovec `i` at `buf[offset …]` (length: the rest of the buffer, or `length`). */
  #point(i: number, buf: Uint8Array, offset: number, length = buf.length - offset): void {
    const at = i * IOVEC_SIZE;
    if (this.#iovBuf[i] !== buf || this.#iovOff[i] !== offset) {
      this.#iovBuf[i] = buf;
      this.#iovOff[i] = offset;
      putPointer(this.#iovView, at, libc.addressOf(buf, offset));
    }
    putPointer(this.#iovView, at + 8, length);
  }
}
