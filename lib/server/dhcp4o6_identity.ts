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
 * A link-local address names a host only on its link (RFC 4291 §2.5.6): two machines on two
 * links may both be fe80::10 (test/ver17_relay_link_local.test.ts, two links behind chained
 * `dhcrelay -6`: both were given one IPv4 address). So in `source` mode a link-local host is
 * keyed by its address *and* its link ({@link linkLocalHolder}): the receiving interface of
 * a direct query, or the relay path of a relayed one. The lease's `host6` stays the address.
 *
 * @module
 */
import { parseIPv6 } from "../net/addr.ts";
import type { Dhcp4Message } from "../wire/dhcp4.ts";
import type { Dhcp6RelayMessage } from "../wire/dhcp6_relay.ts";

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

/**
 * The holder key of a link-local `host6` in `source` mode (see the module doc), or null when
 * `host6` (canonical, no zone) is not link-local (fe80::/10): its address alone names it.
 * `relays` outermost first (lib/wire/dhcp6_relay.ts `unwrapRelays`; empty: direct), `source`
 * the datagram's source with its `%zone` (an interface index, lib/sys/udp_pktinfo.ts).
 * - Direct: `ll:ADDR%ZONE`, the interface the query came in on (RFC 8415 §13.1).
 * - Relayed, the innermost relay's link-address global (not `::`, not link-local):
 *   `ll:ADDR@net:PREFIX#IFID`, the link-address's /64 and the innermost relay's Interface-ID
 *   (hex, empty without one). RFC 8415 §19.1.1: the relay puts there an address from a prefix
 *   assigned to the client's link (RFC 4291 §2.5.4: 64-bit interface IDs), so it names the
 *   link whichever relay heard the client and whatever path its message took: two relays of
 *   one link (each with its own link-address, no Interface-ID: ISC dhcrelay with one `-l`),
 *   or a relay back from a restart sending from another address, give one key
 *   (test/atk17_dhcp4o6_two_relays). The Interface-ID stays in: a relay that puts one address
 *   (its loopback's) in link-address for several links tells them apart by it alone, and two
 *   links must never share a key (two machines, one lease), while two keys for one machine
 *   (two relays that each send an Interface-ID) only cost a second lease.
 * - Relayed, link-address `::` (the relay has no such address; RFC 8415 §19.1.1: the
 *   Interface-ID then names the link, within that relay): `ll:ADDR@` the relay path: the
 *   outermost relay's address, then per relay its link-address, Interface-ID (hex) and, but
 *   for the innermost, its peer-address (the next relay inward): one link's clients share a
 *   path, two links never do.
 */
export function linkLocalHolder(
  host6: string,
  relays: readonly Dhcp6RelayMessage[],
  source: string,
): string | null {
  // Canonical text (RFC 5952): fe80::/10 starts "fe8"–"feb"; anything else without parsing.
  if (host6.charCodeAt(0) !== 0x66 || host6.charCodeAt(1) !== 0x65) return null;
  const bytes = parseIPv6(host6);
  if (bytes?.[0] !== 0xfe || ((bytes[1] as number) & 0xc0) !== 0x80) return null;
  if (relays.length === 0) {
    const zone = source.indexOf("%");
    return `ll:${host6}%${zone < 0 ? "" : source.slice(zone + 1)}`;
  }
  const inner = relays.at(-1) as Dhcp6RelayMessage;
  const link = parseIPv6(inner.linkAddress);
  if (link && _globalUnicast(link)) {
    const id = inner.interfaceId ? Buffer.from(inner.interfaceId).toString("hex") : "";
    return `ll:${host6}@net:${Buffer.from(link.subarray(0, 8)).toString("hex")}#${id}`;
  }
  let path = source;
  for (let i = 0; i < relays.length; i++) {
    const r = relays[i] as Dhcp6RelayMessage;
    path += `|${r.linkAddress}#${r.interfaceId ? Buffer.from(r.interfaceId).toString("hex") : ""}`;
    if (i < relays.length - 1) path += `>${r.peerAddress}`;
  }
  return `ll:${host6}@${path}`;
}

/** Not `::` and not link-local (fe80::/10): an address a relay may put in link-address. */
function _globalUnicast(a: Uint8Array): boolean {
  if (a[0] === 0xfe && ((a[1] as number) & 0xc0) === 0x80) return false;
  return a.some((b) => b !== 0);
}
