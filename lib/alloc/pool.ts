/**
 * An IPv4 address pool: one or more CIDR blocks minus excluded addresses, each address whole
 * or shared among 2^k hosts by port sets (see ./sharing.ts).
 *
 * The pool numbers what it hands out with dense **slots**, one per (address, PSID):
 * slot = addressIndex · share + PSID, the addresses numbered 0 … in config order of the
 * prefixes. For a whole-address pool (share 1) a slot is an address. The allocation engine
 * keeps per-slot state in typed arrays: a /16 shared by 4 is a 262,144-entry array, not a
 * Map. Some slots are not usable: every PSID of a network or broadcast address in a prefix of
 * length ≤ 30 (RFC 919 / RFC 922; a /31 has neither, RFC 3021, and a /32 is one host) or of an
 * excluded address, and the PSIDs below `sharing.firstPsid` (their ports include well-known
 * ones).
 *
 * @module
 */
import type { PortSet } from "../lease/lease.ts";
import {
  formatIPv4Prefix,
  type IPv4Prefix,
  parseIPv4Prefix,
  prefixContains,
  prefixesOverlap,
  prefixMeant,
  prefixSize,
} from "../net/prefix.ts";
import { type PortSharing, portSharing, type SharingSpec, sharingProblem } from "./sharing.ts";

/** What a pool is built from. */
export interface PoolSpec extends SharingSpec {
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

/**
 * Largest pool, in slots (addresses spanned × share): 2^22, a /10 of whole addresses or a /16
 * shared by 64; the engine keeps ~10 bytes of state per slot.
 */
export const MAX_POOL_SLOTS = 2 ** 22;

/** A validated pool. */
export class Pool {
  readonly name: string;
  readonly prefixes: readonly IPv4Prefix[];
  /** How each address is shared (share 1: whole addresses). */
  readonly sharing: PortSharing;
  /** Number of slots: every (address, PSID) of every prefix, usable or not. */
  readonly slotCount: number;
  /** Number of slots that can be handed out: leases the pool can hold at once. */
  readonly size: number;
  /** Number of addresses that can be handed out (each with `sharing.usablePsids` port sets). */
  readonly addresses: number;
  /** First address index of each prefix. */
  readonly #firsts: number[];
  /** 1 for addresses (by index) that can be handed out. */
  readonly #usable: Uint8Array;
  /** log2(share): slot >> #shift is the address index. */
  readonly #shift: number;

