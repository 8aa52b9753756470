/**
 * The TEP's raw ICMPv6 socket for the errors it sends into the tunnel (ICMPv6 1/5, RFC 4443
 * §3.1; lib/net/icmp6.ts). Bound to the TEP's address, so the error comes from the address the
 * host sent to (the host's kernel matches it to its tunnel socket by that address, and a DSTM
 * client accepts it only from its TEP). The kernel builds the IPv6 header and the ICMPv6
 * checksum (RFC 3542 §3.1); an ICMP6_FILTER that blocks every type keeps the socket from
 * queueing copies of the ICMPv6 the host receives (RFC 3542 §3.2). Send only.
 *
 * {@link openIcmp6Listener} is the other way round: a raw ICMPv6 socket that receives copies
 * of one ICMPv6 type the host gets (the client's watch for ICMPv6 1/5 about packets the kernel
 * encapsulated, lib/client/kernel_binding_watch.ts).
 *
 * @module
 */
import * as libc from "./libc.ts";
import { Raw6Socket } from "./raw6.ts";

/** IPPROTO_ICMPV6 (netinet/in.h). */
const IPPROTO_ICMPV6 = 58;
/** ICMP6_FILTER socket option (netinet/icmp6.h), level IPPROTO_ICMPV6. */
const ICMP6_FILTER = 1;

/**
 * Opens a raw ICMPv6 socket bound to `tep6` (16 bytes) that receives nothing. Throws a
 * SysError (no root / CAP_NET_RAW; EADDRNOTAVAIL when `tep6` is not an address here).
 */
export function openIcmp6Sender(tep6: Uint8Array): Raw6Socket {
  const sock = Raw6Socket.open({ protocol: IPPROTO_ICMPV6, receiveBuffer: 4096 });
  try {
    sock.bindAddress(tep6);
    // struct icmp6_filter: a bit set per type blocks it; all ones blocks all (best effort:
    // without it the small receive buffer just overflows).
    libc.setsockoptBytes(sock.fd, IPPROTO_ICMPV6, ICMP6_FILTER, new Uint8Array(32).fill(0xff));
  } catch (error) {
    sock.close();
    throw error;
  }
  return sock;
}

/**
 * Opens a raw ICMPv6 socket that receives a copy of every ICMPv6 message of `type` this host
 * receives (RFC 3542 §3.2: ICMP6_FILTER passing that type only), without waiting: a read
 * returns 0 at once when none is queued. Its reads give the ICMPv6 message (from its type
 * field on) and the sender's address. Throws a SysError without root / CAP_NET_RAW.
 */
export function openIcmp6Listener(type: number): Raw6Socket {
  const sock = Raw6Socket.open({
    protocol: IPPROTO_ICMPV6,
    receiveBuffer: 65536,
    pollTimeoutMs: 0,
  });
  try {
    // A set bit blocks its type (icmp6_filt[type >> 5] bit type & 31, little-endian words).
    const filter = new Uint8Array(32).fill(0xff);
    filter[type >>> 3] = filter[type >>> 3]! & ~(1 << (type & 7));
    libc.setsockoptBytes(sock.fd, IPPROTO_ICMPV6, ICMP6_FILTER, filter);
  } catch (error) {
    sock.close();
    throw error;
  }
  return sock;
}

/** IPPROTO_IPV6 and its IPV6_MULTICAST_ALL option (linux/in6.h); SO_ATTACH_FILTER. */
const IPPROTO_IPV6 = 41;
const IPV6_MULTICAST_ALL = 29;
const SO_ATTACH_FILTER = 26;

/**
 * Classic BPF: accept a packet only when it came to this host in a unicast link-layer frame
 * (skb->pkt_type PACKET_HOST, the ancillary load SKF_AD_PKTTYPE), drop it otherwise.
 * Instructions are {code u16, jt u8, jf u8, k u32}, little-endian.
 */
const PACKET_HOST_ONLY = (() => {
  const prog = new Uint8Array(4 * 8);
  const v = new DataView(prog.buffer);
  const ins = (i: number, code: number, jt: number, jf: number, k: number) => {
    v.setUint16(8 * i, code, true);
    v.setUint8(8 * i + 2, jt);
    v.setUint8(8 * i + 3, jf);
    v.setUint32(8 * i + 4, k >>> 0, true);
  };
  ins(0, 0x28, 0, 0, 0xfffff000 + 4); // ldh [SKF_AD_PKTTYPE]
  ins(1, 0x15, 0, 1, 0); // jeq #PACKET_HOST, accept, drop
  ins(2, 0x06, 0, 0, 0x40000); // ret: the whole packet
  ins(3, 0x06, 0, 0, 0); // ret 0: drop
  return prog;
})();

/**
 * Keeps the TEP's tunnel socket (raw, next header 4, bound to the TEP's address) to the
 * packets a host tunnels to it: unicast to its address in a unicast link-layer frame. RFC
 * 4443 §2.4 forbids the ICMPv6 1/5 the TEP would answer the others with (to a spoofable
 * source):
 * - (e.3) a packet to a multicast group the host is in (ff02::1: every node): with
 *   IPV6_MULTICAST_ALL 0 a bound raw socket gets only its own address and the groups it
 *   joined itself, none (net/ipv6/raw.c raw_v6_match, inet6_mc_check);
 * - (e.4) a packet to the TEP's address in a link-layer multicast or broadcast frame (the
 *   kernel takes those unless drop_unicast_in_l2_multicast): a socket filter passing only
 *   PACKET_HOST (the error queue is not filtered).
 * False when the kernel refused either (IPV6_MULTICAST_ALL: before Linux 4.20).
 */
export function receiveUnicastOnly(sock: Raw6Socket): boolean {
  const multicast = libc.setsockoptInt(sock.fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0);
  // struct sock_fprog: len u16, (padding), filter pointer.
  const fprog = new Uint8Array(16);
  const fv = new DataView(fprog.buffer);
  fv.setUint16(0, PACKET_HOST_ONLY.length / 8, true);
  fv.setBigUint64(8, BigInt(libc.addressOf(PACKET_HOST_ONLY)), true);
  const filter = libc.setsockoptBytes(sock.fd, libc.SOL_SOCKET, SO_ATTACH_FILTER, fprog);
  return multicast === 0 && filter === 0;
}
