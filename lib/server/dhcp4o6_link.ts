/**
 * Pool selection by the client's IPv6 link, for DHCPv4-over-DHCPv6 (what ISC Kea does with
 * `4o6-subnet` / `4o6-interface` / `4o6-interface-id` on a subnet4). A pool names the links
 * it serves (`links = [...]` in its `[[pool]]` table, or `--pool-link POOL=LINK`); each entry is
 * - an IPv6 prefix (`2001:db8:10::/64`): the link whose addresses it holds;
 * - `%IFNAME`: the server's interface a direct query from a link-local source came in on;
 * - `interface-id:TEXT`: a relay's Interface-ID option (18) with these bytes (UTF-8).
 *
 * Which link a query is on (RFC 8415 §13.1: "the server uses the link-address of the relay
 * closest to the client"):
 * 1. Relayed: the link-address of the innermost RELAY-FORW (the relay that heard the client,
 *    RFC 8415 §19.1.1); when it is `::` (allowed there: the relay then identifies the link
 *    by Interface-ID) or link-local (not a link's address to the server), the next relay's
 *    outward, and so on, as Kea does. The Interface-ID is the one of the relay closest to the
 *    client that sends one (RFC 8415 §19.1.1: a relay whose link-address cannot identify the
 *    link MUST send it).
 * 2. Direct from a global source: that address (the client is on the link of its prefix).
 * 3. Direct from a link-local source: the interface it came in on (the datagram's zone).
 *
 * Kea 2.2 differs in two places (test/kea_dhcp4o6_links.test.ts): it matches `4o6-subnet`
 * against the datagram's source (for a relayed query, the relay next to the server) and
 * `4o6-interface` against the receiving interface of relayed queries too.
 *
 * The pools whose links match serve the query. A query whose link matches no pool's links is
 * served by the pools that name no links (serve every link), if any; else it is refused
 * (`no-pool-for-link`). With no pool naming links, every pool serves every query (the
 * default, as before).
 *
 * @module
 */
import { canonicalIPv6, parseIPv6 } from "../net/addr.ts";
import type { Dhcp6RelayMessage } from "../wire/dhcp6_relay.ts";
import { type IPv6Prefix, ipv6PrefixContains, parseIPv6Prefix } from "./admission.ts";

/** One pool as the selector needs it: its name (the engine's) and the links it serves. */
export interface PoolLinks {
  readonly pool: string;
  /** Empty or absent: every link. */
  readonly links?: readonly string[];
}

/** The pools that serve a query (undefined: every pool), and the link that chose them, for logs. */
export type LinkChoice =
  | { readonly ok: true; readonly pools: ReadonlySet<string> | undefined; readonly link: string }
  | { readonly ok: false; readonly link: string };

interface _Entry {
  readonly pool: string;
  readonly prefixes: readonly IPv6Prefix[];
  readonly interfaces: readonly string[];
  readonly interfaceIds: readonly string[];
}

/**
 * A problem with one `links` entry (a sentence for a UsageError), or null when it is an IPv6
 * prefix, `%IFNAME` or `interface-id:TEXT`.
 */
export function linkProblem(text: string): string | null {
  if (text.startsWith("%"))
    return /^%[\w.@-]{1,15}$/.test(text) ? null : `"${text}" is not %IFNAME`;
  if (text.startsWith("interface-id:"))
    return text.length > "interface-id:".length ? null : `"${text}" has no interface-id text`;
  return parseIPv6Prefix(text)
    ? null
    : `"${text}" is not an IPv6 prefix (2001:db8:10::/64), %IFNAME or interface-id:TEXT`;
}

export class LinkSelector {
  readonly #entries: _Entry[] = [];
  /** Pools that name no links: they serve every link. */
  readonly #anyLink = new Set<string>();
  readonly #indexOf: (ifname: string) => number;

