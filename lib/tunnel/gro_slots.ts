/**
 * Which train a coalescer (./gro.ts for TCP, ./gro_udp.ts for UDP) starts a new one in: the
 * first empty slot, else the least recently used one, which the caller flushes first.
 * Allocation-free.
 *
 * @module
 */

/** The slot for a new train: the first with `len` 0, else the one with the smallest `used`. */
export function trainSlot(len: Int32Array, used: Float64Array, slots: number): number {
  let s = 0;
  let oldest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < slots; i++) {
    if (len[i] === 0) return i;
    if (used[i]! < oldest) {
      oldest = used[i]!;
      s = i;
    }
  }
  return s;
}
