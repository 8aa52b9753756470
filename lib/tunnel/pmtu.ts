/**
 * The path MTU towards each IPv6 host, as learned from ICMPv6 Packet Too Big (RFC 8201 §4),
 * shared between the Worker that reads the errors (the only writer) and the Worker that
 * encapsulates (a reader): a fixed-size open-addressed table in a SharedArrayBuffer.
 *
 * Why a table of our own next to the kernel's route cache: the kernel does record the path
 * MTU (once IPV6_RECVERR is on, see lib/sys/raw6.ts) and fragments later outer packets to fit,
 * but RFC 2473 §7.1 wants an IPv4 packet with DF set answered with ICMPv4 "fragmentation
 * needed" carrying path MTU − 40 instead, so the encapsulator has to know the value per host.
 *
 * Rules (RFC 8201): a Packet Too Big only lowers an estimate (§4), never below the IPv6
 * minimum link MTU of 1280 (§4: a smaller value is treated as 1280); an estimate expires
 * after `ageSeconds` (§4: "at least 5 minutes", 10 recommended), after which the link MTU
 * applies again. The table holds at most `capacity` hosts; when a probe window is full
 * the entry closest to expiry is replaced (losing an estimate only costs one more PTB).
 *
 * An estimate may also come from the kernel's route towards the host ({@link follow}): the
 * kernel records every Packet Too Big it gets, also those about packets this table's writer
 * never sent (the kernel encapsulated them, `dstm client --kernel-encap`, or another socket
 * did), and an operator may set a route's MTU. Such an estimate follows the kernel both ways
 * and lasts as long as the kernel holds it; one from a Packet Too Big only goes down.
 *
 * Readers never lock: the writer zeroes an entry's MTU before changing its address and
 * writes the MTU last (Atomics), and a reader checks the MTU before and after comparing the
 * address. Lookups allocate nothing.
 *
 * @module
 */

/** IPv6 minimum link MTU (RFC 8200 §5). */
export const IPV6_MIN_MTU = 1280;
const STRIDE = 8; // address (4 × i32), mtu, expires (s), origin, 1 spare
/** Word 6 of an entry: where its estimate came from. */
const FROM_PTB = 0;
const FROM_KERNEL = 1;
const PROBES = 8;
const HEADER = 4; // count, capacity, 2 spare

export interface PathMtuOptions {
  /** Hosts remembered (rounded up to a power of two, 16–65536). Default 1024. */
  capacity?: number;
  /** Seconds an estimate lives (RFC 8201 §4). Default 600. */
  ageSeconds?: number;
}

/** One learned estimate, for status output. */
export interface PathMtuEntry {
  host6: Uint8Array;
  mtu: number;
  expiresSeconds: number;
}

export class PathMtuTable {
  readonly buffer: SharedArrayBuffer;
  readonly capacity: number;
  ageSeconds: number;
  readonly #words: Int32Array;
  readonly #mask: number;

  private constructor(buffer: SharedArrayBuffer, ageSeconds: number) {
    this.buffer = buffer;
    this.#words = new Int32Array(buffer);
    this.capacity = this.#words[1]!;
    this.#mask = this.capacity - 1;
    this.ageSeconds = ageSeconds;
  }

  /** An empty table. Throws RangeError on a bad option. */
  static create(options: PathMtuOptions = {}): PathMtuTable {
    const wanted = options.capacity ?? 1024;
    if (!Number.isInteger(wanted) || wanted < 1 || wanted > 65536)
      throw new RangeError(`path MTU table capacity ${wanted} is not 1–65536`);
    let capacity = 16;
    while (capacity < wanted) capacity *= 2;
    const age = options.ageSeconds ?? 600;
    if (!(age > 0)) throw new RangeError(`path MTU age ${age} s is not positive`);
    const buffer = new SharedArrayBuffer((HEADER + capacity * STRIDE) * 4);
    new Int32Array(buffer)[1] = capacity;
    return new PathMtuTable(buffer, age);
  }

