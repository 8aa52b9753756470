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

/** IPPROTO_IPV6 and its IPV6_MULTICAST_ALL option (linux/in6.h). */
const IPPROTO_IPV6 = 41;
const IPV6_MULTICAST_ALL = 29;

/**
 * Keeps the TEP's tunnel socket (raw, next header 4, bound to the TEP's address) from
 * receiving packets sent to a multicast group the host is in (ff02::1: every node): with
 * IPV6_MULTICAST_ALL 0 a bound raw socket gets only its own address and the groups it joined
 * itself (none; net/ipv6/raw.c raw_v6_match, inet6_mc_check). A host tunnels to the TEP's
 * unicast address; a 4over6 packet to a group is an attacker's, and RFC 4443 §2.4 (e.3)
 * forbids the ICMPv6 1/5 the TEP would answer it with (to a spoofable source). False when
 * the kernel refused the option (before Linux 4.20).
 */
export function receiveUnicastOnly(sock: Raw6Socket): boolean {
  return libc.setsockoptInt(sock.fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0) === 0;
}
