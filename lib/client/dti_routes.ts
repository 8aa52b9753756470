/**
 * Puts the DTI's routes back after the DTI was set down and up by hand (`ip link set DTI
 * down; ip link set DTI up`). Setting an interface down makes the kernel delete every IPv4
 * route through it (fib_sync_down_dev / fib_flush on NETDEV_DOWN); setting it up again brings
 * back only the routes of its addresses, not the ones the client added. Without them the
 * traffic never resumed until the client restarted:
 * - the TUN DTI, ip6tnl and seg6: the IPv4 routes through the DTI (`--route`, default
 *   0.0.0.0/0; seg6's carry the encapsulation) — the host's packets no longer go in;
 * - `--kernel-encap`: also the seg6 route of table 4608 (lib/client/kernel_encap.ts), which
 *   encapsulates what the Worker hands back. While it is missing the fence `iif DTI
 *   unreachable` refuses those packets (nothing reaches the host's other networks).
 *
 * The keeper subscribes to interface notifications (RTMGRP_LINK, lib/sys/netlink_events.ts)
 * and reads them every `intervalMs` (250 ms; the main thread has no fd readiness callback):
 * when one says the DTI is up, each route is added again (NLM_F_EXCL: EEXIST means it is
 * there; ENETDOWN, the DTI is down again: the next notification will tell). Each route put
 * back is logged at info (`dti-route-restored`, `kernel-encap-route-restored` for table 4608)
 * and counted (`client-dti-route-restored`). When the kernel dropped notifications (ENOBUFS)
 * the routes are checked at once; without notifications (the socket could not be opened, or
 * failed) every 2 s.
 *
 * Path MTU (RFC 8201 §4, RFC 1191): where the kernel encapsulates (`--dti seg6`, the seg6
 * DTI of `--dti kernel`, and `--kernel-encap`), the IPv4 side never hears of a narrower IPv6
 * path towards the TEP: seg6 neither fragments the outer header of a DF packet nor tells the
 * sender, and for a packet the Worker handed back (`--kernel-encap`, forwarded) it fragments
 * none at all. A 1400-byte link between host and TEP lost every IPv4 packet above 1360 bytes
 * for ever: TCP uploads stalled at 0 bytes, DF datagrams vanished without "fragmentation
 * needed" (test/ver17_narrow_kernel_dti.test.ts). With `pathMtu` the keeper also reads the
 * kernel's path MTU towards the TEP every second (4 ticks) and, when it changes the tunnel
 * MTU (path MTU − 40, never above the DTI's), replaces the routes with the ones
 * `pathMtu.routes(mtu)` gives (their `mtu`, and `advmss` with MSS clamping): the host's own
 * packets are then fragmented, refused (EMSGSIZE) or sized (TCP) at it. Said at info
 * (`dti-path-mtu`), and again when the estimate expires and the DTI's MTU is back.
 *
 * A route deleted by hand while the DTI stays up is left deleted (no notification of ours
 * says so): the administrator's choice; with `--kernel-encap` the fence holds meanwhile
 * (test/redteam_kernel_encap.test.ts).
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { Errno, SysError } from "../sys/libc.ts";
import { linkIndex, type RouteSpec, routeAdd, routeReplace } from "../sys/netlink.ts";
import { NetlinkEvents, RTM_NEWLINK, RTMGRP_LINK } from "../sys/netlink_events.ts";
import { routePathMtu } from "../sys/raw6.ts";
import { Counter, type Counters } from "../tunnel/counters.ts";

const IFF_UP = 0x1;
/** Without notifications: check every this many ticks (2 s at 250 ms). */
const FALLBACK_TICKS = 8;
const RESTORED = Counter["client-dti-route-restored"];
const FOREIGN = Counter["client-netlink-foreign"];

/** A route the DTI must have, and the log event said when it is put back. */
export interface KeptRoute {
  readonly route: RouteSpec;
  /** `dti-route-restored` (the DTI's IPv4 routes) or `kernel-encap-route-restored`. */
  readonly event: "dti-route-restored" | "kernel-encap-route-restored";
}

