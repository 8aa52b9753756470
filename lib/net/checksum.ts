/**
 * The internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * The checksum is the 16-bit one's complement of the one's complement sum of the data taken
 * as big-endian 16-bit words (an odd trailing byte is padded with zero). Everything here
 * works on a `Uint8Array` range and allocates nothing, so the per-packet steps may call it.
 *
 * @module
 */

/**
 * One's complement sum of `buf[offset .. offset+length)` as 16-bit big-endian words, added to
 * `initial` (a previous partial sum, e.g. of a pseudo-header) and folded to 16 bits. It is
 * the raw sum, not yet complemented: feed it to `finishChecksum`.
 *
 * @example finishChecksum(checksumSum(header, 0, 20)) // the header checksum to store
 */
export function checksumSum(buf: Uint8Array, offset: number, length: number, initial = 0): number {
  if (length < WIDE_FROM) return beSum(buf, offset, length, initial);
  return checksumSumWords(buf, offset, length, initial, _wordsOf(buf.buffer));
}

/**
 * {@link checksumSum} for a caller that holds `words`, an Int32Array over the whole
 * ArrayBuffer of `buf` from byte 0: summed as 32-bit words at any length, without looking the
 * words up (worth it from about 32 bytes; e.g. a 64-byte datagram's UDP checksum, issue 14).
 */
export function checksumSumWords(
  buf: Uint8Array,
  offset: number,
  length: number,
  initial: number,
  words: Int32Array,
): number {
  // RFC 1071 §2(B) and (C): the sum does not depend on byte order (summed as little-endian
  // words it is the byte swap of the big-endian sum) and may be taken over 32-bit words with the
  // carries deferred. So the 4-aligned middle is summed as whole 32-bit words (a quarter of
  // the iterations), the unaligned head and the tail byte-wise. Little-endian hosts only
  // (x86_64, aarch64: what Bun runs on).
  const abs = buf.byteOffset + offset;
  const head = Math.min((4 - (abs & 3)) & 3, length);
  const count = (length - head) >>> 2;
  // Each word as its two 16-bit halves, in int32 arithmetic (no doubles), folded every 8,192
  // words (each adds at most 2 × 0xffff).
  let le = 0;
  for (let i = (abs + head) >>> 2, end = i + count; i < end; ) {
    const stop = Math.min(end, i + 8192);
    let acc = 0;
    for (; i < stop; i++) {
      const w = words[i]!;
      acc += (w & 0xffff) + (w >>> 16);
    }
    le += (acc & 0xffff) + (acc >>> 16);
  }
  while (le > 0xffff) le = (le & 0xffff) + (le >>> 16);
  const tailAt = offset + head + 4 * count;
  const tail = beSum(buf, tailAt, length - head - 4 * count, 0);
  // The middle starts at byte `head` of the range: at an even position its big-endian sum is
  // the swap of `le`; at an odd one the roles of the bytes flip back. Same for the tail.
  let sum = beSum(buf, offset, head, initial);
  sum += head & 1 ? le : _swap(le);
  sum += head & 1 ? _swap(tail) : tail;
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum & 0xffff) + (sum >>> 16);
}

/** Below this many bytes the byte-wise loop is as fast (and needs no word view). */
const WIDE_FROM = 128;

/** A 32-bit view of each buffer, made once per buffer (no allocation per call after that). */
const _words = new WeakMap<ArrayBufferLike, Int32Array>();

function _wordsOf(buffer: ArrayBufferLike): Int32Array {
  let w = _words.get(buffer);
  if (w === undefined) {
    w = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    _words.set(buffer, w);
  }
  return w;
}

function _swap(x: number): number {
  return ((x & 0xff) << 8) | (x >>> 8);
}

/** The byte-wise sum of big-endian 16-bit words (an odd last byte padded), folded. */
function beSum(buf: Uint8Array, offset: number, length: number, initial: number): number {
  let sum = initial;
  const end = offset + (length & ~1);
  let i = offset;
  // Fold every 16 K words so `sum` stays a small integer (no overflow past 2^31).
  while (i < end) {
    const stop = Math.min(end, i + 32768);
    for (; i < stop; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (length & 1) sum += buf[end]! << 8;
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum & 0xffff) + (sum >>> 16);
}

/** Complements a folded sum into the value stored in a checksum field. */
export function finishChecksum(sum: number): number {
  return ~sum & 0xffff;
}

/**
 * The internet checksum of a range: the value to store in the checksum field (computed with
 * that field set to zero), or 0 when the range, checksum field included, verifies.
 *
 * @example internetChecksum(packet, ipOffset, 20) === 0 // header checksum is right
 */
export function internetChecksum(buf: Uint8Array, offset: number, length: number): number {
  return ~checksumSum(buf, offset, length) & 0xffff;
}

/**
 * RFC 1624 eqn. 3 incremental update: the new checksum after one 16-bit word of the covered
 * data changed from `oldWord` to `newWord`, HC' = ~(~HC + ~m + m'). Unlike eqn. 2 of RFC 1141
 * it never turns a correct 0x0000 into 0xffff.
 *
 * @example checksumUpdate16(0xdd2f, 0x5555, 0x3285) // 0x0000 (the RFC's example)
 */
export function checksumUpdate16(checksum: number, oldWord: number, newWord: number): number {
  let sum = (~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Incremental update for a 32-bit field (an IPv4 address): two 16-bit word updates.
 *
 * @example checksumUpdate32(sum, oldAddress, newAddress)
 */
export function checksumUpdate32(checksum: number, oldValue: number, newValue: number): number {
  let sum =
    (~checksum & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) +
    (~oldValue & 0xffff) +
    (newValue >>> 16) +
    (newValue & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
