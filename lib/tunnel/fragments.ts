/**
 * Fragments of shared-address flows (RFC 7597 §8.3.3, RFC 6346 §5.3.3): only the first
 * fragment of an IPv4 datagram carries the ports that say which host of a shared address a
 * packet belongs to, so the others are sent where their first fragment went.
 *
 * A `FragmentTable` remembers, per datagram (source, destination, protocol, identification),
 * what was decided for its first fragment: a status (the caller's code, e.g. a binding
 * lookup's LookupStatus or a NAPT Translation) and 16 bytes (the host's IPv6 address, or the
 * outer IPv6 source the first fragment came from). Fragments that arrive before their first
 * fragment are held, copied into a preallocated slot, and handed back (`popReleased`) once
 * the first fragment has been decided, to go through the same step again. This is
 * "fragment-ID-aware forwarding" rather than reassembly: fragments leave as they came.
 *
 * Bounds (RFC 7597 §8.3.3 asks for protection against fragment floods):
 * - at most `datagrams` datagrams at a time; a new one when the table is full is refused
 *   (its fragment is dropped and counted `*-frag-drop-no-room`, its first fragment goes on
 *   untracked);
 * - at most `holdSlots` held fragments of at most `slotBytes` bytes each (else dropped, no-room);
 * - a datagram is forgotten `timeoutMs` after its first fragment of any kind arrived (RFC 791's
 *   reassembly timer: 15 s by default), its held fragments dropped and counted
 *   `*-frag-drop-timeout`; it is forgotten at once when all of its bytes have been seen.
 *
 * Everything is preallocated at construction; the per-packet methods allocate nothing. One
 * table per Worker and direction (not shared between threads). The held fragments' storage
 * and release queue is ./fragment_slots.ts.
 *
 * @module
 */
import { FragmentSlots } from "./fragment_slots.ts";

/** IPv4 flags+offset word: MF bit and offset mask. */
const MF = 0x2000;
const OFFSET_MASK = 0x1fff;

/** True when the IPv4 packet at `buf[off]` is a fragment (MF set or offset ≠ 0). */
export function isIPv4Fragment(buf: Uint8Array, off: number): boolean {
  return (((buf[off + 6]! << 8) | buf[off + 7]!) & (MF | OFFSET_MASK)) !== 0;
}

/** True for the first fragment of a fragmented datagram (MF set, offset 0). */
export function isFirstFragment(buf: Uint8Array, off: number): boolean {
  return (((buf[off + 6]! << 8) | buf[off + 7]!) & (MF | OFFSET_MASK)) === MF;
}

/** True for a fragment other than the first (offset ≠ 0): it carries no ports. */
export function isLaterFragment(buf: Uint8Array, off: number): boolean {
  return (((buf[off + 6]! << 8) | buf[off + 7]!) & OFFSET_MASK) !== 0;
}

/** What `lookup` answers besides a stored status (statuses are ≥ 0). */
export const FragmentLookup = {
  /** The first fragment has not been seen yet: the fragment was copied and will be released. */
  HELD: -1,
  /** No room to track or hold it: dropped and counted. */
  NO_ROOM: -2,
  /** `lookup(…, match)`: decided, but for other 16 bytes than `held6` (another host). */
  MISMATCH: -3,
} as const;

/** Counter indexes (into the slice given as `counters`) a table counts under. */
export interface FragmentCounterIndexes {
  /** A datagram entered the table. */
  tracked: number;
  /** A fragment was held until its first fragment came. */
  held: number;
  /** A held fragment was dropped: its first fragment did not come in time. */
  dropTimeout: number;
  /** A fragment was dropped, or a first fragment not tracked: the table or the slots were full. */
  dropNoRoom: number;
}

/** Options of `new FragmentTable`. */
export interface FragmentTableOptions {
  /** Datagrams tracked at once. Default 1024. */
  datagrams?: number;
  /** Fragments held at once (waiting for their first fragment). Default 64. */
  holdSlots?: number;
  /** Largest fragment that can be held (bytes). Default 2048. */
  slotBytes?: number;
  /** How long a datagram is remembered after its first fragment arrived (ms). Default 15,000. */
  timeoutMs?: number;
  /** The counter slice to count in, and where. Omit both to count nowhere. */
  counters?: Float64Array;
  indexes?: FragmentCounterIndexes;
}

