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
import { NetlinkEvents, type NetlinkVisitor } from "./netlink_events.ts";

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
  readonly #events: NetlinkEvents;
  /** The drain in progress: its events (the visitor below appends). */
  #drained: AddressEvent[] = [];
  readonly #visit: NetlinkVisitor = (type, buf, v, at, len) => {
    // struct ifaddrmsg after the 16-byte nlmsghdr: family u8, prefixlen u8, flags u8, scope u8, index u32.
    if (
      (type !== RTM_NEWADDR && type !== RTM_DELADDR) ||
      len < 24 ||
      buf[at + 16] !== libc.AF_INET6
    )
      return;
    let flags = buf[at + 18]!;
    const ifindex = v.getUint32(at + 20, true);
    let address: string | undefined;
    for (let a = at + 24; a + 4 <= at + len; ) {
      const alen = v.getUint16(a, true);
      const atype = v.getUint16(a + 2, true);
      if (alen < 4) break;
      if ((atype === IFA_ADDRESS || atype === IFA_LOCAL) && alen >= 20)
        address = formatIPv6(buf, a + 4);
      if (atype === IFA_FLAGS && alen >= 8) flags = v.getUint32(a + 4, true);
      a += (alen + 3) & ~3;
    }
    if (address !== undefined)
      this.#drained.push({
        kind: type === RTM_NEWADDR ? "added" : "removed",
        address,
        ifindex,
        flags,
      });
  };
  /**
   * Datagrams dropped unread because the kernel did not send them (a sender port id other
   * than 0, ./netlink_events.ts): netlink(7) lets any local process send to this socket's port id.
   */
  foreign = 0;

  private constructor(events: NetlinkEvents) {
    this.#events = events;
    this.fd = events.fd;
  }

  /** Opens and subscribes (non-blocking, close-on-exec). Throws a {@link SysError}. */
  static open(): IPv6AddressWatch {
    return new IPv6AddressWatch(NetlinkEvents.open(RTMGRP_IPV6_IFADDR));
  }

  /**
   * Every change queued since the last call. `overflow` is true when the kernel dropped
   * notifications (ENOBUFS): the caller should look at the addresses afresh.
   */
  drain(): { events: AddressEvent[]; overflow: boolean } {
    this.#drained = [];
    const d = this.#events.drain(this.#visit);
    this.foreign += d.foreign;
    return { events: this.#drained, overflow: d.overflow };
  }

  close(): void {
    this.#events.close();
  }
}
