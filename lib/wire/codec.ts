/**
 * Helpers shared by the DHCPv4 and DHCPv4-over-DHCPv6 codecs.
 *
 * @module
 */

/** True when `[offset, offset + length)` is a valid range of `buf`. */
export function validRange(buf: Uint8Array, offset: number, length: number): boolean {
  return (
    Number.isInteger(offset) &&
    Number.isInteger(length) &&
    offset >= 0 &&
    length >= 0 &&
    offset + length <= buf.length
  );
}

/** The `n` bytes at `offset` of `buf` (a new buffer when omitted), or `RangeError`. */
export function encodeTarget(
  buf: Uint8Array | undefined,
  offset: number,
  n: number,
  what: string,
): Uint8Array {
  if (buf === undefined) return new Uint8Array(n);
  if (!Number.isInteger(offset) || offset < 0 || offset + n > buf.length) {
    throw new RangeError(`${n}-byte ${what} does not fit at offset ${offset} of ${buf.length}`);
  }
  return buf.subarray(offset, offset + n);
}
