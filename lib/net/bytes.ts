/**
 * Big-endian (network order) integer access on byte arrays, shared by every codec.
 * Callers check bounds first; these read and write exactly the bytes named.
 *
 * @module
 */

/** The 16-bit unsigned integer at `at`. */
export function readU16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

/** The 24-bit unsigned integer at `at`. */
export function readU24(buf: Uint8Array, at: number): number {
  return (buf[at]! << 16) | (buf[at + 1]! << 8) | buf[at + 2]!;
}

/** The 32-bit unsigned integer at `at`. */
export function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/** Writes the low 16 bits of `v` at `at`; returns `at + 2`. */
export function writeU16(buf: Uint8Array, at: number, v: number): number {
  buf[at] = v >>> 8;
  buf[at + 1] = v;
  return at + 2;
}

/** Writes `v` (32 bits) at `at`; returns `at + 4`. */
export function writeU32(buf: Uint8Array, at: number, v: number): number {
  buf[at] = v >>> 24;
  buf[at + 1] = v >>> 16;
  buf[at + 2] = v >>> 8;
  buf[at + 3] = v;
  return at + 4;
}
