/**
 * Notifications of IPv6 addresses added to and removed from this host's interfaces: a
 * NETLINK_ROUTE socket subscribed to RTMGRP_IPV6_IFADDR (rtnetlink(7); layouts from
 * include/uapi/linux/{netlink,rtnetlink,if_addr}.h), read without blocking. The DSTM client
 * uses it to notice that the address its lease is for went away (SLAAC renumbering, a
 * temporary address that expired, RFC 8981) and start over from a live one.
 *
 * @module
 */
import { formatIPv6 } from "../net/addr.ts";
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";

const NETLINK_ROUTE = 0;
/** RTMGRP_IPV6_IFADDR: the multicast group of IPv6 address changes. */
const RTMGRP_IPV6_IFADDR = 0x100;
const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_FLAGS = 8;
/** IFA_F_* flags (if_addr.h). */
export const IFA_F_DADFAILED = 0x08;
export const IFA_F_DEPRECATED = 0x20;
export const IFA_F_TENTATIVE = 0x40;

/** One change: an address added (or its flags changed) or removed. */
export interface AddressEvent {
  readonly kind: "added" | "removed";
  /** Canonical text form. */
  readonly address: string;
  readonly ifindex: number;
  /** IFA_F_* flags (tentative, deprecated, DAD failed…). */
  readonly flags: number;
}

/**
 * A subscription to IPv6 address changes.
 *
 * @example
 * const watch = IPv6AddressWatch.open();
 * const { events, overflow } = watch.drain(); // call from a timer
 */
export class IPv6AddressWatch {
  readonly fd: number;
  private readonly _buf = new Uint8Array(65536);
  private readonly _view = new DataView(this._buf.buffer);
  /** The sender's struct sockaddr_nl (family u16, pad u16, pid u32, groups u32) and its length. */
  private readonly _from = new Uint8Array(12);
  private readonly _fromLength = new Uint8Array(4);
  /**
   * Datagrams dropped unread because the kernel did not send them (a sender port id other
   * than 0): netlink(7) lets any local process send to this socket's port id.
   */
  foreign = 0;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Opens and subscribes (non-blocking, close-on-exec). Throws a {@link SysError}. */
  static open(): IPv6AddressWatch {
    const fd = libc.socket(
      libc.AF_NETLINK,
      libc.SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC,
      NETLINK_ROUTE,
    );
    if (fd < 0) throw new SysError("netlink socket", fd);
    // struct sockaddr_nl: family u16, pad u16, pid u32 (0: the kernel assigns), groups u32.
    const sa = new Uint8Array(12);
    const v = new DataView(sa.buffer);
    v.setUint16(0, libc.AF_NETLINK, true);
    v.setUint32(8, RTMGRP_IPV6_IFADDR, true);
    const r = libc.bind(fd, sa, sa.length);
    if (r < 0) {
      libc.close(fd);
      throw new SysError("bind netlink RTMGRP_IPV6_IFADDR", r);
    }
    return new IPv6AddressWatch(fd);
  }

  /**
   * Every change queued since the last call. `overflow` is true when the kernel dropped
   * notifications (ENOBUFS): the caller should look at the addresses afresh.
   */
  drain(): { events: AddressEvent[]; overflow: boolean } {
    const events: AddressEvent[] = [];
    let overflow = false;
    for (let reads = 0; reads < 64; reads++) {
      new DataView(this._fromLength.buffer).setUint32(0, this._from.length, true);
      const n = libc.recvfrom(
        this.fd,
        this._buf,
        0,
        this._buf.length,
        0,
        this._from,
        this._fromLength,
      );
      if (n === -Errno.ENOBUFS) {
        overflow = true;
        continue;
      }
      if (n <= 0) break;
      // Only the kernel's (sender port id 0): any local process may send to our port id.
      if (new DataView(this._from.buffer).getUint32(4, true) !== 0) {
        this.foreign++;
        continue;
      }
      this._parse(n, events);
    }
    return { events, overflow };
  }

  close(): void {
    libc.close(this.fd);
  }

  private _parse(length: number, events: AddressEvent[]): void {
    const v = this._view;
    for (let at = 0; at + 16 <= length; ) {
      const len = v.getUint32(at, true);
      const type = v.getUint16(at + 4, true);
      if (len < 16 || at + len > length) break;
      // struct ifaddrmsg after the 16-byte nlmsghdr: family u8, prefixlen u8, flags u8, scope u8, index u32.
      if (
        (type === RTM_NEWADDR || type === RTM_DELADDR) &&
        len >= 24 &&
        this._buf[at + 16] === libc.AF_INET6
      ) {
        let flags = this._buf[at + 18]!;
        const ifindex = v.getUint32(at + 20, true);
        let address: string | undefined;
        for (let a = at + 24; a + 4 <= at + len; ) {
          const alen = v.getUint16(a, true);
          const atype = v.getUint16(a + 2, true);
          if (alen < 4) break;
          if ((atype === IFA_ADDRESS || atype === IFA_LOCAL) && alen >= 20)
            address = formatIPv6(this._buf, a + 4);
          if (atype === IFA_FLAGS && alen >= 8) flags = v.getUint32(a + 4, true);
          a += (alen + 3) & ~3;
        }
        if (address !== undefined)
          events.push({
            kind: type === RTM_NEWADDR ? "added" : "removed",
            address,
            ifindex,
            flags,
          });
      }
      at += (len + 3) & ~3;
    }
  }
}
