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
 * keyed by its address *and* its link ({@link linkLocalHolder}), named alike whether the query
 * came directly or through any relay of the link. The lease's `host6` stays the address.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { parseIPv6 } from "../net/addr.ts";
import type { Dhcp4Message } from "../wire/dhcp4.ts";
import type { Dhcp6RelayMessage } from "../wire/dhcp6_relay.ts";
import { LinkNames, linkUnicast } from "./dhcp4o6_link_names.ts";

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
 * the datagram's source with its `%zone` (an interface index, lib/sys/udp_pktinfo.ts),
 * `links` the links the server knows (./dhcp4o6_link_names.ts; none: only the packet's).
 *
 * The rule: one machine on one link gets one key whichever way its query arrives (heard
 * directly, or by any relay of its link: a client asks ff02::1:2 from its link-local address,
 * RFC 7341 §5, RFC 8415 §14.1, so each may hear a copy), and two links never share one. A link is named
 * `net:HEX` (a /64 of it, ./dhcp4o6_link_names.ts) wherever the server can tell the link:
 * - Direct: the link of the receiving interface (RFC 8415 §13.1), named by the /64 of its
 *   configured global addresses: `ll:ADDR@net:HEX`, the same key as through a relay of that
 *   link, whose link-address is from one of those prefixes (§19.1.1). An interface without a
 *   configured global address (SLAAC ones do not count: any host on the link can make them):
 *   `ll:ADDR%ZONE`.
 * - Relayed, the innermost relay's link-address global (GUA or ULA), when it
 *   names the link (./dhcp4o6_link_names.ts: a declared link's prefix, or no Interface-ID
 *   sent, RFC 8415 §19.1.1): `ll:ADDR@net:HEX`. The Interface-ID is then left out: it is
 *   the relay's own name for its interface (§21.18), so two relays of one link send two.
 * - Relayed with an Interface-ID and a link-address of no declared link: the relay may name
 *   several links by one link-address (its loopback's) and its Interface-IDs (§19.1.1), so
 *   `ll:ADDR@at:LINKADDRESS#IFID` (hex): that relay's address and its name of the link. (Its
 *   /64 would not do: two relays' loopbacks in one /64 may both call a link `eth1`.) Two
 *   relays of one link that both send an Interface-ID give two keys here, unless the
 *   link's prefix is declared (`--dhcp4o6-link-prefix`). Likewise, with or without an
 *   Interface-ID (`#` then ends the key), a link-address in an undeclared /64 the server has
 *   on two of its interfaces: that /64 is two links', so it names neither.
 * - Relayed, link-address `::`, link-local, multicast or another address of ::/8 (`::1`,
 *   IPv4-mapped: no address of a link, ./dhcp4o6_link_names.ts linkUnicast; RFC 8415
 *   §19.1.1: the relay has no address naming the link, the Interface-ID then names it,
 *   within that relay):
 *   `ll:ADDR@` the relay path: the outermost relay's address, then per relay its
 *   link-address, Interface-ID (hex) and, but for the innermost, its peer-address (the next
 *   relay inward): one link's clients share a path, two links never do.
 *
 * A key longer than {@link HOLDER_MAX_LENGTH} characters (an Interface-ID is opaque and of
 * any length, RFC 8415 §21.18; a path holds up to 32 relays) is `ll:ADDR@sha256:HEX`, the
 * SHA-256 of that key: the lease store keys active leases by the holder in a unique index,
 * and a PostgreSQL btree index row holds at most 2704 bytes (a longer one failed the write,
 * and the batch of other clients' writes with it: test/atk18_dhcp4o6_long_holder_postgres).
 */
export function linkLocalHolder(
  host6: string,
  relays: readonly Dhcp6RelayMessage[],
  source: string,
  links?: LinkNames,
): string | null {
  const key = _holder(host6, relays, source, links);
  if (key === null || key.length <= HOLDER_MAX_LENGTH) return key;
  return `ll:${host6}@sha256:${createHash("sha256").update(key).digest("hex")}`;
}

/** The longest holder key {@link linkLocalHolder} gives as is (characters). */
export const HOLDER_MAX_LENGTH = 1024;

function _holder(
  host6: string,
  relays: readonly Dhcp6RelayMessage[],
  source: string,
  links?: LinkNames,
): string | null {
  // Canonical text (RFC 5952): fe80::/10 starts "fe8"–"feb"; anything else without parsing.
  if (host6.charCodeAt(0) !== 0x66 || host6.charCodeAt(1) !== 0x65) return null;
  const bytes = parseIPv6(host6);
  if (bytes?.[0] !== 0xfe || ((bytes[1] as number) & 0xc0) !== 0x80) return null;
  if (relays.length === 0) {
    const at = source.indexOf("%");
    const zone = at < 0 ? "" : source.slice(at + 1);
    const name = links && /^\d+$/.test(zone) ? links.ofInterface(Number(zone)) : null;
    return name === null ? `ll:${host6}%${zone}` : `ll:${host6}@${name}`;
  }
  const inner = relays.at(-1) as Dhcp6RelayMessage;
  const link = parseIPv6(inner.linkAddress);
  if (link && linkUnicast(link)) {
    const id = inner.interfaceId;
    const name = (links ?? _packetOnly).ofLinkAddress(link, id !== undefined && id.length > 0);
    if (name !== null) return `ll:${host6}@${name}`;
    return `ll:${host6}@at:${inner.linkAddress}#${id ? Buffer.from(id).toString("hex") : ""}`;
  }
  let path = source;
  for (let i = 0; i < relays.length; i++) {
    const r = relays[i] as Dhcp6RelayMessage;
    path += `|${r.linkAddress}#${r.interfaceId ? Buffer.from(r.interfaceId).toString("hex") : ""}`;
    if (i < relays.length - 1) path += `>${r.peerAddress}`;
  }
  return `ll:${host6}@${path}`;
}

/** No declared links, no interfaces: what the packet alone says. */
const _packetOnly = new LinkNames();
