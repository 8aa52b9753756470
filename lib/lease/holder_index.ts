/**
 * A holder → lease key index for the allocation engine (lib/alloc/lease_index.ts: the host's
 * active lease, the host's most recently freed row), with the API of a `Map<string, number>`
 * (get, set, delete, clear, size), kept in typed arrays: an open-addressing hash table
 * ({@link HashKeyTable}: linear probing, deletion by backward shift) of the holder's 32-bit
 * keyed hash ({@link holderHash}) and the lease key. The table is here, below the engine,
 * because the SQLite store keeps one too (./sqlite_holders.ts: one active lease per holder).
 *
 * It stores no string: a slot whose hash matches is checked against the holder of the row
 * under its key, which `holderAt` reads from the engine's lease table
 * (lib/alloc/lease_table.ts). So the index must change with the table: an entry is added once its row is in the table and
 * taken out before its row leaves it (the engine's #setRow does both in that order).
 *
 * Why not a Map: a million entries are about 50 bytes each in a Map and 24 bytes here (load
 * at most one half), and the arrays hold no pointer, so a garbage collection never scans them
 * (a Map this large that changes is scanned whole by each young collection).
 *
 * @module
 */

import { halfSipHashText } from "./halfsiphash.ts";

const EMPTY = -1;
const INITIAL_SLOTS = 1024;

/**
 * The table under {@link HolderIndex} and the SQLite store's holder guard (./sqlite_holders.ts):
 * (32-bit hash, lease key) pairs in typed arrays, open addressing with linear probing and
 * deletion by backward shift, at most half full. It knows no holder: its users check a hash's
 * entries against the holder of the row under each key.
 */
export class HashKeyTable {
  #hashes = new Uint32Array(INITIAL_SLOTS);
  #keys = new Float64Array(INITIAL_SLOTS).fill(EMPTY);
  #mask = INITIAL_SLOTS - 1;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /**
   * The slot of the first entry at or after `from` (default: the hash's home slot) with hash
   * `hash` for which `match(key)` is true, or −1. Pass the slot found + 1 as `from` to go on.
   */
  find(hash: number, match: (key: number) => boolean, from = -1): number {
    const keys = this.#keys;
    const hashes = this.#hashes;
    const mask = this.#mask;
    for (let i = from < 0 ? hash & mask : from & mask; keys[i] !== EMPTY; i = (i + 1) & mask) {
      if (hashes[i] === hash && match(keys[i] as number)) return i;
    }
    return -1;
  }

  /** The key in `slot` (one {@link find} returned). */
  keyAt(slot: number): number {
    return this.#keys[slot] as number;
  }

  /** Replaces the key in `slot`, keeping its hash. */
  setKeyAt(slot: number, key: number): void {
    this.#keys[slot] = key;
  }

  /**
   * Makes room for `entries` entries in all, so that adding them rehashes nothing (a load of
   * a million rows otherwise doubles the table eleven times, each a pass over it).
   */
  reserve(entries: number): void {
    let slots = this.#keys.length;
    while (2 * entries > slots) slots *= 2;
    if (slots !== this.#keys.length) this.#resize(slots);
  }

  /** Adds the pair (`hash`, `key`); the caller knows it is not in yet. */
  add(hash: number, key: number): void {
    if (2 * (this.#size + 1) > this.#keys.length) this.#resize(this.#keys.length * 2);
    this.#insert(hash, key);
    this.#size++;
  }

  /** Takes out the entry in `slot` (one {@link find} returned). */
  removeAt(slot: number): void {
    let i = slot;
    const keys = this.#keys;
    const hashes = this.#hashes;
    const mask = this.#mask;
    // Backward shift: move up each later entry of the run that may sit in the hole.
    for (let j = (i + 1) & mask; keys[j] !== EMPTY; j = (j + 1) & mask) {
      const home = (hashes[j] as number) & mask;
      const between = i <= j ? i < home && home <= j : i < home || home <= j;
      if (between) continue;
      keys[i] = keys[j] as number;
      hashes[i] = hashes[j] as number;
      i = j;
    }
    keys[i] = EMPTY;
    this.#size--;
  }

  clear(): void {
    this.#hashes = new Uint32Array(INITIAL_SLOTS);
    this.#keys = new Float64Array(INITIAL_SLOTS).fill(EMPTY);
    this.#mask = INITIAL_SLOTS - 1;
    this.#size = 0;
  }

  #insert(hash: number, key: number): void {
    const keys = this.#keys;
    const mask = this.#mask;
    let i = hash & mask;
    while (keys[i] !== EMPTY) i = (i + 1) & mask;
    keys[i] = key;
    this.#hashes[i] = hash;
  }

  #resize(slots: number): void {
    const keys = this.#keys;
    const hashes = this.#hashes;
    this.#keys = new Float64Array(slots).fill(EMPTY);
    this.#hashes = new Uint32Array(slots);
    this.#mask = slots - 1;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== EMPTY) this.#insert(hashes[i] as number, keys[i] as number);
    }
  }
}

/** holder → key, one entry per holder (see the module doc). */
export class HolderIndex {
  readonly #holderAt: (key: number) => string | undefined;
  readonly #table = new HashKeyTable();
  /** The holder the current lookup compares with (no closure per lookup). */
  #holder = "";
  readonly #isHolder = (key: number) => this.#holderAt(key) === this.#holder;

  /** `holderAt(key)`: the holder of the row under `key` that an entry may point to, else undefined. */
  constructor(holderAt: (key: number) => string | undefined) {
    this.#holderAt = holderAt;
  }

  get size(): number {
    return this.#table.size;
  }

  /** The key recorded for `holder`, or undefined. */
  get(holder: string): number | undefined {
    const i = this.#find(holder, holderHash(holder));
    return i < 0 ? undefined : this.#table.keyAt(i);
  }

  /** Records `key` for `holder` (replacing its key, if any). */
  set(holder: string, key: number): this {
    const hash = holderHash(holder);
    const found = this.#find(holder, hash);
    if (found >= 0) this.#table.setKeyAt(found, key);
    else this.#table.add(hash, key);
    return this;
  }

  /** Takes `holder` out; true when it was in. */
  delete(holder: string): boolean {
    const i = this.#find(holder, holderHash(holder));
    if (i < 0) return false;
    this.#table.removeAt(i);
    return true;
  }

  clear(): void {
    this.#table.clear();
  }

  /** The slot of `holder`, or −1. */
  #find(holder: string, hash: number): number {
    this.#holder = holder;
    return this.#table.find(hash, this.#isHolder);
  }
}

/** The process's key of {@link holderHash} (64 random bits, drawn once at start). */
const _key = crypto.getRandomValues(new Uint32Array(2));
const _k0 = _key[0] as number;
const _k1 = _key[1] as number;

/** The text {@link holderHash} hashed last, and its hash. */
let _lastText: string | undefined;
let _lastHash = 0;

/**
 * The 32-bit hash of a holder: HalfSipHash-2-4 under the process's random key
 * (./halfsiphash.ts), so that no host can choose holders of one hash (with FNV-1a, before,
 * any number of them took a fraction of a second, and each lookup of one walked all the
 * others). The last text's hash is kept: one request looks its holder up in both indexes and
 * then records it (3–4 hashes of one text, about 0.1 µs each, where a comparison with the
 * text kept is a pointer or a short compare).
 */
export function holderHash(text: string): number {
  if (text === _lastText) return _lastHash;
  _lastText = text;
  _lastHash = halfSipHashText(_k0, _k1, text);
  return _lastHash;
}
