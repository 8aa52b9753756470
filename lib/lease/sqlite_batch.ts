/**
 * A batch of lease ops as the SQLite store hands it to its writer Worker
 * (./sqlite_writer.ts, ./sqlite_writer_worker.ts): a compact encoding, so that a batch costs
 * no structured clone of an object per op (and of its port set), and usually none at all.
 *
 * Row `i` of `nums` is {@link BATCH_NUMS} numbers ({@link BatchNum}); a put's strings follow
 * each other in `text` (host6, tep6, pool, then its identity), their lengths (UTF-16 code
 * units) in the row. A delete has only its kind and key.
 *
 * {@link BatchArena} writes batches into a SharedArrayBuffer the Worker reads, so that
 * handing one over is a postMessage of its offset (a number: ~2 µs, against ~25 µs for a
 * batch of 50 rows as a structured clone with a transferred Float64Array and an array of
 * strings, measured with Bun 1.4.5).
 *
 * @module
 */
import { type LeaseOp, type LeaseState, leaseKey } from "./lease.ts";

/** Column of a row of {@link EncodedBatch.nums}. */
export const BatchNum = {
  /** 1: a put, 0: a delete. */
  PUT: 0,
  KEY: 1,
  IPV4: 2,
  OFFSET: 3,
  PSID_LENGTH: 4,
  PSID: 5,
  TEP4: 6,
  GRANTED_AT: 7,
  EXPIRES_AT: 8,
  /** Index in {@link BATCH_STATES}. */
  STATE: 9,
  /** Lengths in `text` (UTF-16 code units); IDENTITY_LEN −1: no identity. */
  HOST6_LEN: 10,
  TEP6_LEN: 11,
  POOL_LEN: 12,
  IDENTITY_LEN: 13,
} as const;

/** Numbers per row of {@link EncodedBatch.nums}. */
export const BATCH_NUMS = 14;

/** Lease states by their index in {@link BatchNum.STATE}. */
export const BATCH_STATES: readonly LeaseState[] = ["active", "released", "expired"];

/** One batch of lease ops (see the module doc). */
export interface EncodedBatch {
  /** Ops in the batch. */
  readonly n: number;
  /** `n` rows of {@link BATCH_NUMS} numbers. */
  readonly nums: Float64Array;
  /** The puts' strings, concatenated in row order. */
  readonly text: string;
}

/**
 * Writes `ops` (in order) into `nums` (at least `ops.length` × {@link BATCH_NUMS}, zeroed by
 * the caller where a delete leaves columns unset) and returns their text. A put's `expected`
 * and `lapse` are not sent: SQLite has one writer.
 */
export function encodeRows(ops: readonly LeaseOp[], nums: Float64Array): string {
  let text = "";
  for (let i = 0, j = 0; i < ops.length; i++, j += BATCH_NUMS) {
    const op = ops[i] as LeaseOp;
    if (op.op === "delete") {
      nums[j] = 0;
      nums[j + BatchNum.KEY] = op.key;
      continue;
    }
    const l = op.lease;
    const p = l.portSet;
    nums[j] = 1;
    nums[j + BatchNum.KEY] = leaseKey(l.ipv4, p.psid);
    nums[j + BatchNum.IPV4] = l.ipv4;
    nums[j + BatchNum.OFFSET] = p.offset;
    nums[j + BatchNum.PSID_LENGTH] = p.psidLength;
    nums[j + BatchNum.PSID] = p.psid;
    nums[j + BatchNum.TEP4] = l.tep4;
    nums[j + BatchNum.GRANTED_AT] = l.grantedAt;
    nums[j + BatchNum.EXPIRES_AT] = l.expiresAt;
    nums[j + BatchNum.STATE] = l.state === "active" ? 0 : l.state === "released" ? 1 : 2;
    nums[j + BatchNum.HOST6_LEN] = l.host6.length;
    nums[j + BatchNum.TEP6_LEN] = l.tep6.length;
    nums[j + BatchNum.POOL_LEN] = l.pool.length;
    nums[j + BatchNum.IDENTITY_LEN] = l.identity === undefined ? -1 : l.identity.length;
    text +=
      l.identity === undefined ? l.host6 + l.tep6 + l.pool : l.host6 + l.tep6 + l.pool + l.identity;
  }
  return text;
}

