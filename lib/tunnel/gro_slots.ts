/**
 * What the two coalescers (./gro.ts for TCP, ./gro_udp.ts for UDP) share: which slot a new
 * train starts in (the first empty, else the least recently used, which the caller flushes
 * first), and how a packet's bytes get into a train's memory. Allocation-free.
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

/**
 * Copies `buf[from, from+len)` into `mem[to …]`. When `buf` lies in the same ArrayBuffer as
 * `mem` (the coalescer's own receive buffers), a memmove within `whole`, a view of that whole
 * ArrayBuffer from offset 0 (`mem` itself when it starts there); else a plain copy.
 */
export function copyToTrain(
  whole: Uint8Array,
  mem: Uint8Array,
  buf: Uint8Array,
  from: number,
  len: number,
  to: number,
): void {
  if (buf.buffer === mem.buffer) {
    const at = buf.byteOffset + from;
    whole.copyWithin(mem.byteOffset + to, at, at + len);
  } else mem.set(buf.subarray(from, from + len), to);
}

/** Whether the IPv4 packets at `a[aOff …]` and `b[bOff …]` have the same destination address. */
export function sameIPv4Destination(
  a: Uint8Array,
  aOff: number,
  b: Uint8Array,
  bOff: number,
): boolean {
  return (
    a[aOff + 16] === b[bOff + 16] &&
    a[aOff + 17] === b[bOff + 17] &&
    a[aOff + 18] === b[bOff + 18] &&
    a[aOff + 19] === b[bOff + 19]
  );
}
