/**
 * The TEP's receive ring with its nftables rule (`dstm tep --rx-ring`; lib/sys/packet_ring.ts,
 * lib/sys/nft_ring.ts), kept on the interface that holds the TEP's address.
 *
 * The ring takes packets before the IPv6 stack has asked whether their destination is still
 * one of the host's addresses, so it follows the address itself: bound to the interface that
 * has it, and told by rtnetlink (RTMGRP_IPV6_IFADDR, lib/sys/addr_watch.ts, read every
 * {@link RX_RING_WATCH_MS}; the address list is also looked at every 10th time in case a
 * notification was lost) when it goes or moves:
 * - **gone** (removed, or moved to another TEP at a failover): the ring takes nothing (a filter
 *   that drops all), the table is removed, said at warn (`rx-ring-paused`). What still reaches
 *   this host for the address goes the kernel's way, as without the ring: not delivered.
 * - **back, or on another interface:** the rule first (for the interface), then the ring bound
 *   there with its filter, said at info (`rx-ring-resumed`). In between a packet may be dropped
 *   by the rule before the ring takes it; never forwarded twice.
 *
 * And the table itself, looked for every {@link RX_RING_TABLE_CHECK_TICKS} ticks (5 s): a
 * firewall manager that flushes the whole ruleset (`nft flush ruleset`, firewalld's reload)
 * removes it, and then the ring's packets reach the raw socket too and are forwarded twice.
 * A missing table is put back and said at warn (`rx-ring-table-restored`): the duplicates
 * last until then, at most about 5 s.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv6 } from "../net/addr.ts";
import { IPv6AddressWatch } from "../sys/addr_watch.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";
import * as libc from "../sys/libc.ts";
import { linkIndex } from "../sys/netlink.ts";
import {
  installRingDrop,
  removeRingDrop,
  ringDropPresent,
  ringTableName,
} from "../sys/nft_ring.ts";
import { PacketRing, type RingGeometry } from "../sys/packet_ring.ts";

/** How often the address notifications are read, ms. */
export const RX_RING_WATCH_MS = 250;
/** Every how many of those the nftables table is looked for. */
export const RX_RING_TABLE_CHECK_TICKS = 20;

export interface RxRingOptions {
  /** The TEP's `--ipv6`, text and bytes. */
  readonly ipv6: string;
  readonly tep6: Uint8Array;
  /** The TEP's TUN (names the nftables table). */
  readonly tunName: string;
  readonly log: Logger;
}

/** Where the address is: the interface's name and index, or null when the host lacks it. */
function whereIs(ipv6: string): { name: string; index: number } | null {
  const name = interfaceOfIPv6(ipv6);
  if (name === null) return null;
  try {
    return { name, index: linkIndex(name) };
  } catch {
    return null; // gone between the two reads
  }
}

/** See the module comment. */
export class RxRing {
  readonly fd: number;
  readonly geometry: RingGeometry;
  readonly #o: RxRingOptions;
  readonly #table: string;
  /** The address as notifications write it (RFC 5952). */
  readonly #canonical: string;
  readonly #watch: IPv6AddressWatch | undefined;
  readonly #timer: ReturnType<typeof setInterval>;
  #ifindex: number;
  #paused = false;
  #ticks = 0;
  #checking = false;
  #closed = false;

  private constructor(o: RxRingOptions, at: { name: string; index: number }) {
    this.#o = o;
    this.#table = ringTableName(o.tunName);
    this.#canonical = formatIPv6(o.tep6);
    const opened = PacketRing.open(o.tep6, at.index);
    this.fd = opened.fd;
    this.geometry = opened.geometry;
    this.#ifindex = at.index;
    try {
      installRingDrop(this.#table, o.ipv6, at.name);
    } catch (error) {
      libc.close(this.fd);
      throw error;
    }
    let watch: IPv6AddressWatch | undefined;
    try {
      watch = IPv6AddressWatch.open();
    } catch {
      // Without notifications the address list is looked at every 10th tick only.
    }
    this.#watch = watch;
    this.#timer = setInterval(() => this.#tick(), RX_RING_WATCH_MS);
    this.#timer.unref?.();
  }

  /**
   * Opens the ring and installs the rule on the interface of `--ipv6`; undefined, said at warn
   * (`rx-ring-unavailable`), when either cannot be set up: the TEP then receives through the
   * raw socket alone.
   */
  static open(o: RxRingOptions): RxRing | undefined {
    try {
      const at = whereIs(o.ipv6);
      if (at === null) throw new Error(`no interface has ${o.ipv6}`);
      return new RxRing(o, at);
    } catch (error) {
      o.log.warn("rx-ring-unavailable", {
        detail: `${(error as Error).message}; receiving through the raw IPv6 socket alone`,
      });
      return undefined;
    }
  }

  /** True while the address is away and the ring takes nothing. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Stops following, removes the table and closes the ring (after the Workers stopped). */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#watch?.close();
    removeRingDrop(this.#table);
    libc.close(this.fd);
  }

  #tick(): void {
    this.#ticks++;
    const drained = this.#watch?.drain();
    const ours = drained?.events.some((e) => e.address === this.#canonical) ?? false;
    if (ours || drained?.overflow || this.#ticks % 10 === 0) this.#follow();
    if (this.#ticks % RX_RING_TABLE_CHECK_TICKS === 0 && !this.#paused && !this.#checking)
      void this.#checkTable();
  }

  /** Puts the table back when something removed it (see the module comment). */
  async #checkTable(): Promise<void> {
    this.#checking = true;
    try {
      if (await ringDropPresent(this.#table)) return;
      const at = whereIs(this.#o.ipv6);
      if (this.#closed || this.#paused || at === null) return;
      installRingDrop(this.#table, this.#o.ipv6, at.name);
      this.#o.log.warn("rx-ring-table-restored", {
        table: this.#table,
        detail:
          "the nftables table was gone (a ruleset flush?): until now the ring's packets also reached the raw socket and were forwarded twice",
      });
    } catch (error) {
      this.#o.log.warn("rx-ring-table-restore-failed", {
        table: this.#table,
        detail: (error as Error).message,
      });
    } finally {
      this.#checking = false;
    }
  }

  /** Puts the ring where the address is now (see the module comment). */
  #follow(): void {
    const o = this.#o;
    const at = whereIs(o.ipv6);
    if (at === null) {
      if (this.#paused) return;
      PacketRing.pause(this.fd);
      removeRingDrop(this.#table);
      this.#paused = true;
      o.log.warn("rx-ring-paused", {
        ipv6: o.ipv6,
        detail: "the address is not on this host any more: the ring takes nothing until it is back",
      });
      return;
    }
    if (!this.#paused && at.index === this.#ifindex) return;
    try {
      installRingDrop(this.#table, o.ipv6, at.name);
    } catch (error) {
      o.log.warn("rx-ring-resume-failed", { ipv6: o.ipv6, detail: (error as Error).message });
      return;
    }
    const r = PacketRing.resume(this.fd, o.tep6, at.index);
    if (r < 0) {
      removeRingDrop(this.#table);
      o.log.warn("rx-ring-resume-failed", { ipv6: o.ipv6, detail: libc.errnoName(-r) });
      return;
    }
    this.#ifindex = at.index;
    this.#paused = false;
    o.log.info("rx-ring-resumed", { ipv6: o.ipv6, ifname: at.name });
  }
}
