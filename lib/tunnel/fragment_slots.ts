/**
 * The held-fragment store of ./fragments.ts's FragmentTable: `count` preallocated slots of
 * `slotBytes` bytes each (a fragment plus 16 bytes kept with it: the outer IPv6 source it came
 * from, or nothing), chained into per-datagram lists (the table keeps each list's head) and
 * one release queue, all as index links in typed arrays.
 *
 * A fragment that comes before its datagram's first fragment (RFC 7597 §8.3.3) is copied into
 * a slot (`hold`) and appended to its datagram's list (`append`, arrival order kept). When the
 * first fragment is decided the list moves to the release queue (`release`) and comes back one
 * by one from `popReleased`; a datagram forgotten first has its list dropped (`drop`), counted
 * by the caller as timed out. Lengths are in bytes; slot indexes are ≥ 0, −1 means none.
 * Nothing is allocated after construction.
 *
 * @module
 */

export class FragmentSlots {
  readonly count: number;
  readonly slotBytes: number;
  readonly #data: Uint8Array;
  readonly #length: Int32Array;
  readonly #slot6: Uint8Array;
  /** Next slot of the same list (a datagram's, the release queue, or the free list). */
  readonly #next: Int32Array;
  #free: number;
  #held = 0;
  #releaseHead = -1;
  #releaseTail = -1;

  constructor(count: number, slotBytes: number) {
    this.count = count;
    this.slotBytes = slotBytes;
    this.#data = new Uint8Array(count * slotBytes);
    this.#length = new Int32Array(count);
    this.#slot6 = new Uint8Array(count * 16);
    this.#next = new Int32Array(count);
    for (let i = 0; i < count; i++) this.#next[i] = i + 1 < count ? i + 1 : -1;
    this.#free = count > 0 ? 0 : -1;
  }

  /** Fragments held now (on a datagram's list or on the release queue). */
  get held(): number {
    return this.#held;
  }

  /**
   * Copies `pkt[off .. off+len)` (and `held6[held6Off .. +16)` if given) into a free slot and
   * returns it, or −1 when no slot is free or the fragment is longer than `slotBytes`.
   */
  hold(
    pkt: Uint8Array,
    off: number,
    len: number,
    held6: Uint8Array | null,
    held6Off: number,
  ): number {
    const s = this.#free;
    if (s < 0 || len > this.slotBytes) return -1;
    this.#free = this.#next[s]!;
    this.#data.set(pkt.subarray(off, off + len), s * this.slotBytes);
    this.#length[s] = len;
    if (held6 !== null) this.#slot6.set(held6.subarray(held6Off, held6Off + 16), s * 16);
    this.#next[s] = -1;
    this.#held++;
    return s;
  }

  /** Appends slot `s` to the list starting at `head` (−1: empty); returns the list's head. */
  append(head: number, s: number): number {
    if (head < 0) return s;
    let tail = head;
    while (this.#next[tail]! >= 0) tail = this.#next[tail]!;
    this.#next[tail] = s;
    return head;
  }

  /** Moves the list starting at `head` (in order) to the end of the release queue. */
  release(head: number): void {
    let s = head;
    while (s >= 0) {
      const next = this.#next[s]!;
      this.#next[s] = -1;
      if (this.#releaseTail < 0) this.#releaseHead = s;
      else this.#next[this.#releaseTail] = s;
      this.#releaseTail = s;
      s = next;
    }
  }

  /**
   * Copies the next released fragment to `out[outOff ..]` (its 16 bytes to `out6[out6Off ..]`),
   * frees its slot and returns its length, or 0 when the release queue is empty.
   */
  popReleased(out: Uint8Array, outOff: number, out6: Uint8Array | null, out6Off: number): number {
    const s = this.#releaseHead;
    if (s < 0) return 0;
    this.#releaseHead = this.#next[s]!;
    if (this.#releaseHead < 0) this.#releaseTail = -1;
    const n = this.#length[s]!;
    out.set(this.#data.subarray(s * this.slotBytes, s * this.slotBytes + n), outOff);
    if (out6 !== null) out6.set(this.#slot6.subarray(s * 16, s * 16 + 16), out6Off);
    this.#freeSlot(s);
    return n;
  }

  /** Frees every slot of the list starting at `head`; returns how many (dropped fragments). */
  drop(head: number): number {
    let dropped = 0;
    for (let s = head; s >= 0; ) {
      const next = this.#next[s]!;
      this.#freeSlot(s);
      dropped++;
      s = next;
    }
    return dropped;
  }

  /** Frees the whole release queue; returns how many fragments were on it. */
  dropReleased(): number {
    const dropped = this.drop(this.#releaseHead);
    this.#releaseHead = -1;
    this.#releaseTail = -1;
    return dropped;
  }

  /**
   * True when a fragment of the datagram (`src`, `dst`, protocol << 16 | identification) is
   * still on the release queue.
   */
  releasing(src: number, dst: number, protoId: number): boolean {
    const data = this.#data;
    for (let s = this.#releaseHead; s >= 0; s = this.#next[s]!) {
      const at = s * this.slotBytes;
      if (
        _u32(data, at + 12) === src &&
        _u32(data, at + 16) === dst &&
        ((data[at + 9]! << 16) | (data[at + 4]! << 8) | data[at + 5]!) >>> 0 === protoId
      )
        return true;
    }
    return false;
  }

  #freeSlot(s: number): void {
    this.#next[s] = this.#free;
    this.#free = s;
    this.#held--;
  }
}

function _u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
