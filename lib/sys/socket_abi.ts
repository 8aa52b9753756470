/**
 * The C structures the socket calls of lib/sys pass to the kernel through `bun:ffi`, as byte
 * offsets (Linux x86_64 / aarch64, LP64: pointers and size_t are 8 bytes, little-endian), and
 * the few helpers that fill them: `struct sockaddr_in6` (netinet/in.h, ipv6(7)),
 * `struct msghdr` and `struct iovec` (sys/socket.h, recvmsg(2)), `struct cmsghdr` and its
 * CMSG_* arithmetic (cmsg(3)), and the socket buffer options (socket(7)).
 *
 * One copy for lib/sys/raw6.ts, raw6_batch.ts and udp6_multisource.ts, which used to carry
 * their own. Nothing here allocates except {@link sockaddrIn6}.
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";

/** sizeof(struct sockaddr_in6): family u16, port u16, flowinfo u32, addr[16], scope_id u32. */
export const SOCKADDR_IN6_SIZE = 28;
/** Offset of sin6_port (u16, network byte order). */
export const SIN6_PORT = 2;
/** Offset of sin6_flowinfo (u32, network byte order: 4 bits 0, 8 traffic class, 20 label). */
export const SIN6_FLOWINFO = 4;
/** Offset of sin6_addr (16 bytes). */
export const SIN6_ADDR = 8;
/** Offset of sin6_scope_id (u32, host byte order: the interface index). */
export const SIN6_SCOPE_ID = 24;

/** sizeof(struct msghdr): name@0, namelen@8, iov@16, iovlen@24, control@32, controllen@40, flags@48. */
export const MSGHDR_SIZE = 56;
export const MSG_NAME = 0;
export const MSG_NAMELEN = 8;
export const MSG_IOV = 16;
export const MSG_IOVLEN = 24;
export const MSG_CONTROL = 32;
export const MSG_CONTROLLEN = 40;
/** sizeof(struct mmsghdr): a msghdr, then msg_len (u32) at 56, padded to 64 (sendmmsg(2)). */
export const MMSGHDR_SIZE = 64;
/** Offset of msg_len in a struct mmsghdr: the bytes received or sent for that message. */
export const MMSG_LEN = 56;
/** sizeof(struct iovec): base (pointer)@0, len (size_t)@8. */
export const IOVEC_SIZE = 16;

/** sizeof(struct cmsghdr), CMSG_LEN(0): len (size_t)@0, level (int)@8, type (int)@12, data@16. */
export const CMSG_HDR = 16;
/** CMSG_SPACE(sizeof(int)): one `int` control message, its data padded to 8 bytes. */
export const CMSG_SPACE_INT = CMSG_HDR + 8;

/** recv/send flags (sys/socket.h). */
export const MSG_DONTWAIT = 0x40;
export const MSG_ERRQUEUE = 0x2000;

/** Socket options of <linux/in6.h> (level IPPROTO_IPV6) that lib/sys uses beyond libc.ts. */
export const IPV6_MTU = 24;
export const IPV6_RECVERR = 25;
export const IPV6_FLOWINFO_SEND = 33;
export const IPV6_RECVTCLASS = 66;
export const IPV6_TCLASS = 67;

/**
 * Writes a pointer or size_t field, little-endian, without a BigInt (user-space pointers are
 * below 2^53).
 */
export function putPointer(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / 2 ** 32), true);
}

/** Sets sin6_family of `sa` to AF_INET6 (sa_family_t, a little-endian u16). */
export function setFamilyInet6(sa: Uint8Array): void {
  sa[0] = libc.AF_INET6 & 0xff;
  sa[1] = libc.AF_INET6 >> 8;
}

/** A new sockaddr_in6 for `addr6[0, 16)`, port 0 unless given (allocates; for setup calls). */
export function sockaddrIn6(addr6: Uint8Array, port = 0): Uint8Array {
  const sa = new Uint8Array(SOCKADDR_IN6_SIZE);
  setFamilyInet6(sa);
  sa[SIN6_PORT] = port >> 8;
  sa[SIN6_PORT + 1] = port & 0xff;
  sa.set(addr6.subarray(0, 16), SIN6_ADDR);
  return sa;
}

/**
 * The offset of the data of the first control message of `level` and `type` in
 * `control[0, length)` (the msg_controllen the kernel returned), or -1. Walks the cmsghdrs as
 * CMSG_NXTHDR does: each is CMSG_ALIGN(len) bytes, 8-byte aligned.
 */
export function findControlMessage(
  control: DataView,
  length: number,
  level: number,
  type: number,
): number {
  for (let at = 0; at + CMSG_HDR <= length; ) {
    const len = control.getUint32(at, true);
    if (len < CMSG_HDR) return -1;
    if (control.getInt32(at + 8, true) === level && control.getInt32(at + 12, true) === type) {
      return at + CMSG_HDR;
    }
    at += (len + 7) & ~7;
  }
  return -1;
}

/**
 * Sets a socket buffer size (bytes; the kernel doubles it for bookkeeping): `force`
 * (SO_RCVBUFFORCE / SO_SNDBUFFORCE, beyond net.core.rmem_max / wmem_max) as root, else
 * `plain` (SO_RCVBUF / SO_SNDBUF, capped at those sysctls). Throws a {@link SysError} naming
 * `what`.
 */
export function setSocketBuffer(
  fd: number,
  force: number,
  plain: number,
  bytes: number,
  what: string,
): void {
  let r = libc.setsockoptInt(fd, libc.SOL_SOCKET, force, bytes);
  // Without CAP_NET_ADMIN the *FORCE options fail with EPERM.
  if (r === -Errno.EPERM) r = libc.setsockoptInt(fd, libc.SOL_SOCKET, plain, bytes);
  if (r < 0) throw new SysError(`setsockopt ${what} ${bytes}`, r);
}
