/**
 * The allocation engine's lease table: every row it knows, by lease key (`leaseKey(ipv4,
 * psid)`, lib/lease/lease.ts), with the API of a `Map<number, Lease>` (get, set, delete,
 * clear, size, values).
 *
 * A row whose key is a slot of a pool (the address in the pool, the PSID below its share:
 * ./pool.ts) is kept in that pool's slot-indexed array, in pages of {@link TABLE_PAGE_SLOTS}
 * slots allocated when their first row comes: 8 bytes a slot, where a Map spends about 50
 * bytes a row (a million leases: some 40 MiB less, and no rehashing while they load). The
 * few other rows (an address in no pool, a PSID beyond the share: rows left by an earlier
 * configuration) are kept in a Map.
 *
 * Each row also carries one bit, **loaded**: it came from the store at the engine's start and
 * has not been replaced since ({@link LeaseTable.load}; any {@link LeaseTable.set} or
 * {@link LeaseTable.delete} of its key clears it). The engine derives such a row's expiry
 * deadline from one clock offset taken at the load (./lease_clock.ts) instead of keeping one
 * per row.
 *
 * The pools are set with {@link LeaseTable.setPools} while the table is empty (at the
 * engine's start and in a reload, which takes every row out and puts it back).
 *
 * @module
 */
import { keyIpv4, keyPsid, type Lease, leaseKey } from "../lease/lease.ts";
import { prefixSize } from "../net/prefix.ts";
import type { Pool } from "./pool.ts";

/** Slots in one page of a pool's row array (a power of two). */
export const TABLE_PAGE_SLOTS = 4096;
const PAGE_SHIFT = 12;
const PAGE_MASK = TABLE_PAGE_SLOTS - 1;

type Page = (Lease | undefined)[];
/** A pool's pages of rows and the loaded bit of each row. */
interface Pages {
  rows: (Page | undefined)[];
  loaded: (Uint8Array | undefined)[];
}

export class LeaseTable {
  #pools: readonly Pool[] = [];
  /** Per pool, its pages (undefined: no row there yet). */
  #pages: Pages[] = [];
  /** Rows whose key is no slot of a pool. */
  readonly #other = new Map<number, Lease>();
  /** Keys of #other whose row is loaded. */
  readonly #otherLoaded = new Set<number>();
  #size = 0;
  /** Pool and slot of the key last given to #find (−1: none). */
  #pool = -1;
  #slot = -1;

