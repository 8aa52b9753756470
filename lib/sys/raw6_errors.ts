/**
 * What the kernel tells a raw IPv6 tunnel socket about ICMPv6 errors its packets caused
 * (RFC 2473 §8: a tunnel entry point learns of errors inside the tunnel from the ICMPv6 errors
 * sent back to it), and the path MTU it keeps:
 * - the record of one error on the error queue (`struct sock_extended_err`,
 *   linux/errqueue.h, IPV6_RECVERR in ipv6(7)), read by {@link readExtendedError};
 * - the errnos such an error leaves pending on the socket, failing the next send or receive
 *   once ({@link isIcmpErrno});
 * - the path MTU the kernel records from a Packet Too Big, per destination
 *   ({@link routePathMtu}, RFC 8201).
 *
 * Used by lib/sys/raw6.ts (one packet at a time) and lib/sys/raw6_batch.ts (batches).
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Errno } from "./libc.ts";
import {
  findControlMessage,
  IPV6_MTU,
  IPV6_RECVERR,
  SOCKADDR_IN6_SIZE,
  sockaddrIn6,
} from "./socket_abi.ts";

/** sock_extended_err origin of an ICMPv6 error (linux/errqueue.h). */
export const SO_EE_ORIGIN_ICMP6 = 3;
/** EPROTO (asm-generic/errno.h): what a Parameter Problem leaves pending. */
const EPROTO = 71;
/** The discard port (RFC 863): any port will do for {@link routePathMtu}, nothing is sent. */
const DISCARD_PORT = 9;

/**
 * One error from the error queue (struct sock_extended_err, linux/errqueue.h). For an ICMPv6
 * error `origin` is SO_EE_ORIGIN_ICMP6, `type`/`code` are the ICMPv6 ones and `info` is the
 * MTU of a Packet Too Big (bytes, RFC 8201 §4).
 */
export interface TunnelErrorInfo {
  errno: number;
  origin: number;
  type: number;
  code: number;
  info: number;
  /**
   * Filled when present: the ICMPv6 error's sender (SO_EE_OFFENDER, the sockaddr_in6 after
   * the sock_extended_err), all zero when the kernel gave none.
   */
  offender6?: Uint8Array;
}

/**
 * Fills `info` from the IPV6_RECVERR control message in `control[0, length)` (what a
 * recvmsg with MSG_ERRQUEUE returned); all zero when there is none. Allocates nothing.
 * Layout of sock_extended_err: errno u32@0, origin u8@4, type u8@5, code u8@6, pad@7, info u32@8.
 */
export function readExtendedError(control: DataView, length: number, info: TunnelErrorInfo): void {
  info.errno = 0;
  info.origin = 0;
  info.type = 0;
  info.code = 0;
  info.info = 0;
  const offender = info.offender6;
  offender?.fill(0);
  const e = findControlMessage(control, length, libc.IPPROTO_IPV6, IPV6_RECVERR);
  if (e < 0) return;
  info.errno = control.getUint32(e, true);
  info.origin = control.getUint8(e + 4);
  info.type = control.getUint8(e + 5);
  info.code = control.getUint8(e + 6);
  info.info = control.getUint32(e + 8, true);
  // struct { sock_extended_err ee; sockaddr_in6 offender; } (net/ipv6/datagram.c
  // ipv6_recv_error): sin6_family at +16, sin6_addr at +24.
  if (offender && e + 40 <= length && control.getUint16(e + 16, true) === libc.AF_INET6)
    for (let i = 0; i < 16; i++) offender[i] = control.getUint8(e + 24 + i);
}

/**
 * Whether `n` (a -errno from send or receive) is one an ICMPv6 error leaves pending on the
 * socket (icmpv6_err_convert in net/ipv6/icmp.c): unreachable, administratively prohibited,
 * port unreachable, too big, parameter problem (time exceeded maps to EHOSTUNREACH).
 */
export function isIcmpErrno(n: number): boolean {
  return (
    n === -Errno.EHOSTUNREACH ||
    n === -Errno.ENETUNREACH ||
    n === -Errno.EACCES ||
    n === -Errno.ECONNREFUSED ||
    n === -Errno.EMSGSIZE ||
    n === -EPROTO
  );
}

/**
 * The kernel's path MTU towards `dst6` (16 bytes): its route, lowered by any Packet Too Big it
 * recorded (the route cache outlives a process; RFC 8201 §5.2 lets a node keep estimates).
 * A UDP socket is connected (no packet is sent) and asked for IPV6_MTU (ipv6(7)). Returns
 * the MTU in bytes, or -errno (e.g. ENETUNREACH without a route).
 */
export function routePathMtu(dst6: Uint8Array): number {
  const fd = libc.socket(libc.AF_INET6, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
  if (fd < 0) return fd;
  try {
    const r = libc.connect(fd, sockaddrIn6(dst6, DISCARD_PORT), SOCKADDR_IN6_SIZE);
    if (r < 0) return r;
    return libc.getsockoptInt(fd, libc.IPPROTO_IPV6, IPV6_MTU);
  } finally {
    libc.close(fd);
  }
}