  /**
   * @param pools in configuration order; every `links` entry must pass {@link linkProblem}
   *   (a RangeError otherwise)
   * @param indexOf the interface index of a name (0: none), to match `%IFNAME` against a
   *   link-local source's zone (an index, lib/sys/udp_pktinfo.ts)
   */
  constructor(pools: readonly PoolLinks[], indexOf: (ifname: string) => number = () => 0) {
    this.#indexOf = indexOf;
    for (const { pool, links } of pools) {
      if (!links || links.length === 0) {
        this.#anyLink.add(pool);
        continue;
      }
      const prefixes: IPv6Prefix[] = [];
      const interfaces: string[] = [];
      const interfaceIds: string[] = [];
      for (const link of links) {
        const problem = linkProblem(link);
        if (problem) throw new RangeError(`pool ${pool}: links: ${problem}`);
        if (link.startsWith("%")) interfaces.push(link.slice(1));
        else if (link.startsWith("interface-id:"))
          interfaceIds.push(link.slice("interface-id:".length));
        else prefixes.push(parseIPv6Prefix(link) as IPv6Prefix);
      }
      this.#entries.push({ pool, prefixes, interfaces, interfaceIds });
    }
  }

  /** True when some pool names links (otherwise {@link choose} always answers every pool). */
  get active(): boolean {
    return this.#entries.length > 0;
  }

  /**
   * The pools serving a query that came from `source` (`fe80::…%ZONE` for a link-local
   * source) through `relays` (outermost first, as lib/wire/dhcp6_relay.ts `unwrapRelays`
   * gives them; empty: a direct query).
   */
  choose(relays: readonly Dhcp6RelayMessage[], source: string): LinkChoice {
    if (!this.active) return { ok: true, pools: undefined, link: "any" };
    const matched = new Set<string>();
    let link: string;
    if (relays.length > 0) {
      const address = _relayLinkAddress(relays);
      const interfaceId = _relayInterfaceId(relays);
      link = address ?? "::";
      if (interfaceId !== undefined) link += ` interface-id=${interfaceId}`;
      const bytes = address ? parseIPv6(address) : null;
      for (const e of this.#entries) {
        if (bytes && e.prefixes.some((p) => ipv6PrefixContains(p, bytes))) matched.add(e.pool);
        else if (interfaceId !== undefined && e.interfaceIds.includes(interfaceId))
          matched.add(e.pool);
      }
    } else {
      const [address = "", zone] = source.split("%", 2);
      const bytes = parseIPv6(address);
      if (bytes && !_linkLocal(bytes)) {
        link = canonicalIPv6(address) ?? address;
        for (const e of this.#entries)
          if (e.prefixes.some((p) => ipv6PrefixContains(p, bytes))) matched.add(e.pool);
      } else {
        link = `%${zone ?? "?"}`;
        const index =
          zone === undefined ? 0 : /^\d+$/.test(zone) ? Number(zone) : this.#indexOf(zone);
        for (const e of this.#entries)
          if (index > 0 && e.interfaces.some((name) => this.#indexOf(name) === index))
            matched.add(e.pool);
      }
    }
    if (matched.size > 0) return { ok: true, pools: matched, link };
    if (this.#anyLink.size > 0) return { ok: true, pools: this.#anyLink, link };
    return { ok: false, link };
  }
}

/**
 * RFC 8415 §13.1 / §19.1.1: the link-address of the relay closest to the client that is
 * neither `::` nor link-local, searching outward; undefined when no relay names one.
 */
function _relayLinkAddress(relays: readonly Dhcp6RelayMessage[]): string | undefined {
  for (let i = relays.length - 1; i >= 0; i--) {
    const text = (relays[i] as Dhcp6RelayMessage).linkAddress;
    const bytes = parseIPv6(text);
    if (bytes && !bytes.every((b) => b === 0) && !_linkLocal(bytes)) return text;
  }
  return undefined;
}

/** The Interface-ID (as UTF-8 text) of the relay closest to the client that sends one. */
function _relayInterfaceId(relays: readonly Dhcp6RelayMessage[]): string | undefined {
  for (let i = relays.length - 1; i >= 0; i--) {
    const id = (relays[i] as Dhcp6RelayMessage).interfaceId;
    if (id) return new TextDecoder().decode(id);
  }
  return undefined;
}

/** fe80::/10 */
function _linkLocal(bytes: Uint8Array): boolean {
  return bytes[0] === 0xfe && ((bytes[1] as number) & 0xc0) === 0x80;
}

/**
 * The selector of a configuration: `names` are the engine's pool names (lib/alloc/pool.ts),
 * in the order of `configs`, whose `links` they take.
 */
export function linkSelectorOf(
  names: readonly string[],
  configs: readonly { readonly links?: readonly string[] }[],
  indexOf?: (ifname: string) => number,
): LinkSelector {
  return new LinkSelector(
    names.map((pool, i) => ({ pool, links: configs[i]?.links })),
    indexOf,
  );
}