export interface DtiRouteKeeperOptions {
  /** The DTI. */
  readonly ifname: string;
  readonly routes: readonly KeptRoute[];
  readonly log?: Logger;
  /** Where `client-dti-route-restored` is counted (slice 0, a counter no Worker writes). */
  readonly counters?: Counters;
  /** How often notifications are read, ms (default 250). */
  readonly intervalMs?: number;
  /** Follow interface notifications (default true); false: check every 8 intervals only. */
  readonly events?: boolean;
  /** Follow the kernel's path MTU towards `tep6` into the routes (see the module text). */
  readonly pathMtu?: PathMtuRoutes;
}

/** What the keeper needs to follow the path MTU towards the TEP into the DTI's routes. */
export interface PathMtuRoutes {
  /** The TEP (16 bytes). */
  readonly tep6: Uint8Array;
  /** The DTI's MTU (bytes): the most the routes ever get. */
  readonly mtu: number;
  /** The routes (same order and meaning as the keeper's `routes`) for tunnel MTU `mtu`. */
  routes(mtu: number): KeptRoute[];
  /** The kernel's path MTU towards `tep6` in bytes, or -errno (default lib/sys routePathMtu). */
  readPathMtu?(tep6: Uint8Array): number;
}

/** Ticks between two reads of the path MTU (1 s at 250 ms). */
const PATH_MTU_TICKS = 4;
/** The IPv6 header the tunnel adds (RFC 2473 §6.1). */
const OUTER_HEADER = 40;
/** The least IPv6 path MTU (RFC 8200 §5). */
const IPV6_MIN_MTU = 1280;

/** A running keeper; {@link DtiRouteKeeper.stop} ends it. */
export class DtiRouteKeeper {
  readonly #o: DtiRouteKeeperOptions;
  /** The routes kept now (the path MTU follower may have replaced them). */
  #routes: readonly KeptRoute[];
  /** The tunnel MTU the routes carry (the DTI's until a narrower path is learned). */
  #tunnelMtu: number;
  readonly #ifindex: number;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #slice: Float64Array | undefined;
  #foreignSaidAt = Number.NEGATIVE_INFINITY;
  #events: NetlinkEvents | undefined;
  /** A notification said the DTI is up since the last check. */
  #up = false;
  #ticks = 0;
  /** Per route, the errno last said at warn (said once until it changes). */
  readonly #said: number[];
  readonly #visit = (type: number, _buf: Uint8Array, v: DataView, at: number, len: number) => {
    // struct ifinfomsg after the 16-byte header: family u8, pad u8, type u16, index i32, flags u32.
    if (type !== RTM_NEWLINK || len < 32) return;
    if (v.getInt32(at + 20, true) === this.#ifindex && v.getUint32(at + 24, true) & IFF_UP)
      this.#up = true;
  };

