/**
 * The names of the IPv6 links a DHCPv4-over-DHCPv6 server knows, for the holder key of a
 * link-local client (./dhcp4o6_identity.ts linkLocalHolder): one link must get one name
 * whichever way a client's query reaches the server, and two links never one.
 *
 * A link is named `net:HEX`, the 16 hex digits of a /64 of it (RFC 4291 §2.5.4: 64-bit
 * interface IDs, so a link's prefixes are /64s), the lowest when it has several:
 *
 * - The server's own interfaces: the /64s of each interface's global addresses (from
 *   `addresses`, refreshed at most once a second) are prefixes of that interface's link. A
 *   /64 on two of the server's interfaces names neither (it would make two links one). Only
 *   permanent (configured) addresses count: any host on a link can send a Router
 *   Advertisement, and an address the server autoconfigures from it (RFC 4862 §5.5.3; RFC
 *   4861 §6.1.2 checks only that it came from the link) would let that host choose the
 *   link's name: a lower /64, or a copy of another link's, moved every client of the link
 *   to another key (a second lease, its renewal NAKed), and on an interface without a
 *   configured address, a relayed link's /64 gave the attacker, as fe80::10 there, the key
 *   of that link's fe80::10 (its lease to release, --dhcp4o6-relay notwithstanding:
 *   test/atk18_dhcp4o6_link_names.test.ts). An interface with no permanent global address
 *   has no name (its direct clients are keyed by interface index).
 * - Declared links (`--dhcp4o6-link-prefix PREFIX[,PREFIX…]`, /64 or shorter): the prefixes
 *   of one link each value. An interface whose /64 lies in a declared link has its name,
 *   unless that declared link holds /64s of two of the server's interfaces (an aggregate
 *   declared as one link, `2001:db8::/40`): those are two links to the server, and one name
 *   gave fe80::10 on each one lease (test/atk18_dhcp4o6_link_names.test.ts), so each keeps
 *   the name of its own lowest /64.
 *
 * The name of a relay's link-address (RFC 8415 §19.1.1, the innermost relay's):
 * - inside a declared link: that link, whatever Interface-ID the relay sends (the operator
 *   says this prefix is one link's);
 * - else, the relay sending no Interface-ID: the link of its /64 (the relay says the
 *   link-address identifies the client's link: §19.1.1 makes it send an Interface-ID when it
 *   cannot), named as the server's interface holding that /64 is, else by the /64; but null
 *   when the /64 is on two of the server's interfaces (two links: it names neither, so
 *   two relays of the two links must not give one name);
 * - else (an Interface-ID, undeclared prefix): null. A relay may put one address (a
 *   loopback's, or one of another link, §19.1.1 allows it) in link-address for several links
 *   and tell them apart by Interface-ID, which means something only to that relay (§21.18):
 *   the caller keys by the relay's link-address and Interface-ID instead.
 *
 * @module
 */
import { parseIPv6 } from "../net/addr.ts";
import { type IPv6Prefix, ipv6PrefixContains, parseIPv6Prefix } from "./admission.ts";

/**
 * One global IPv6 address of the server: its interface index, its 16 bytes, and whether it is
 * permanent (configured, not learned from a Router Advertisement nor leased with a lifetime:
 * IFA_F_PERMANENT; absent: taken as permanent). Only permanent addresses name a link.
 */
export interface InterfaceAddress {
  readonly index: number;
  readonly bytes: Uint8Array;
  readonly permanent?: boolean;
}

/** How long the view of the server's interface addresses is kept before it is read again (ms). */
const REFRESH_MS = 1000;

/** The first 8 bytes of `bytes` in hex: a /64's name. */
export function hex64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < 8; i++) s += (bytes[i] as number).toString(16).padStart(2, "0");
  return s;
}

/**
 * A problem with one `--dhcp4o6-link-prefix` value (a sentence), or null: IPv6 prefixes of
 * length 64 or less, separated by commas.
 */
export function linkPrefixProblem(text: string): string | null {
  for (const part of text.split(",")) {
    const p = parseIPv6Prefix(part.trim());
    if (!p) return `"${part}" is not an IPv6 prefix (2001:db8:10::/64)`;
    if (p.length > 64)
      return `${part} is longer than /64: a link's prefix is a /64 (RFC 4291 §2.5.4) or shorter`;
    // Only a global link-address is looked up (./dhcp4o6_identity.ts): a link-local or
    // multicast prefix would name nothing, and one reaching into them (::/0) is no one link's.
    for (const [range, what] of _NOT_GLOBAL)
      if (_overlaps(p, range))
        return `${part.trim()} reaches into ${what}: declare the global prefixes of the link (a relay's link-local link-address never names a link; the relay path does)`;
  }
  return null;
}