  /** A view of a table created on another thread. */
  static attach(buffer: SharedArrayBuffer, ageSeconds = 600): PathMtuTable {
    return new PathMtuTable(buffer, ageSeconds);
  }

  /** Hosts with an estimate. Cheap: read it before {@link lookup} on the hot path. */
  get count(): number {
    return this.#words[0]!;
  }

  /** The path MTU (bytes) towards `host6[off, +16)`, or 0 when none is known. Allocation-free. */
  lookup(host6: Uint8Array, off: number): number {
    const at = this.#find(host6, off);
    // The MTU again after the address compared: a writer that replaced the entry meanwhile
    // zeroed it first (see the module comment).
    return at >= 0 && Atomics.load(this.#words, at + 4) === this.#seen ? this.#seen : 0;
  }

  /**
   * Records a Packet Too Big's MTU for `host6` at time `nowSeconds` (writer only). Values below
   * 1280 count as 1280 (RFC 8201 §4). Returns the new estimate if it went down (or is new),
   * 0 when the table already had an equal (its age starts again) or lower one.
   */
  learn(host6: Uint8Array, off: number, mtu: number, nowSeconds: number): number {
    const value = Math.max(IPV6_MIN_MTU, Math.min(mtu | 0, 0x7fffffff));
    const w = this.#words;
    const found = this.#find(host6, off);
    if (found >= 0) {
      const current = this.#seen;
      if (current < value) return 0;
      // The same value again (the kernel refreshes its route cache entry on each PTB, and so
      // do we, so that both age together); a lower one replaces it.
      w[found + 5] = nowSeconds + this.ageSeconds;
      if (current === value) return 0;
      w[found + 6] = FROM_PTB;
      Atomics.store(w, found + 4, value);
      return value;
    }
    return this.#insert(value, nowSeconds, FROM_PTB);
  }

  /**
   * A new entry for the address {@link #find} just looked for (in {@link #key}): a free slot
   * of its probe window, else the one closest to expiry. Returns `value`.
   */
  #insert(value: number, nowSeconds: number, origin: number): number {
    const w = this.#words;
    const k = this.#key;
    let slot = _hash(k[0]!, k[1]!, k[2]!, k[3]!) & this.#mask;
    let victim = -1;
    let victimExpiry = Number.POSITIVE_INFINITY;
    for (let p = 0; p < PROBES; p++) {
      const at = HEADER + slot * STRIDE;
      const expiry = w[at + 4] === 0 ? -1 : w[at + 5]!;
      if (expiry < victimExpiry) {
        victim = at;
        victimExpiry = expiry;
      }
      slot = (slot + 1) & this.#mask;
    }
    if (w[victim + 4] === 0) Atomics.add(w, 0, 1);
    else Atomics.store(w, victim + 4, 0);
    w[victim] = k[0]!;
    w[victim + 1] = k[1]!;
    w[victim + 2] = k[2]!;
    w[victim + 3] = k[3]!;
    w[victim + 5] = nowSeconds + this.ageSeconds;
    w[victim + 6] = origin;
    Atomics.store(w, victim + 4, value);
    return value;
  }