  private constructor(o: DtiRouteKeeperOptions) {
    this.#o = o;
    this.#routes = o.routes;
    this.#tunnelMtu = o.pathMtu?.mtu ?? 0;
    this.#ifindex = linkIndex(o.ifname);
    this.#said = o.routes.map(() => 0);
    this.#slice = o.counters?.slice(0);
    if (o.events !== false) {
      try {
        this.#events = NetlinkEvents.open(RTMGRP_LINK);
      } catch (error) {
        this.#unavailable(error as Error);
      }
    }
    this.#timer = setInterval(() => this.#tick(), o.intervalMs ?? 250);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /**
   * Starts keeping `o.routes` on the DTI `o.ifname`, which must exist (a SysError ENODEV
   * otherwise). The routes are taken to be there now.
   */
  static start(o: DtiRouteKeeperOptions): DtiRouteKeeper {
    return new DtiRouteKeeper(o);
  }

  /** Stops the timer and closes the notification socket. */
  stop(): void {
    clearInterval(this.#timer);
    this.#events?.close();
    this.#events = undefined;
  }

  /**
   * Adds back each route that is missing, unless the DTI is down; returns how many were put
   * back. Never throws (a refusal other than EEXIST / ENETDOWN is said at warn).
   */
  restore(): number {
    let restored = 0;
    const routes = this.#routes;
    for (let i = 0; i < routes.length; i++) {
      const { route, event } = routes[i]!;
      try {
        routeAdd(route);
      } catch (error) {
        const errno = error instanceof SysError ? error.errno : -1;
        if (errno === Errno.EEXIST) continue;
        if (errno === Errno.ENETDOWN) return restored; // down again: its next "up" will say
        if (this.#said[i] !== errno) {
          this.#said[i] = errno;
          this.#o.log?.warn("dti-route-restore-failed", {
            ifname: this.#o.ifname,
            detail: (error as Error).message,
          });
        }
        continue;
      }
      this.#said[i] = 0;
      restored++;
      if (this.#slice) this.#slice[RESTORED]! += 1;
      this.#o.log?.info(event, {
        ifname: this.#o.ifname,
        route: _describe(route),
        detail: "the DTI was set down and up (the kernel removed its routes): put back",
      });
    }
    return restored;
  }

  /** The tunnel MTU the DTI's routes carry now (bytes; 0 without `pathMtu`). */
  get tunnelMtu(): number {
    return this.#tunnelMtu;
  }

  /**
   * Reads the kernel's path MTU towards the TEP and, when the tunnel MTU it gives differs from
   * the routes', replaces them (see the module text). Returns the tunnel MTU in force. Never
   * throws (a refusal is said at warn; the next read tries again).
   */
  followPathMtu(): number {
    const p = this.#o.pathMtu;
    if (p === undefined) return 0;
    const path = (p.readPathMtu ?? routePathMtu)(p.tep6);
    if (path < IPV6_MIN_MTU) return this.#tunnelMtu; // -errno (no route now), or nonsense
    const mtu = Math.min(p.mtu, path - OUTER_HEADER);
    if (mtu === this.#tunnelMtu) return mtu;
    const routes = p.routes(mtu);
    try {
      for (const { route } of routes) routeReplace(route);
    } catch (error) {
      const errno = error instanceof SysError ? error.errno : -1;
      // Down (the kernel took the routes away): the restore after "up" puts the new ones.
      if (errno !== Errno.ENETDOWN && errno !== Errno.ENODEV)
        this.#o.log?.warn("dti-path-mtu-failed", {
          ifname: this.#o.ifname,
          detail: (error as Error).message,
        });
      if (errno !== Errno.ENETDOWN) return this.#tunnelMtu;
    }
    this.#o.log?.info("dti-path-mtu", {
      ifname: this.#o.ifname,
      "path-mtu": path,
      mtu,
      detail:
        mtu < p.mtu
          ? "a narrower path towards the TEP: the DTI's routes carry its MTU"
          : "the path towards the TEP takes the DTI's MTU again",
    });
    this.#routes = routes;
    this.#tunnelMtu = mtu;
    return mtu;
  }

  #tick(): void {
    this.#ticks++;
    if (this.#o.pathMtu !== undefined && this.#ticks % PATH_MTU_TICKS === 0) this.followPathMtu();
    const events = this.#events;
    if (events === undefined) {
      if (this.#ticks % FALLBACK_TICKS === 0) this.restore();
      return;
    }
    const d = events.drain(this.#visit);
    if (d.error !== 0) {
      events.close();
      this.#events = undefined;
      this.#unavailable(new Error(`netlink read: errno ${d.error}`));
      this.restore();
      return;
    }
    if (d.foreign > 0) this.#foreign(d.foreign);
    if (d.overflow) this.#up = true;
    if (!this.#up) return;
    this.#up = false;
    this.restore();
  }

  /** Notifications not sent by the kernel, dropped unread: counted, said at warn once a minute. */
  #foreign(count: number): void {
    if (this.#slice) this.#slice[FOREIGN]! += count;
    const now = Date.now();
    if (now - this.#foreignSaidAt < 60_000) return;
    this.#foreignSaidAt = now;
    this.#o.log?.warn("netlink-foreign", {
      ifname: this.#o.ifname,
      count,
      detail:
        "rtnetlink datagrams from a local process, not the kernel, were dropped unread (client-netlink-foreign)",
    });
  }

  #unavailable(error: Error): void {
    this.#o.log?.warn("dti-route-watch-unavailable", {
      ifname: this.#o.ifname,
      detail: `${error.message}; checking the DTI's routes every ${((this.#o.intervalMs ?? 250) * FALLBACK_TICKS) / 1000} s instead`,
    });
  }
}

function _describe(r: RouteSpec): string {
  let text = r.dst === "0.0.0.0/0" ? "default" : r.dst;
  if (r.encap?.kind === "seg6-encap-red")
    text += ` encap seg6 mode encap.red segs ${r.encap.segment}`;
  if (r.dev !== undefined) text += ` dev ${r.dev}`;
  if (r.src !== undefined) text += ` src ${r.src}`;
  if (r.table !== undefined) text += ` table ${r.table}`;
  return text;
}
