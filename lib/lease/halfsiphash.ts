/**
 * HalfSipHash-2-4 with a 32-bit result (Aumasson and Bernstein's SipHash family, the variant
 * for 32-bit words: https://github.com/veorq/SipHash, the "hsiphash" of the Linux kernel's
 * hash tables): a keyed pseudo-random function, so that whoever does not know the key
 * cannot choose inputs that share a hash.
 *
 * Why here: the holder indexes (./holder_index.ts, the engine's and the SQLite store's) hash
 * holders that hosts choose — a native host its interface identifier, a DHCPv4-over-DHCPv6
 * client its client identifier. With an unkeyed hash (FNV-1a, before) a host could make any
 * number of holders of one hash in a fraction of a second (chained block collisions), and
 * each lookup of one of them then walked all the others: SQLite reads in the store's guard
 * (test/rt20_hash_flood.test.ts). Why not a library: the `siphash` package on npm takes about
 * 5 µs for a 40-character address (an object per 64-bit operation), this about 0.1 µs; the
 * runtime's own seeded hashes (wyhash, xxHash) are not designed against chosen inputs.
 *
 * The 64-bit key of a process comes from `crypto.getRandomValues` at its start; the hashes
 * never leave the process (tables in memory), so no two processes need the same key.
 *
 * @module
 */

/** The state (v0, v1, v2, v3) of the hash being computed: one at a time, on the caller's thread. */
let v0 = 0;
let v1 = 0;
let v2 = 0;
let v3 = 0;

/** Starts a hash under (k0, k1). */
function _init(k0: number, k1: number): void {
  v0 = k0 | 0;
  v1 = k1 | 0;
  v2 = (0x6c796765 ^ k0) | 0;
  v3 = (0x74656462 ^ k1) | 0;
}

/** `rounds` SipRounds (HalfSipHash's rotations 5, 16, 8, 7, 13, 16). */
function _rounds(rounds: number): void {
  for (let r = 0; r < rounds; r++) {
    v0 = (v0 + v1) | 0;
    v1 = (v1 << 5) | (v1 >>> 27);
    v1 ^= v0;
    v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0;
    v3 = (v3 << 8) | (v3 >>> 24);
    v3 ^= v2;
    v0 = (v0 + v3) | 0;
    v3 = (v3 << 7) | (v3 >>> 25);
    v3 ^= v0;
    v2 = (v2 + v1) | 0;
    v1 = (v1 << 13) | (v1 >>> 19);
    v1 ^= v2;
    v2 = (v2 << 16) | (v2 >>> 16);
  }
}

/** One message word `m` (two compression rounds). */
function _word(m: number): void {
  v3 ^= m;
  _rounds(2);
  v0 ^= m;
}

/** The last block `b` (the length's low byte on top), then the finalization: v1 ^ v3. */
function _finish(b: number): number {
  _word(b);
  v2 ^= 0xff;
  _rounds(4);
  return (v1 ^ v3) >>> 0;
}

/**
 * HalfSipHash-2-4 of `bytes[0 … length)` under the key (k0, k1) (the key's two 32-bit words,
 * little-endian as in the reference's 8-byte key): the 32-bit result, unsigned.
 */
export function halfSipHash24(
  k0: number,
  k1: number,
  bytes: Uint8Array,
  length = bytes.length,
): number {
  _init(k0, k1);
  const whole = length - (length & 3);
  let i = 0;
  for (; i < whole; i += 4) {
    _word(
      (bytes[i] as number) |
        ((bytes[i + 1] as number) << 8) |
        ((bytes[i + 2] as number) << 16) |
        ((bytes[i + 3] as number) << 24),
    );
  }
  let b = (length & 0xff) << 24;
  for (let s = 0; i < length; i++, s += 8) b |= (bytes[i] as number) << s;
  return _finish(b);
}

/**
 * HalfSipHash-2-4 of the text's code units under (k0, k1): each unit as one byte when all are
 * below 256 (the ISO 8859-1 bytes of the text: addresses and identifiers), else each as two
 * bytes, little-endian, under the key with its first word inverted, so that the two encodings
 * never meet. The 32-bit result, unsigned.
 */
export function halfSipHashText(k0: number, k1: number, text: string): number {
  const length = text.length;
  for (let j = 0; j < length; j++) {
    if (text.charCodeAt(j) > 0xff) return _wide(~k0, k1, text);
  }
  _init(k0, k1);
  const whole = length - (length & 3);
  let i = 0;
  for (; i < whole; i += 4) {
    _word(
      text.charCodeAt(i) |
        (text.charCodeAt(i + 1) << 8) |
        (text.charCodeAt(i + 2) << 16) |
        (text.charCodeAt(i + 3) << 24),
    );
  }
  let b = (length & 0xff) << 24;
  for (let s = 0; i < length; i++, s += 8) b |= text.charCodeAt(i) << s;
  return _finish(b);
}

/** Scratch for a text with a code unit above 255 (rare: no holder has one). */
let _wideBytes = new Uint8Array(256);

function _wide(k0: number, k1: number, text: string): number {
  if (_wideBytes.length < 2 * text.length) _wideBytes = new Uint8Array(4 * text.length);
  for (let j = 0; j < text.length; j++) {
    const c = text.charCodeAt(j);
    _wideBytes[2 * j] = c & 0xff;
    _wideBytes[2 * j + 1] = c >>> 8;
  }
  return halfSipHash24(k0, k1, _wideBytes, 2 * text.length);
}
