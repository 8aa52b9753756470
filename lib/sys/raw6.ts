/**
 * A raw IPv6 socket for next header 4 (IPv4-in-IPv6, RFC 2473 "4over6"):
 * `socket(AF_INET6, SOCK_RAW, IPPROTO_IPIP)` through the libc wrappers of `libc.ts`
 * (`bun:ffi`). This is how the DSTM client and the TEP send and receive tunnelled packets on
 * a kernel without ip6tnl.
 *
 * What the kernel does (raw(7), ipv6(7); checked by test/sys_raw6.test.ts on kernel 6.18):
 * - Receive: unlike an IPv4 raw socket, an IPv6 raw socket gets the payload only, here the
 *   inner IPv4 packet, without the IPv6 header; the outer source is in the sockaddr_in6.
 *   Fragments are reassembled before delivery. Every local destination address matches
 *   unless the socket is bound; a connected socket only gets packets from its peer.
 * - Send: the kernel builds the IPv6 header (next header 4, source from the route or from
 *   {@link Raw6Socket.bindAddress}) and fragments a packet larger than the path MTU, unless
 *   {@link Raw6Socket.setDontFragment} was called (then sendto fails with EMSGSIZE).
 *   IPV6_DONTFRAG has no effect on such a socket; IPV6_MTU_DISCOVER does.
 *
 * The sockaddr buffers are allocated once per socket; sending and receiving allocate nothing.
 *
 * @module
 */
import type { PacketDevice } from "../tunnel/device.ts";
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";

/** IPPROTO_IPIP: the IPv6 next header value of an encapsulated IPv4 packet. */
export const IPPROTO_IPIP = 4;
/** sizeof(struct sockaddr_in6): family u16, port u16, flowinfo u32, addr[16], scope_id u32. */
const SOCKADDR_IN6_SIZE = 28;
const SIN6_ADDR = 8;
const IPV6_PMTUDISC_WANT = 1;
const IPV6_PMTUDISC_DO = 2;

export interface Raw6Options {
  /** Next header to send and receive (default 4, IPv4). */
  protocol?: number;
  /** Receive buffer bytes; SO_RCVBUFFORCE as root (beyond net.core.rmem_max), else SO_RCVBUF. */
  receiveBuffer?: number;
  /** Send buffer bytes; SO_SNDBUFFORCE as root, else SO_SNDBUF. */
  sendBuffer?: number;
  /** How long a read waits for a packet before returning 0 (default 200 ms). */
  pollTimeoutMs?: number;
}

/**
 * A raw IPv6 socket carrying IPv4 packets. Also a {@link PacketDevice} once connected:
 * `read` receives from the peer only and `write` sends to it.
 *
 * @example
 * const sock = Raw6Socket.open({ receiveBuffer: 4 << 20 });
 * const from = new Uint8Array(16);
 * const n = sock.recvFrom(buf, 0, from); // IPv4 packet in buf[0, n), outer source in `from`
 */
export class Raw6Socket implements PacketDevice {
  readonly fd: number;
  readonly pollTimeoutMs: number;
  private readonly _recvAddr = new Uint8Array(SOCKADDR_IN6_SIZE);
  private readonly _recvAddrIp = this._recvAddr.subarray(SIN6_ADDR, SIN6_ADDR + 16);
  private readonly _recvAddrLen = new Uint32Array(1);
  private readonly _recvAddrLenBytes = new Uint8Array(this._recvAddrLen.buffer);
  private readonly _sendAddr = new Uint8Array(SOCKADDR_IN6_SIZE);
  private readonly _pollIn = new Uint8Array(8);
  private readonly _pollOut = new Uint8Array(8);

  private constructor(fd: number, pollTimeoutMs: number) {
    this.fd = fd;
    this.pollTimeoutMs = pollTimeoutMs;
    _setFamily(this._sendAddr);
    const view = new DataView(this._pollIn.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, libc.POLLIN, true);
    const out = new DataView(this._pollOut.buffer);
    out.setInt32(0, fd, true);
    out.setInt16(4, libc.POLLOUT, true);
  }

