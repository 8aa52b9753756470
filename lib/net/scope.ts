/**
 * Which addresses can name one host: the special-purpose ranges a configured tunnel end
 * point, server, host address or pool must stay out of.
 *
 * IPv6 (RFC 4291 §2.4, §2.5.2–2.5.6): `::` names no host, `::1` only this one, `ff00::/8` a
 * group, `fe80::/10` needs a zone (an interface) to mean anything, and `::ffff:0:0/96` is an
 * IPv4 address in IPv6 clothes that never appears on an IPv6 wire (RFC 4291 §2.5.5.2).
 *
 * IPv4 (RFC 6890 and RFC 1122 §3.2.1.3): `0.0.0.0/8` is "this network", `127.0.0.0/8`
 * loopback, `169.254.0.0/16` link-local (RFC 3927: never forwarded, so a TEP cannot route it),
 * `224.0.0.0/4` multicast, `240.0.0.0/4` reserved, including the limited broadcast
 * `255.255.255.255`.
 *
 * @module
 */

/** Why an address can not name one host, or which scope limits it. */
export type AddressScope =
  | "unspecified"
  | "loopback"
  | "multicast"
  | "link-local"
  | "ipv4-mapped"
  | "this-network"
  | "reserved";

/** What a check lets through besides global unicast addresses. */
export interface ScopeAllowance {
  /** `::1` / `127.0.0.0/8` (for a peer on this host, e.g. a server reached over loopback). */
  readonly loopback?: boolean;
  /** `::` / `0.0.0.0` (for a listen address: every address of the host). */
  readonly unspecified?: boolean;
}

/**
 * The special scope of the 16-byte IPv6 address at `bytes[offset]` that keeps it from naming
 * a host elsewhere, or null for a unicast address usable as a tunnel end point (RFC 4291 §2.4).
 *
 * @example ipv6Scope(parseIPv6("ff02::1")!) // "multicast"
 */
export function ipv6Scope(bytes: Uint8Array, offset = 0): AddressScope | null {
  if (bytes[offset] === 0xff) return "multicast";
  if (bytes[offset] === 0xfe && (bytes[offset + 1]! & 0xc0) === 0x80) return "link-local";
  let zeros = 0;
  while (zeros < 16 && bytes[offset + zeros] === 0) zeros++;
  if (zeros === 16) return "unspecified";
  if (zeros === 15 && bytes[offset + 15] === 1) return "loopback";
  if (zeros === 10 && bytes[offset + 10] === 0xff && bytes[offset + 11] === 0xff)
    return "ipv4-mapped";
  return null;
}

/**
 * The special scope of an IPv4 address (unsigned 32-bit), or null for one that can be
 * routed to a single host (RFC 6890, RFC 1122 §3.2.1.3, RFC 3927).
 *
 * @example ipv4Scope(0x7f000001) // "loopback"
 */
export function ipv4Scope(address: number): AddressScope | null {
  const first = address >>> 24;
  if (address >>> 0 === 0) return "unspecified";
  if (first === 0) return "this-network";
  if (first === 127) return "loopback";
  if (first >= 224 && first <= 239) return "multicast";
  if (first >= 240) return "reserved";
  if (address >>> 16 === 0xa9fe) return "link-local";
  return null;
}

/**
 * The first special-purpose range an IPv4 prefix (`base`, `length`) reaches into, as
 * `[scope, range text]`, or null when every address in it can be a host's (RFC 6890).
 * A pool that returns non-null would hand out addresses like 127.0.0.1 or 224.0.0.1.
 *
 * @example ipv4PrefixScope(0xe0000000, 24) // ["multicast", "224.0.0.0/4"]
 */
export function ipv4PrefixScope(base: number, length: number): [AddressScope, string] | null {
  for (const [rangeBase, rangeLength, scope, text] of _SPECIAL_IPV4) {
    const shorter = Math.min(length, rangeLength);
    const mask = shorter === 0 ? 0 : (0xffffffff << (32 - shorter)) >>> 0;
    if ((base & mask) >>> 0 === (rangeBase & mask) >>> 0) return [scope, text];
  }
  return null;
}

/**
 * One line saying why `scope` does not fit, for error messages: "is a multicast address".
 */
export function describeScope(scope: AddressScope): string {
  return _DESCRIPTIONS[scope];
}

/** True when `scope` is null or one the allowance lets through. */
export function scopeAllowed(scope: AddressScope | null, allow: ScopeAllowance = {}): boolean {
  if (scope === null) return true;
  if (scope === "loopback") return allow.loopback === true;
  if (scope === "unspecified") return allow.unspecified === true;
  return false;
}

const _SPECIAL_IPV4: readonly [number, number, AddressScope, string][] = [
  [0x00000000, 8, "this-network", "0.0.0.0/8"],
  [0x7f000000, 8, "loopback", "127.0.0.0/8"],
  [0xa9fe0000, 16, "link-local", "169.254.0.0/16"],
  [0xe0000000, 4, "multicast", "224.0.0.0/4"],
  [0xf0000000, 4, "reserved", "240.0.0.0/4"],
];

const _DESCRIPTIONS: Record<AddressScope, string> = {
  unspecified: "is the unspecified address (it names no host)",
  loopback: "is a loopback address (it names only this host)",
  multicast: "is a multicast address (it names a group, not one host)",
  "link-local": "is a link-local address (it works only with a zone, on one link)",
  "ipv4-mapped": "is an IPv4-mapped address (it never appears on an IPv6 network)",
  "this-network": 'is in 0.0.0.0/8 ("this network", RFC 1122)',
  reserved: "is in 240.0.0.0/4 (reserved or broadcast)",
};
