/**
 * rtnetlink notifications of one or more multicast groups (rtnetlink(7): RTMGRP_LINK for
 * interfaces, RTMGRP_IPV4_IFADDR for IPv4 addresses, …; layouts from
 * include/uapi/linux/{netlink,rtnetlink}.h), read without blocking: a NETLINK_ROUTE socket
 * bound to the groups. The kernel queues a notification on the socket within the syscall that
 * made the change (netlink_broadcast, before `ip addr add` returns), so a reader that drains
 * the socket after that moment sees it.
 *
 * Used by the DSTM client's inbound Worker (the host's IPv4 addresses it refuses as inner
 * sources, lib/dataplane/client_attach.ts) and by the DTI's route keeper (the DTI set down
 * and up, lib/client/dti_routes.ts). {@link NetlinkEvents.drain} allocates nothing, so a loop
 * may call it once per batch of packets: with nothing queued it costs one recv syscall.
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";

const NETLINK_ROUTE = 0;
/** RTMGRP_LINK: interfaces added, removed, set up or down (RTM_NEWLINK / RTM_DELLINK). */
export const RTMGRP_LINK = 0x1;
/** RTMGRP_IPV4_IFADDR: IPv4 addresses added and removed (RTM_NEWADDR / RTM_DELADDR). */
export const RTMGRP_IPV4_IFADDR = 0x10;
/** RTMGRP_IPV4_ROUTE: IPv4 routes added and removed (RTM_NEWROUTE / RTM_DELROUTE). */
export const RTMGRP_IPV4_ROUTE = 0x40;
/** Message types (rtnetlink.h). */
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
/** The kernel's receive buffer we ask for, bytes: room for a burst of address changes. */
const RECEIVE_BUFFER = 1 << 20;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
/** Reads per drain at most (each up to 64 KiB of messages). */
const MAX_READS = 64;

/**
 * Called for each message of a drain: its type (RTM_*), and where it is in `buf` (the
 * 16-byte nlmsghdr starts at `at`; the message is `length` bytes). The bytes are valid only
 * during the call.
 */
export type NetlinkVisitor = (
  type: number,
  buf: Uint8Array,
  view: DataView,
  at: number,
  length: number,
) => void;

/** What one {@link NetlinkEvents.drain} found (the same object each time: read it at once). */
export interface NetlinkDrain {
  /** Messages read. */
  messages: number;
  /**
   * The kernel dropped notifications (ENOBUFS: the socket's queue was full): what the caller
   * follows must be looked at afresh.
   */
  overflow: boolean;
  /** 0, or the errno of a read that failed otherwise (the socket is no use any more). */
  error: number;
  /**
   * Datagrams dropped unread because the kernel did not send them: any local process may
   * send a netlink datagram to this socket's port id (netlink(7): only group sends need
   * privilege), so only a sender port id of 0, the kernel's, is believed.
   */
  foreign: number;
}

/**
 * A subscription to rtnetlink groups.
 *
 * @example
 * const events = NetlinkEvents.open(RTMGRP_IPV4_IFADDR);
 * const d = events.drain();   // between reads of the data path
 * if (d.messages > 0 || d.overflow) reread();
 */
export class NetlinkEvents {
  readonly fd: number;
  readonly #buf = new Uint8Array(65536);
  readonly #view = new DataView(this.#buf.buffer);
  readonly #result: NetlinkDrain = { messages: 0, overflow: false, error: 0, foreign: 0 };
  /** The sender's struct sockaddr_nl (family u16, pad u16, pid u32, groups u32) and its length. */
  readonly #from = new Uint8Array(12);
  readonly #fromView = new DataView(this.#from.buffer);
  readonly #fromLength = new Uint8Array(4);
  readonly #fromLengthView = new DataView(this.#fromLength.buffer);
  #closed = false;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /**
   * Opens a non-blocking, close-on-exec NETLINK_ROUTE socket subscribed to `groups` (RTMGRP_*
   * bits), in the calling thread's network namespace. Throws a {@link SysError}.
   */
  static open(groups: number): NetlinkEvents {
    const fd = libc.socket(
      libc.AF_NETLINK,
      libc.SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC,
      NETLINK_ROUTE,
    );
    if (fd < 0) throw new SysError("netlink socket", fd);
    libc.setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, RECEIVE_BUFFER); // best effort
    // struct sockaddr_nl: family u16, pad u16, pid u32 (0: the kernel assigns), groups u32.
    const sa = new Uint8Array(12);
    const v = new DataView(sa.buffer);
    v.setUint16(0, libc.AF_NETLINK, true);
    v.setUint32(8, groups >>> 0, true);
    const r = libc.bind(fd, sa, sa.length);
    if (r < 0) {
      libc.close(fd);
      throw new SysError(`bind netlink groups 0x${groups.toString(16)}`, r);
    }
    return new NetlinkEvents(fd);
  }

  /**
   * Reads everything queued, without blocking, handing each message to `visit` if given.
   * Allocates nothing. After {@link close}, or once a read failed, it reads nothing more and
   * says `error` (EBADF after close).
   */
  drain(visit?: NetlinkVisitor): NetlinkDrain {
    const d = this.#result;
    d.messages = 0;
    d.overflow = false;
    d.foreign = 0;
    if (this.#closed) {
      d.error = Errno.EBADF;
      return d;
    }
    if (d.error !== 0) return d;
    const buf = this.#buf;
    const v = this.#view;
    for (let reads = 0; reads < MAX_READS; reads++) {
      this.#fromLengthView.setUint32(0, this.#from.length, true);
      const n = libc.recvfrom(this.fd, buf, 0, buf.length, 0, this.#from, this.#fromLength);
      if (n === -Errno.ENOBUFS) {
        d.overflow = true;
        continue;
      }
      if (n === -Errno.EINTR) continue;
      if (n === -Errno.EAGAIN || n === 0) break;
      if (n < 0) {
        d.error = -n;
        break;
      }
      if (this.#fromView.getUint32(4, true) !== 0) {
        d.foreign++;
        continue;
      }
      for (let at = 0; at + 16 <= n; ) {
        const len = v.getUint32(at, true);
        if (len < 16 || at + len > n) break;
        d.messages++;
        visit?.(v.getUint16(at + 4, true), buf, v, at, len);
        at += (len + 3) & ~3;
      }
    }
    return d;
  }

  /** Closes the socket (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc.close(this.fd);
  }
}