  /** Keys rows by the slots of `pools` from now on. Throws when the table holds a row. */
  setPools(pools: readonly Pool[]): void {
    if (this.#size !== 0) throw new Error("LeaseTable.setPools: the table is not empty");
    this.#pools = pools;
    this.#pages = pools.map(_pages);
  }

  /** Rows in the table. */
  get size(): number {
    return this.#size;
  }

  get(key: number): Lease | undefined {
    if (!this.#find(key)) return this.#other.get(key);
    return this.#pages[this.#pool]?.rows[this.#slot >>> PAGE_SHIFT]?.[this.#slot & PAGE_MASK];
  }

  /** True when the row of `key` is the one loaded from the store at start, not replaced since. */
  isLoaded(key: number): boolean {
    if (!this.#find(key)) return this.#otherLoaded.has(key);
    const bits = this.#pages[this.#pool]?.loaded[this.#slot >>> PAGE_SHIFT];
    return bits !== undefined && bits[this.#slot & PAGE_MASK] === 1;
  }

  /** True when `row` is the row of `key` and {@link isLoaded}: one lookup of the key for both. */
  isLoadedRow(key: number, row: Lease): boolean {
    if (!this.#find(key)) return this.#other.get(key) === row && this.#otherLoaded.has(key);
    const pages = this.#pages[this.#pool];
    const at = this.#slot >>> PAGE_SHIFT;
    const i = this.#slot & PAGE_MASK;
    return pages?.rows[at]?.[i] === row && pages.loaded[at]?.[i] === 1;
  }

  /** {@link set} for a row loaded from the store at start: its loaded bit is set. */
  load(key: number, row: Lease): this {
    return this.#put(key, row, 1);
  }

  has(key: number): boolean {
    return this.get(key) !== undefined;
  }

  set(key: number, row: Lease): this {
    return this.#put(key, row, 0);
  }

  #put(key: number, row: Lease, loaded: 0 | 1): this {
    if (!this.#find(key)) {
      if (!this.#other.has(key)) this.#size++;
      this.#other.set(key, row);
      if (loaded) this.#otherLoaded.add(key);
      else this.#otherLoaded.delete(key);
      return this;
    }
    const pages = this.#pages[this.#pool] as Pages;
    const at = this.#slot >>> PAGE_SHIFT;
    let page = pages.rows[at];
    let bits = pages.loaded[at];
    if (!page || !bits) {
      page = new Array<Lease | undefined>(TABLE_PAGE_SLOTS).fill(undefined);
      bits = new Uint8Array(TABLE_PAGE_SLOTS);
      pages.rows[at] = page;
      pages.loaded[at] = bits;
    }
    const i = this.#slot & PAGE_MASK;
    if (page[i] === undefined) this.#size++;
    page[i] = row;
    bits[i] = loaded;
    return this;
  }

  /** Takes the row of `key` out; true when there was one. */
  delete(key: number): boolean {
    if (!this.#find(key)) {
      const had = this.#other.delete(key);
      this.#otherLoaded.delete(key);
      if (had) this.#size--;
      return had;
    }
    const pages = this.#pages[this.#pool] as Pages;
    const at = this.#slot >>> PAGE_SHIFT;
    const page = pages.rows[at];
    const i = this.#slot & PAGE_MASK;
    if (!page || page[i] === undefined) return false;
    page[i] = undefined;
    (pages.loaded[at] as Uint8Array)[i] = 0;
    this.#size--;
    return true;
  }

  /** Takes every row out (the pools stay). */
  clear(): void {
    this.#pages = this.#pools.map(_pages);
    this.#other.clear();
    this.#otherLoaded.clear();
    this.#size = 0;
  }

  /**
   * Every row, live: pool by pool in slot order, then the others. A row set while the
   * iteration runs is seen when its place comes after the current one.
   */
  *values(): IterableIterator<Lease> {
    for (const pages of this.#pages) {
      for (const page of pages.rows) {
        if (!page) continue;
        for (const row of page) if (row !== undefined) yield row;
      }
    }
    yield* this.#other.values();
  }

  /**
   * The rows whose key is greater than `after`, live, in ascending key order (address, then
   * PSID): a page of `lease ls` from its cursor (lib/control/lease_query.ts) costs the rows it
   * takes (and the empty slots between them), not a pass over the table. Each prefix of a pool
   * is a run of slots whose keys ascend and pools never overlap, so the runs taken by their
   * first address are the key order; the few rows outside the pools' slots are merged in.
   * A row set while the iteration runs is seen when its place comes after the current one.
   */
  *valuesAfter(after: number): IterableIterator<Lease> {
    const runs: { pool: number; base: number; addresses: number }[] = [];
    this.#pools.forEach((pool, p) => {
      for (const prefix of pool.prefixes)
        runs.push({ pool: p, base: prefix.base, addresses: prefixSize(prefix) });
    });
    runs.sort((a, b) => a.base - b.base);
    const others = [...this.#other].filter(([key]) => key > after).sort((a, b) => a[0] - b[0]);
    let o = 0;
    const afterPsid = after < 0 ? 0 : keyPsid(after);
    const afterIpv4 = after < 0 ? -1 : keyIpv4(after);
    for (const run of runs) {
      if (afterIpv4 >= run.base + run.addresses) continue;
      const pool = this.#pools[run.pool] as Pool;
      const share = pool.sharing.share;
      const first = pool.slotOf(run.base, 0);
      const end = first + run.addresses * share;
      let slot = first;
      if (afterIpv4 >= run.base) slot += (afterIpv4 - run.base) * share + afterPsid + 1;
      const rows = (this.#pages[run.pool] as Pages).rows;
      for (; slot < end; slot++) {
        const page = rows[slot >>> PAGE_SHIFT];
        if (!page) {
          slot |= PAGE_MASK; // the whole page is empty
          continue;
        }
        const row = page[slot & PAGE_MASK];
        if (row === undefined) continue;
        const key = leaseKey(row.ipv4, row.portSet.psid);
        while (o < others.length && (others[o] as [number, Lease])[0] < key)
          yield (others[o++] as [number, Lease])[1];
        yield row;
      }
    }
    while (o < others.length) yield (others[o++] as [number, Lease])[1];
  }

  /** Finds the pool and slot of `key` (in #pool, #slot); false when it is no slot of a pool. */
  #find(key: number): boolean {
    const psid = keyPsid(key);
    const ipv4 = keyIpv4(key);
    const pools = this.#pools;
    for (let p = 0; p < pools.length; p++) {
      const pool = pools[p] as Pool;
      const index = pool.addressIndexOf(ipv4);
      if (index < 0) continue;
      const share = pool.sharing.share;
      if (psid >= share) return false;
      this.#pool = p;
      this.#slot = index * share + psid;
      return true;
    }
    return false;
  }
}

function _pages(pool: Pool): Pages {
  const n = Math.ceil(pool.slotCount / TABLE_PAGE_SLOTS);
  return { rows: new Array(n), loaded: new Array(n) };
}
