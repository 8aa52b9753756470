/**
 * Message authentication: HMAC-SHA256 with shared keys, key files, and a replay guard.
 *
 * A signed message ends with the AUTH option `{ keyId, timestamp, nonce, mac }`. The MAC is
 * HMAC-SHA256(secret, bytes from the first header byte up to the MAC), so it covers the
 * header (length included), every option and the key id, timestamp and nonce. A receiver
 * accepts a message when the MAC is right, the timestamp is within `windowMs` of its own
 * clock, and it has not seen the (keyId, nonce) pair before; docs/protocol.md §Authentication.
 *
 * Every function takes the time as an argument (ms since the Unix epoch), so tests need no
 * fake clock.
 *
 * @module
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { encodeMessage } from "./dstm.ts";
import {
  AUTH_MAC_LENGTH,
  AUTH_NONCE_LENGTH,
  DSTM_HEADER_LENGTH,
  type DstmMessage,
} from "./dstm_types.ts";

/** Shortest accepted secret, in bytes: 128 bits. */
export const AUTH_MIN_SECRET = 16;

/** A shared key. `secret` is at least `AUTH_MIN_SECRET` bytes. */
export interface AuthKey {
  readonly id: number;
  readonly secret: Uint8Array;
}

/** Result of `parseKeyFile`: the keys, or a one-line message starting with `line N:`. */
export type KeyFileResult = { ok: true; keys: AuthKey[] } | { ok: false; message: string };

/**
 * Which channel a MAC belongs to. `host` (host ⇄ server, the `--key` of hosts and server)
 * MACs the message bytes alone, as docs/protocol.md's test vector shows; `tep` (server ⇄ TEP,
 * the server's `--tep-key` and the TEP's `--key`) prefixes them with {@link TEP_AUTH_LABEL}.
 * A message signed for one channel therefore never verifies on the other, even when an
 * operator has put the same secret in both key files (docs/security.md).
 */
export type AuthDomain = "host" | "tep";

/**
 * Domain-separation label MAC-ed before the bytes of every server ⇄ TEP message. It starts
 * with "D" (0x44), a DSTM message with version 1 (0x01): no host-channel input is a prefix of it.
 */
export const TEP_AUTH_LABEL: Uint8Array = new TextEncoder().encode("DSTM server-TEP control v1\0");

/** Why `verifyMessage` accepted (`ok`) or refused a message. */
export type VerifyOutcome = "ok" | "missing" | "unknown-key" | "bad-mac" | "stale" | "replayed";

/**
 * Parses a key file: lines `KEYID SECRET`, KEYID decimal 0..2^32-1, SECRET hex (even length,
 * at least 32 digits) or `base64:...` (at least 16 bytes). `#` starts a comment; blank lines
 * are ignored. A file whose only key line is a bare SECRET gets key id 1.
 *
 * @example parseKeyFile("7 000102030405060708090a0b0c0d0e0f\n") // { ok: true, keys: [{ id: 7, ... }] }
 */
export function parseKeyFile(text: string): KeyFileResult {
  const keys: AuthKey[] = [];
  const lineOf = new Map<number, number>();
  let bareLine = 0;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const fields = (lines[i] ?? "").replace(/#.*/, "").trim().split(/\s+/);
    if (fields[0] === "") continue;
    if (fields.length > 2) return _bad(n, "expected KEYID SECRET, found more fields");
    const [first = "", second] = fields;
    if (bareLine !== 0 || (second === undefined && keys.length > 0)) {
      return _bad(n, "a bare SECRET (key id 1) is allowed only when the file holds one key");
    }
    if (second === undefined) bareLine = n;
    const idText = second === undefined ? "1" : first;
    const secretText = second ?? first;
    if (!/^(0|[1-9][0-9]{0,9})$/.test(idText) || Number(idText) > 0xffffffff) {
      return _bad(n, `key id ${JSON.stringify(idText)} is not a decimal number 0..4294967295`);
    }
    const id = Number(idText);
    const secret = _parseSecret(secretText);
    if (typeof secret === "string") return _bad(n, secret);
    const earlier = lineOf.get(id);
    if (earlier !== undefined) return _bad(n, `key id ${id} already defined on line ${earlier}`);
    lineOf.set(id, n);
    keys.push({ id, secret });
  }
  if (keys.length === 0) return { ok: false, message: "no keys: expected lines KEYID SECRET" };
  return { ok: true, keys };
}

