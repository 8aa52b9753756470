/**
 * A raw IPv4 socket that sends complete IPv4 packets (IPPROTO_RAW implies IP_HDRINCL,
 * raw(7)): the TEP's way to send the ICMPv4 errors it generates (RFC 2473 "fragmentation
 * needed"). Written into the TUN device instead, such a packet would arrive with the TEP's
 * own address as source, which the kernel drops as a martian; sent from a local socket it is
 * an ordinary locally generated packet, routed to its destination.
 *
 * @module
 */
import * as libc from "./libc.ts";
import { SysError } from "./libc.ts";

const IPPROTO_RAW = 255;
/** sizeof(struct sockaddr_in): family u16, port u16, addr u32, zero[8]. */
const SOCKADDR_IN_SIZE = 16;

export class Raw4Socket {
  readonly fd: number;
  private readonly _addr = new Uint8Array(SOCKADDR_IN_SIZE);

  private constructor(fd: number) {
    this.fd = fd;
    new DataView(this._addr.buffer).setUint16(0, libc.AF_INET, true);
  }

  /** Opens the socket (needs root or CAP_NET_RAW). Throws a {@link SysError}. */
  static open(): Raw4Socket {
    const fd = libc.socket(libc.AF_INET, libc.SOCK_RAW | libc.SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0)
      throw new SysError(
        "socket(AF_INET, SOCK_RAW, IPPROTO_RAW)",
        fd,
        "a raw IPv4 socket needs root or CAP_NET_RAW",
      );
    return new Raw4Socket(fd);
  }

  /** Wraps an fd opened by {@link open} in another thread. */
  static attach(fd: number): Raw4Socket {
    return new Raw4Socket(fd);
  }

  /** Sends the IPv4 packet `buf[offset, offset+length)` to `destination` (u32); returns bytes or -errno. */
  send(buf: Uint8Array, offset: number, length: number, destination: number): number {
    const a = this._addr;
    a[4] = destination >>> 24;
    a[5] = destination >>> 16;
    a[6] = destination >>> 8;
    a[7] = destination;
    return libc.sendto(this.fd, buf, offset, length, 0, a, SOCKADDR_IN_SIZE);
  }

  close(): void {
    libc.close(this.fd);
  }
}
