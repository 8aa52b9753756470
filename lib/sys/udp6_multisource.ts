/**
 * One UDP/IPv6 socket that sends each datagram from a source address of its choosing and
 * tells, for each datagram received, the address it was sent to: a load generator's way to be
 * many IPv6 hosts at once (every DHCPv4-over-DHCPv6 host is its own IPv6 source address).
 *
 * How (ipv6(7), checked on kernel 6.18):
 * - The host addresses are made local without configuring them one by one: an AnyIP route
 *   `ip -6 route add local 2001:db8:ff::/64 dev lo` makes every address of the prefix local,
 *   so datagrams to any of them are delivered to a socket bound to `[::]:port`.
 * - Sending: sendmsg(2) with an IPV6_PKTINFO control message (`struct in6_pktinfo`) naming
 *   the source. The kernel accepts a source only if it is configured on an interface
 *   (an AnyIP route does not count) or the socket may bind non-locally, hence IPV6_FREEBIND
 *   (else sendmsg fails with EINVAL).
 * - Receiving: recvmsg(2) with IPV6_RECVPKTINFO on, so each datagram comes with the address it
 *   was sent to (the simulated host it is for).
 *
 * Every buffer (msghdr, iovec, sockaddr, control) is allocated once per socket and the
 * pointers inside the structs are set once: sending and receiving allocate nothing.
 * Non-blocking; {@link Udp6MultiSource.wait} polls. Linux x86_64 / aarch64 (LP64) layouts.
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";
import {
  CMSG_HDR,
  IOVEC_SIZE,
  MSG_CONTROL,
  MSG_CONTROLLEN,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_NAME,
  MSG_NAMELEN,
  MSGHDR_SIZE,
  putPointer,
  SIN6_ADDR,
  SIN6_SCOPE_ID,
  SOCKADDR_IN6_SIZE,
  setFamilyInet6,
  setSocketBuffer,
} from "./socket_abi.ts";

/** struct in6_pktinfo: addr[16], ifindex (int). */
const PKTINFO_SIZE = 20;
const CMSG_LEN_PKTINFO = CMSG_HDR + PKTINFO_SIZE;
/** CMSG_SPACE(sizeof(struct in6_pktinfo)): the data padded to 8 bytes. */
const CMSG_SPACE_PKTINFO = CMSG_HDR + 24;
/** Room for what the kernel may add on receive (pktinfo, and a little more). */
const RECV_CONTROL_SIZE = 128;

export interface Udp6MultiSourceOptions {
  /** Local UDP port (the same for every source), e.g. 546 for a DHCPv6 client. */
  port: number;
  /** Receive buffer bytes (SO_RCVBUFFORCE as root). */
  receiveBuffer?: number;
  /** Send buffer bytes (SO_SNDBUFFORCE as root). */
  sendBuffer?: number;
}

/**
 * A UDP/IPv6 socket bound to `[::]:port` (IPv6 only: no IPv4 datagram reaches it) that sends
 * from any source address.
 *
 * @example
 * const sock = Udp6MultiSource.open({ port: 546 });
 * sock.setDestination(parseIPv6("2001:db8:d::547")!, 547);
 * sock.send(packet, 0, length, host6); // from host6 (16 bytes), port 546
 * const n = sock.receive(buf, to6);     // to6: the address the answer was sent to
 */
export class Udp6MultiSource {
  readonly fd: number;
  private readonly _dest = new Uint8Array(SOCKADDR_IN6_SIZE);
  private readonly _sendMsg = new Uint8Array(MSGHDR_SIZE);
  private readonly _sendMsgView = new DataView(this._sendMsg.buffer);
  private readonly _sendIov = new Uint8Array(IOVEC_SIZE);
  private readonly _sendIovView = new DataView(this._sendIov.buffer);
  private readonly _sendControl = new Uint8Array(CMSG_SPACE_PKTINFO);
  private readonly _sendSource = this._sendControl.subarray(CMSG_HDR, CMSG_HDR + 16);
  private readonly _recvMsg = new Uint8Array(MSGHDR_SIZE);
  private readonly _recvMsgView = new DataView(this._recvMsg.buffer);
  private readonly _recvIov = new Uint8Array(IOVEC_SIZE);
  private readonly _recvIovView = new DataView(this._recvIov.buffer);
  private readonly _recvControl = new Uint8Array(RECV_CONTROL_SIZE);
  private readonly _recvControlView = new DataView(this._recvControl.buffer);
  private readonly _recvFrom = new Uint8Array(SOCKADDR_IN6_SIZE);
  // Views made before any pointer is taken: reading `.buffer` of a small typed array later
  // moves its storage, and the kernel would then write where JS no longer reads.
  private readonly _recvFromView = new DataView(this._recvFrom.buffer);
  private readonly _destView = new DataView(this._dest.buffer);
  private readonly _pollIn = new Uint8Array(8);
  /** The receive buffer whose address is in the recv iovec (set again when it changes). */
  private _recvBuf: Uint8Array | null = null;

