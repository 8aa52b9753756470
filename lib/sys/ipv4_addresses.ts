/**
 * The IPv4 addresses configured on this host's interfaces (every interface, up or down, with
 * or without carrier: the kernel's local addresses), from one rtnetlink dump (RTM_GETADDR,
 * AF_INET, NLM_F_DUMP; netlink(7), rtnetlink(7), layouts from include/uapi/linux/{netlink,
 * rtnetlink,if_addr}.h). `os.networkInterfaces()` is no substitute: it leaves out interfaces
 * without carrier, whose addresses the kernel still takes as local.
 *
 * The DSTM client's `--kernel-encap` inbound Worker refuses them, and the broadcast addresses
 * of their subnets, as the inner source of decapsulated packets (lib/tunnel/local_sources.ts).
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";

const NETLINK_ROUTE = 0;
const RTM_NEWADDR = 20;
const RTM_GETADDR = 22;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;
/** How long the kernel may take to answer the dump, ms. */
const ANSWER_TIMEOUT_MS = 2000;

let _sequence = 1;

/**
 * The host's IPv4 addresses (host byte order, as u32; IFA_LOCAL, else IFA_ADDRESS) and the
 * broadcast addresses of their subnets (IFA_BROADCAST, and — as the kernel's `broadcast`
 * routes of the local table have it — the address with all host bits set for a prefix
 * shorter than /31), in the kernel's order, duplicates possible. Throws a {@link SysError}
 * when the dump fails or gets no answer within 2,000 ms.
 */
export function localIPv4Addresses(): number[] {
  const fd = libc.socket(
    libc.AF_NETLINK,
    libc.SOCK_RAW | libc.SOCK_CLOEXEC | libc.SOCK_NONBLOCK,
    NETLINK_ROUTE,
  );
  if (fd < 0) throw new SysError("IPv4 address dump: netlink socket", fd);
  try {
    _sequence = (_sequence + 1) >>> 0;
    const seq = _sequence;
    // struct nlmsghdr (16) + struct ifaddrmsg (8): family AF_INET, the rest 0.
    const request = new Uint8Array(24);
    const rv = new DataView(request.buffer);
    rv.setUint32(0, 24, true);
    rv.setUint16(4, RTM_GETADDR, true);
    rv.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, true);
    rv.setUint32(8, seq, true);
    request[16] = libc.AF_INET;
    const kernel = new Uint8Array(12); // struct sockaddr_nl { family, pad, pid 0, groups 0 }
    kernel[0] = libc.AF_NETLINK;
    const sent = libc.sendto(fd, request, 0, request.length, 0, kernel, kernel.length);
    if (sent < 0) throw new SysError("IPv4 address dump", sent);
    return _collect(fd, seq);
  } finally {
    libc.close(fd);
  }
}

function _collect(fd: number, seq: number): number[] {
  const out: number[] = [];
  const buf = new Uint8Array(32768);
  const v = new DataView(buf.buffer);
  const pollfd = new Uint8Array(8);
  new DataView(pollfd.buffer).setInt32(0, fd, true);
  pollfd[4] = libc.POLLIN;
  const deadline = Date.now() + ANSWER_TIMEOUT_MS;
  for (let round = 0; round < 4096 && Date.now() < deadline; round++) {
    const ready = libc.poll(pollfd, 1, Math.max(1, deadline - Date.now()));
    if (ready === 0) break;
    if (ready < 0 && ready !== -Errno.EINTR) throw new SysError("IPv4 address dump: poll", ready);
    const n = libc.recvfrom(fd, buf, 0, buf.length, 0, null, null);
    if (n === -Errno.EAGAIN || n === -Errno.EINTR) continue;
    if (n < 0) throw new SysError("IPv4 address dump: netlink recv", n);
    for (let at = 0; at + 16 <= n; ) {
      const len = v.getUint32(at, true);
      if (len < 16 || at + len > n) break;
      const type = v.getUint16(at + 4, true);
      if (v.getUint32(at + 8, true) === seq) {
        if (type === NLMSG_DONE) return out;
        if (type === NLMSG_ERROR) {
          const error = v.getInt32(at + 16, true);
          if (error !== 0) throw new SysError("IPv4 address dump", error);
        }
        // struct ifaddrmsg after the header: family, prefixlen, flags, scope (u8), index (u32).
        if (type === RTM_NEWADDR && len >= 24 && buf[at + 16] === libc.AF_INET) {
          let local = -1;
          let address = -1;
          let broadcast = -1;
          for (let a = at + 24; a + 4 <= at + len; ) {
            const alen = v.getUint16(a, true);
            const atype = v.getUint16(a + 2, true);
            if (alen < 4) break;
            if (alen >= 8 && atype === IFA_LOCAL) local = v.getUint32(a + 4, false);
            if (alen >= 8 && atype === IFA_ADDRESS) address = v.getUint32(a + 4, false);
            if (alen >= 8 && atype === IFA_BROADCAST) broadcast = v.getUint32(a + 4, false);
            a += (alen + 3) & ~3;
          }
          const own = local >= 0 ? local : address;
          if (own >= 0) out.push(own);
          if (broadcast >= 0) out.push(broadcast);
          const prefix = buf[at + 17]!;
          if (own >= 0 && prefix < 31) out.push((own | (0xffffffff >>> prefix)) >>> 0);
        }
      }
      at += (len + 3) & ~3;
    }
  }
  throw new SysError(
    "IPv4 address dump",
    -Errno.ETIMEDOUT,
    "the kernel did not finish the dump in time",
  );
}
