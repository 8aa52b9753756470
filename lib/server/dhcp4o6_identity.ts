/**
 * Who a DHCPv4-over-DHCPv6 client is (`dstm server --dhcp4o6-identity`):
 *
 * - `source` (default): the IPv6 address the query came from (relayed: the peer-address). The
 *   lease, the TEP binding and the identity are one address, and no one can touch a lease
 *   without sending from (and receiving at) that address. A host that changes its source
 *   (RFC 8981 temporary addresses) gets another lease; two DHCPv4 clients behind one address
 *   share one.
 * - `client-id`: the DHCPv4 client identifier (option 61), else `htype` + `chaddr` (RFC 2131
 *   §4.2), as ISC Kea keys leases. The identity is the lease's holder (lib/lease/lease.ts
 *   `identity`, stored with the lease, so it survives a restart): two clients behind one IPv6
 *   address hold a lease each (two TEP bindings to one host IPv6), and a client that comes back
 *   from another IPv6 address gets its lease, which moves there (the TEP binding with it) when
 *   it REQUESTs it.
 * - `chaddr`: the same with `htype` + `chaddr` only.
 *
 * The identity is not authenticated (RFC 7341 has none): in the keyed modes, anyone who sends a
 * client's identifier can move that client's lease to itself, as on any DHCPv4 link.
 *
 * @module
 */
import type { Dhcp4Message } from "../wire/dhcp4.ts";

export type Dhcp4o6IdentityMode = "source" | "client-id" | "chaddr";
export const DHCP4O6_IDENTITY_MODES: readonly Dhcp4o6IdentityMode[] = [
  "source",
  "client-id",
  "chaddr",
];

/** The identity key of a query in `mode`, or null in `source` mode. */
export function dhcp4Identity(mode: Dhcp4o6IdentityMode, m: Dhcp4Message): string | null {
  if (mode === "source") return null;
  const id = m.options.clientId;
  if (mode === "client-id" && id && id.length > 0) return `id:${Buffer.from(id).toString("hex")}`;
  return `hw:${m.htype}:${Buffer.from(m.chaddr).toString("hex")}`;
}
