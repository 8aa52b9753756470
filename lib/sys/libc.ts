/**
 * The libc calls of the system layer, through `bun:ffi` `dlopen`
 * (https://bun.sh/docs/api/ffi): `dlopen`, `ptr`, `read.i32`, `FFIType`. This is one of the
 * few files allowed to use `bun:ffi`; everything above `lib/sys` sees typed wrappers only.
 *
 * Conventions, for the hot path: every wrapper returns a number, `>= 0` on success and
 * `-errno` on failure, and never throws or allocates. Callers that talk to a user turn a
 * negative result into a {@link SysError}.
 *
 * Threads: FFI symbols belong to the thread that opened them, so a Worker must dlopen libc
 * itself. Each Worker gets its own instance of this module, and the handle is opened lazily
 * on the first call, so importing this module from a Worker is all it takes. The errno
 * location (`__errno_location()`, thread-local in glibc) is cached per module instance too.
 *
 * Numbers are Linux x86_64 / aarch64 (generic) values.
 *
 * @module
 */
import { dlopen, read as ffiRead, type Pointer, ptr, toArrayBuffer } from "bun:ffi";

const SYMBOLS = {
  open: { args: ["ptr", "i32", "u32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  // ssize_t results are taken as i32: packets and netlink messages are far below 2^31 bytes,
  // and an i32 return stays a JS number (an i64 one would be a BigInt per call).
  read: { args: ["i32", "ptr", "u64"], returns: "i32" },
  write: { args: ["i32", "ptr", "u64"], returns: "i32" },
  // ioctl and fcntl are variadic; on x86_64/aarch64 SysV an integer or pointer third
  // argument is passed exactly like a fixed one.
  ioctl: { args: ["i32", "u64", "ptr"], returns: "i32" },
  fcntl: { args: ["i32", "i32", "u64"], returns: "i32" },
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  connect: { args: ["i32", "ptr", "u32"], returns: "i32" },
  sendto: { args: ["i32", "ptr", "u64", "i32", "ptr", "u32"], returns: "i32" },
  recvfrom: { args: ["i32", "ptr", "u64", "i32", "ptr", "ptr"], returns: "i32" },
  sendmsg: { args: ["i32", "ptr", "i32"], returns: "i32" },
  recvmsg: { args: ["i32", "ptr", "i32"], returns: "i32" },
  // Batched I/O (lib/sys/raw6_batch.ts): vectors of struct mmsghdr, one system call each.
  recvmmsg: { args: ["i32", "ptr", "u32", "i32", "ptr"], returns: "i32" },
  sendmmsg: { args: ["i32", "ptr", "u32", "i32"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
  getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
  getsockname: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  poll: { args: ["ptr", "u64", "i32"], returns: "i32" },
  // A wait shorter than poll's millisecond (lib/sys/ring_raw_socket.ts' nap).
  ppoll: { args: ["ptr", "u64", "ptr", "ptr"], returns: "i32" },
  // Variadic; every argument an unsigned long here (PR_SET_TIMERSLACK).
  prctl: { args: ["i32", "u64", "u64", "u64", "u64"], returns: "i32" },
  if_nametoindex: { args: ["ptr"], returns: "u32" },
  // An AF_PACKET receive ring (lib/sys/packet_ring.ts): the kernel's pages in this process.
  mmap: { args: ["ptr", "u64", "i32", "i32", "i32", "i64"], returns: "ptr" },
  munmap: { args: ["ptr", "u64"], returns: "i32" },
  memcpy: { args: ["ptr", "ptr", "u64"], returns: "ptr" },
  __errno_location: { args: [], returns: "ptr" },
} as const;

type LibcSymbols = ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"];

let _symbols: LibcSymbols | null = null;
let _errnoAt: Pointer | null = null;

/** This thread's libc symbols, opened on first use. */
function _libc(): LibcSymbols {
  if (_symbols === null) {
    _symbols = dlopen("libc.so.6", SYMBOLS).symbols;
    _errnoAt = _symbols.__errno_location() as Pointer;
  }
  return _symbols;
}

/** The calling thread's errno, read straight from its thread-local slot (no FFI call). */
export function errno(): number {
  if (_errnoAt === null) _libc();
  return ffiRead.i32(_errnoAt!, 0);
}

/** `r` when the call succeeded, else `-errno`. */
function _result(r: number): number {
  return r < 0 ? -errno() : r;
}

const _encoder = new TextEncoder();

/** A NUL-terminated copy of `text` for a `const char *` argument (setup paths only). */
export function cString(text: string): Uint8Array {
  return _encoder.encode(`${text}\0`);
}

// --- errno values and names -------------------------------------------------------------

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTSOCK: 88,
  EDESTADDRREQ: 89,
  EMSGSIZE: 90,
  EPROTOTYPE: 91,
  ENOPROTOOPT: 92,
  EPROTONOSUPPORT: 93,
  ESOCKTNOSUPPORT: 94,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ECONNRESET: 104,
  ENOBUFS: 105,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
} as const;

const _names = new Map<number, string>(Object.entries(Errno).map(([name, n]) => [n, name]));

/** The symbolic name of an errno value (`EPERM`), or `errno N` for one not in {@link Errno}. */
export function errnoName(code: number): string {
  const n = Math.abs(code);
  return _names.get(n) ?? `errno ${n}`;
}

const _defaultHints: Record<number, string> = {
  [Errno.EPERM]: "needs root or CAP_NET_ADMIN",
  [Errno.EACCES]: "permission denied; run as root",
  [Errno.ENOENT]: "no such file, interface or entry",
  [Errno.ENODEV]: "no such network interface; check the name",
  [Errno.EEXIST]: "it already exists",
  [Errno.EBUSY]: "it is in use",
  [Errno.EINVAL]: "the kernel rejected an argument",
  [Errno.EAFNOSUPPORT]: "this address family is not supported by the kernel",
  [Errno.EADDRNOTAVAIL]: "the address is not configured on this host",
  [Errno.ENETUNREACH]: "no route to that network",
  [Errno.ENOBUFS]: "the kernel is out of buffer space",
  [Errno.EMSGSIZE]: "the packet is larger than the path MTU",
};

/**
 * A failed system call, with a one-line message: what was being done, the errno name, and
 * what to do about it.
 *
 * @example throw new SysError("TUNSETIFF dti0", Errno.EPERM, "creating a TUN device needs root or CAP_NET_ADMIN");
 * // message: "TUNSETIFF dti0: EPERM: creating a TUN device needs root or CAP_NET_ADMIN"
 */
export class SysError extends Error {
  /** Positive errno value. */
  readonly errno: number;
  /** Symbolic errno name, e.g. `ENODEV`. */
  readonly code: string;

  /** `errnoValue` may be given as `-errno` (a wrapper's result) or `errno`. */
  constructor(
    readonly operation: string,
    errnoValue: number,
    hint?: string,
  ) {
    const n = Math.abs(errnoValue);
    const code = errnoName(n);
    super(`${operation}: ${code}: ${hint ?? _defaultHints[n] ?? "system call failed"}`);
    this.name = "SysError";
    this.errno = n;
    this.code = code;
  }
}

// --- wrappers: >= 0 on success, -errno on failure ---------------------------------------

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** open(2). `path` as text, or NUL-terminated bytes from {@link cString}. */
export function open(path: string | Uint8Array, flags: number, mode = 0): number {
  return _result(_libc().open(typeof path === "string" ? cString(path) : path, flags, mode));
}

/** close(2). */
export function close(fd: number): number {
  return _result(_libc().close(fd));
}

/** read(2) into `buf[offset, offset+length)`; bytes read or -errno. */
export function read(fd: number, buf: Uint8Array, offset: number, length: number): number {
  return _result(_libc().read(fd, ptr(buf, offset), length));
}

/** write(2) of `buf[offset, offset+length)`; bytes written or -errno. */
export function write(fd: number, buf: Uint8Array, offset: number, length: number): number {
  return _result(_libc().write(fd, ptr(buf, offset), length));
}

/** ioctl(2) with a pointer argument (a struct in `arg`). */
export function ioctl(fd: number, request: number, arg: Uint8Array | null): number {
  return _result(_libc().ioctl(fd, request, arg));
}

/** ioctl(2) with an integer argument (e.g. TUNSETOFFLOAD's flags). */
export function ioctlValue(fd: number, request: number, value: number): number {
  return _result(_libc().ioctl(fd, request, value as unknown as Pointer));
}

export const F_GETFL = 3;
export const F_SETFL = 4;

/** fcntl(2) with an integer argument. */
export function fcntl(fd: number, cmd: number, arg = 0): number {
  return _result(_libc().fcntl(fd, cmd, arg));
}

/** Sets or clears O_NONBLOCK on `fd` (a property of the open file, shared by all threads). */
export function setNonBlocking(fd: number, on = true): number {
  const flags = fcntl(fd, F_GETFL);
  if (flags < 0) return flags;
  const want = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  return want === flags ? 0 : fcntl(fd, F_SETFL, want);
}

export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

/** socket(2). */
export function socket(domain: number, type: number, protocol: number): number {
  return _result(_libc().socket(domain, type, protocol));
}

/** bind(2) to the sockaddr in `addr[0, length)`. */
export function bind(fd: number, addr: Uint8Array, length: number): number {
  return _result(_libc().bind(fd, addr, length));
}

/** connect(2) to the sockaddr in `addr[0, length)`. */
export function connect(fd: number, addr: Uint8Array, length: number): number {
  return _result(_libc().connect(fd, addr, length));
}

/** sendto(2) of `buf[offset, offset+length)`; `addr` null sends to the connected peer. */
export function sendto(
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  flags: number,
  addr: Uint8Array | null,
  addrLength: number,
): number {
  return _result(_libc().sendto(fd, ptr(buf, offset), length, flags, addr, addrLength));
}

/**
 * recvfrom(2) into `buf[offset, offset+length)`. `addrLength` holds a u32 socklen_t that the
 * caller sets to the size of `addr` before the call; the kernel stores the real size there.
 */
export function recvfrom(
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  flags: number,
  addr: Uint8Array | null,
  addrLength: Uint8Array | null,
): number {
  return _result(_libc().recvfrom(fd, ptr(buf, offset), length, flags, addr, addrLength));
}

/**
 * sendmsg(2) of the `struct msghdr` in `msghdr` (56 bytes on x86_64/aarch64: name, namelen,
 * iov, iovlen, control, controllen, flags). The pointers inside it are the caller's to keep
 * valid (see lib/sys/udp6_multisource.ts); bytes sent or -errno.
 */
export function sendmsg(fd: number, msghdr: Uint8Array, flags: number): number {
  return _result(_libc().sendmsg(fd, msghdr, flags));
}

/**
 * recvmsg(2) into the `struct msghdr` in `msghdr` (layout as {@link sendmsg}); the caller
 * resets msg_namelen and msg_controllen before each call. Bytes received or -errno.
 */
export function recvmsg(fd: number, msghdr: Uint8Array, flags: number): number {
  return _result(_libc().recvmsg(fd, msghdr, flags));
}

/**
 * recvmmsg(2) into `vlen` `struct mmsghdr` (64 bytes each: a msghdr and its msg_len) at
 * `msgvec`, no timeout; the caller resets each msg_namelen / msg_controllen before the call.
 * The number of messages received or -errno.
 */
export function recvmmsg(fd: number, msgvec: Uint8Array, vlen: number, flags: number): number {
  return _result(_libc().recvmmsg(fd, msgvec, vlen, flags, null));
}

/** sendmmsg(2) of `vlen` `struct mmsghdr` at `msgvec`: the number sent, or -errno. */
export function sendmmsg(fd: number, msgvec: Uint8Array, vlen: number, flags: number): number {
  return _result(_libc().sendmmsg(fd, msgvec, vlen, flags));
}

/**
 * The address of `buf[offset]`, for a pointer field of a struct handed to the kernel (an
 * iovec, a msghdr). Valid while `buf` is alive: keep a reference next to the struct.
 */
export function addressOf(buf: Uint8Array, offset = 0): number {
  return ptr(buf, offset);
}

export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const IPPROTO_IPV6 = 41;
export const IPV6_MTU_DISCOVER = 23;
export const IPV6_DONTFRAG = 62;
/** `int`: ask for an IPV6_PKTINFO control message with every datagram received. */
export const IPV6_RECVPKTINFO = 49;
/** Control message type of `struct in6_pktinfo { in6_addr ipi6_addr; int ipi6_ifindex; }`. */
export const IPV6_PKTINFO = 50;
/** `int`: allow binding to, and sending from (IPV6_PKTINFO), addresses not configured here. */
export const IPV6_TRANSPARENT = 75;
/** `int` (Linux ≥ 4.15): like IPV6_TRANSPARENT without CAP_NET_ADMIN; no interception. */
export const IPV6_FREEBIND = 78;
/** `int` (ipv6(7)): an AF_INET6 socket that takes IPv6 only, no IPv4 as `::ffff:a.b.c.d`. */
export const IPV6_V6ONLY = 26;

const _intOpt = new Int32Array(1);
const _intOptBytes = new Uint8Array(_intOpt.buffer);
const _intOptLen = new Uint32Array(1);

/** setsockopt(2) with an `int` value. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): number {
  _intOpt[0] = value;
  return _result(_libc().setsockopt(fd, level, name, _intOptBytes, 4));
}

/** setsockopt(2) with a struct value (e.g. `struct ipv6_mreq` for IPV6_JOIN_GROUP). */
export function setsockoptBytes(
  fd: number,
  level: number,
  name: number,
  value: Uint8Array,
): number {
  return _result(_libc().setsockopt(fd, level, name, value, value.length));
}

/** IPV6_JOIN_GROUP (IPV6_ADD_MEMBERSHIP): join a multicast group, `struct ipv6_mreq`. */
export const IPV6_JOIN_GROUP = 20;

/** getsockname(2) into `addr` (its length in, the address length out via `addrLen[0]`). */
export function getsockname(fd: number, addr: Uint8Array, addrLen: Uint32Array): number {
  addrLen[0] = addr.length;
  return _result(_libc().getsockname(fd, addr, addrLen));
}

/** getsockopt(2) of an `int` value; the value (>= 0 for every option used here) or -errno. */
export function getsockoptInt(fd: number, level: number, name: number): number {
  _intOptLen[0] = 4;
  const r = _result(_libc().getsockopt(fd, level, name, _intOptBytes, _intOptLen));
  return r < 0 ? r : _intOpt[0]!;
}

/** getsockopt(2) of a struct into `value`; `length[0]` in: its size, out: the bytes written. 0 or -errno. */
export function getsockoptBytes(
  fd: number,
  level: number,
  name: number,
  value: Uint8Array,
  length: Uint32Array,
): number {
  return _result(_libc().getsockopt(fd, level, name, value, length));
}

export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;

/** poll(2) over `count` `struct pollfd` (8 bytes each: int fd, short events, short revents). */
export function poll(fds: Uint8Array, count: number, timeoutMs: number): number {
  return _result(_libc().poll(fds, count, timeoutMs));
}

/**
 * The timeout of {@link pollNs}: struct timespec (tv_sec i64, tv_nsec i64, little-endian),
 * made once; written as 32-bit halves so that no BigInt is made per call.
 */
const _timespec = new Int32Array(4);

/**
 * ppoll(2) over `count` `struct pollfd` (as {@link poll}; `count` 0: a plain sleep) with a
 * timeout of `timeoutNs` nanoseconds (≥ 0), no signal mask change. The kernel may wait up to
 * the thread's timer slack longer ({@link setTimerSlack}).
 */
export function pollNs(fds: Uint8Array, count: number, timeoutNs: number): number {
  _timespec[0] = Math.floor(timeoutNs / 1e9); // below 2^31 s
  _timespec[2] = timeoutNs % 1e9;
  return _result(_libc().ppoll(fds, count, _timespec, null));
}

const PR_SET_TIMERSLACK = 29;

/**
 * prctl(PR_SET_TIMERSLACK) of the calling thread: how much later than asked the kernel may end
 * its timed waits, ns (default 50,000; 0 puts the default back). 0 or -errno.
 */
export function setTimerSlack(ns: number): number {
  return _result(_libc().prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0));
}

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;

/** A shared mapping of `fd` made by {@link mapShared}: its memory and what munmap needs. */
export interface SharedMapping {
  readonly memory: ArrayBuffer;
  readonly address: number;
  readonly length: number;
}

/**
 * mmap(2) of `length` bytes of `fd` from offset 0, read-write and shared (an AF_PACKET ring).
 * Returns the mapping, or -errno. The ArrayBuffer points into the mapping: never use it after
 * {@link unmap}.
 */
export function mapShared(fd: number, length: number): SharedMapping | number {
  const address = _libc().mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) as number;
  // MAP_FAILED is (void *)-1: far above any user-space address.
  if (!address || address > 0x7fff_ffff_ffff) return -errno();
  return { memory: toArrayBuffer(address as Pointer, 0, length), address, length };
}

/**
 * memcpy(3) of `length` bytes from the address `from` (a mapping's, {@link mapShared}) to
 * `to[toOffset …]`. The caller checks the bounds: nothing here does.
 */
export function copyFromAddress(
  to: Uint8Array,
  toOffset: number,
  from: number,
  length: number,
): void {
  _libc().memcpy(ptr(to, toOffset), from as Pointer, length);
}

/**
 * memcpy(3) of `length` bytes between two addresses (a mapping's, {@link mapShared}; a buffer's,
 * {@link addressOf}, held by the caller so that it stays valid): {@link copyFromAddress}
 * without looking the buffer's address up at every call (about 20 ns of its 40, issue 14).
 * The caller checks the bounds: nothing here does.
 */
export function copyBetween(to: number, from: number, length: number): void {
  _libc().memcpy(to as Pointer, from as Pointer, length);
}

/** munmap(2) of a {@link mapShared} mapping; 0 or -errno. */
export function unmap(m: SharedMapping): number {
  return _result(_libc().munmap(m.address as Pointer, m.length));
}

/** if_nametoindex(3); the index or -errno (ENODEV when there is no such interface). */
export function ifNameToIndex(name: string): number {
  const index = _libc().if_nametoindex(cString(name));
  return index === 0 ? -(errno() || Errno.ENODEV) : index;
}
