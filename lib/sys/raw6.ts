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
 * - Tunnel metadata: {@link Raw6Socket.enableTunnelOptions} turns on IPV6_RECVTCLASS (the
 *   outer traffic class of each received packet, for RFC 6040 decapsulation), IPV6_FLOWINFO_SEND
 *   (the flow label of each sent packet, RFC 6438) and IPV6_RECVERR (ICMPv6 errors about sent
 *   packets on the error queue, RFC 2473 §8). The traffic class of each sent packet goes in an
 *   IPV6_TCLASS control message.
 * - Errors: without IPV6_RECVERR an unconnected raw socket ignores ICMPv6 errors entirely, even
 *   Packet Too Big (net/ipv6/raw.c, rawv6_err returns early): the kernel never lowers the path
 *   MTU. With it, the kernel records the path MTU in its route cache (so it fragments later
 *   packets to fit) and queues each error with the start of the original packet.
 *   The error also sets the socket's pending error, which fails the next send or receive once:
 *   {@link Raw6Socket.sendTo} retries once, {@link Raw6Socket.recvFrom} returns 0 and sets
 *   {@link Raw6Socket.errorPending}; the owner drains the queue with {@link Raw6Socket.readError}.
 *
 * The sockaddr, msghdr and control buffers are allocated once per socket; sending and
 * receiving allocate nothing. Opening and the socket options are in raw6_open.ts.
 *
 * @module
 */
import type { PacketDevice } from "../net/device.ts";
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";
import { isIcmpErrno, readExtendedError, type TunnelErrorInfo } from "./raw6_errors.ts";
import {
  bindRaw6,
  connectRaw6,
  enableRaw6TunnelOptions,
  openRaw6Fd,
  raw6BufferSizes,
  setRaw6Buffers,
  setRaw6DontFragment,
} from "./raw6_open.ts";
import {
  CMSG_HDR,
  CMSG_SPACE_INT,
  findControlMessage,
  IOVEC_SIZE,
  IPV6_TCLASS,
  MSG_CONTROL,
  MSG_CONTROLLEN,
  MSG_DONTWAIT,
  MSG_ERRQUEUE,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_NAME,
  MSG_NAMELEN,
  MSGHDR_SIZE,
  putPointer,
  SIN6_ADDR,
  SIN6_FLOWINFO,
  SOCKADDR_IN6_SIZE,
  setFamilyInet6,
} from "./socket_abi.ts";

// The error queue's record and the route's path MTU moved to ./raw6_errors.ts; re-exported
// for the callers that import them from here.
export {
  routePathMtu,
  SO_EE_ORIGIN_ICMP6,
  type TunnelErrorInfo,
} from "./raw6_errors.ts";

/** IPPROTO_IPIP: the IPv6 next header value of an encapsulated IPv4 packet. */
export const IPPROTO_IPIP = 4;
/** Room for the control messages of one receive (traffic class, or an extended error). */
const RECV_CONTROL_SIZE = 128;