  private constructor(fd: number) {
    this.fd = fd;
    setFamilyInet6(this._dest);
    // sendmsg: destination, one iovec (base set per send), one IPV6_PKTINFO cmsg.
    const s = this._sendMsgView;
    putPointer(s, MSG_NAME, libc.addressOf(this._dest));
    s.setUint32(MSG_NAMELEN, SOCKADDR_IN6_SIZE, true);
    putPointer(s, MSG_IOV, libc.addressOf(this._sendIov));
    putPointer(s, MSG_IOVLEN, 1);
    putPointer(s, MSG_CONTROL, libc.addressOf(this._sendControl));
    putPointer(s, MSG_CONTROLLEN, CMSG_SPACE_PKTINFO);
    const c = new DataView(this._sendControl.buffer);
    putPointer(c, 0, CMSG_LEN_PKTINFO);
    c.setInt32(8, libc.IPPROTO_IPV6, true);
    c.setInt32(12, libc.IPV6_PKTINFO, true);
    c.setInt32(CMSG_HDR + 16, 0, true); // ifindex 0: the route decides
    // recvmsg: sender address, one iovec (set on first receive), control for the pktinfo.
    const r = this._recvMsgView;
    putPointer(r, MSG_NAME, libc.addressOf(this._recvFrom));
    putPointer(r, MSG_IOV, libc.addressOf(this._recvIov));
    putPointer(r, MSG_IOVLEN, 1);
    putPointer(r, MSG_CONTROL, libc.addressOf(this._recvControl));
    const poll = new DataView(this._pollIn.buffer);
    poll.setInt32(0, fd, true);
    poll.setInt16(4, libc.POLLIN, true);
  }