/** Link-local and multicast: never a relay's link-address that names a link. */
const _NOT_GLOBAL: readonly (readonly [IPv6Prefix, string])[] = [
  [parseIPv6Prefix("fe80::/10") as IPv6Prefix, "fe80::/10 (link-local)"],
  [parseIPv6Prefix("ff00::/8") as IPv6Prefix, "ff00::/8 (multicast)"],
];

/** Whether two prefixes share an address: the shorter holds the longer's first address. */
function _overlaps(a: IPv6Prefix, b: IPv6Prefix): boolean {
  const [short, long] = a.length <= b.length ? [a, b] : [b, a];
  return ipv6PrefixContains(short, long.bytes);
}

/**
 * A problem with the declared links `values` together (a sentence), or null: a prefix of one
 * link that holds, or lies in, a prefix of another. Those would be one address in two links,
 * and the two links' names (each its lowest /64) may be equal: `2001:db8:4::/48` and
 * `2001:db8:4::/64` are both `net:20010db800040000`, two links one key. Each value must pass
 * {@link linkPrefixProblem} first.
 */
export function linkPrefixOverlap(values: readonly (readonly string[])[]): string | null {
  const links = values.map((texts) => texts.map((t) => parseIPv6Prefix(t.trim()) as IPv6Prefix));
  for (let i = 0; i < links.length; i++)
    for (let j = i + 1; j < links.length; j++)
      for (const p of links[i] as IPv6Prefix[])
        for (const q of links[j] as IPv6Prefix[]) {
          if (_overlaps(p, q))
            return `${(values[i] as string[]).join(",")} and ${(values[j] as string[]).join(",")} overlap: a prefix is one link's (declare one link's prefixes in one value)`;
        }
  return null;
}

export class LinkNames {
  readonly #declared: { readonly name: string; readonly prefixes: readonly IPv6Prefix[] }[] = [];
  readonly #addresses: () => readonly InterfaceAddress[];
  readonly #now: () => number;
  readonly #nameDirect: boolean;
  #readAt = Number.NEGATIVE_INFINITY;
  /** /64 (hex) of one interface's global address → that interface's link name. */
  #byPrefix = new Map<string, string>();
  /** Interface index → its link name (none: no global address of its own). */
  #byIndex = new Map<number, string>();
  /** /64s (hex) on two or more of the server's interfaces: no one link's. */
  #shared = new Set<string>();

  /**
   * @param declared each entry one link's prefixes (text, passing {@link linkPrefixProblem},
   *   no two entries overlapping ({@link linkPrefixOverlap}); a RangeError otherwise)
   * @param addresses the server's global IPv6 addresses (none: only declared links are known)
   * @param now a clock in ms (default performance.now)
   * @param options.nameDirect whether a client heard directly gets its interface's link name
   *   (default true). False: {@link ofInterface} names none, so direct clients keep their
   *   interface-index key, which no relay can name. `dstm server` passes true only when
   *   `--dhcp4o6-relay` names the relays: RELAY-FORW is unauthenticated (RFC 8415 §19; RFC
   *   7341 adds nothing), so with any source allowed to relay, a host on another link could
   *   send a RELAY-FORW whose link-address names a directly heard client's link and end its
   *   lease (atk18). The cost without a relay list: a client heard both directly and through
   *   a relay of its link holds two leases.
   */
  constructor(
    declared: readonly (readonly string[])[] = [],
    addresses: () => readonly InterfaceAddress[] = () => [],
    now: () => number = () => performance.now(),
    options: { readonly nameDirect?: boolean } = {},
  ) {
    this.#nameDirect = options.nameDirect ?? true;
    for (const texts of declared) {
      const prefixes = texts.map((t) => {
        const problem = linkPrefixProblem(t);
        if (problem) throw new RangeError(`--dhcp4o6-link-prefix: ${problem}`);
        return parseIPv6Prefix(t.trim()) as IPv6Prefix;
      });
      const names = prefixes.map((p) => hex64(p.bytes)).sort();
      this.#declared.push({ name: `net:${names[0]}`, prefixes });
    }
    const overlap = linkPrefixOverlap(declared);
    if (overlap) throw new RangeError(`--dhcp4o6-link-prefix: ${overlap}`);
    this.#addresses = addresses;
    this.#now = now;
  }

