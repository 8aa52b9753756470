/**
 * Per-slot state of one pool, for the allocation engine: what each (address, PSID) slot is
 * doing, the never-used cursor and the list of freed slots, all in typed arrays so that a
 * pool of millions of slots costs no per-slot object and no call scans the pool.
 *
 * A slot's state follows from the lease row under its key and from its address:
 * - `NEVER`: no row; handed out in slot order through a cursor (no NEVER slot lies below it).
 * - `ACTIVE`: an active lease with the pool's port-set layout.
 * - `FREE`: a released or expired row (history; any layout, nobody holds its ports); on a
 *   doubly linked list ordered by (time freed, key), so the longest-free slot goes first and
 *   the slots other hosts may want back (stickiness) last.
 * - `BLOCKED`: its address carries an active lease with another layout (the pool's share or
 *   offset changed since): that lease's ports may overlap any PSID of the address, so none is
 *   handed out until it ends (one address, one k and one offset: RFC 7597 §5.1 sets only stay
 *   disjoint that way).
 * - `OFF`: never usable (network, broadcast, excluded, or a PSID holding well-known ports).
 * - `RESERVED`: no active lease, but reserved for one host (./reservations.ts): handed out to
 *   that host only, by the engine, never by the cursor, the free list or a hint.
 *
 * The engine calls {@link PoolSlots.settle} for a slot whenever its row changes and
 * {@link PoolSlots.block} / {@link PoolSlots.unblock} when an active lease of another layout
 * appears or ends, so the state is always a function of the rows, whatever order a rollback
 * restores them in.
 *
 * @module
 */
import { type Lease, leaseKey } from "../lease/lease.ts";
import type { Pool } from "./pool.ts";

export const NEVER = 0;
export const ACTIVE = 1;
export const FREE = 2;
export const OFF = 3;
export const BLOCKED = 4;
export const RESERVED = 5;

export class PoolSlots {
  /** NEVER / ACTIVE / FREE / OFF / BLOCKED per slot. */
  readonly state: Uint8Array;
  readonly #next: Int32Array;
  readonly #prev: Int32Array;
  /** Longest-free slot, or −1. */
  head = -1;
  #tail = -1;
  /** No NEVER slot lies below it. */
  #cursor = 0;
  /** Slots in state ACTIVE / BLOCKED. */
  active = 0;
  blocked = 0;
  reserved = 0;
  /** Rows stepped over by free-list insertions so far: a cost counter (0 per insertion at the tail). */
  walked = 0;
  /** Address index → number of active leases of another layout on it. */
  readonly #blockers = new Map<number, number>();
  readonly #share: number;
  readonly #shift: number;

  /**
   * `rowAt` reads the engine's lease table (the row of a key, if any); `isReserved` says
   * whether a key is reserved for a host (default: none is).
   */
  constructor(
    readonly pool: Pool,
    readonly tep6: string,
    readonly tep4: number,
    readonly rowAt: (key: number) => Lease | undefined,
    readonly isReserved: (key: number) => boolean = () => false,
  ) {
    const n = pool.slotCount;
    this.state = new Uint8Array(n);
    for (let slot = 0; slot < n; slot++) if (!pool.isUsable(slot)) this.state[slot] = OFF;
    this.#next = new Int32Array(n);
    this.#prev = new Int32Array(n);
    this.#share = pool.sharing.share;
    this.#shift = pool.sharing.psidLength;
  }

  /** True when `row` has this pool's port-set layout (same PSID length, and offset when shared). */
  matches(row: Lease): boolean {
    const set = row.portSet;
    const sharing = this.pool.sharing;
    return (
      set.psidLength === sharing.psidLength &&
      (sharing.psidLength === 0 || set.offset === sharing.psidOffset)
    );
  }