/**
 * Text of a new key file for `dstm keygen`: a comment and one line `<id> <64 hex digits>`
 * (a random 256-bit secret).
 *
 * @example generateKeyFileText(3) // "# dstm key ...\n3 9f1c...\n"
 */
export function generateKeyFileText(id = 1): string {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new RangeError(`key id ${id} is not 0..4294967295`);
  }
  const hex = randomBytes(32).toString("hex");
  return `# dstm key (HMAC-SHA256 shared secret); keep this file private (mode 0600)\n${id} ${hex}\n`;
}

/**
 * True when a secret appears in both lists: the server refuses a `--tep-key` that repeats a
 * host key, since every host holds the host keys (docs/security.md).
 */
export function sharesSecret(a: readonly AuthKey[], b: readonly AuthKey[]): boolean {
  const hex = (k: AuthKey) => Array.from(k.secret, (b) => b.toString(16).padStart(2, "0")).join("");
  const seen = new Set(a.map(hex));
  return b.some((k) => seen.has(hex(k)));
}

/** A `Map` from key id to key, as `verifyMessage` wants. */
export function keyMap(keys: Iterable<AuthKey>): Map<number, AuthKey> {
  const map = new Map<number, AuthKey>();
  for (const key of keys) map.set(key.id, key);
  return map;
}

/**
 * Encodes `msg` signed with `key`: an AUTH option `{ keyId: key.id, timestamp: now, nonce }`
 * (8 random bytes when `nonce` is omitted) whose MAC is computed over the encoded bytes
 * (after {@link TEP_AUTH_LABEL} when `domain` is `tep`, and then `audience`, the 16-byte
 * IPv6 address of the TEP a server → TEP message is for, so that a message signed for one
 * TEP never verifies at another that holds the same TEP key).
 * Any `msg.auth` is replaced. Throws `RangeError` as `encodeMessage` does.
 * `now` is the sender's clock in milliseconds since the Unix epoch (`Date.now()`): it becomes
 * the AUTH timestamp the receiver checks against its replay window (`windowMs`).
 *
 * @example const bytes = signMessage(discover, key, Date.now());
 */
export function signMessage(
  msg: DstmMessage,
  key: AuthKey,
  now: number,
  nonce: Uint8Array = randomBytes(AUTH_NONCE_LENGTH),
  domain: AuthDomain = "host",
  audience?: Uint8Array,
): Uint8Array {
  if (key.secret.length < AUTH_MIN_SECRET) {
    throw new RangeError(`key ${key.id} has a secret shorter than ${AUTH_MIN_SECRET} bytes`);
  }
  const mac = new Uint8Array(AUTH_MAC_LENGTH);
  const bytes = encodeMessage({ ...msg, auth: { keyId: key.id, timestamp: now, nonce, mac } });
  const macAt = bytes.length - AUTH_MAC_LENGTH;
  bytes.set(_hmac(key.secret, bytes.subarray(0, macAt), domain, audience), macAt);
  return bytes;
}

/**
 * Checks the AUTH option of `msg`, which must have been decoded from `raw` (a longer buffer
 * is fine: the header's length field bounds the message). The MAC is compared in constant
 * time and before the replay guard is consulted, so forged messages cannot fill the guard;
 * the nonce is recorded only when the message is accepted. `now` is the receiver's clock in
 * milliseconds since the Unix epoch (`Date.now()`); the message is fresh when
 * `|now − timestamp| ≤ guard.windowMs`.
 *
 * @example
 * const outcome = verifyMessage(raw, decoded.value, keys, guard, Date.now());
 * if (outcome !== "ok") counters[`drop-auth-${outcome}`]++;
 */
