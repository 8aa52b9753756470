/**
 * Linux TUN devices (the DTI of a DSTM client, the IPv4 side of a TEP), through
 * `/dev/net/tun` and the `TUNSETIFF` ioctl (Documentation/networking/tuntap.rst), called with
 * the libc wrappers of `libc.ts` (`bun:ffi`).
 *
 * Devices are opened `IFF_TUN | IFF_NO_PI`: every read and write is one bare IP packet, no
 * 4-byte packet-information header. The fd is non-blocking; {@link TunDevice.read} waits in
 * poll(2) with a timeout when nothing is queued, so a forwarding loop can look at its stop
 * flag between packets. Closing the last fd of a (non-persistent) TUN device deletes it.
 *
 * @module
 */
import type { PacketDevice } from "../net/device.ts";
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_VNET_HDR = 0x4000;
/** struct ifreq: char ifr_name[IFNAMSIZ]; then a union whose first member is short flags. */
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;

export interface OpenTunOptions {
  /**
   * IFF_VNET_HDR: every read and write starts with a 10-byte virtio_net_hdr (GSO and checksum
   * state); use the fd through lib/sys/tun_vnet.ts.
   */
  vnetHeader?: boolean;
  /** IFF_MULTI_QUEUE: open one more queue (fd) of the same device per call, e.g. per Worker. */
  multiQueue?: boolean;
}

/**
 * Creates (or, for a persistent one, attaches to) the TUN device `name` and returns its fd
 * and the name the kernel gave it (`dti%d` patterns are expanded). Throws a {@link SysError}
 * whose message says what to do: no /dev/net/tun, not root, or the name is taken.
 *
 * @example const { fd, name } = openTun("dti0");
 */
export function openTun(name: string, opts: OpenTunOptions = {}): { fd: number; name: string } {
  _checkInterfaceName(name);
  const fd = libc.open("/dev/net/tun", libc.O_RDWR | libc.O_NONBLOCK | libc.O_CLOEXEC);
  if (fd < 0) {
    const n = -fd;
    if (n === Errno.ENOENT || n === Errno.ENODEV || n === Errno.ENXIO) {
      throw new SysError(
        "open /dev/net/tun",
        n,
        "TUN is not available (no /dev/net/tun; load the tun module)",
      );
    }
    if (n === Errno.EACCES || n === Errno.EPERM) {
      throw new SysError(
        "open /dev/net/tun",
        n,
        "creating a TUN device needs root or CAP_NET_ADMIN",
      );
    }
    throw new SysError("open /dev/net/tun", n);
  }
  const ifr = new Uint8Array(IFREQ_SIZE);
  ifr.set(new TextEncoder().encode(name));
  new DataView(ifr.buffer).setUint16(
    IFNAMSIZ,
    IFF_TUN |
      IFF_NO_PI |
      (opts.multiQueue ? IFF_MULTI_QUEUE : 0) |
      (opts.vnetHeader ? IFF_VNET_HDR : 0),
    true,
  );
  const r = libc.ioctl(fd, TUNSETIFF, ifr);
  if (r < 0) {
    libc.close(fd);
    const n = -r;
    const op = `TUNSETIFF ${name}`;
    if (n === Errno.EPERM || n === Errno.EACCES) {
      throw new SysError(op, n, "creating a TUN device needs root or CAP_NET_ADMIN");
    }
    // EBUSY: a TUN of that name is open elsewhere. EINVAL with the name present: the name
    // belongs to an interface of another kind (the kernel refuses to turn it into a TUN).
    if (n === Errno.EBUSY || n === Errno.EEXIST || libc.ifNameToIndex(name) > 0) {
      throw new SysError(op, n, `interface ${name} already exists`);
    }
    throw new SysError(op, n);
  }
  const end = ifr.indexOf(0);
  const actual = new TextDecoder().decode(
    ifr.subarray(0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end),
  );
  return { fd, name: actual };
}

/** Closes a TUN fd; the device disappears with its last fd unless it was made persistent. */
export function closeTun(fd: number): void {
  libc.close(fd);
}

export interface TunDeviceOptions {
  /** How long {@link TunDevice.read} waits for a packet before returning 0 (default 200 ms). */
  pollTimeoutMs?: number;
}

/**
 * A TUN fd as a {@link PacketDevice}. One per thread: it owns a small poll buffer.
 *
 * @example
 * const dev = new TunDevice(openTun("dti0").fd);
 * const buf = new Uint8Array(65575);
 * const n = dev.read(buf, 40); // packet in buf[40, 40+n)
 */
export class TunDevice implements PacketDevice {
  readonly fd: number;
  readonly pollTimeoutMs: number;
  private readonly _pollIn = new Uint8Array(8);
  private readonly _pollOut = new Uint8Array(8);

  constructor(fd: number, opts: TunDeviceOptions = {}) {
    this.fd = fd;
    this.pollTimeoutMs = opts.pollTimeoutMs ?? 200;
    _setPollFd(this._pollIn, fd, libc.POLLIN);
    _setPollFd(this._pollOut, fd, libc.POLLOUT);
  }

  /** See {@link PacketDevice.read}. */
  read(buf: Uint8Array, offset: number): number {
    const n = libc.read(this.fd, buf, offset, buf.length - offset);
    if (n !== -Errno.EAGAIN) return n;
    const ready = libc.poll(this._pollIn, 1, this.pollTimeoutMs);
    if (ready <= 0) return ready === -Errno.EINTR ? 0 : ready;
    const again = libc.read(this.fd, buf, offset, buf.length - offset);
    return again === -Errno.EAGAIN ? 0 : again;
  }

  /** See {@link PacketDevice.write}. A full queue waits up to the poll timeout once. */
  write(buf: Uint8Array, offset: number, length: number): number {
    const n = libc.write(this.fd, buf, offset, length);
    if (n !== -Errno.EAGAIN) return n;
    libc.poll(this._pollOut, 1, this.pollTimeoutMs);
    return libc.write(this.fd, buf, offset, length);
  }

  /** Closes the fd (every TunDevice sharing it stops working). */
  close(): void {
    libc.close(this.fd);
  }
}

/**
 * Wraps a TUN fd received from another thread (fds are per process, so a Worker given the
 * number can use it directly). Makes sure the fd is non-blocking.
 */
export function attachTun(fd: number, opts: TunDeviceOptions = {}): TunDevice {
  const r = libc.setNonBlocking(fd);
  if (r < 0) throw new SysError(`attach TUN fd ${fd}`, r, "not an open file descriptor");
  return new TunDevice(fd, opts);
}

function _setPollFd(pollfd: Uint8Array, fd: number, events: number): void {
  const view = new DataView(pollfd.buffer, pollfd.byteOffset, 8);
  view.setInt32(0, fd, true);
  view.setInt16(4, events, true);
}

/** Linux interface names: 1–15 bytes, no '/', ':' or white space, not "." or "..". */
function _checkInterfaceName(name: string): void {
  const bytes = new TextEncoder().encode(name).length;
  if (bytes === 0 || bytes >= IFNAMSIZ || /[/:\s]/.test(name) || name === "." || name === "..") {
    throw new SysError(
      `TUN name ${JSON.stringify(name)}`,
      Errno.EINVAL,
      "an interface name has 1 to 15 characters and no '/', ':' or spaces",
    );
  }
}
