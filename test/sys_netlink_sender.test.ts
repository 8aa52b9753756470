/**
 * The rtnetlink notification readers believe only the kernel (lib/sys/netlink_events.ts,
 * lib/sys/addr_watch.ts): netlink(7) lets any local process, unprivileged too, send a
 * datagram to another socket's port id (only sends to a multicast group need privilege), so a
 * forged RTM_NEWLINK / RTM_DELADDR could otherwise make the DTI's route keeper, the inbound
 * Worker's local-source list or the client's address follower act on a change that never
 * happened. A forged datagram is sent here from a second netlink socket of the test process
 * (its port id is not 0) to the reader's port id; it must be dropped and counted, never
 * handed on. Both readers see only notifications of the namespace they were opened in; a
 * real change made meanwhile would show as a message, not as a forged one (the sequence
 * number 0xd5700bad marks ours).
 */
import { afterEach, expect, test } from "bun:test";
import { LocalSourcesFollower } from "../lib/dataplane/local_sources_follower.ts";
import { IPv6AddressWatch } from "../lib/sys/addr_watch.ts";
import * as libc from "../lib/sys/libc.ts";
import { NetlinkEvents, RTM_NEWLINK, RTMGRP_LINK } from "../lib/sys/netlink_events.ts";
import { Counter, Counters } from "../lib/tunnel/counters.ts";

const MARK = 0xd5700bad;
const RTM_DELADDR = 21;
const open: number[] = [];
afterEach(() => {
  for (const fd of open.splice(0)) libc.close(fd);
});

/** The port id the kernel gave the netlink socket `fd` (getsockname). */
function portIdOf(fd: number): number {
  const sa = new Uint8Array(12);
  const len = new Uint32Array([12]);
  expect(libc.getsockname(fd, sa, len)).toBe(0);
  return new DataView(sa.buffer).getUint32(4, true);
}

/** Sends `message` from a fresh netlink socket of this process to port id `to`. */
function forge(to: number, message: Uint8Array): void {
  const fd = libc.socket(libc.AF_NETLINK, libc.SOCK_RAW | libc.SOCK_CLOEXEC, 0);
  expect(fd).toBeGreaterThanOrEqual(0);
  open.push(fd);
  const sa = new Uint8Array(12);
  const v = new DataView(sa.buffer);
  v.setUint16(0, libc.AF_NETLINK, true);
  v.setUint32(4, to, true);
  expect(libc.sendto(fd, message, 0, message.length, 0, sa, sa.length)).toBe(message.length);
}

/** A netlink message: nlmsghdr (length, type, flags, seq = MARK, pid) and `body`. */
function nlmsg(type: number, body: Uint8Array): Uint8Array {
  const m = new Uint8Array(16 + body.length);
  const v = new DataView(m.buffer);
  v.setUint32(0, m.length, true);
  v.setUint16(4, type, true);
  v.setUint32(8, MARK, true);
  m.set(body, 16);
  return m;
}

test("NetlinkEvents: a forged RTM_NEWLINK from another process's socket is dropped and counted, not visited", () => {
  const events = NetlinkEvents.open(RTMGRP_LINK);
  try {
    // struct ifinfomsg: family, pad, type u16, index i32, flags u32 (IFF_UP), change u32.
    const ifinfo = new Uint8Array(16);
    new DataView(ifinfo.buffer).setUint32(8, 1, true);
    forge(portIdOf(events.fd), nlmsg(RTM_NEWLINK, ifinfo));
    forge(portIdOf(events.fd), nlmsg(RTM_NEWLINK, ifinfo));
    const forged: number[] = [];
    const d = events.drain((type, _buf, view, at) => {
      if (view.getUint32(at + 8, true) === MARK) forged.push(type);
    });
    expect({ forged, foreign: d.foreign, error: d.error }).toEqual({
      forged: [],
      foreign: 2,
      error: 0,
    });
  } finally {
    events.close();
  }
});

test("IPv6AddressWatch: a forged RTM_DELADDR of an address is dropped and counted, not an event", () => {
  const watch = IPv6AddressWatch.open();
  try {
    // struct ifaddrmsg (family AF_INET6, prefixlen 64, flags, scope, index 1), then IFA_ADDRESS.
    const body = new Uint8Array(8 + 20);
    const v = new DataView(body.buffer);
    body[0] = 10;
    body[1] = 64;
    v.setUint32(4, 1, true);
    v.setUint16(8, 20, true);
    v.setUint16(10, 1, true); // IFA_ADDRESS
    body.set([0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 12);
    forge(portIdOf(watch.fd), nlmsg(RTM_DELADDR, body));
    const { events } = watch.drain();
    expect({
      forged: events.filter((e) => e.address === "2001:db8:bad::1"),
      foreign: watch.foreign,
    }).toEqual({ forged: [], foreign: 1 });
  } finally {
    watch.close();
  }
});

test("the inbound Worker's local-source follower counts a forged RTM_NEWADDR (client-netlink-foreign) and does not re-read for it", () => {
  const counters = Counters.create({ slices: 1 }).slice(0);
  const follower = new LocalSourcesFollower({ counters, fallbackMs: 3_600_000 });
  try {
    expect(follower.eventsFd).toBeGreaterThanOrEqual(0);
    const before = follower.rereads;
    forge(portIdOf(follower.eventsFd), nlmsg(20 /* RTM_NEWADDR */, new Uint8Array(8)));
    follower.refresh();
    expect({
      foreign: counters[Counter["client-netlink-foreign"]],
      rereads: follower.rereads - before,
    }).toEqual({ foreign: 1, rereads: 0 });
  } finally {
    follower.close();
  }
});