export function verifyMessage(
  raw: Uint8Array,
  msg: DstmMessage,
  keys: ReadonlyMap<number, AuthKey>,
  guard: ReplayGuard,
  now: number,
  domain: AuthDomain = "host",
  audience?: Uint8Array,
): VerifyOutcome {
  const auth = msg.auth;
  if (auth === undefined) return "missing";
  const key = keys.get(auth.keyId);
  if (key === undefined) return "unknown-key";
  const end = raw.length < 10 ? 0 : ((raw[8] ?? 0) << 8) | (raw[9] ?? 0);
  if (
    end > raw.length ||
    end < DSTM_HEADER_LENGTH + 2 + 12 + AUTH_NONCE_LENGTH + AUTH_MAC_LENGTH ||
    auth.mac.length !== AUTH_MAC_LENGTH
  ) {
    return "bad-mac";
  }
  const expected = _hmac(key.secret, raw.subarray(0, end - AUTH_MAC_LENGTH), domain, audience);
  if (!timingSafeEqual(expected, auth.mac)) return "bad-mac";
  return guard.check(auth.keyId, auth.nonce, auth.timestamp, now);
}

/**
 * Remembers the (keyId, nonce) pairs of accepted messages for as long as their timestamps
 * are within the window, so that a copy is refused.
 *
 * A message is fresh when `|now − timestamp| ≤ windowMs`, so one stamped `t` can be replayed
 * until `t + windowMs`; its nonce must be kept at least that long. Pairs are therefore
 * filed in buckets by *timestamp* (`windowMs / 8` wide) rather than by arrival time, and a
 * bucket is dropped once every timestamp in it is stale. (Generations rotated on arrival
 * time would have to be kept for 2 × windowMs, since a timestamp may lie `windowMs` ahead.)
 * Memory is then proportional to the messages stamped within the last window and a bit.
 *
 * `maxEntries` caps it under a flood of validly signed messages: when full, the bucket whose
 * timestamps lie farthest from now (past or future) is dropped early, and every timestamp in
 * its range is refused as `stale` until the range is stale anyway. Replay protection stays
 * intact; the price is that messages stamped in that range are refused meanwhile. Dropping
 * the farthest (not the oldest) bucket means a flood stamped far ahead or behind (a key holder
 * filling the guard) loses its own bucket, not the one honest senders stamp now. Size `maxEntries` above the peak rate of signed messages times
 * `windowMs × 1.125`: the defaults (262144, 30 s) cover about 7,700 messages per second.
 */
export class ReplayGuard {
  /** Largest accepted |now − timestamp| in ms. */
  readonly windowMs: number;
  /** Most (keyId, nonce) pairs held at once. */
  readonly maxEntries: number;
  readonly #bucketMs: number;
  readonly #buckets = new Map<number, Set<string>>();
  #size = 0;
  /** Timestamps below this are refused as stale (raised when buckets are dropped early). */
  #floor = Number.NEGATIVE_INFINITY;
  /** Buckets dropped early (full guard): their timestamps are refused until they are stale. */
  readonly #dropped = new Set<number>();
  /** `now` at which the oldest bucket becomes stale and can be dropped. */
  #sweepAt = Number.POSITIVE_INFINITY;

  /**
   * `notBefore` (ms since the epoch): timestamps before it are refused as `stale`. A receiver
   * passes its start time, because the pairs its previous run accepted are gone: without it,
   * a message captured before a restart could be replayed for up to `windowMs` after it.
   * The cost: a sender whose clock is behind the receiver's by d is refused for d after start.
   */
  constructor(opts: { windowMs?: number; maxEntries?: number; notBefore?: number } = {}) {
    const { windowMs = 30_000, maxEntries = 262_144 } = opts;
    if (!(windowMs > 0) || !Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError("ReplayGuard needs windowMs > 0 and an integer maxEntries ≥ 1");
    }
    this.windowMs = windowMs;
    this.maxEntries = maxEntries;
    this.#bucketMs = Math.max(1, Math.ceil(windowMs / 8));
    if (opts.notBefore !== undefined) this.#floor = opts.notBefore;
  }

  /** Number of (keyId, nonce) pairs held. */
  get size(): number {
    return this.#size;
  }