  /**
   * Validates `spec`; throws {@link PoolConfigError} for an unparsable CIDR, host bits set,
   * overlapping prefixes, an exclusion outside the pool, a pool with no usable address, or a
   * sharing that {@link sharingProblem} refuses.
   *
   * @example new Pool({ prefixes: ["192.0.2.0/24"], exclude: ["192.0.2.1"] }).size // 253
   * @example new Pool({ prefixes: ["198.51.100.0/30"], share: 4 }).size // 8: 2 addresses × 4 PSIDs
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
    const problem = sharingProblem(spec);
    if (problem !== null) throw new PoolConfigError(`pool ${this.name}: ${problem}`);
    const sharing = portSharing(spec);
    this.sharing = sharing;
    this.#shift = sharing.psidLength;
    this.#firsts = [];
    let spanned = 0;
    for (const prefix of prefixes) {
      this.#firsts.push(spanned);
      spanned += prefixSize(prefix);
    }
    if (spanned * sharing.share > MAX_POOL_SLOTS) {
      throw new PoolConfigError(
        sharing.share === 1
          ? `pool ${this.name} spans ${spanned} addresses; the limit is ${MAX_POOL_SLOTS} (a /10); split it across servers`
          : `pool ${this.name} has ${spanned * sharing.share} port sets (${spanned} addresses × share ${sharing.share}); the limit is ${MAX_POOL_SLOTS}; share less or split the pool`,
      );
    }
    this.slotCount = spanned * sharing.share;
    const usable = new Uint8Array(spanned).fill(1);
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
        const index = this.addressIndexOf(address);
        if (index < 0) {
          throw new PoolConfigError(
            `pool ${this.name}: excluded ${text} is not inside the pool; exclude only addresses of the pool`,
          );
        }
        usable[index] = 0;
      }
    }
    let count = 0;
    for (let i = 0; i < spanned; i++) count += usable[i] as number;
    if (count === 0) {
      throw new PoolConfigError(
        `pool ${this.name} has no usable address (network, broadcast and exclusions remove them all)`,
      );
    }
    this.addresses = count;
    this.size = count * sharing.usablePsids;
    this.#usable = usable;
  }

  /** Index of `ipv4` among the addresses the pool spans (usable or not), else −1. */
  addressIndexOf(ipv4: number): number {
    const prefixes = this.prefixes;
    for (let i = 0; i < prefixes.length; i++) {
      const prefix = prefixes[i] as IPv4Prefix;
      if (prefixContains(prefix, ipv4)) return (this.#firsts[i] as number) + (ipv4 - prefix.base);
    }
    return -1;
  }

  /** Slot of (`ipv4`, `psid`) if the address lies in the pool and 0 ≤ psid < share (usable or not), else −1. */
  slotOf(ipv4: number, psid = 0): number {
    const index = this.addressIndexOf(ipv4);
    if (index < 0 || !(psid >= 0 && psid < this.sharing.share && Number.isInteger(psid))) return -1;
    return index * this.sharing.share + psid;
  }

  /** Address of a slot (0 ≤ slot < slotCount). */
  addressOf(slot: number): number {
    const index = slot >>> this.#shift;
    const firsts = this.#firsts;
    let i = firsts.length - 1;
    while (i > 0 && (firsts[i] as number) > index) i--;
    return (this.prefixes[i] as IPv4Prefix).base + index - (firsts[i] as number);
  }

  /** PSID of a slot (0 for a whole-address pool). */
  psidOf(slot: number): number {
    return slot & (this.sharing.share - 1);
  }

  /** Port set of a slot: WHOLE_ADDRESS for a whole-address pool. */
  portSetOf(slot: number): PortSet {
    return this.sharing.portSetOf(slot & (this.sharing.share - 1));
  }

  /** True when the slot may be handed out. */
  isUsable(slot: number): boolean {
    return (
      this.#usable[slot >>> this.#shift] === 1 &&
      (slot & (this.sharing.share - 1)) >= this.sharing.firstPsid
    );
  }

  /** True when the address at `index` (see {@link addressIndexOf}) may be handed out. */
  isUsableAddress(index: number): boolean {
    return this.#usable[index] === 1;
  }

  /** True when `ipv4` (some of its port sets, when shared) may be handed out from this pool. */
  contains(ipv4: number): boolean {
    const index = this.addressIndexOf(ipv4);
    return index >= 0 && this.#usable[index] === 1;
  }

  /** The usable addresses, in slot order. */
  *[Symbol.iterator](): IterableIterator<number> {
    const share = this.sharing.share;
    for (let index = 0; index < this.#usable.length; index++) {
      if (this.#usable[index] === 1) yield this.addressOf(index * share);
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
          const [shownA, shownB] = [formatIPv4Prefix(pa), formatIPv4Prefix(pb)];
          // The prefixes are said when the names do not already say them.
          const which = a.name === shownA && b.name === shownB ? "" : ` (${shownA} and ${shownB})`;
          return {
            a,
            b,
            message: `pools ${a.name} and ${b.name} overlap${which}; give each address to one pool`,
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
  const meant = prefixMeant(text);
  if (meant !== null)
    throw new PoolConfigError(`${what} ${shown} has host bits set; did you mean ${meant}?`);
  throw new PoolConfigError(
    what === "pool"
      ? `pool "${shown}" is not an IPv4 CIDR like 192.0.2.0/24`
      : `exclude "${shown}" is not an IPv4 address or CIDR`,
  );
}
