/**
 * Host prefixes: the unit the server counts leases and requests by, so that one machine with
 * many IPv6 addresses cannot take the whole IPv4 pool.
 *
 * A host's IPv6 address says little about the machine: SLAAC with privacy extensions
 * (RFC 8981) gives one machine several addresses, and RFC 7934 recommends giving a host a
 * whole /64, in which it can use as many addresses as it likes. Counting leases per
 * address would let such a host lease one IPv4 address per IPv6 address it makes up. The
 * server counts them per host prefix instead (default /64, the length RFC 4291 §2.5.1 fixes
 * for interface identifiers): `hostPrefixKey` gives the prefix's text, and
 * {@link PrefixCounter} the number of active leases under each.
 *
 * @module
 */
import { formatIPv6, parseIPv6 } from "../net/addr.ts";

/** Default host prefix length (bits). */
export const DEFAULT_HOST_PREFIX_LENGTH = 64;

/**
 * The host prefix of `host6` as RFC 5952 text (`2001:db8:1:2::/64`, `2001:db8:1::/64`), or
 * `host6` itself when it does not parse. A zone (`fe80::1%eth0`) is ignored, so every
 * link-local address shares fe80::/64. `length` is 0–128 bits.
 *
 * @example hostPrefixKey("2001:db8:1:2::abcd", 64) // "2001:db8:1:2::/64"
 */
export function hostPrefixKey(host6: string, length: number): string {
  // A link-local source arrives as `fe80::1%eth0`: the prefix is the address's, zone dropped.
  const bytes = parseIPv6(host6.split("%", 1)[0]!);
  if (!bytes) return host6;
  for (let i = 0; i < 16; i++) {
    const bit = i * 8;
    if (bit + 8 <= length) continue;
    bytes[i] = bit >= length ? 0 : bytes[i]! & (0xff << (8 - (length - bit)));
  }
  return `${formatIPv6(bytes)}/${length}`;
}

/** Active leases per host prefix; a prefix whose count falls to 0 is forgotten. */
export class PrefixCounter {
  readonly length: number;
  readonly #counts = new Map<string, number>();

  /** `length`: host prefix length in bits, 1–128. Throws RangeError otherwise. */
  constructor(length: number) {
    if (!Number.isInteger(length) || length < 1 || length > 128) {
      throw new RangeError(`host prefix length ${length}: must be 1–128`);
    }
    this.length = length;
  }

  /** Leases held by hosts in the prefix of `host6`. */
  count(host6: string): number {
    return this.#counts.get(hostPrefixKey(host6, this.length)) ?? 0;
  }

  add(host6: string, delta: 1 | -1): void {
    const key = hostPrefixKey(host6, this.length);
    const next = (this.#counts.get(key) ?? 0) + delta;
    if (next <= 0) this.#counts.delete(key);
    else this.#counts.set(key, next);
  }

  /** Number of prefixes holding at least one lease. */
  get size(): number {
    return this.#counts.size;
  }
}
