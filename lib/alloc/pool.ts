/**
 * An IPv4 address pool: one or more CIDR blocks minus excluded addresses.
 *
 * The pool numbers its addresses with dense **slots** (0 … slotCount−1, the prefixes in
 * config order), so the allocation engine keeps per-address state in typed arrays: a /16 is
 * a 65,536-entry array, not a Map. Some slots are not usable: in a prefix of length ≤ 30 the
 * network and broadcast addresses (RFC 919 / RFC 922; a /31 has neither, RFC 3021, and a /32
 * is one host), and every excluded address.
 *
 * @module
 */
import { formatIPv4, parseIPv4 } from "../net/addr.ts";
import {
  formatIPv4Prefix,
  type IPv4Prefix,
  parseIPv4Prefix,
  prefixContains,
  prefixesOverlap,
  prefixMask,
  prefixSize,
} from "../net/prefix.ts";

/** What a pool is built from. */
export interface PoolSpec {
  /** Shown in leases, logs and metrics; defaults to the first CIDR. */
  readonly name?: string;
  /** CIDR blocks, e.g. `["192.0.2.0/24"]`. */
  readonly prefixes: readonly string[];
  /** Addresses or CIDR blocks inside the pool that are never handed out. */
  readonly exclude?: readonly string[];
}

/** A pool configuration a user wrote is wrong. The message is one line and names the culprit. */
export class PoolConfigError extends Error {
  override readonly name = "PoolConfigError";
}

/** Largest pool (addresses spanned): 2^22, a /10; the engine keeps ~10 bytes of state per address. */
export const MAX_POOL_SLOTS = 2 ** 22;

/** A validated pool. */
export class Pool {
  readonly name: string;
  readonly prefixes: readonly IPv4Prefix[];
  /** Number of slots (every address of every prefix, usable or not). */
  readonly slotCount: number;
  /** Number of addresses that can be handed out. */
  readonly size: number;
  /** First slot of each prefix. */
  readonly #firsts: number[];
  /** 1 for slots that can be handed out. */
  readonly #usable: Uint8Array;

  /**
   * Validates `spec`; throws {@link PoolConfigError} for an unparsable CIDR, host bits set,
   * overlapping prefixes, an exclusion outside the pool, or a pool with no usable address.
   *
   * @example new Pool({ prefixes: ["192.0.2.0/24"], exclude: ["192.0.2.1"] }).size // 253
   */
  constructor(spec: PoolSpec) {
    if (spec.prefixes.length === 0) throw new PoolConfigError("a pool needs at least one CIDR");
    const prefixes = spec.prefixes.map((text) => _parsePrefix(text, "pool"));
    for (let i = 0; i < prefixes.length; i++) {
      for (let j = 0; j < i; j++) {
        if (prefixesOverlap(prefixes[i] as IPv4Prefix, prefixes[j] as IPv4Prefix)) {
          throw new PoolConfigError(
            `pool ${spec.prefixes[0]}: ${spec.prefixes[j]} and ${spec.prefixes[i]} overlap; list each address once`,
          );
        }
      }
    }
    this.name = spec.name ?? formatIPv4Prefix(prefixes[0] as IPv4Prefix);
    this.prefixes = prefixes;
    this.#firsts = [];
    let slots = 0;
    for (const prefix of prefixes) {
      this.#firsts.push(slots);
      slots += prefixSize(prefix);
    }
    if (slots > MAX_POOL_SLOTS) {
      throw new PoolConfigError(
        `pool ${this.name} spans ${slots} addresses; the limit is ${MAX_POOL_SLOTS} (a /10); split it across servers`,
      );
    }
    this.slotCount = slots;
    const usable = new Uint8Array(slots).fill(1);
    prefixes.forEach((prefix, i) => {
      if (prefix.length > 30) return;
      const first = this.#firsts[i] as number;
      usable[first] = 0;
      usable[first + prefixSize(prefix) - 1] = 0;
    });
    for (const text of spec.exclude ?? []) {
      const excluded = _parsePrefix(text.includes("/") ? text : `${text}/32`, "exclude", text);
      const end = excluded.base + prefixSize(excluded);
      for (let address = excluded.base; address < end; address++) {
        const slot = this.slotOf(address);
        if (slot < 0) {
          throw new PoolConfigError(
            `pool ${this.name}: excluded ${text} is not inside the pool; exclude only addresses of the pool`,
          );
        }
        usable[slot] = 0;
      }
    }
    let size = 0;
    for (let i = 0; i < slots; i++) size += usable[i] as number;
    if (size === 0) {
      throw new PoolConfigError(
        `pool ${this.name} has no usable address (network, broadcast and exclusions remove them all)`,
      );
    }
    this.size = size;
    this.#usable = usable;
  }