  /**
   * The kernel's path MTU towards `host6` now (`mtu`, bytes, from its route: ipv6(7)
   * IPV6_MTU), with `linkMtu` the MTU that applies without an estimate (writer only). Below
   * `linkMtu` it becomes the estimate unless one from a Packet Too Big is lower (values below
   * 1280 count as 1280, RFC 8201 §4), and it stays while the kernel holds it (followed up and
   * down; {@link expire} leaves it while it is followed); at `linkMtu` or above, an estimate
   * taken from the kernel is forgotten and one from a Packet Too Big is left to age. Returns the
   * estimate now in force (bytes), 0 when there is none.
   */
  follow(host6: Uint8Array, off: number, mtu: number, linkMtu: number, nowSeconds: number): number {
    const w = this.#words;
    const at = this.#find(host6, off);
    const current = at < 0 ? 0 : w[at + 4]!;
    if (mtu >= linkMtu) {
      if (at >= 0 && w[at + 6] === FROM_KERNEL) {
        Atomics.store(w, at + 4, 0);
        Atomics.sub(w, 0, 1);
        return 0;
      }
      return current;
    }
    const value = Math.max(IPV6_MIN_MTU, mtu | 0);
    if (at < 0) return this.#insert(value, nowSeconds, FROM_KERNEL);
    if (w[at + 6] === FROM_PTB && current <= value) return current;
    w[at + 6] = FROM_KERNEL;
    w[at + 5] = nowSeconds + this.ageSeconds;
    if (current !== value) Atomics.store(w, at + 4, value);
    return value;
  }

  /** The MTU {@link #find} saw in the entry it found, before comparing its address. */
  #seen = 0;

  /** The address being looked for, as 4 words ({@link #slotOf}). */
  readonly #key = new Int32Array(4);

  /** Puts `host6[off, +16)` into {@link #key}; returns its first slot. */
  #slotOf(host6: Uint8Array, off: number): number {
    const k = this.#key;
    for (let i = 0; i < 4; i++) k[i] = _word(host6, off + 4 * i);
    return _hash(k[0]!, k[1]!, k[2]!, k[3]!) & this.#mask;
  }

  /** The word index of `host6`'s entry, or -1; its MTU in {@link #seen}. Allocation-free. */
  #find(host6: Uint8Array, off: number): number {
    const w = this.#words;
    const k = this.#key;
    let slot = this.#slotOf(host6, off);
    for (let p = 0; p < PROBES; p++) {
      const at = HEADER + slot * STRIDE;
      const mtu = Atomics.load(w, at + 4);
      if (
        mtu !== 0 &&
        w[at] === k[0] &&
        w[at + 1] === k[1] &&
        w[at + 2] === k[2] &&
        w[at + 3] === k[3]
      ) {
        this.#seen = mtu;
        return at;
      }
      slot = (slot + 1) & this.#mask;
    }
    return -1;
  }

  /** Forgets estimates older than their age (writer only; RFC 8201 §4). Returns how many. */
  expire(nowSeconds: number): number {
    const w = this.#words;
    if (w[0] === 0) return 0;
    let removed = 0;
    for (let slot = 0; slot < this.capacity; slot++) {
      const at = HEADER + slot * STRIDE;
      if (w[at + 4] !== 0 && w[at + 5]! <= nowSeconds) {
        Atomics.store(w, at + 4, 0);
        removed++;
      }
    }
    if (removed > 0) Atomics.sub(w, 0, removed);
    return removed;
  }

  /** Every estimate (status output; allocates). */
  entries(): PathMtuEntry[] {
    const w = this.#words;
    const out: PathMtuEntry[] = [];
    for (let slot = 0; slot < this.capacity; slot++) {
      const at = HEADER + slot * STRIDE;
      const mtu = w[at + 4]!;
      if (mtu === 0) continue;
      const host6 = new Uint8Array(16);
      const view = new DataView(host6.buffer);
      for (let i = 0; i < 4; i++) view.setInt32(i * 4, w[at + i]!, false);
      out.push({ host6, mtu, expiresSeconds: w[at + 5]! });
    }
    return out;
  }
}

function _word(b: Uint8Array, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
}

function _hash(a0: number, a1: number, a2: number, a3: number): number {
  let h = Math.imul(a0 ^ 0x2545f491, 0x9e3779b1);
  h = Math.imul(h ^ a1 ^ (h >>> 15), 0x85ebca77);
  h = Math.imul(h ^ a2 ^ (h >>> 13), 0xc2b2ae3d);
  h = Math.imul(h ^ a3 ^ (h >>> 16), 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}