  /** Opens and binds the socket (non-blocking, close-on-exec). Throws a {@link SysError}. */
  static open(opts: Udp6MultiSourceOptions): Udp6MultiSource {
    const fd = libc.socket(
      libc.AF_INET6,
      libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC,
      0,
    );
    if (fd < 0) throw new SysError("UDP/IPv6 socket", fd);
    const sock = new Udp6MultiSource(fd);
    try {
      // IPV6_V6ONLY: what listens here (the native protocol, DHCPv4-over-DHCPv6: RFC 7341) is
      // IPv6 only. Dual-stack (the kernel's default, net.ipv6.bindv6only=0), an IPv4 sender
      // anywhere that reaches one of this machine's IPv4 addresses came in as ::ffff:a.b.c.d
      // and, naming that as HOST_IPV6, passed the server's source check and leased
      // (test/atk21_v4_on_wildcard.test.ts).
      for (const [name, what] of [
        [libc.IPV6_V6ONLY, "IPV6_V6ONLY"],
        [libc.IPV6_FREEBIND, "IPV6_FREEBIND"],
        [libc.IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO"],
      ] as const) {
        const r = libc.setsockoptInt(fd, libc.IPPROTO_IPV6, name, 1);
        if (r < 0) throw new SysError(`setsockopt ${what}`, r);
      }
      if (opts.receiveBuffer !== undefined)
        setSocketBuffer(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, opts.receiveBuffer, "SO_RCVBUF");
      if (opts.sendBuffer !== undefined)
        setSocketBuffer(fd, libc.SO_SNDBUFFORCE, libc.SO_SNDBUF, opts.sendBuffer, "SO_SNDBUF");
      const sa = new Uint8Array(SOCKADDR_IN6_SIZE);
      setFamilyInet6(sa);
      sa[2] = opts.port >>> 8;
      sa[3] = opts.port & 0xff;
      const r = libc.bind(fd, sa, SOCKADDR_IN6_SIZE);
      if (r < 0) {
        const hint =
          -r === Errno.EACCES ? `port ${opts.port} is below 1024: run as root` : undefined;
        throw new SysError(`bind [::]:${opts.port}`, r, hint);
      }
    } catch (error) {
      sock.close();
      throw error;
    }
    return sock;
  }

  /** Wraps a socket opened by {@link open} in another thread (fds are per process). */
  static attach(fd: number): Udp6MultiSource {
    return new Udp6MultiSource(fd);
  }

  /** The local port the socket is bound to (getsockname), or -errno. */
  localPort(): number {
    const sa = new Uint8Array(SOCKADDR_IN6_SIZE);
    const r = libc.getsockname(this.fd, sa, new Uint32Array(1));
    return r < 0 ? r : (sa[2]! << 8) | sa[3]!;
  }

  /**
   * Where {@link send} sends: `address` (16 bytes), `port`, and for a link-local address the
   * interface index `scopeId` (sin6_scope_id).
   */
  setDestination(address: Uint8Array, port: number, scopeId = 0): void {
    this._dest.set(address.subarray(0, 16), SIN6_ADDR);
    this._dest[2] = port >>> 8;
    this._dest[3] = port & 0xff;
    this._destView.setUint32(SIN6_SCOPE_ID, scopeId >>> 0, true);
  }

  /**
   * The sender of the datagram last {@link receive}d: its address is copied to
   * `from6[from6Offset, +16)`; returns its port. {@link receivedScopeId} gives its scope.
   */
  receivedFrom(from6: Uint8Array, from6Offset = 0): number {
    from6.set(this._recvFrom.subarray(SIN6_ADDR, SIN6_ADDR + 16), from6Offset);
    return (this._recvFrom[2]! << 8) | this._recvFrom[3]!;
  }

  /** sin6_scope_id of the sender of the datagram last received (0 unless link-local). */
  get receivedScopeId(): number {
    return this._recvFromView.getUint32(SIN6_SCOPE_ID, true);
  }

  /** Joins multicast `group` (16 bytes) on interface `ifindex` (IPV6_JOIN_GROUP); 0 or -errno. */
  joinGroup(group: Uint8Array, ifindex: number): number {
    const mreq = new Uint8Array(20); // struct ipv6_mreq: in6_addr, int ifindex
    mreq.set(group.subarray(0, 16), 0);
    new DataView(mreq.buffer).setInt32(16, ifindex, true);
    return libc.setsockoptBytes(this.fd, libc.IPPROTO_IPV6, libc.IPV6_JOIN_GROUP, mreq);
  }

  /**
   * Sends `buf[offset, offset+length)` to the destination from `source[sourceOffset, +16)`.
   * Returns the bytes sent or -errno (EAGAIN when the send buffer is full; EINVAL when the
   * kernel refused the source).
   */
  send(
    buf: Uint8Array,
    offset: number,
    length: number,
    source: Uint8Array,
    sourceOffset = 0,
  ): number {
    const src = this._sendSource;
    for (let i = 0; i < 16; i++) src[i] = source[sourceOffset + i]!;
    putPointer(this._sendIovView, 0, libc.addressOf(buf, offset));
    putPointer(this._sendIovView, 8, length);
    return libc.sendmsg(this.fd, this._sendMsg, 0);
  }

  /**
   * Receives one datagram into `buf` (from its start); the address it was sent to is copied to
   * `to6[to6Offset, +16)` (zeros if the kernel gave none). Returns the length, -EAGAIN when
   * nothing is waiting, or another -errno.
   */
  receive(buf: Uint8Array, to6: Uint8Array, to6Offset = 0): number {
    if (buf !== this._recvBuf) {
      this._recvBuf = buf;
      putPointer(this._recvIovView, 0, libc.addressOf(buf));
      putPointer(this._recvIovView, 8, buf.length);
    }
    const m = this._recvMsgView;
    m.setUint32(MSG_NAMELEN, SOCKADDR_IN6_SIZE, true);
    putPointer(m, MSG_CONTROLLEN, RECV_CONTROL_SIZE);
    const n = libc.recvmsg(this.fd, this._recvMsg, 0);
    if (n < 0) return n;
    const controlLength = m.getUint32(MSG_CONTROLLEN, true); // size_t, far below 2^32
    const c = this._recvControlView;
    let found = false;
    for (let at = 0; at + CMSG_HDR <= controlLength; ) {
      const len = c.getUint32(at, true);
      if (len < CMSG_HDR) break;
      if (
        c.getInt32(at + 8, true) === libc.IPPROTO_IPV6 &&
        c.getInt32(at + 12, true) === libc.IPV6_PKTINFO
      ) {
        for (let i = 0; i < 16; i++) to6[to6Offset + i] = this._recvControl[at + CMSG_HDR + i]!;
        found = true;
        break;
      }
      at += (len + 7) & ~7;
    }
    if (!found) to6.fill(0, to6Offset, to6Offset + 16);
    return n;
  }

  /** Waits up to `timeoutMs` for a datagram; true when one is waiting. */
  wait(timeoutMs: number): boolean {
    return libc.poll(this._pollIn, 1, Math.max(0, Math.ceil(timeoutMs))) > 0;
  }

  close(): void {
    libc.close(this.fd);
  }
}
