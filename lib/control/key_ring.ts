/**
 * The keys of one end of an authenticated channel, rotated live (SIGHUP) the way the server
 * rotates its host keys (lib/server/reload.ts): the new key signs at once and is accepted at
 * once; the key it replaces stays accepted for an overlap (`--key-overlap`, default 1 h), so
 * messages the peer signed or sent before it changed its own key still pass, and is then
 * retired. A key keeps its id: a new secret under the same id replaces the old one at once
 * (one id holds one secret), so rotate to a new id (`dstm keygen` picks one at random).
 *
 * @example
 * const ring = new KeyRing(oldKey);
 * verifyMessage(bytes, message, ring.accepted, guard, now, "tep");
 * ring.rotate(newKey, 3_600_000); // sign with newKey; oldKey accepted for an hour more
 *
 * @module
 */
import type { AuthKey } from "../wire/auth.ts";

export class KeyRing {
  #signing: AuthKey | undefined;
  /** Every key a signed message may carry now, by id (what `verifyMessage` takes). */
  readonly accepted = new Map<number, AuthKey>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  /** Keys in their overlap after {@link replace} dropped them (retired when it ends). */
  readonly #retiring = new Set<AuthKey>();

  constructor(key?: AuthKey) {
    this.#signing = key;
    if (key) this.accepted.set(key.id, key);
  }

  /** The key that signs (undefined: the channel is unauthenticated). */
  get signing(): AuthKey | undefined {
    return this.#signing;
  }

  /**
   * Signs and accepts `next` from now on. The key it replaces, when it has another id, stays
   * accepted for `overlapMs` and is returned (for the log); undefined when nothing overlaps.
   */
  rotate(next: AuthKey, overlapMs: number): AuthKey | undefined {
    const previous = this.#signing;
    this.#signing = next;
    this.accepted.set(next.id, next);
    if (!previous || previous.id === next.id) return undefined;
    afterOverlap(overlapMs, this.#timers, () => {
      if (this.accepted.get(previous.id) === previous && this.#signing !== previous)
        this.accepted.delete(previous.id);
    });
    return previous;
  }

  /**
   * A whole key file read again (the server's `--tep-key`): its first key signs from now on
   * and every key in it is accepted at once; the keys accepted before that it no longer holds
   * stay accepted for `overlapMs`, then are retired (unless a later file brings them back).
   * Returns those keys (for the log); empty when nothing overlaps; `onRetired` is called with
   * the ones retired when the overlap ends. `keys` must not be empty.
   */
  replace(
    keys: readonly AuthKey[],
    overlapMs: number,
    onRetired?: (keys: readonly AuthKey[]) => void,
  ): AuthKey[] {
    const [first] = keys;
    if (!first) throw new Error("a key ring needs a key to sign with");
    const fresh = new Map(keys.map((k) => [k.id, k]));
    // A key already in its overlap is neither dropped again nor given a new overlap: a reload
    // during the overlap (any reason) must not extend it (docs/security.md).
    const dropped = [...this.accepted.values()].filter(
      (k) => fresh.get(k.id) !== k && !this.#retiring.has(k),
    );
    this.#signing = first;
    for (const [id, key] of fresh) {
      this.accepted.set(id, key);
      this.#retiring.delete(key);
    }
    // A new secret under a kept id replaced the old one at once (one id holds one secret).
    const overlapping = dropped.filter((k) => !fresh.has(k.id));
    if (overlapping.length === 0) return [];
    for (const key of overlapping) this.#retiring.add(key);
    afterOverlap(overlapMs, this.#timers, () => {
      const retired = overlapping.filter(
        (key) => this.#retiring.delete(key) && this.accepted.get(key.id) === key,
      );
      for (const key of retired) this.accepted.delete(key.id);
      if (retired.length > 0) onRetired?.(retired);
    });
    return overlapping;
  }

  /** Stops the overlap timers (the process is stopping). */
  close(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}

/** The longest delay a timer keeps: 2^31 − 1 ms (about 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs `retire` once `overlapMs` has passed, however long that is: a key overlap of 30 days
 * given to one setTimeout would overflow its 32-bit delay and retire the key after 1 ms
 * (the HTML timer rules, which Node and Bun follow), so a long overlap is waited in steps of
 * at most {@link MAX_TIMER_MS}. The pending timer is kept in `timers` (unref-ed), for the
 * owner to clear when it stops.
 */
export function afterOverlap(
  overlapMs: number,
  timers: Set<ReturnType<typeof setTimeout>>,
  retire: () => void,
): void {
  const step = Math.min(Math.max(0, overlapMs), MAX_TIMER_MS);
  const timer = setTimeout(() => {
    timers.delete(timer);
    if (overlapMs > step) afterOverlap(overlapMs - step, timers, retire);
    else retire();
  }, step);
  timer.unref?.();
  timers.add(timer);
}
