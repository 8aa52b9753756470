/**
 * The shared-memory layout of the binding table (see binding.ts for what the table is and
 * why): two open-addressing maps with linear probing in one SharedArrayBuffer, viewed as an
 * Int32Array, and the probe loops over them. Internal to binding.ts.
 *
 * ```
 * header   16 words: magic, layout, capacity, maxEntries, size, addresses, binding
 *          tombstones, address tombstones, generation, (reserved)
 * address  capacity × 4 words: seq, ipv4, meta = state | rule << 8, refcount
 * binding  capacity × 8 words: seq, ipv4, meta = state | psid << 16, rule, host6 × 4
 * ```
 *
 * `rule` is psidLength | offset << 8 (0 for an address that is not shared); host6 words are
 * big-endian. `seq` is the slot's seqlock: odd while the writer changes the slot. The
 * refcount (bindings per address) is read and written by the writer only.
 *
 * Readers: a slot passed over while probing is judged by its meta word alone (state and
 * PSID, written in one store, never torn); only a slot whose key matches is read again
 * between two atomic loads of its sequence. The data words in between are plain loads: in
 * JavaScriptCore every Atomics operation is a full barrier (it costs what a locked
 * instruction costs, about 7 ns here), so those loads cannot move past either sequence
 * load. A hit therefore costs two atomic loads per map it reads, a probe past a slot none;
 * most hits read only the binding map (see `probe`: the rule hint).
 *
 * @module
 */
import { psidOfPort } from "../net/portset.ts";

export const MAGIC = 0x4453544d; // "DSTM"
export const LAYOUT_VERSION = 1;
export const HEADER_WORDS = 16;
export const H_MAGIC = 0;
export const H_LAYOUT = 1;
export const H_CAPACITY = 2;
export const H_MAX = 3;
export const H_SIZE = 4;
export const H_ADDRESSES = 5;
export const H_BIND_TOMBS = 6;
export const H_ADDR_TOMBS = 7;
/** Table-wide generation: odd while the writer compacts; readers recheck it on a miss. */
export const H_GEN = 8;
/**
 * Changes the writer made (a set that changed something, a delete that removed something),
 * counted after each: a reader may keep an answer while it stays the same (batch_lookups.ts).
 */
export const H_WRITES = 9;

/** Slot states (low 2 bits of the meta word). */
export const EMPTY = 0;
export const USED = 1;
export const TOMB = 2;

/** Words per address slot and per binding slot. */
export const A_WORDS = 4;
export const B_WORDS = 8;

/** Result of a lookup; small integers so the per-packet steps can switch on them. */
export const LookupStatus = {
  /** A binding covers (address, port) (and, for `match`, names the given host). */
  FOUND: 0,
  /** The address has no binding at all. */
  NO_ADDRESS: 1,
  /** The address is shared and the port is in no bound set (or the packet has no port). */
  NO_PORT_SET: 2,
  /** `match` only: a binding covers (address, port) but names another IPv6 host. */
  OTHER_HOST: 3,
} as const;
export type LookupStatus = (typeof LookupStatus)[keyof typeof LookupStatus];

/** Word index of the binding map for a table of `capacity` slots per map. */
export function bindingBase(capacity: number): number {
  return HEADER_WORDS + A_WORDS * capacity;
}

/**
 * The sharing rule of the last address a lookup in this thread resolved through the address
 * map, tried first by the next lookup. Module state is per thread (each Worker loads its own
 * copy); it only decides which path is tried first, never an answer.
 */
let ruleHint = 0;

/**
 * Both lookups of a packet: the address's sharing rule, the PSID of `port` under it
 * (RFC 7597 §5.1), then the (ipv4, psid) binding. `compare` picks between copying host6
 * into `buf[off..+16)` and comparing it with those bytes. `ipv4` is the key as an int32.
 * Allocation-free. The caller handles the table-wide generation.
 *
 * A TEP's addresses mostly share one rule (its pools'), so the binding map is first probed
 * with the PSID that the last resolved rule gives. A binding found there whose own rule
 * (kept in its slot) is that rule answers alone, since all bindings of an address share its
 * rule: one random memory access per packet instead of two, which is what a table much
 * larger than the caches costs (docs/benchmarks.md, "Binding table size"). Anything else,
 * and lookups without a port, take the address map first.
 */