const FREE = 0;
const PENDING = 1;
const RESOLVED = 2;

export class FragmentTable {
  readonly capacity: number;
  readonly holdSlots: number;
  readonly slotBytes: number;
  timeoutMs: number;
  readonly #counters: Float64Array;
  readonly #ix: FragmentCounterIndexes;
  // Hash of datagram keys → entry; chains through #chain.
  readonly #buckets: Int32Array;
  readonly #chain: Int32Array;
  readonly #src: Uint32Array;
  readonly #dst: Uint32Array;
  readonly #protoId: Uint32Array;
  readonly #state: Uint8Array;
  readonly #status: Int32Array;
  readonly #host: Uint8Array;
  readonly #created: Float64Array;
  readonly #received: Int32Array;
  readonly #expected: Int32Array;
  readonly #heldHead: Int32Array;
  readonly #heldCount: Int32Array;
  // Entries in arrival order (oldest first), for expiry: a doubly linked list.
  readonly #older: Int32Array;
  readonly #newer: Int32Array;
  #oldest = -1;
  #newest = -1;
  #freeEntry = 0;
  #size = 0;
  // Held fragments (./fragment_slots.ts): chained per entry from #heldHead, then released.
  readonly #slots: FragmentSlots;
  #replaying = false;

  constructor(options: FragmentTableOptions = {}) {
    const n = options.datagrams ?? 1024;
    const slots = options.holdSlots ?? 64;
    const slotBytes = options.slotBytes ?? 2048;
    const timeoutMs = options.timeoutMs ?? 15_000;
    if (!Number.isInteger(n) || n < 1 || n > 1 << 20)
      throw new RangeError(`datagrams ${n} is not 1–${1 << 20}`);
    if (!Number.isInteger(slots) || slots < 0 || slots > 1 << 16)
      throw new RangeError(`holdSlots ${slots} is not 0–65536`);
    if (!Number.isInteger(slotBytes) || slotBytes < 68 || slotBytes > 65535)
      throw new RangeError(`slotBytes ${slotBytes} is not 68–65535`);
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs ${timeoutMs} is not positive`);
    this.capacity = n;
    this.holdSlots = slots;
    this.slotBytes = slotBytes;
    this.timeoutMs = timeoutMs;
    this.#counters = options.counters ?? new Float64Array(4);
    this.#ix = options.indexes ?? { tracked: 0, held: 1, dropTimeout: 2, dropNoRoom: 3 };
    let buckets = 16;
    while (buckets < 2 * n) buckets *= 2;
    this.#buckets = new Int32Array(buckets).fill(-1);
    this.#chain = new Int32Array(n);
    for (let i = 0; i < n; i++) this.#chain[i] = i + 1 < n ? i + 1 : -1;
    this.#src = new Uint32Array(n);
    this.#dst = new Uint32Array(n);
    this.#protoId = new Uint32Array(n);
    this.#state = new Uint8Array(n);
    this.#status = new Int32Array(n);
    this.#host = new Uint8Array(n * 16);
    this.#created = new Float64Array(n);
    this.#received = new Int32Array(n);
    this.#expected = new Int32Array(n);
    this.#heldHead = new Int32Array(n).fill(-1);
    this.#heldCount = new Int32Array(n);
    this.#older = new Int32Array(n).fill(-1);
    this.#newer = new Int32Array(n).fill(-1);
    this.#slots = new FragmentSlots(slots, slotBytes);
  }

  /** Datagrams tracked now. */
  get size(): number {
    return this.#size;
  }

  /** Fragments held now (waiting for their first fragment, or released and not yet popped). */
  get held(): number {
    return this.#slots.held;
  }

  /**
   * The first fragment of the datagram at `pkt[off ..]` (a validated IPv4 header; `len` its
   * total length) was decided: remember `status` (≥ 0) and `value[valueOff .. +16)` for the
   * datagram's other fragments, and queue any held ones for `popReleased`. Returns false when
   * the table had no room (counted; the datagram's other fragments will be held, then dropped).
   */
  resolve(
    pkt: Uint8Array,
    off: number,
    len: number,
    status: number,
    value: Uint8Array | null,
    valueOff: number,
    nowMs: number,
  ): boolean {
    this.expire(nowMs);
    const e = this.#entry(pkt, off, nowMs);
    if (e < 0) {
      this.#counters[this.#ix.dropNoRoom]! += 1;
      return false;
    }
    this.#state[e] = RESOLVED;
    this.#status[e] = status;
    if (value !== null) this.#host.set(value.subarray(valueOff, valueOff + 16), e * 16);
    this.#account(e, pkt, off, len);
    // Queue the held fragments (in arrival order) for release.
    this.#slots.release(this.#heldHead[e]!);
    this.#heldHead[e] = -1;
    this.#maybeDone(e);
    return true;
  }

  /**
   * A fragment other than the first: its datagram's status when the first fragment has been
   * decided (and its 16 bytes copied to `out[outOff ..]`), else HELD (copied, with
   * `held6[held6Off .. +16)` if given, to come back from `popReleased`) or NO_ROOM (counted).
   * With `match`, a decided datagram whose 16 bytes differ from `held6` answers MISMATCH
   * and the fragment does not count towards the datagram's bytes.
   */
  lookup(
    pkt: Uint8Array,
    off: number,
    len: number,
    out: Uint8Array | null,
    outOff: number,
    held6: Uint8Array | null,
    held6Off: number,
    nowMs: number,
    match = false,
  ): number {
    const replay = this.#replaying;
    this.#replaying = false;
    this.expire(nowMs);
    const found = this.#find(pkt, off);
    const e = found >= 0 ? found : this.#entry(pkt, off, nowMs);
    if (e < 0) {
      this.#counters[this.#ix.dropNoRoom]! += 1;
      return FragmentLookup.NO_ROOM;
    }
    if (this.#state[e] === RESOLVED) {
      if (match && held6 !== null) {
        const at = e * 16;
        for (let i = 0; i < 16; i++)
          if (this.#host[at + i] !== held6[held6Off + i]) return FragmentLookup.MISMATCH;
      }
      if (out !== null) out.set(this.#host.subarray(e * 16, e * 16 + 16), outOff);
      const status = this.#status[e]!;
      if (!replay) this.#account(e, pkt, off, len);
      this.#maybeDone(e);
      return status;
    }
    const s = this.#slots.hold(pkt, off, len, held6, held6Off);
    if (s < 0) {
      this.#counters[this.#ix.dropNoRoom]! += 1;
      if (this.#heldCount[e] === 0 && this.#received[e] === 0) this.#free(e);
      return FragmentLookup.NO_ROOM;
    }
    // Append to the entry's list, keeping arrival order.
    this.#heldHead[e] = this.#slots.append(this.#heldHead[e]!, s);
    this.#heldCount[e]! += 1;
    this.#account(e, pkt, off, len);
    this.#counters[this.#ix.held]! += 1;
    return FragmentLookup.HELD;
  }

  /**
   * Copies the next released fragment to `out[outOff ..]` (and the 16 bytes held with it to
   * `out6[out6Off ..]`) and returns its length, or 0 when none is waiting. Run the returned
   * fragment through the same step again: its `lookup` then finds the decided status.
   */
  popReleased(out: Uint8Array, outOff: number, out6: Uint8Array | null, out6Off: number): number {
    this.#replaying = false;
    const n = this.#slots.popReleased(out, outOff, out6, out6Off);
    if (n === 0) return 0;
    // The datagram the fragment belongs to: find it by the fragment's own key.
    const e = this.#find(out, outOff);
    if (e >= 0) this.#heldCount[e]! -= 1;
    this.#replaying = true;
    return n;
  }

  /** Forgets datagrams older than the timeout, dropping (and counting) their held fragments. */
  expire(nowMs: number): void {
    while (this.#oldest >= 0 && nowMs - this.#created[this.#oldest]! >= this.timeoutMs) {
      this.#free(this.#oldest);
    }
  }

  /** Forgets everything (a new lease); held fragments are counted as timed out. */
  clear(): void {
    while (this.#oldest >= 0) this.#free(this.#oldest);
    this.#counters[this.#ix.dropTimeout]! += this.#slots.dropReleased();
    this.#replaying = false;
  }

  // ------------------------------------------------------------------ internals

  #hash(src: number, dst: number, protoId: number): number {
    let h = Math.imul(src ^ 0x9e3779b9, 0x85ebca6b);
    h = Math.imul(h ^ dst ^ (h >>> 15), 0xc2b2ae35);
    h = Math.imul(h ^ protoId ^ (h >>> 13), 0x27d4eb2f);
    return (h ^ (h >>> 16)) & (this.#buckets.length - 1);
  }

  #find(pkt: Uint8Array, off: number): number {
    const src = _u32(pkt, off + 12);
    const dst = _u32(pkt, off + 16);
    const protoId = ((pkt[off + 9]! << 16) | (pkt[off + 4]! << 8) | pkt[off + 5]!) >>> 0;
    for (let e = this.#buckets[this.#hash(src, dst, protoId)]!; e >= 0; e = this.#chain[e]!) {
      if (this.#src[e] === src && this.#dst[e] === dst && this.#protoId[e] === protoId) return e;
    }
    return -1;
  }

  /** The entry of the packet's datagram, created (pending) when absent; −1 when full. */
  #entry(pkt: Uint8Array, off: number, nowMs: number): number {
    const found = this.#find(pkt, off);
    if (found >= 0) return found;
    const e = this.#freeEntry;
    if (e < 0) return -1;
    this.#freeEntry = this.#chain[e]!;
    const src = _u32(pkt, off + 12);
    const dst = _u32(pkt, off + 16);
    const protoId = ((pkt[off + 9]! << 16) | (pkt[off + 4]! << 8) | pkt[off + 5]!) >>> 0;
    this.#src[e] = src;
    this.#dst[e] = dst;
    this.#protoId[e] = protoId;
    this.#state[e] = PENDING;
    this.#status[e] = 0;
    this.#created[e] = nowMs;
    this.#received[e] = 0;
    this.#expected[e] = 0;
    this.#heldHead[e] = -1;
    this.#heldCount[e] = 0;
    const b = this.#hash(src, dst, protoId);
    this.#chain[e] = this.#buckets[b]!;
    this.#buckets[b] = e;
    this.#older[e] = this.#newest;
    this.#newer[e] = -1;
    if (this.#newest >= 0) this.#newer[this.#newest] = e;
    else this.#oldest = e;
    this.#newest = e;
    this.#size++;
    this.#counters[this.#ix.tracked]! += 1;
    return e;
  }

  /** Adds the fragment's payload bytes; the last fragment (MF clear) gives the datagram's size. */
  #account(e: number, pkt: Uint8Array, off: number, len: number): void {
    const ihl = (pkt[off]! & 0x0f) << 2;
    const word = (pkt[off + 6]! << 8) | pkt[off + 7]!;
    const payload = len - ihl;
    this.#received[e]! += payload;
    if ((word & MF) === 0) this.#expected[e] = (word & OFFSET_MASK) * 8 + payload;
  }

  /** Frees a decided datagram once all its bytes were seen and none of its fragments wait. */
  #maybeDone(e: number): void {
    const expected = this.#expected[e]!;
    if (
      expected > 0 &&
      this.#received[e]! >= expected &&
      this.#heldCount[e] === 0 &&
      !this.#slots.releasing(this.#src[e]!, this.#dst[e]!, this.#protoId[e]!)
    )
      this.#free(e);
  }

  #free(e: number): void {
    if (this.#state[e] === FREE) return;
    // Held fragments never released: their first fragment did not come in time.
    this.#counters[this.#ix.dropTimeout]! += this.#slots.drop(this.#heldHead[e]!);
    this.#heldHead[e] = -1;
    this.#heldCount[e] = 0;
    const b = this.#hash(this.#src[e]!, this.#dst[e]!, this.#protoId[e]!);
    if (this.#buckets[b] === e) this.#buckets[b] = this.#chain[e]!;
    else {
      let p = this.#buckets[b]!;
      while (p >= 0 && this.#chain[p] !== e) p = this.#chain[p]!;
      if (p >= 0) this.#chain[p] = this.#chain[e]!;
    }
    const older = this.#older[e]!;
    const newer = this.#newer[e]!;
    if (older >= 0) this.#newer[older] = newer;
    else this.#oldest = newer;
    if (newer >= 0) this.#older[newer] = older;
    else this.#newest = older;
    this.#state[e] = FREE;
    this.#chain[e] = this.#freeEntry;
    this.#freeEntry = e;
    this.#size--;
  }
}

function _u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