  /** Opens the socket (non-blocking, close-on-exec). Throws a {@link SysError}. */
  static open(opts: Raw6Options = {}): Raw6Socket {
    const protocol = opts.protocol ?? IPPROTO_IPIP;
    const fd = libc.socket(
      libc.AF_INET6,
      libc.SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC,
      protocol,
    );
    if (fd < 0) {
      const hint =
        -fd === Errno.EPERM || -fd === Errno.EACCES
          ? "a raw IPv6 socket needs root or CAP_NET_RAW"
          : -fd === Errno.EAFNOSUPPORT
            ? "IPv6 is disabled in this kernel"
            : undefined;
      throw new SysError(`raw IPv6 socket (next header ${protocol})`, fd, hint);
    }
    const sock = new Raw6Socket(fd, opts.pollTimeoutMs ?? 200);
    try {
      if (opts.receiveBuffer !== undefined || opts.sendBuffer !== undefined) {
        sock.setBufferSizes(opts.receiveBuffer, opts.sendBuffer);
      }
    } catch (error) {
      sock.close();
      throw error;
    }
    return sock;
  }

  /** Wraps a raw socket fd opened by another thread (fds are per process). */
  static attach(fd: number, pollTimeoutMs = 200): Raw6Socket {
    const r = libc.setNonBlocking(fd);
    if (r < 0) throw new SysError(`attach raw socket fd ${fd}`, r, "not an open file descriptor");
    return new Raw6Socket(fd, pollTimeoutMs);
  }

  /**
   * Fixes the outer source address: bind(2) to `src6` (16 bytes). Then only packets to that
   * address are received. Throws EADDRNOTAVAIL when the address is not configured here.
   */
  bindAddress(src6: Uint8Array): void {
    const sa = new Uint8Array(SOCKADDR_IN6_SIZE);
    _setFamily(sa);
    sa.set(src6.subarray(0, 16), SIN6_ADDR);
    const r = libc.bind(this.fd, sa, SOCKADDR_IN6_SIZE);
    if (r < 0) {
      const hint =
        -r === Errno.EADDRNOTAVAIL
          ? "the address is not configured on any interface here (or is still tentative: DAD)"
          : undefined;
      throw new SysError("bind raw IPv6 socket", r, hint);
    }
  }

  /**
   * Connects to `peer6` (16 bytes): {@link write} then sends to it, and the kernel only
   * delivers packets whose outer source is `peer6`.
   */
  connect(peer6: Uint8Array): void {
    const sa = new Uint8Array(SOCKADDR_IN6_SIZE);
    _setFamily(sa);
    sa.set(peer6.subarray(0, 16), SIN6_ADDR);
    const r = libc.connect(this.fd, sa, SOCKADDR_IN6_SIZE);
    if (r < 0) throw new SysError("connect raw IPv6 socket", r);
  }

  /** Sets the kernel buffer sizes (bytes; the kernel doubles them for bookkeeping). */
  setBufferSizes(receive?: number, send?: number): void {
    if (receive !== undefined) {
      _setBuffer(this.fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, receive, "SO_RCVBUF");
    }
    if (send !== undefined) {
      _setBuffer(this.fd, libc.SO_SNDBUFFORCE, libc.SO_SNDBUF, send, "SO_SNDBUF");
    }
  }

  /** The kernel's buffer sizes as it reports them (SO_RCVBUF, SO_SNDBUF). */
  bufferSizes(): { receive: number; send: number } {
    return {
      receive: libc.getsockoptInt(this.fd, libc.SOL_SOCKET, libc.SO_RCVBUF),
      send: libc.getsockoptInt(this.fd, libc.SOL_SOCKET, libc.SO_SNDBUF),
    };
  }