export function probe(
  w: Int32Array,
  mask: number,
  bindBase: number,
  ipv4: number,
  port: number,
  buf: Uint8Array,
  off: number,
  compare: boolean,
): LookupStatus {
  if (port >= 0) {
    const psid = psidOfPort(port, ruleHint >>> 8, ruleHint & 0xff);
    if (psid >= 0) {
      const status = _probeBinding(w, mask, bindBase, ipv4, psid, ruleHint, buf, off, compare);
      if (status >= 0) return status as LookupStatus;
    }
  }

  // 1. The sharing rule of the address.
  let i = hashAddress(ipv4) & mask;
  let rule = -1;
  for (let probes = 0; probes <= mask; ) {
    const s = HEADER_WORDS + i * A_WORDS;
    const meta = w[s + 2]!;
    if ((meta & 3) === EMPTY) return LookupStatus.NO_ADDRESS;
    if ((meta & 3) === USED && w[s + 1] === ipv4) {
      const seq = Atomics.load(w, s);
      const key2 = w[s + 1]!;
      const meta2 = w[s + 2]!;
      if ((seq & 1) !== 0 || Atomics.load(w, s) !== seq) continue; // being written: again
      if ((meta2 & 3) === USED && key2 === ipv4) {
        rule = meta2 >>> 8;
        break;
      }
    }
    i = (i + 1) & mask;
    probes++;
  }
  if (rule < 0) return LookupStatus.NO_ADDRESS;
  ruleHint = rule;

  // 2. The PSID of the port (RFC 7597 §5.1), 0 for an address that is not shared.
  const k = rule & 0xff;
  const psid = k === 0 ? 0 : port < 0 ? -1 : psidOfPort(port, rule >>> 8, k);
  if (psid < 0) return LookupStatus.NO_PORT_SET;

  // 3. The binding (ipv4, psid).
  const status = _probeBinding(w, mask, bindBase, ipv4, psid, rule, buf, off, compare);
  if (status >= 0) return status as LookupStatus;
  // Not there (−1), or there under another rule (−2): the rule changed between the two maps
  // (all bindings of the address replaced while we looked), so our PSID means nothing.
  return k === 0 && status === -1 ? LookupStatus.NO_ADDRESS : LookupStatus.NO_PORT_SET;
}

/**
 * The binding (ipv4, psid), read under its seqlock: FOUND or OTHER_HOST (compare) / FOUND
 * with host6 copied out, −1 when there is none, −2 when there is one under another rule.
 */
function _probeBinding(
  w: Int32Array,
  mask: number,
  bindBase: number,
  ipv4: number,
  psid: number,
  rule: number,
  buf: Uint8Array,
  off: number,
  compare: boolean,
): number {
  const wanted = USED | (psid << 16);
  let i = hashBinding(ipv4, psid) & mask;
  for (let probes = 0; probes <= mask; ) {
    const s = bindBase + i * B_WORDS;
    const meta = w[s + 2]!;
    if ((meta & 3) === EMPTY) return -1;
    if (meta === wanted && w[s + 1] === ipv4) {
      const seq = Atomics.load(w, s);
      const key2 = w[s + 1]!;
      const meta2 = w[s + 2]!;
      const slotRule = w[s + 3]!;
      const w0 = w[s + 4]!;
      const w1 = w[s + 5]!;
      const w2 = w[s + 6]!;
      const w3 = w[s + 7]!;
      if ((seq & 1) !== 0 || Atomics.load(w, s) !== seq) continue;
      if (meta2 === wanted && key2 === ipv4) {
        if (slotRule !== rule) return -2;
        if (compare) {
          return w0 === readWord(buf, off) &&
            w1 === readWord(buf, off + 4) &&
            w2 === readWord(buf, off + 8) &&
            w3 === readWord(buf, off + 12)
            ? LookupStatus.FOUND
            : LookupStatus.OTHER_HOST;
        }
        putWord(buf, off, w0);
        putWord(buf, off + 4, w1);
        putWord(buf, off + 8, w2);
        putWord(buf, off + 12, w3);
        return LookupStatus.FOUND;
      }
    }
    i = (i + 1) & mask;
    probes++;
  }
  return -1;
}

/** Address-map slot (word index) holding `key`, or −1. Writer only: no seqlock needed. */
export function findAddressSlot(w: Int32Array, mask: number, key: number): number {
  let i = hashAddress(key) & mask;
  for (let n = 0; n <= mask; n++) {
    const s = HEADER_WORDS + i * A_WORDS;
    const state = w[s + 2]! & 3;
    if (state === EMPTY) return -1;
    if (state === USED && w[s + 1] === key) return s;
    i = (i + 1) & mask;
  }
  return -1;
}

/** Binding-map slot (word index) holding (key, psid), or −1. Writer only. */
export function findBindingSlot(
  w: Int32Array,
  mask: number,
  bindBase: number,
  key: number,
  psid: number,
): number {
  let i = hashBinding(key, psid) & mask;
  for (let n = 0; n <= mask; n++) {
    const s = bindBase + i * B_WORDS;
    const meta = w[s + 2]!;
    const state = meta & 3;
    if (state === EMPTY) return -1;
    if (state === USED && w[s + 1] === key && meta >>> 16 === psid) return s;
    i = (i + 1) & mask;
  }
  return -1;
}

