/**
 * The one codec test of lib/wire, as dns-packet has one encoder test for every record type:
 * `checkRoundTrip` (round trip, re-encode, length, and encoding at an offset into a larger
 * buffer that must stay untouched around it) and the fuzz pieces (`randomBuffers`,
 * `mutatedBuffers`, `expectSaneDecode`) for any codec of the shape of lib/wire/codec.ts:
 * messages (DSTM, DHCPv4, DHCPv4-over-DHCPv6, DHCPv6) and option codecs alike.
 *
 * @module
 */
import { expect } from "bun:test";
import type { Decoded, DecodeError } from "../../lib/wire/codec.ts";

/**
 * A codec as these helpers drive it. A message codec that reads its own length (DSTM's
 * header has one) ignores the third argument of `decode`; option codecs and DHCP take it.
 */
export interface TestCodec<T> {
  encode(value: T, buf?: Uint8Array, offset?: number): Uint8Array;
  decode(buf: Uint8Array, offset?: number, length?: number): Decoded<T, DecodeError>;
  encodingLength(value: T): number;
}

export interface RoundTripOptions {
  /** Pass the value's length to `decode` inside the larger buffer (else it must find the end). */
  readonly passLength?: boolean;
  /** Bytes before and after the value in the larger buffer (37 and 23 by default). */
  readonly before?: number;
  readonly after?: number;
}

const FILL = 0xa5;

/**
 * Encodes `value`, checks `encodingLength`, decodes it back to an equal value with the offset
 * just past it, re-encodes the decoded value to the same bytes, then encodes it at an offset
 * into a larger buffer (the same bytes, the same buffer, nothing around them touched) and
 * decodes it from there. Returns the encoded bytes.
 *
 * @example checkRoundTrip(dstmCodec, { type: MessageType.DISCOVER, xid: 1, host6: "2001:db8::1" })
 */
export function checkRoundTrip<T>(
  codec: TestCodec<T>,
  value: T,
  opts: RoundTripOptions = {},
): Uint8Array {
  const bytes = codec.encode(value);
  expect(bytes.length).toBe(codec.encodingLength(value));
  const decoded = codec.decode(bytes);
  if (!decoded.ok) throw new Error(`${decoded.error.code}: ${decoded.error.message}`);
  expect(decoded.value).toEqual(value);
  expect(decoded.offset).toBe(bytes.length);
  expect(codec.encode(decoded.value)).toEqual(bytes);

  const before = opts.before ?? 37;
  const after = opts.after ?? 23;
  const big = new Uint8Array(before + bytes.length + after).fill(FILL);
  const written = codec.encode(value, big, before);
  expect(written).toEqual(bytes);
  expect(written.buffer).toBe(big.buffer);
  expect(big.subarray(0, before).every((b) => b === FILL)).toBe(true);
  expect(big.subarray(before + bytes.length).every((b) => b === FILL)).toBe(true);
  const inner = opts.passLength
    ? codec.decode(big, before, bytes.length)
    : codec.decode(big, before);
  if (!inner.ok) throw new Error(`${inner.error.code}: ${inner.error.message}`);
  expect(inner.value).toEqual(value);
  expect(inner.offset).toBe(before + bytes.length);
  return bytes;
}

/**
 * Decodes `bytes` at `offset` and expects the failure `code` with a one-line, non-empty message
 * (the table-driven "rejects malformed input" test of every codec).
 */
export function expectDecodeError(
  codec: Pick<TestCodec<unknown>, "decode">,
  bytes: Uint8Array,
  code: string,
  offset = 0,
): void {
  const result = codec.decode(bytes, offset);
  expect(result.ok ? "ok" : result.error.code).toBe(code);
  if (!result.ok) {
    expect(result.error.message.length).toBeGreaterThan(0);
    expect(result.error.message).not.toContain("\n");
  }
}

/**
 * Decodes `bytes` and counts the outcome in `outcomes` ("ok" or the error code). A failure
 * must carry one of `codes`; a success must re-encode to bytes that decode to the same value.
 * Throws on anything else, and whatever `decode` itself throws propagates: the fuzz tests
 * assert that it never does.
 */
export function expectSaneDecode<T>(
  codec: TestCodec<T>,
  bytes: Uint8Array,
  codes: ReadonlySet<string>,
  outcomes: Map<string, number>,
): void {
  const result = codec.decode(bytes);
  const key = result.ok ? "ok" : result.error.code;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  if (!result.ok) {
    if (!codes.has(result.error.code)) throw new Error(`unknown code ${result.error.code}`);
    return;
  }
  // Whatever decodes must re-encode to something that decodes to the same value.
  const again = codec.decode(codec.encode(result.value));
  if (!again.ok) throw new Error(`re-encoded message fails: ${again.error.message}`);
  expect(again.value).toEqual(result.value);
}

/**
 * `count` buffers of random bytes, the `i`-th `length(i)` bytes long; `shape(bytes, i)` may
 * then give some a plausible header or option framing, so the decoder gets past its first
 * checks. `random` is a seeded PRNG (test/helpers/fuzz.ts), so a failure reproduces.
 */
export function* randomBuffers(
  random: () => number,
  count: number,
  length: (i: number) => number,
  shape?: (bytes: Uint8Array, i: number) => void,
): Generator<Uint8Array> {
  for (let i = 0; i < count; i++) {
    const bytes = new Uint8Array(length(i));
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
    shape?.(bytes, i);
    yield bytes;
  }
}

export interface MutationOptions {
  /** Each mutation changes 1 to `maxHits` bytes (1 by default). */
  readonly maxHits?: number;
  /** Aim `share` of the hits at bytes `[from, to)` (`to` defaults to the end): where the structure is. */
  readonly focus?: { readonly from: number; readonly to?: number; readonly share: number };
}

/**
 * `count` broken copies of the `valid` encodings, taken in turn (the `i`-th of `valid[i %
 * valid.length]`, yielded with that index): every fourth truncated at a random length, the
 * others with random bytes changed.
 */
export function* mutatedBuffers(
  random: () => number,
  count: number,
  valid: readonly Uint8Array[],
  opts: MutationOptions = {},
): Generator<[Uint8Array, number]> {
  for (let i = 0; i < count; i++) {
    const which = i % valid.length;
    const original = valid[which]!;
    if (i % 4 === 3) {
      yield [original.subarray(0, Math.floor(random() * original.length)), which];
      continue;
    }
    const bytes = original.slice();
    const hits = opts.maxHits === undefined ? 1 : 1 + Math.floor(random() * opts.maxHits);
    for (let h = 0; h < hits; h++) {
      const focus = opts.focus;
      let at: number;
      if (focus !== undefined && random() < focus.share) {
        const to = Math.min(focus.to ?? bytes.length, bytes.length);
        at = focus.from + Math.floor(random() * (to - focus.from));
      } else at = Math.floor(random() * bytes.length);
      bytes[at] = Math.floor(random() * 256);
    }
    yield [bytes, which];
  }
}
