/**
 * How far a keyed DHCPv4-over-DHCPv6 lease may follow its client (`--dhcp4o6-identity
 * client-id|chaddr`, ./dhcp4o6_identity.ts).
 *
 * In the keyed modes the lease belongs to the DHCPv4 client (RFC 2131 §4.2), and a REQUEST
 * from another IPv6 address moves it there, its TEP binding with it. A client identifier or
 * chaddr is no secret (RFC 2131 §7: DHCP has no authentication; the chaddr is the client's
 * MAC address, and a 4o6 client's first queries go to ff02::1:2, seen by the whole link),
 * so without a bound anyone allowed to use 4o6 could name another client's identity from its
 * own address and take that client's IPv4 address and its traffic at the TEP, or RELEASE or
 * DECLINE it, without spoofing any source (SAVI, RFC 7039, cannot help).
 *
 * The bound: a keyed lease follows its client only within one host prefix (`/64` by default,
 * `--host-prefix-length`), which is where a host's new addresses come from: RFC 8981
 * temporary addresses and SLAAC (RFC 4862) keep the link's /64. From another prefix a
 * REQUEST for it is NAKed and a RELEASE or DECLINE of it ignored, counted as
 * `result="other-prefix"` and logged at warn; a client that really moved to another network
 * gets an address once its old lease ends (or `dstm lease del` ends it).
 *
 * @module
 */
import { DEFAULT_HOST_PREFIX_LENGTH, hostPrefixKey } from "../alloc/host_prefix.ts";

/**
 * True when a lease held at `held` (the lease's host6) may be moved, released or declined by
 * a query from `from`: both in one host prefix of `length` bits (default 64).
 */
export function mayActFor(
  held: string,
  from: string,
  length = DEFAULT_HOST_PREFIX_LENGTH,
): boolean {
  return held === from || hostPrefixKey(held, length) === hostPrefixKey(from, length);
}