  /**
   * Turns kernel fragmentation off (on = true) or back on. With it off, a packet above the
   * path MTU fails with EMSGSIZE instead of leaving in fragments.
   *
   * This sets IPV6_MTU_DISCOVER to IPV6_PMTUDISC_DO (off) or IPV6_PMTUDISC_WANT (the
   * default). IPV6_DONTFRAG would be the obvious option, but the kernel honours it only on
   * UDP, ICMPv6 and IPPROTO_RAW sockets (net/ipv6/ip6_output.c, __ip6_append_data), not on a
   * raw socket of protocol 4: measured, it is accepted and then ignored.
   */
  setDontFragment(on: boolean): void {
    const mode = on ? IPV6_PMTUDISC_DO : IPV6_PMTUDISC_WANT;
    const r = libc.setsockoptInt(this.fd, libc.IPPROTO_IPV6, libc.IPV6_MTU_DISCOVER, mode);
    if (r < 0) throw new SysError("setsockopt IPV6_MTU_DISCOVER", r);
  }

  /**
   * Receives one packet into `buf` at `offset`: the inner IPv4 packet, no IPv6 header. The
   * outer IPv6 source is copied to `src6Out[src6Offset, src6Offset+16)`. Returns the length,
   * 0 when nothing arrived within the poll timeout, or -errno.
   */
  recvFrom(buf: Uint8Array, offset: number, src6Out: Uint8Array, src6Offset = 0): number {
    let n = this._recv(buf, offset);
    if (n === -Errno.EAGAIN) {
      const ready = libc.poll(this._pollIn, 1, this.pollTimeoutMs);
      if (ready <= 0) return ready === -Errno.EINTR ? 0 : ready;
      n = this._recv(buf, offset);
      if (n === -Errno.EAGAIN) return 0;
    }
    if (n > 0) src6Out.set(this._recvAddrIp, src6Offset);
    return n;
  }

  /**
   * Sends `buf[offset, offset+length)` (an IPv4 packet) to `dst6[dst6Offset, dst6Offset+16)`;
   * the kernel adds the IPv6 header. Returns the bytes sent or -errno.
   */
  sendTo(
    buf: Uint8Array,
    offset: number,
    length: number,
    dst6: Uint8Array,
    dst6Offset = 0,
  ): number {
    const sa = this._sendAddr;
    for (let i = 0; i < 16; i++) sa[SIN6_ADDR + i] = dst6[dst6Offset + i]!;
    const n = libc.sendto(this.fd, buf, offset, length, 0, sa, SOCKADDR_IN6_SIZE);
    if (n !== -Errno.EAGAIN) return n;
    libc.poll(this._pollOut, 1, this.pollTimeoutMs);
    return libc.sendto(this.fd, buf, offset, length, 0, sa, SOCKADDR_IN6_SIZE);
  }

  /** See {@link PacketDevice.read}: receives from the connected peer (or anyone, unconnected). */
  read(buf: Uint8Array, offset: number): number {
    return this.recvFrom(buf, offset, this._recvAddrIp);
  }

  /** See {@link PacketDevice.write}: sends to the connected peer ({@link connect} first). */
  write(buf: Uint8Array, offset: number, length: number): number {
    const n = libc.sendto(this.fd, buf, offset, length, 0, null, 0);
    if (n !== -Errno.EAGAIN) return n;
    libc.poll(this._pollOut, 1, this.pollTimeoutMs);
    return libc.sendto(this.fd, buf, offset, length, 0, null, 0);
  }

  close(): void {
    libc.close(this.fd);
  }

  private _recv(buf: Uint8Array, offset: number): number {
    this._recvAddrLen[0] = SOCKADDR_IN6_SIZE;
    return libc.recvfrom(
      this.fd,
      buf,
      offset,
      buf.length - offset,
      0,
      this._recvAddr,
      this._recvAddrLenBytes,
    );
  }
}

function _setFamily(sa: Uint8Array): void {
  sa[0] = libc.AF_INET6 & 0xff; // sa_family_t, little-endian u16
  sa[1] = libc.AF_INET6 >> 8;
}

function _setBuffer(fd: number, force: number, plain: number, bytes: number, what: string): void {
  let r = libc.setsockoptInt(fd, libc.SOL_SOCKET, force, bytes);
  // Without CAP_NET_ADMIN the *FORCE options fail; the plain ones are capped at
  // net.core.rmem_max / wmem_max.
  if (r === -Errno.EPERM) r = libc.setsockoptInt(fd, libc.SOL_SOCKET, plain, bytes);
  if (r < 0) throw new SysError(`setsockopt ${what} ${bytes}`, r);
}