/** Encodes `ops` into fresh arrays (a batch that does not fit the {@link BatchArena}). */
export function encodeBatch(ops: readonly LeaseOp[]): EncodedBatch {
  const nums = new Float64Array(ops.length * BATCH_NUMS);
  return { n: ops.length, nums, text: encodeRows(ops, nums) };
}

/** Bytes of a batch's header in the arena: n, text bytes, gen, unused (Int32 each). */
const HEADER_BYTES = 16;

/** Bytes of the shared buffer of a {@link BatchArena}: 1 MiB, some 7,000 rows. */
export const ARENA_BYTES = 1 << 20;

/**
 * The batches handed to the Worker and not yet answered, in a ring over a SharedArrayBuffer:
 * the store writes each at an offset ({@link BatchArena.put}) and frees it once answered
 * ({@link BatchArena.free}, oldest first); the Worker reads it there ({@link readBatch}).
 */
export class BatchArena {
  readonly buffer: SharedArrayBuffer;
  readonly #bytes: Uint8Array;
  readonly #words: Int32Array;
  readonly #encoder = new TextEncoder();
  /** Starts of the batches not yet freed, oldest first. */
  #starts: number[] = [];
  #first = 0;
  /** Where the next batch goes (when it fits before the oldest, or the end). */
  #head = 0;

  constructor(bytes = ARENA_BYTES) {
    this.buffer = new SharedArrayBuffer(bytes);
    this.#bytes = new Uint8Array(this.buffer);
    this.#words = new Int32Array(this.buffer);
  }

  /**
   * Writes `ops` with `gen` (./sqlite_writer_words.ts) into the ring; returns its offset, or
   * −1 when it does not fit (the caller sends it otherwise).
   */
  put(ops: readonly LeaseOp[], gen: number): number {
    const numBytes = ops.length * BATCH_NUMS * 8;
    // Rows first: the text's length is known only once they are encoded; at most 3 bytes
    // of UTF-8 per UTF-16 code unit.
    const scratch = new Float64Array(ops.length * BATCH_NUMS);
    const text = encodeRows(ops, scratch);
    const start = this.#place(HEADER_BYTES + numBytes + 3 * text.length);
    if (start < 0) return -1;
    new Float64Array(this.buffer, start + HEADER_BYTES, ops.length * BATCH_NUMS).set(scratch);
    const at = start + HEADER_BYTES + numBytes;
    const { written } = this.#encoder.encodeInto(text, this.#bytes.subarray(at));
    const w = start >> 2;
    this.#words[w] = ops.length;
    this.#words[w + 1] = written;
    this.#words[w + 2] = gen;
    this.#head = (at + written + 7) & ~7;
    this.#starts.push(start);
    return start;
  }

  /** The oldest batch not yet freed was answered: its bytes may be reused. */
  free(): void {
    if (this.#first >= this.#starts.length) return;
    this.#first++;
    if (this.#first === this.#starts.length) {
      this.#starts = [];
      this.#first = 0;
      this.#head = 0;
    }
  }

  /** A start for `bytes` bytes, or −1. */
  #place(bytes: number): number {
    const size = this.#bytes.length;
    if (this.#first === this.#starts.length) return bytes <= size ? 0 : -1;
    const tail = this.#starts[this.#first] as number;
    if (this.#head > tail) {
      if (size - this.#head >= bytes) return this.#head;
      return tail >= bytes ? 0 : -1;
    }
    return tail - this.#head >= bytes ? this.#head : -1;
  }
}

/** The batch the store wrote at `start` of `buffer` ({@link BatchArena.put}), and its `gen`. */
export function readBatch(
  buffer: SharedArrayBuffer,
  start: number,
  decoder: TextDecoder,
): EncodedBatch & { readonly gen: number } {
  const words = new Int32Array(buffer, start, HEADER_BYTES / 4);
  const n = words[0] as number;
  const textBytes = words[1] as number;
  const gen = words[2] as number;
  const nums = new Float64Array(buffer, start + HEADER_BYTES, n * BATCH_NUMS);
  const at = start + HEADER_BYTES + n * BATCH_NUMS * 8;
  const text = decoder.decode(new Uint8Array(buffer, at, textBytes));
  return { n, nums, text, gen };
}