/**
 * First tombstone or empty slot on the probe path from `hash` (the key being absent), or −1
 * when there is none (cannot happen: the writer keeps used + tombstones ≤ 3/4 of the slots).
 */
export function freeSlot(
  w: Int32Array,
  mask: number,
  base: number,
  words: number,
  hash: number,
): number {
  let i = hash & mask;
  for (let n = 0; n <= mask; n++) {
    const s = base + i * words;
    if ((w[s + 2]! & 3) !== USED) return s;
    i = (i + 1) & mask;
  }
  return -1;
}

/**
 * Turns a used slot into a tombstone, then turns the tombstones that end a probe run
 * (followed by an empty slot) back into empty slots: no live key lies beyond an empty slot
 * on its probe path, so probes that now stop earlier lose nothing.
 */
export function bury(
  w: Int32Array,
  mask: number,
  base: number,
  words: number,
  slot: number,
  tombCounter: number,
): void {
  Atomics.add(w, slot, 1);
  Atomics.store(w, slot + 2, TOMB);
  Atomics.add(w, slot, 1);
  Atomics.add(w, tombCounter, 1);
  let i = (slot - base) / words;
  if ((w[base + ((i + 1) & mask) * words + 2]! & 3) !== EMPTY) return;
  for (let n = 0; n <= mask; n++) {
    const s = base + i * words;
    if ((w[s + 2]! & 3) !== TOMB) return;
    Atomics.add(w, s, 1);
    Atomics.store(w, s + 2, EMPTY);
    Atomics.add(w, s, 1);
    Atomics.sub(w, tombCounter, 1);
    i = (i - 1) & mask;
  }
}

/** Home slot of an address (murmur3 fmix32: spreads sequential addresses). */
/**
 * Writer: a new binding in free slot `slot` (empty or a tombstone), under its seqlock:
 * key, sharing rule, host (four words) and, last, the used mark with the PSID; counts it.
 */
export function fillBindingSlot(
  w: Int32Array,
  slot: number,
  key: number,
  psid: number,
  rule: number,
  h0: number,
  h1: number,
  h2: number,
  h3: number,
): void {
  if ((w[slot + 2]! & 3) === TOMB) Atomics.sub(w, H_BIND_TOMBS, 1);
  Atomics.add(w, slot, 1);
  Atomics.store(w, slot + 1, key);
  Atomics.store(w, slot + 3, rule);
  Atomics.store(w, slot + 4, h0);
  Atomics.store(w, slot + 5, h1);
  Atomics.store(w, slot + 6, h2);
  Atomics.store(w, slot + 7, h3);
  Atomics.store(w, slot + 2, USED | (psid << 16));
  Atomics.add(w, slot, 1);
  Atomics.add(w, H_SIZE, 1);
}

/** Writer: a binding's new host (four words) under its slot's seqlock. */
export function writeBindingHost(
  w: Int32Array,
  slot: number,
  h0: number,
  h1: number,
  h2: number,
  h3: number,
): void {
  Atomics.add(w, slot, 1);
  Atomics.store(w, slot + 4, h0);
  Atomics.store(w, slot + 5, h1);
  Atomics.store(w, slot + 6, h2);
  Atomics.store(w, slot + 7, h3);
  Atomics.add(w, slot, 1);
}

/** Writer: a new address in free slot `a` with its sharing rule and one binding; counts it. */
export function fillAddressSlot(w: Int32Array, a: number, key: number, rule: number): void {
  if ((w[a + 2]! & 3) === TOMB) Atomics.sub(w, H_ADDR_TOMBS, 1);
  Atomics.add(w, a, 1);
  Atomics.store(w, a + 1, key);
  Atomics.store(w, a + 3, 1);
  Atomics.store(w, a + 2, USED | (rule << 8));
  Atomics.add(w, a, 1);
  Atomics.add(w, H_ADDRESSES, 1);
}

export function hashAddress(x: number): number {
  let h = x ^ (x >>> 16);
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Home slot of a binding (address, PSID). */
export function hashBinding(ipv4: number, psid: number): number {
  return hashAddress(ipv4 ^ Math.imul(psid, 0x9e3779b1));
}

/** Big-endian 32-bit word of `b[i..i+4)` as an int32. */
export function readWord(b: Uint8Array, i: number): number {
  return (b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!;
}

/** Writes `v` big-endian to `b[i..i+4)`. */
export function putWord(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}
