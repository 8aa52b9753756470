/**
 * The one codec shape of lib/wire (as dns-packet has one): every message and every option
 * has `encode(value, buf?, offset?)`, `decode(buf, offset?)` and `encodingLength(value)` on
 * `Uint8Array`. Decoding never throws: a malformed datagram is ordinary input, so the result
 * is a value, `{ ok: true, value, offset }` with the offset just past what was read, or
 * `{ ok: false, error }` with a code from the codec's list (one counter per code suits a
 * server) and one line naming the field at fault. Encoding something that could not be
 * decoded back is a programmer error and throws `RangeError`.
 *
 * The DSTM codec (dstm.ts), DHCPv4 (dhcp4.ts) and DHCPv4-over-DHCPv6 (dhcp4o6.ts) use these
 * types; `test/helpers/codec.ts` checks any `Codec` or `OptionCodec` the same way.
 *
 * @module
 */

/** Why a decode failed: `code` from the codec's list, `message` one line naming the field. */
export interface DecodeError<C extends string = string> {
  readonly code: C;
  readonly message: string;
}

/** Result of a decode: the value and the offset just past it, or the reason it failed. */
export type Decoded<T, E extends DecodeError = DecodeError> =
  | { ok: true; value: T; offset: number }
  | { ok: false; error: E };

/** An option without a typed field: its code and its value bytes. */
export interface RawOption {
  readonly code: number;
  readonly data: Uint8Array;
}

/**
 * The trio of a message codec.
 *
 * @example
 * const dstm: Codec<DstmMessage, DstmDecodeError> = { encode: encodeMessage, decode: decodeMessage, encodingLength };
 */
export interface Codec<T, E extends DecodeError = DecodeError> {
  /** Bytes `encode` writes for `value`. */
  encodingLength(value: T): number;
  /**
   * Writes `value` into `buf` at `offset` (a new buffer when omitted) and returns the bytes
   * written; throws `RangeError` for a value it could not decode back or a buffer too small.
   */
  encode(value: T, buf?: Uint8Array, offset?: number): Uint8Array;
  /** Reads one value at `offset` (0 by default). Never throws. */
  decode(buf: Uint8Array, offset?: number): Decoded<T, E>;
}

/** The codec trio of one option's value (the bytes after code and length). */
export interface OptionCodec<T, E extends DecodeError = DecodeError> {
  readonly code: number;
  readonly name: string;
  /** Bytes of the value (without code and length). */
  encodingLength(value: T): number;
  /** Writes the value into `buf` at `offset` (a new buffer when omitted); throws `RangeError`. */
  encode(value: T, buf?: Uint8Array, offset?: number): Uint8Array;
  /** Reads `length` value bytes (all of `buf` after `offset` by default). Never throws. */
  decode(buf: Uint8Array, offset?: number, length?: number): Decoded<T, E>;
}

/** A failed decode result: `fail("truncated", "…")` is `{ ok: false, error: { code, message } }`. */
export function fail<C extends string>(
  code: C,
  message: string,
): { ok: false; error: DecodeError<C> } {
  return { ok: false, error: { code, message } };
}

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

/**
 * How one typed option value is checked, sized, written and read (the value bytes only, no
 * code and length): the entry shape of the DHCPv4 and DHCPv6 option tables. `read` gets the
 * whole value (`len` bytes at `at`) and returns it, or `F`, the table's way of saying why not.
 */
export interface OptionValueSpec<T, F> {
  readonly code: number;
  readonly name: string;
  /** Throws `RangeError` on a value `read` would not give back. */
  check(value: T): void;
  /** Bytes of the value. */
  size(value: T): number;
  write(value: T, buf: Uint8Array, at: number): void;
  read(buf: Uint8Array, at: number, len: number): T | F;
}

/**
 * The public codec trio of one option table entry. `faultOf` tells a refusal from `read`
 * apart from a value and turns it into the codec's `DecodeError` (undefined for a value).
 *
 * @example
 * const codec = optionCodec(spec, (r) => (typeof r === "string" ? { code: "bad-option-length", message: r } : undefined));
 */
export function optionCodec<T, F, C extends string>(
  spec: OptionValueSpec<T, F>,
  faultOf: (r: T | F) => DecodeError<C> | undefined,
): OptionCodec<T, DecodeError<C | "bad-offset">> {
  return {
    code: spec.code,
    name: spec.name,
    encodingLength: (value) => spec.size(value),
    encode(value, buf, offset = 0) {
      spec.check(value);
      const out = encodeTarget(buf, offset, spec.size(value), spec.name);
      spec.write(value, out, 0);
      return out;
    },
    decode(buf, offset = 0, length = buf.length - offset) {
      if (!validRange(buf, offset, length)) {
        return fail("bad-offset", `offset ${offset}, length ${length} outside ${buf.length}`);
      }
      const r = spec.read(buf, offset, length);
      const fault = faultOf(r);
      if (fault !== undefined) return { ok: false, error: fault };
      return { ok: true, value: r as T, offset: offset + length };
    },
  };
}
