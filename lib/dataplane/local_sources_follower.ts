/**
 * Keeps the inbound Worker's list of the host's IPv4 addresses (lib/tunnel/local_sources.ts:
 * refused as inner sources, `client-decap-drop-local-source`) in step with the kernel.
 *
 * The list is re-read (one rtnetlink dump, lib/sys/ipv4_addresses.ts) when the kernel says an
 * IPv4 address changed: a NETLINK_ROUTE socket subscribed to RTMGRP_IPV4_IFADDR
 * (lib/sys/netlink_events.ts), drained by {@link LocalSourcesFollower.refresh}. The Worker
 * calls it after each read of the raw socket, before it checks what it read: the kernel
 * queues the notification before `ip addr add` returns, so a packet that arrives after an
 * address was added is checked against a list that has it. Before, the list was re-read once
 * a second and a new address passed as an inner source for up to that second.
 *
 * Without notifications (the socket could not be opened, or a read of it failed) the list is
 * re-read every `fallbackMs` (1,000 ms) as before. When the kernel dropped notifications
 * (ENOBUFS, a burst of changes) the list is re-read at once.
 *
 * Per call with nothing queued: one non-blocking recv, no allocation; the re-read (on a
 * change only) swaps the sorted array.
 *
 * @module
 */
import { localIPv4Addresses } from "../sys/ipv4_addresses.ts";
import { NetlinkEvents, RTMGRP_IPV4_IFADDR } from "../sys/netlink_events.ts";
import { Counter } from "../tunnel/counters.ts";
import { LocalSources } from "../tunnel/local_sources.ts";

const FOREIGN = Counter["client-netlink-foreign"];

/** How often the list is re-read without address notifications, ms. */
export const LOCAL_SOURCES_REFRESH_MS = 1000;

export interface LocalSourcesOptions {
  /** The re-read period without notifications, ms (default {@link LOCAL_SOURCES_REFRESH_MS}). */
  readonly fallbackMs?: number;
  /** Follow address notifications (default true); false: the periodic re-read only. */
  readonly events?: boolean;
  /**
   * The Worker's counter slice: notifications not sent by the kernel, dropped unread, are
   * counted in `client-netlink-foreign`.
   */
  readonly counters?: Float64Array;
}

/** The host's IPv4 addresses for one inbound Worker. */
export class LocalSourcesFollower {
  readonly local = new LocalSources();
  readonly #fallbackMs: number;
  readonly #counters: Float64Array | undefined;
  #events: NetlinkEvents | undefined;
  #at = 0;
  /** Re-reads done (the first included), for tests. */
  rereads = 0;

  /** Subscribes (unless `events` is false), then reads the list once. */
  constructor(options: LocalSourcesOptions = {}) {
    this.#fallbackMs = options.fallbackMs ?? LOCAL_SOURCES_REFRESH_MS;
    this.#counters = options.counters;
    if (options.events !== false) {
      try {
        this.#events = NetlinkEvents.open(RTMGRP_IPV4_IFADDR);
      } catch {
        // No notifications: the periodic re-read below.
      }
    }
    this.#reread();
  }

  /** The notification socket's fd (-1 without one), for tests. */
  get eventsFd(): number {
    return this.#events?.fd ?? -1;
  }

  /** True while address notifications are followed (false: the periodic re-read). */
  get evented(): boolean {
    return this.#events !== undefined;
  }

  /**
   * Re-reads the list if an address changed since the last call (or, without notifications,
   * if `fallbackMs` passed). Call it between reads and after each read, before checking.
   */
  refresh(): void {
    const events = this.#events;
    if (events !== undefined) {
      const d = events.drain();
      if (d.error !== 0) {
        // The socket is no use any more: from now on, the periodic re-read.
        events.close();
        this.#events = undefined;
        this.#reread();
        return;
      }
      if (d.foreign > 0 && this.#counters) this.#counters[FOREIGN]! += d.foreign;
      if (d.messages > 0 || d.overflow) this.#reread();
      return;
    }
    if (Date.now() - this.#at >= this.#fallbackMs) this.#reread();
  }

  /** Closes the notification socket. */
  close(): void {
    this.#events?.close();
    this.#events = undefined;
  }

  #reread(): void {
    this.#at = Date.now();
    this.rereads++;
    try {
      this.local.set(localIPv4Addresses());
    } catch {
      // Keep the last list (the leased address is refused whatever it holds).
    }
  }
}