  /** The lease key of a slot. */
  keyOf(slot: number): number {
    return leaseKey(this.pool.addressOf(slot), slot & (this.#share - 1));
  }

  /** A NEVER slot, the lowest, or −1. Amortized O(1): the cursor only moves back when a slot becomes NEVER again. */
  takeNever(): number {
    const state = this.state;
    let cursor = this.#cursor;
    while (cursor < state.length && state[cursor] !== NEVER) cursor++;
    this.#cursor = cursor;
    return cursor < state.length ? cursor : -1;
  }

  /**
   * A NEVER slot among the `span` slots from a place `start` (0 ≤ start < slot count) picks
   * in the part of the pool at and above the cursor (where every NEVER slot is: `start` is
   * scaled into it), else {@link takeNever}'s: servers sharing a database start from
   * different random places, so that they rarely pick the same slot at the same time (the
   * database would make one of them pick again). Scaled, not clamped: with the low part of the
   * pool in use (after a restart, 40,000 of 131,072 slots), a clamped start below the cursor
   * gave every server the cursor slot, and they collided on a third of their picks. O(span).
   */
  takeNeverNear(start: number, span = 64): number {
    const state = this.state;
    const cursor = this.takeNever();
    if (cursor < 0) return -1;
    const from = cursor + Math.floor((start / state.length) * (state.length - cursor));
    const end = Math.min(state.length, from + span);
    for (let slot = from; slot < end; slot++) {
      if (state[slot] === NEVER) return slot;
    }
    return cursor;
  }

  /**
   * A slot of the address at `index` that can be handed out: a never-used PSID first, else
   * the one freed longest ago; −1 when every usable PSID is taken. O(share).
   */
  freeSlotOf(index: number): number {
    const state = this.state;
    const base = index * this.#share;
    let best = -1;
    let bestRow: Lease | undefined;
    for (let psid = this.pool.sharing.firstPsid; psid < this.#share; psid++) {
      const slot = base + psid;
      const s = state[slot];
      if (s === NEVER) return slot;
      if (s !== FREE) continue;
      const row = this.rowAt(this.keyOf(slot)) as Lease;
      if (!bestRow || row.expiresAt < bestRow.expiresAt) {
        best = slot;
        bestRow = row;
      }
    }
    return best;
  }

  /** Recomputes a usable slot's state from its row (give `key` and `row` when known) and its address. */
  settle(slot: number, key = this.keyOf(slot), row = this.rowAt(key)): void {
    let target: number;
    if (!row) target = NEVER;
    else if (row.state !== "active") target = FREE;
    else target = this.matches(row) ? ACTIVE : BLOCKED;
    if ((target === NEVER || target === FREE) && this.isReserved(key)) target = RESERVED;
    if (target !== ACTIVE && this.#blockers.has(slot >>> this.#shift)) target = BLOCKED;
    this.#set(slot, target, key, row);
  }

  /** An active lease of another layout now lies on the address at `index`. */
  block(index: number): void {
    const count = this.#blockers.get(index) ?? 0;
    this.#blockers.set(index, count + 1);
    if (count === 0) this.#settleAddress(index);
  }

  /** One such lease ended. */
  unblock(index: number): void {
    const count = this.#blockers.get(index) ?? 0;
    if (count > 1) {
      this.#blockers.set(index, count - 1);
      return;
    }
    this.#blockers.delete(index);
    this.#settleAddress(index);
  }

  #settleAddress(index: number): void {
    const base = index * this.#share;
    for (let slot = base; slot < base + this.#share; slot++) {
      if (this.state[slot] !== OFF) this.settle(slot);
    }
  }

  #set(slot: number, target: number, key: number, row: Lease | undefined): void {
    const previous = this.state[slot];
    if (previous === target && target !== FREE) return;
    if (previous === FREE) this.#freeRemove(slot);
    else if (previous === ACTIVE) this.active--;
    else if (previous === BLOCKED) this.blocked--;
    else if (previous === RESERVED) this.reserved--;
    this.state[slot] = target;
    if (target === FREE) this.#freeInsert(slot, key, row as Lease);
    else if (target === ACTIVE) this.active++;
    else if (target === BLOCKED) this.blocked++;
    else if (target === RESERVED) this.reserved++;
    else if (slot < this.#cursor) this.#cursor = slot;
  }

  /** Inserts a freed slot ordered by (time freed, key): at the tail unless a rollback or restart puts it back. */
  #freeInsert(slot: number, key: number, row: Lease): void {
    const next = this.#next;
    const prev = this.#prev;
    let after = this.#tail;
    while (after >= 0) {
      const otherKey = this.keyOf(after);
      const other = this.rowAt(otherKey) as Lease;
      if (other.expiresAt < row.expiresAt || (other.expiresAt === row.expiresAt && otherKey < key))
        break;
      after = prev[after] as number;
      this.walked++;
    }
    const before = after >= 0 ? (next[after] as number) : this.head;
    prev[slot] = after;
    next[slot] = before;
    if (after >= 0) next[after] = slot;
    else this.head = slot;
    if (before >= 0) prev[before] = slot;
    else this.#tail = slot;
  }

  #freeRemove(slot: number): void {
    const before = this.#prev[slot] as number;
    const after = this.#next[slot] as number;
    if (before >= 0) this.#next[before] = after;
    else this.head = after;
    if (after >= 0) this.#prev[after] = before;
    else this.#tail = before;
  }
}