  /**
   * The name of the link of the server's interface `index`, or null (no permanent global
   * address there, or direct clients are not named: `options.nameDirect`).
   */
  ofInterface(index: number): string | null {
    if (!this.#nameDirect) return null;
    this.#refresh();
    return this.#byIndex.get(index) ?? null;
  }

  /**
   * The name of the link a relay's global link-address `bytes` names (see the module doc), or
   * null when it does not name one by itself (`interfaceId`: the relay sent one).
   */
  ofLinkAddress(bytes: Uint8Array, interfaceId: boolean): string | null {
    const declared = this.#declaredName(bytes);
    if (declared !== null) return declared;
    if (interfaceId) return null;
    this.#refresh();
    const p = hex64(bytes);
    if (this.#shared.has(p)) return null;
    return this.#byPrefix.get(p) ?? `net:${p}`;
  }

  /** The declared link holding `bytes` (the longest prefix that does), or null. */
  #declaredName(bytes: Uint8Array): string | null {
    let best: string | null = null;
    let length = -1;
    for (const link of this.#declared)
      for (const p of link.prefixes)
        if (p.length > length && ipv6PrefixContains(p, bytes)) {
          best = link.name;
          length = p.length;
        }
    return best;
  }

  #refresh(): void {
    const now = this.#now();
    if (now - this.#readAt < REFRESH_MS) return;
    this.#readAt = now;
    // Configured addresses only name an interface (see the module doc).
    const addresses = this.#addresses().filter(
      (a) => a.permanent !== false && linkUnicast(a.bytes),
    );
    // /64 → the interfaces holding an address in it.
    const holders = new Map<string, Set<number>>();
    for (const a of addresses) {
      const p = hex64(a.bytes);
      const set = holders.get(p);
      if (set) set.add(a.index);
      else holders.set(p, new Set([a.index]));
    }
    const prefixesOf = new Map<number, string[]>();
    const shared = new Set<string>();
    for (const [p, set] of holders) {
      if (set.size !== 1) {
        shared.add(p); // on two interfaces: no one link's
        continue;
      }
      const index = set.values().next().value as number;
      const list = prefixesOf.get(index);
      if (list) list.push(p);
      else prefixesOf.set(index, [p]);
    }
    // A declared link that holds one of an interface's /64s names it (one link, one name),
    // unless it holds /64s of two interfaces: the server sees two links there, so it names
    // neither (each keeps its own /64's name), as a /64 on two interfaces does.
    const declaredOf = new Map<number, string>();
    const interfacesOf = new Map<string, number>();
    for (const [index, list] of prefixesOf) {
      list.sort();
      for (const p of list) {
        const declared = this.#declaredName(parseIPv6(`${_colons(p)}::`) as Uint8Array);
        if (declared !== null) {
          declaredOf.set(index, declared);
          interfacesOf.set(declared, (interfacesOf.get(declared) ?? 0) + 1);
          break;
        }
      }
    }
    const byIndex = new Map<number, string>();
    const byPrefix = new Map<string, string>();
    for (const [index, list] of prefixesOf) {
      const declared = declaredOf.get(index);
      const name =
        declared !== undefined && interfacesOf.get(declared) === 1 ? declared : `net:${list[0]}`;
      byIndex.set(index, name);
      for (const p of list) byPrefix.set(p, name);
    }
    this.#byIndex = byIndex;
    this.#byPrefix = byPrefix;
    this.#shared = shared;
  }
}

/** `20010db800040000` → `2001:0db8:0004:0000`. */
function _colons(hex: string): string {
  return hex.match(/.{4}/g)?.join(":") ?? hex;
}

/**
 * An address a link may be named by (RFC 8415 §9.1 link-address: "typically a globally scoped
 * unicast address (i.e., GUA or ULA)"; a relay's, or one of the server's own): not in ::/8
 * (RFC 4291 §2.4: reserved; `::`, `::1`, IPv4-mapped and -compatible addresses, whose /64s
 * are all `net:0000000000000000`), not link-local (fe80::/10), not multicast (ff00::/8).
 */
export function linkUnicast(a: Uint8Array): boolean {
  if (a[0] === 0 || a[0] === 0xff) return false;
  return !(a[0] === 0xfe && ((a[1] as number) & 0xc0) === 0x80);
}