  /** Slot of `ipv4` if it lies in one of the pool's prefixes (usable or not), else −1. */
  slotOf(ipv4: number): number {
    const prefixes = this.prefixes;
    for (let i = 0; i < prefixes.length; i++) {
      const prefix = prefixes[i] as IPv4Prefix;
      if (prefixContains(prefix, ipv4)) return (this.#firsts[i] as number) + (ipv4 - prefix.base);
    }
    return -1;
  }

  /** Address of a slot (0 ≤ slot < slotCount). */
  addressOf(slot: number): number {
    const firsts = this.#firsts;
    let i = firsts.length - 1;
    while (i > 0 && (firsts[i] as number) > slot) i--;
    return (this.prefixes[i] as IPv4Prefix).base + slot - (firsts[i] as number);
  }

  /** True when the slot may be handed out. */
  isUsable(slot: number): boolean {
    return this.#usable[slot] === 1;
  }

  /** True when `ipv4` may be handed out from this pool. */
  contains(ipv4: number): boolean {
    const slot = this.slotOf(ipv4);
    return slot >= 0 && this.#usable[slot] === 1;
  }

  /** The usable addresses, in slot order. */
  *[Symbol.iterator](): IterableIterator<number> {
    for (let slot = 0; slot < this.slotCount; slot++) {
      if (this.#usable[slot] === 1) yield this.addressOf(slot);
    }
  }
}

/** Two pools of one configuration that share an address. */
export interface PoolOverlap {
  readonly a: Pool;
  readonly b: Pool;
  /** One line naming both pools and the overlapping prefixes. */
  readonly message: string;
}

/**
 * The first pair of pools that share an address, or `null` when they are disjoint.
 *
 * @example poolsOverlap([new Pool({ prefixes: ["192.0.2.0/24"] }), new Pool({ prefixes: ["192.0.2.128/25"] })])?.message
 */
export function poolsOverlap(pools: readonly Pool[]): PoolOverlap | null {
  for (let i = 0; i < pools.length; i++) {
    const b = pools[i] as Pool;
    for (let j = 0; j < i; j++) {
      const a = pools[j] as Pool;
      for (const pa of a.prefixes) {
        for (const pb of b.prefixes) {
          if (!prefixesOverlap(pa, pb)) continue;
          return {
            a,
            b,
            message: `pools ${a.name} and ${b.name} overlap (${formatIPv4Prefix(pa)} and ${formatIPv4Prefix(pb)}); give each address to one pool`,
          };
        }
      }
    }
  }
  return null;
}

/** Parses a CIDR, saying precisely what is wrong with a bad one. */
function _parsePrefix(text: string, what: "pool" | "exclude", shown = text): IPv4Prefix {
  const prefix = parseIPv4Prefix(text);
  if (prefix) return prefix;
  const slash = text.indexOf("/");
  const base = slash < 0 ? null : parseIPv4(text.slice(0, slash));
  const length = Number(text.slice(slash + 1));
  if (base !== null && /^\d{1,2}$/.test(text.slice(slash + 1)) && length <= 32) {
    const network = (base & prefixMask(length)) >>> 0;
    throw new PoolConfigError(
      `${what} ${shown} has host bits set; did you mean ${formatIPv4(network)}/${length}?`,
    );
  }
  throw new PoolConfigError(
    what === "pool"
      ? `pool "${shown}" is not an IPv4 CIDR like 192.0.2.0/24`
      : `exclude "${shown}" is not an IPv4 address or CIDR`,
  );
}