  /**
   * `stale` when the timestamp is outside the window, `replayed` when the pair was accepted
   * before, otherwise records the pair and returns `ok`.
   */
  check(
    keyId: number,
    nonce: Uint8Array,
    timestamp: number,
    now: number,
  ): "ok" | "stale" | "replayed" {
    if (!(Math.abs(now - timestamp) <= this.windowMs) || timestamp < this.#floor) return "stale";
    if (now >= this.#sweepAt) this.#sweep(now);
    const index = Math.floor(timestamp / this.#bucketMs);
    if (this.#dropped.has(index)) return "stale";
    const id = _pairId(keyId, nonce);
    let bucket = this.#buckets.get(index);
    if (bucket?.has(id)) return "replayed";
    while (this.#size >= this.maxEntries) this.#dropFarthest(now);
    if (this.#dropped.has(index)) return "stale"; // its own bucket was just dropped
    bucket = this.#buckets.get(index);
    if (bucket === undefined) {
      bucket = new Set();
      this.#buckets.set(index, bucket);
      this.#sweepAt = Math.min(this.#sweepAt, this.#staleAt(index));
    }
    bucket.add(id);
    this.#size++;
    return "ok";
  }

  /** When every timestamp in bucket `index` is stale. */
  #staleAt(index: number): number {
    return (index + 1) * this.#bucketMs + this.windowMs;
  }

  #sweep(now: number): void {
    this.#sweepAt = Number.POSITIVE_INFINITY;
    for (const [index, bucket] of this.#buckets) {
      const staleAt = this.#staleAt(index);
      if (now >= staleAt) {
        this.#size -= bucket.size;
        this.#buckets.delete(index);
      } else this.#sweepAt = Math.min(this.#sweepAt, staleAt);
    }
    for (const index of this.#dropped) {
      const staleAt = this.#staleAt(index);
      if (now >= staleAt) this.#dropped.delete(index);
      else this.#sweepAt = Math.min(this.#sweepAt, staleAt);
    }
  }

  /** Drops the bucket whose middle is farthest from `now`; remembers it as refused. */
  #dropFarthest(now: number): void {
    let farthest: number | undefined;
    let distance = -1;
    for (const index of this.#buckets.keys()) {
      const d = Math.abs((index + 0.5) * this.#bucketMs - now);
      if (d > distance) {
        distance = d;
        farthest = index;
      }
    }
    if (farthest === undefined) return;
    this.#size -= this.#buckets.get(farthest)!.size;
    this.#buckets.delete(farthest);
    this.#dropped.add(farthest);
    this.#sweepAt = Math.min(this.#sweepAt, this.#staleAt(farthest));
  }
}

function _bad(line: number, message: string): KeyFileResult {
  return { ok: false, message: `line ${line}: ${message}` };
}

/** Decodes a SECRET field, or returns what is wrong with it. */
function _parseSecret(text: string): Uint8Array | string {
  let bytes: Uint8Array;
  if (text.startsWith("base64:")) {
    const b64 = text.slice(7);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) {
      return "secret after base64: is not valid base64";
    }
    bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  } else {
    if (!/^[0-9a-fA-F]*$/.test(text) || text.length % 2 !== 0) {
      return "secret is not hex with an even number of digits (or base64:...)";
    }
    bytes = new Uint8Array(text.length / 2);
    for (let i = 0; i < bytes.length; i++)
      bytes[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
  }
  if (bytes.length < AUTH_MIN_SECRET) {
    return `secret is ${bytes.length} bytes, at least ${AUTH_MIN_SECRET} needed (32 hex digits)`;
  }
  return bytes;
}

function _hmac(
  secret: Uint8Array,
  data: Uint8Array,
  domain: AuthDomain,
  audience?: Uint8Array,
): Uint8Array {
  const hmac = createHmac("sha256", secret);
  if (domain === "tep") hmac.update(TEP_AUTH_LABEL);
  if (audience !== undefined) hmac.update(audience);
  return hmac.update(data).digest();
}

/** The guard's key for a pair: six UTF-16 code units, cheaper to hash than hex. */
function _pairId(keyId: number, nonce: Uint8Array): string {
  const n = (i: number) => ((nonce[i] ?? 0) << 8) | (nonce[i + 1] ?? 0);
  return String.fromCharCode(keyId >>> 16, keyId & 0xffff, n(0), n(2), n(4), n(6));
}
