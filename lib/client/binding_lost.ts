/**
 * When a DSTM client renews early because its TEP says the lease's binding is gone (ICMPv6
 * 1/5 from the TEP about the leased source, lib/dataplane/client_lease.ts): at most once per
 * {@link BINDING_LOST_RENEW_MS}, so that errors (forged ones from the TEP's address too)
 * cannot make the client flood its server; the notices in between are counted and said with
 * the next `binding-lost` line. ./node.ts renews; a refusal then starts over with DISCOVER.
 *
 * @module
 */

/** A binding-lost notice renews at most once per this many ms. */
export const BINDING_LOST_RENEW_MS = 10_000;

export class BindingLostGate {
  #at = Number.NEGATIVE_INFINITY;
  #suppressed = 0;

  /**
   * A notice at `now` (ms): undefined when it comes within BINDING_LOST_RENEW_MS of the last
   * renewal it allowed (counted), else the notices left out since then (renew now).
   */
  take(now = Date.now()): { suppressed: number } | undefined {
    if (now - this.#at < BINDING_LOST_RENEW_MS) {
      this.#suppressed += 1;
      return undefined;
    }
    this.#at = now;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    return { suppressed };
  }
}
