/**
 * Opening and setting up a raw IPv6 socket of next header 4 (raw6.ts): the socket itself,
 * its address, peer and buffers, and the options a tunnel end point needs — with what the
 * kernel honours on such a socket and what it accepts and then ignores (measured on kernel
 * 6.18; raw(7), ipv6(7)). Each function takes the fd and throws a {@link SysError} with a
 * hint where one helps; none is on the per-packet path.
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";
import {
  IPV6_FLOWINFO_SEND,
  IPV6_RECVERR,
  IPV6_RECVTCLASS,
  SOCKADDR_IN6_SIZE,
  setSocketBuffer,
  sockaddrIn6,
} from "./socket_abi.ts";

const IPV6_PMTUDISC_WANT = 1;
const IPV6_PMTUDISC_DO = 2;

/** `socket(AF_INET6, SOCK_RAW, protocol)`, non-blocking and close-on-exec: the fd. */
export function openRaw6Fd(protocol: number): number {
  const fd = libc.socket(
    libc.AF_INET6,
    libc.SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC,
    protocol,
  );
  if (fd >= 0) return fd;
  const hint =
    -fd === Errno.EPERM || -fd === Errno.EACCES
      ? "a raw IPv6 socket needs root or CAP_NET_RAW"
      : -fd === Errno.EAFNOSUPPORT
        ? "IPv6 is disabled in this kernel"
        : undefined;
  throw new SysError(`raw IPv6 socket (next header ${protocol})`, fd, hint);
}

/**
 * What a tunnel end point needs (RFC 2473 §7–8, RFC 6040, RFC 6438): IPV6_RECVERR (ICMPv6
 * errors about sent packets on the error queue, which also makes the kernel apply Packet Too
 * Big to its route cache), IPV6_RECVTCLASS (the outer traffic class of each received packet)
 * and IPV6_FLOWINFO_SEND (a flow label per sent packet).
 */
export function enableRaw6TunnelOptions(fd: number): void {
  for (const [name, what] of [
    [IPV6_RECVERR, "IPV6_RECVERR"],
    [IPV6_RECVTCLASS, "IPV6_RECVTCLASS"],
    [IPV6_FLOWINFO_SEND, "IPV6_FLOWINFO_SEND"],
  ] as const) {
    const r = libc.setsockoptInt(fd, libc.IPPROTO_IPV6, name, 1);
    if (r < 0) throw new SysError(`setsockopt ${what}`, r);
  }
}

/** bind(2) to `src6` (16 bytes); EADDRNOTAVAIL when the address is not configured here. */
export function bindRaw6(fd: number, src6: Uint8Array): void {
  const r = libc.bind(fd, sockaddrIn6(src6), SOCKADDR_IN6_SIZE);
  if (r >= 0) return;
  const hint =
    -r === Errno.EADDRNOTAVAIL
      ? "the address is not configured on any interface here (or is still tentative: DAD)"
      : undefined;
  throw new SysError("bind raw IPv6 socket", r, hint);
}

/** connect(2) to `peer6` (16 bytes). */
export function connectRaw6(fd: number, peer6: Uint8Array): void {
  const r = libc.connect(fd, sockaddrIn6(peer6), SOCKADDR_IN6_SIZE);
  if (r < 0) throw new SysError("connect raw IPv6 socket", r);
}

/**
 * Sets the kernel buffer sizes (bytes; the kernel doubles them for bookkeeping):
 * SO_RCVBUFFORCE / SO_SNDBUFFORCE as root (beyond net.core.*mem_max), else the plain ones.
 */
export function setRaw6Buffers(fd: number, receive?: number, send?: number): void {
  if (receive !== undefined) {
    setSocketBuffer(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, receive, "SO_RCVBUF");
  }
  if (send !== undefined) {
    setSocketBuffer(fd, libc.SO_SNDBUFFORCE, libc.SO_SNDBUF, send, "SO_SNDBUF");
  }
}

/** The kernel's buffer sizes as it reports them (SO_RCVBUF, SO_SNDBUF), bytes. */
export function raw6BufferSizes(fd: number): { receive: number; send: number } {
  return {
    receive: libc.getsockoptInt(fd, libc.SOL_SOCKET, libc.SO_RCVBUF),
    send: libc.getsockoptInt(fd, libc.SOL_SOCKET, libc.SO_SNDBUF),
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
export function setRaw6DontFragment(fd: number, on: boolean): void {
  const mode = on ? IPV6_PMTUDISC_DO : IPV6_PMTUDISC_WANT;
  const r = libc.setsockoptInt(fd, libc.IPPROTO_IPV6, libc.IPV6_MTU_DISCOVER, mode);
  if (r < 0) throw new SysError("setsockopt IPV6_MTU_DISCOVER", r);
}
