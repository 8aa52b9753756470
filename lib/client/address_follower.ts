/**
 * Follows the host's IPv6 addresses for the DSTM client: when the address its lease is for
 * is removed (SLAAC renumbering, RFC 4862 §5.5.3; a temporary address reaching the end of its
 * valid lifetime, RFC 8981 §3.4), it picks the address the kernel now uses towards the server
 * and hands both to `onGone`, which starts over from there. A lease is for one host address
 * (the tunnel's outer address, the binding at the TEP): it cannot follow the host elsewhere.
 *
 * Changes come as rtnetlink notifications (RTMGRP_IPV6_IFADDR, lib/sys/addr_watch.ts), read
 * once a second; the address is also checked every 10 s in case a notification was missed.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { type AddressEvent, IPv6AddressWatch } from "../sys/addr_watch.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";

export interface AddressFollowerOptions {
  /** The address in use now. */
  readonly current: () => string;
  /** The address to use instead (the kernel's source towards the server); rejects when none. */
  readonly pick: () => Promise<string>;
  /** The current address is gone; `next` is live. Awaited before the next check. */
  readonly onGone: (gone: string, next: string) => Promise<void>;
  readonly log: Logger;
  /** How often notifications are read (ms, default 1000). */
  readonly intervalMs?: number;
}

/** A running follower; {@link stop} ends it. */
export class AddressFollower {
  readonly #o: AddressFollowerOptions;
  readonly #watch: IPv6AddressWatch | undefined;
  readonly #timer: ReturnType<typeof setInterval>;
  #busy = false;
  #ticks = 0;
  #waitingSince = 0;

  private constructor(options: AddressFollowerOptions) {
    this.#o = options;
    try {
      this.#watch = IPv6AddressWatch.open();
    } catch (error) {
      options.log.warn("address-watch-unavailable", {
        detail: `${(error as Error).message}; checking every 10 s instead`,
      });
    }
    this.#timer = setInterval(() => void this.#tick(), options.intervalMs ?? 1000);
  }

  static start(options: AddressFollowerOptions): AddressFollower {
    return new AddressFollower(options);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#watch?.close();
  }

  async #tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const current = this.#o.current();
      const drained = this.#watch?.drain() ?? { events: [] as AddressEvent[], overflow: false };
      this.#ticks++;
      const touched =
        drained.overflow ||
        this.#waitingSince > 0 ||
        this.#ticks % 10 === 0 ||
        drained.events.some((e) => e.kind === "removed" && e.address === current);
      if (!touched || interfaceOfIPv6(current) !== null) return;
      let next: string;
      try {
        next = await this.#o.pick();
      } catch {
        next = "";
      }
      if (next === "" || next === current || interfaceOfIPv6(next) === null) {
        // No other address yet (e.g. the new prefix is still in DAD): try again next tick.
        if (this.#waitingSince === 0) {
          this.#waitingSince = Date.now();
          this.#o.log.warn("address-gone", {
            host6: current,
            detail: "the host's IPv6 address was removed and no other reaches the server yet",
          });
        }
        return;
      }
      this.#waitingSince = 0;
      await this.#o.onGone(current, next);
    } catch (error) {
      this.#o.log.error("renumber-failed", { detail: (error as Error).message });
    } finally {
      this.#busy = false;
    }
  }
}