/** How {@link Raw6Socket.open} opens the socket. */
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
  // sendmsg: destination (with flow label), one iovec, one IPV6_TCLASS cmsg.
  private readonly _sendMsg = new Uint8Array(MSGHDR_SIZE);
  private readonly _sendIov = new Uint8Array(IOVEC_SIZE);
  private readonly _sendIovView = new DataView(this._sendIov.buffer);
  private readonly _sendControl = new Uint8Array(CMSG_SPACE_INT);
  private readonly _sendControlView = new DataView(this._sendControl.buffer);
  private readonly _sendAddrView = new DataView(this._sendAddr.buffer);
  // recvmsg: source, one iovec, control (traffic class; extended error on the error queue).
  private readonly _recvMsg = new Uint8Array(MSGHDR_SIZE);
  private readonly _recvMsgView = new DataView(this._recvMsg.buffer);
  private readonly _recvIov = new Uint8Array(IOVEC_SIZE);
  private readonly _recvIovView = new DataView(this._recvIov.buffer);
  private readonly _recvControl = new Uint8Array(RECV_CONTROL_SIZE);
  private readonly _recvControlView = new DataView(this._recvControl.buffer);
  private _recvBuf: Uint8Array | null = null;
  private _recvBufOffset = -1;
  /** Tunnel options on (enableTunnelOptions): receive and send through recvmsg / sendmsg. */
  private _tunnel = false;
  /** Outer traffic class of the last packet {@link recvFrom} returned (0 unless enabled). */
  trafficClass = 0;
  /** An ICMPv6 error is (probably) waiting on the error queue: call {@link readError}. */
  errorPending = false;

  private constructor(fd: number, pollTimeoutMs: number) {
    this.fd = fd;
    this.pollTimeoutMs = pollTimeoutMs;
    setFamilyInet6(this._sendAddr);
    const view = new DataView(this._pollIn.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, libc.POLLIN, true);
    const out = new DataView(this._pollOut.buffer);
    out.setInt32(0, fd, true);
    out.setInt16(4, libc.POLLOUT, true);
    const m = new DataView(this._sendMsg.buffer);
    putPointer(m, MSG_NAME, libc.addressOf(this._sendAddr));
    m.setUint32(MSG_NAMELEN, SOCKADDR_IN6_SIZE, true);
    putPointer(m, MSG_IOV, libc.addressOf(this._sendIov));
    putPointer(m, MSG_IOVLEN, 1);
    putPointer(m, MSG_CONTROL, libc.addressOf(this._sendControl));
    putPointer(m, MSG_CONTROLLEN, CMSG_SPACE_INT);
    putPointer(this._sendControlView, 0, CMSG_HDR + 4);
    this._sendControlView.setInt32(8, libc.IPPROTO_IPV6, true);
    this._sendControlView.setInt32(12, IPV6_TCLASS, true);
    const r = this._recvMsgView;
    putPointer(r, MSG_NAME, libc.addressOf(this._recvAddr));
    putPointer(r, MSG_IOV, libc.addressOf(this._recvIov));
    putPointer(r, MSG_IOVLEN, 1);
    putPointer(r, MSG_CONTROL, libc.addressOf(this._recvControl));
  }

  /**
   * Turns on what a tunnel end point needs (RFC 2473 §7–8, RFC 6040, RFC 6438): the outer
   * traffic class of every received packet ({@link trafficClass}), a per-packet traffic
   * class and flow label on send, and ICMPv6 errors about sent packets on the error queue
   * (which also makes the kernel apply Packet Too Big to its route cache). Throws a SysError.
   */
  enableTunnelOptions(): void {
    enableRaw6TunnelOptions(this.fd);
    this._tunnel = true;
  }

  /**
   * Enables the tunnel options on a socket attached in a Worker (socket options belong to
   * the socket, so only the send / receive path changes here): after the opener called
   * {@link enableTunnelOptions}.
   */
  useTunnelOptions(): void {
    this._tunnel = true;
  }

  /** Opens the socket (non-blocking, close-on-exec). Throws a {@link SysError}. */
  static open(opts: Raw6Options = {}): Raw6Socket {
    const sock = new Raw6Socket(
      openRaw6Fd(opts.protocol ?? IPPROTO_IPIP),
      opts.pollTimeoutMs ?? 200,
    );
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
    bindRaw6(this.fd, src6);
  }

  /**
   * Connects to `peer6` (16 bytes): {@link write} then sends to it, and the kernel only
   * delivers packets whose outer source is `peer6`.
   */
  connect(peer6: Uint8Array): void {
    connectRaw6(this.fd, peer6);
  }

  /** Sets the kernel buffer sizes (bytes; the kernel doubles them for bookkeeping). */
  setBufferSizes(receive?: number, send?: number): void {
    setRaw6Buffers(this.fd, receive, send);
  }

  /** The kernel's buffer sizes as it reports them (SO_RCVBUF, SO_SNDBUF). */
  bufferSizes(): { receive: number; send: number } {
    return raw6BufferSizes(this.fd);
  }

  /**
   * Turns kernel fragmentation off (on = true) or back on: a packet above the path MTU then
   * fails with EMSGSIZE instead of leaving in fragments (IPV6_MTU_DISCOVER; raw6_open.ts says
   * why not IPV6_DONTFRAG).
   */
  setDontFragment(on: boolean): void {
    setRaw6DontFragment(this.fd, on);
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
      // POLLERR: something is on the error queue (or the socket's pending error is set).
      if ((this._pollIn[6]! & libc.POLLERR) !== 0 && this._tunnel) this.errorPending = true;
      n = this._recv(buf, offset);
      if (n === -Errno.EAGAIN) return 0;
    }
    if (n < 0 && this._tunnel && isIcmpErrno(n)) {
      // The pending error of an ICMPv6 error (RECVERR): the packet is on the error queue.
      this.errorPending = true;
      return 0;
    }
    if (n > 0) src6Out.set(this._recvAddrIp, src6Offset);
    return n;
  }

  /**
   * Takes one error off the error queue (recvmsg MSG_ERRQUEUE): the start of the original
   * packet's payload (the inner IPv4 packet, as much as the ICMPv6 error quoted) goes to
   * `buf[offset..)`, the original destination (the host) to `dst6Out[dst6Offset, +16)`, the
   * error to `info`. Returns the payload length (possibly 0), -EAGAIN when the queue is
   * empty (and clears {@link errorPending}), or another -errno.
   */
  readError(
    buf: Uint8Array,
    offset: number,
    dst6Out: Uint8Array,
    dst6Offset: number,
    info: TunnelErrorInfo,
  ): number {
    this._setRecvBuffer(buf, offset);
    const m = this._recvMsgView;
    m.setUint32(MSG_NAMELEN, SOCKADDR_IN6_SIZE, true);
    putPointer(m, MSG_CONTROLLEN, RECV_CONTROL_SIZE);
    const n = libc.recvmsg(this.fd, this._recvMsg, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (n < 0) {
      if (n === -Errno.EAGAIN) this.errorPending = false;
      return n;
    }
    readExtendedError(this._recvControlView, m.getUint32(MSG_CONTROLLEN, true), info);
    for (let i = 0; i < 16; i++) dst6Out[dst6Offset + i] = this._recvAddrIp[i]!;
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
    trafficClass = 0,
    flowLabel = 0,
  ): number {
    const sa = this._sendAddr;
    for (let i = 0; i < 16; i++) sa[SIN6_ADDR + i] = dst6[dst6Offset + i]!;
    if (this._tunnel) {
      // sin6_flowinfo is big-endian: 4 bits 0, 8 bits traffic class (ignored), 20 bits label.
      this._sendAddrView.setUint32(SIN6_FLOWINFO, flowLabel & 0xfffff, false);
      this._sendControlView.setInt32(CMSG_HDR, trafficClass & 0xff, true);
      putPointer(this._sendIovView, 0, libc.addressOf(buf, offset));
      putPointer(this._sendIovView, 8, length);
      let n = libc.sendmsg(this.fd, this._sendMsg, 0);
      if (n === -Errno.EAGAIN) {
        libc.poll(this._pollOut, 1, this.pollTimeoutMs);
        n = libc.sendmsg(this.fd, this._sendMsg, 0);
      } else if (n < 0 && isIcmpErrno(n)) {
        // The pending error of an ICMPv6 error about an earlier packet fails one send: retry.
        this.errorPending = true;
        n = libc.sendmsg(this.fd, this._sendMsg, 0);
      }
      return n;
    }
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

  private _setRecvBuffer(buf: Uint8Array, offset: number): void {
    if (buf !== this._recvBuf || offset !== this._recvBufOffset) {
      this._recvBuf = buf;
      this._recvBufOffset = offset;
      putPointer(this._recvIovView, 0, libc.addressOf(buf, offset));
      putPointer(this._recvIovView, 8, buf.length - offset);
    }
  }

  private _recv(buf: Uint8Array, offset: number): number {
    if (this._tunnel) {
      this._setRecvBuffer(buf, offset);
      const m = this._recvMsgView;
      m.setUint32(MSG_NAMELEN, SOCKADDR_IN6_SIZE, true);
      putPointer(m, MSG_CONTROLLEN, RECV_CONTROL_SIZE);
      const n = libc.recvmsg(this.fd, this._recvMsg, 0);
      if (n < 0) return n;
      const at = findControlMessage(
        this._recvControlView,
        m.getUint32(MSG_CONTROLLEN, true),
        libc.IPPROTO_IPV6,
        IPV6_TCLASS,
      );
      const tclass = at < 0 ? 0 : this._recvControlView.getInt32(at, true) & 0xff;
      this.trafficClass = tclass;
      return n;
    }
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
