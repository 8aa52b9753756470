/**
 * Many UDP/IPv6 datagrams in one sendmmsg(2), each with its own destination and its own
 * source address (an IPV6_PKTINFO control message, ipv6(7)): how a listener on `[::]`
 * (./udp_pktinfo.ts) sends the answers of one turn of the event loop at the cost of one
 * system call instead of one each. On a machine where a system call is dear that is most of
 * what sending costs (measured: about 13 µs per sendmsg on the server's main thread).
 *
 * Every struct (mmsghdr, sockaddr_in6, iovec, cmsghdr) is allocated once, for
 * {@link UDP6_SEND_VECTOR} messages, and the pointers between them are set once; a send fills
 * addresses, lengths and the iovec bases. Linux x86_64 / aarch64 (LP64) layouts
 * (./socket_abi.ts).
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Errno } from "./libc.ts";
import {
  CMSG_HDR,
  IOVEC_SIZE,
  MMSGHDR_SIZE,
  MSG_CONTROL,
  MSG_CONTROLLEN,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_NAME,
  MSG_NAMELEN,
  putPointer,
  SIN6_ADDR,
  SIN6_PORT,
  SIN6_SCOPE_ID,
  SOCKADDR_IN6_SIZE,
  setFamilyInet6,
} from "./socket_abi.ts";

/** Messages handed to the kernel per sendmmsg(2) at most. */
export const UDP6_SEND_VECTOR = 64;
/** Bytes between two sockaddr_in6 (28, rounded up for alignment). */
const ADDR_STRIDE = 32;
/** CMSG_SPACE(sizeof(struct in6_pktinfo)): header 16 + 20 bytes of data padded to 24. */
const PKTINFO_SPACE = CMSG_HDR + 24;
const PKTINFO_LEN = CMSG_HDR + 20;

/** One datagram to send: `data` whole, to `dest` (16 bytes) port `port`, from `source` (16 bytes; all zero: the kernel chooses). */
export interface Udp6Datagram {
  readonly data: Uint8Array;
  readonly dest: Uint8Array;
  readonly port: number;
  readonly scopeId: number;
  readonly source: Uint8Array;
}

/** The sendmmsg(2) side of one non-blocking UDP/IPv6 socket `fd` (not owned: closing it is the caller's). */
export class Udp6SendVector {
  readonly #vec = new Uint8Array(UDP6_SEND_VECTOR * MMSGHDR_SIZE);
  readonly #addrs = new Uint8Array(UDP6_SEND_VECTOR * ADDR_STRIDE);
  readonly #iovs = new Uint8Array(UDP6_SEND_VECTOR * IOVEC_SIZE);
  readonly #control = new Uint8Array(UDP6_SEND_VECTOR * PKTINFO_SPACE);
  // Views before any pointer is taken (see udp6_multisource.ts on moving storage).
  readonly #vecView = new DataView(this.#vec.buffer);
  readonly #addrView = new DataView(this.#addrs.buffer);
  readonly #iovView = new DataView(this.#iovs.buffer);
  readonly #controlView = new DataView(this.#control.buffer);

  constructor(readonly fd: number) {
    const v = this.#vecView;
    const c = this.#controlView;
    for (let i = 0; i < UDP6_SEND_VECTOR; i++) {
      const m = i * MMSGHDR_SIZE;
      setFamilyInet6(this.#addrs.subarray(i * ADDR_STRIDE));
      putPointer(v, m + MSG_NAME, libc.addressOf(this.#addrs, i * ADDR_STRIDE));
      v.setUint32(m + MSG_NAMELEN, SOCKADDR_IN6_SIZE, true);
      putPointer(v, m + MSG_IOV, libc.addressOf(this.#iovs, i * IOVEC_SIZE));
      putPointer(v, m + MSG_IOVLEN, 1);
      putPointer(v, m + MSG_CONTROL, libc.addressOf(this.#control, i * PKTINFO_SPACE));
      putPointer(v, m + MSG_CONTROLLEN, PKTINFO_SPACE);
      const b = i * PKTINFO_SPACE;
      putPointer(c, b, PKTINFO_LEN);
      c.setInt32(b + 8, libc.IPPROTO_IPV6, true);
      c.setInt32(b + 12, libc.IPV6_PKTINFO, true);
      c.setInt32(b + CMSG_HDR + 16, 0, true); // ifindex 0: the route decides
    }
  }

  /**
   * Sends `batch` (any length: {@link UDP6_SEND_VECTOR} per system call). A datagram the
   * kernel refuses (no route, a source not of this host, EMSGSIZE) is skipped and reported
   * to `refused(index, -errno)`; a full send buffer (EAGAIN) refuses the rest of that call's
   * messages the same way (the answers are datagrams: the asker retransmits). Returns the
   * number sent.
   */
  send(batch: readonly Udp6Datagram[], refused: (index: number, errno: number) => void): number {
    let sent = 0;
    for (let first = 0; first < batch.length; first += UDP6_SEND_VECTOR) {
      const count = Math.min(UDP6_SEND_VECTOR, batch.length - first);
      for (let i = 0; i < count; i++) this.#fill(i, batch[first + i]!);
      let next = 0;
      while (next < count) {
        const vec = next === 0 ? this.#vec : this.#vec.subarray(next * MMSGHDR_SIZE);
        const r = libc.sendmmsg(this.fd, vec, count - next, 0);
        if (r > 0) {
          next += r;
          sent += r;
        } else if (r === -Errno.EAGAIN) {
          for (; next < count; next++) refused(first + next, r);
        } else {
          refused(first + next, r < 0 ? r : -Errno.EIO);
          next++;
        }
      }
    }
    return sent;
  }

  #fill(i: number, d: Udp6Datagram): void {
    const a = i * ADDR_STRIDE;
    for (let k = 0; k < 16; k++) this.#addrs[a + SIN6_ADDR + k] = d.dest[k]!;
    this.#addrs[a + SIN6_PORT] = d.port >>> 8;
    this.#addrs[a + SIN6_PORT + 1] = d.port & 0xff;
    this.#addrView.setUint32(a + SIN6_SCOPE_ID, d.scopeId >>> 0, true);
    const src = i * PKTINFO_SPACE + CMSG_HDR;
    for (let k = 0; k < 16; k++) this.#control[src + k] = d.source[k]!;
    putPointer(this.#iovView, i * IOVEC_SIZE, d.data.length ? libc.addressOf(d.data) : 0);
    putPointer(this.#iovView, i * IOVEC_SIZE + 8, d.data.length);
  }
}
