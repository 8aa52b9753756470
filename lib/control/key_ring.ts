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
