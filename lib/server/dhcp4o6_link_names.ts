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
 *   /64 on two of the server's interfaces names neither (it would make two links one).
 * - Declared links (`--dhcp4o6-link-prefix PREFIX[,PREFIX…]`, /64 or shorter): the prefixes
 *   of one link each value. An interface whose /64 lies in a declared link has its name.
 *
 * The name of a relay's link-address (RFC 8415 §19.1.1, the innermost relay's):
 * - inside a declared link: that link, whatever Interface-ID the relay sends (the operator
 *   says this prefix is one link's);
 * - else, the relay sending no Interface-ID: the link of its /64 (the relay says the
 *   link-address identifies the client's link: §19.1.1 makes it send an Interface-ID when it
 *   cannot), named as the server's interface holding that /64 is, else by the /64;
 * - else (an Interface-ID, undeclared prefix): null. A relay may put one address (a
 *   loopback's, or one of another link, §19.1.1 allows it) in link-address for several links
 *   and tell them apart by Interface-ID, which means something only to that relay (§21.18):
 *   the caller keys by the relay's link-address and Interface-ID instead.
 *
 * @module
 */
import { parseIPv6 } from "../net/addr.ts";
import { type IPv6Prefix, ipv6PrefixContains, parseIPv6Prefix } from "./admission.ts";

/** One global IPv6 address of the server: its interface index and its 16 bytes. */
export interface InterfaceAddress {
  readonly index: number;
  readonly bytes: Uint8Array;
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

/** Whether two prefixes share an address: their first min(length) bits are equal. */
function _overlaps(a: IPv6Prefix, b: IPv6Prefix): boolean {
  const bits = Math.min(a.length, b.length);
  for (let i = 0; i < bits; i++) {
    const mask = 0x80 >> (i % 8);
    if ((((a.bytes[i >> 3] as number) ^ (b.bytes[i >> 3] as number)) & mask) !== 0) return false;
  }
  return true;
}

/**
 * The first prefix given for two declared links (`values`, each one link's prefixes, each
 * passing {@link linkPrefixProblem}), as a sentence, or null: one prefix names one link.
 */
export function duplicateLinkPrefix(values: readonly (readonly string[])[]): string | null {
  const seen = new Map<string, number>();
  for (const [link, prefixes] of values.entries())
    for (const text of prefixes) {
      const p = parseIPv6Prefix(text.trim()) as IPv6Prefix;
      const key = `${hex64(p.bytes)}${hex64(p.bytes.subarray(8))}/${p.length}`;
      const first = seen.get(key);
      if (first !== undefined && first !== link)
        return `${text.trim()} is given for two links (values ${first + 1} and ${link + 1}): a prefix names one link; list a link's prefixes in one value, comma-separated`;
      seen.set(key, link);
    }
  return null;
}

export class LinkNames {
  readonly #declared: { readonly name: string; readonly prefixes: readonly IPv6Prefix[] }[] = [];
  readonly #addresses: () => readonly InterfaceAddress[];
  readonly #now: () => number;
  #readAt = Number.NEGATIVE_INFINITY;
  /** /64 (hex) of one interface's global address → that interface's link name. */
  #byPrefix = new Map<string, string>();
  /** Interface index → its link name (none: no global address of its own). */
  #byIndex = new Map<number, string>();

  /**
   * @param declared each entry one link's prefixes (text, passing {@link linkPrefixProblem};
   *   a RangeError otherwise)
   * @param addresses the server's global IPv6 addresses (none: only declared links are known)
   * @param now a clock in ms (default performance.now)
   */
  constructor(
    declared: readonly (readonly string[])[] = [],
    addresses: () => readonly InterfaceAddress[] = () => [],
    now: () => number = () => performance.now(),
  ) {
    for (const texts of declared) {
      const prefixes = texts.map((t) => {
        const problem = linkPrefixProblem(t);
        if (problem) throw new RangeError(`--dhcp4o6-link-prefix: ${problem}`);
        return parseIPv6Prefix(t.trim()) as IPv6Prefix;
      });
      const names = prefixes.map((p) => hex64(p.bytes)).sort();
      this.#declared.push({ name: `net:${names[0]}`, prefixes });
    }
    this.#addresses = addresses;
    this.#now = now;
  }

  /** The name of the link of the server's interface `index`, or null (no global address there). */
  ofInterface(index: number): string | null {
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
    // /64 → the interfaces holding an address in it.
    const holders = new Map<string, Set<number>>();
    for (const a of this.#addresses()) {
      if (!_global(a.bytes)) continue;
      const p = hex64(a.bytes);
      const set = holders.get(p);
      if (set) set.add(a.index);
      else holders.set(p, new Set([a.index]));
    }
    const prefixesOf = new Map<number, string[]>();
    for (const [p, set] of holders) {
      if (set.size !== 1) continue; // on two interfaces: no one link's
      const index = set.values().next().value as number;
      const list = prefixesOf.get(index);
      if (list) list.push(p);
      else prefixesOf.set(index, [p]);
    }
    const byIndex = new Map<number, string>();
    const byPrefix = new Map<string, string>();
    for (const [index, list] of prefixesOf) {
      list.sort();
      // A declared link that holds one of the interface's /64s names it (one link, one name).
      let name = `net:${list[0]}`;
      for (const p of list) {
        const declared = this.#declaredName(parseIPv6(`${_colons(p)}::`) as Uint8Array);
        if (declared !== null) {
          name = declared;
          break;
        }
      }
      byIndex.set(index, name);
      for (const p of list) byPrefix.set(p, name);
    }
    this.#byIndex = byIndex;
    this.#byPrefix = byPrefix;
  }
}

/** `20010db800040000` → `2001:0db8:0004:0000`. */
function _colons(hex: string): string {
  return hex.match(/.{4}/g)?.join(":") ?? hex;
}

/**
 * A global unicast address the server's link may be named by: not `::`, `::1`, link-local
 * (fe80::/10) or multicast (ff00::/8).
 */
function _global(a: Uint8Array): boolean {
  if (a[0] === 0xff) return false;
  if (a[0] === 0xfe && ((a[1] as number) & 0xc0) === 0x80) return false;
  for (let i = 0; i < 15; i++) if (a[i] !== 0) return true;
  return (a[15] as number) > 1;
}
