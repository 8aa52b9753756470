/**
 * DSTM_DISCOVER and DSTM_REQUEST for the allocation engine (./engine.ts): which slot a host
 * gets, or keeps, and for how long. The slot order of a DISCOVER is in ./engine.ts's module
 * doc; the rows it reads and changes are in ./lease_index.ts, and every change goes through
 * ./lease_writer.ts. Everything here runs before the first await.
 *
 * @module
 */

import type { HolderIndex } from "../lease/holder_index.ts";
import { type Lease, leaseKey } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";
import { type ClientScope, holderOf, poolServes } from "./client_scope.ts";
import {
  leaseInState as _copy,
  failure as _fail,
  hostIsTep as _hostIsTep,
  isIPv4Number as _isIPv4,
  activeLease as _lease,
  ipv4Text as _text,
} from "./engine_rows.ts";
import type { EngineOutcome, EngineResult } from "./engine_types.ts";
import type { LeaseIndex } from "./lease_index.ts";
import type { LeaseTable } from "./lease_table.ts";
import type { LeaseWriter } from "./lease_writer.ts";
import { FREE, type PoolSlots } from "./slots.ts";

/**
 * What a DISCOVER asks beyond the host: `hint`, an address it would like; `leaseTime` (s);
 * `persist: false` for a DHCP OFFER (memory only); and the 4o6 client's scope.
 */
export type DiscoverOptions = {
  hint?: number;
  leaseTime?: number;
  persist?: boolean;
} & ClientScope;

/** Decides DISCOVER and REQUEST (see the module doc); every method runs before its first await. */
export class Allocator {
  readonly #index: LeaseIndex;
  readonly #rows: LeaseTable;
  readonly #activeByHost: HolderIndex;
  readonly #historyByHost: HolderIndex;
  readonly #offers: WeakSet<Lease>;
  readonly #writer: LeaseWriter;
  readonly #now: () => number;
  #leaseTime: number;
  #maxLeaseTime: number;
  /**
   * Called when a new lease finds no free slot: a promise of the decision made again once
   * overdue leases were reclaimed (`retry`), or of `exhausted`; undefined: refuse now
   * (nothing is overdue). Set by the engine (EngineOptions.reclaimNow).
   */
  whenExhausted:
    | ((
        retry: () => Promise<EngineResult>,
        exhausted: EngineResult,
      ) => Promise<EngineResult> | undefined)
    | undefined;
  /** EngineOptions.onEnded, set by the engine. */
  onEnded: ((lease: Lease, generation: number | undefined) => void) | undefined;
  /** Slot and outcome of the last #pick (saves allocating a tuple). */
  #slot = -1;
  #outcome: EngineOutcome = "allocated";

  /** Lease times in seconds, `maxLeaseTime` ≥ `leaseTime` ≥ 1 (checked by the engine). */
  constructor(
    index: LeaseIndex,
    writer: LeaseWriter,
    now: () => number,
    leaseTime: number,
    maxLeaseTime: number,
  ) {
    this.#index = index;
    this.#rows = index.rows;
    this.#activeByHost = index.activeByHost;
    this.#historyByHost = index.historyByHost;
    this.#offers = index.offers;
    this.#writer = writer;
    this.#now = now;
    this.#leaseTime = leaseTime;
    this.#maxLeaseTime = maxLeaseTime;
  }

  /** A reload's lease times (s). */
  setLeaseTimes(leaseTime: number, maxLeaseTime: number): void {
    this.#leaseTime = leaseTime;
    this.#maxLeaseTime = maxLeaseTime;
  }

  /** The lease time (ms) granted for `requested` seconds (or none): between 1 s and the max. */
  leaseMs(requested: number | undefined): number {
    const seconds =
      requested === undefined || !Number.isFinite(requested) ? this.#leaseTime : requested;
    return Math.round(Math.min(this.#maxLeaseTime, Math.max(1, seconds)) * 1000);
  }

  /** AllocationEngine.discover, once (the engine retries it on a shared store). */
  discover(host6: string, opts?: DiscoverOptions): Promise<EngineResult> {
    const refused = this.#writer.refuse() ?? this.#hostIsTep(host6);
    if (refused) return refused;
    const now = this.#now();
    const leaseMs = this.leaseMs(opts?.leaseTime);
    const activeKey = this.#activeByHost.get(holderOf(host6, opts));
    if (activeKey !== undefined) return this.#discoverHeld(host6, opts, activeKey, now, leaseMs);
    const limited = this.#overPrefixLimit(host6, 0);
    if (limited) return limited;
    return this.#allocate(host6, opts, now, now + leaseMs, -1, undefined);
  }

  /**
   * A DISCOVER from a holder whose active row is under `activeKey`: the lease back as it is
   * (RFC 2131 §4.3.1: a committed lease is never shortened, nor changed by an offer), or
   * renewed when the time asked for ends later; when its pool no longer serves it, the lease
   * ends and the holder gets a new slot.
   */
  #discoverHeld(
    host6: string,
    opts: DiscoverOptions | undefined,
    activeKey: number,
    now: number,
    leaseMs: number,
  ): Promise<EngineResult> {
    const offer = opts?.persist === false;
    const expiresAt = now + leaseMs;
    const row = this.#rows.get(activeKey) as Lease;
    const ps = this.#index.servedIn(row, opts);
    if (ps) {
      const committed = !this.#offers.has(row);
      if (committed && (offer || this.#index.remainingMs(row) >= leaseMs)) {
        return Promise.resolve({ ok: true, lease: row, outcome: "renewed" });
      }
      const renewed = _lease(row.ipv4, row.portSet, host6, ps, now, expiresAt, opts?.identity);
      if (offer) {
        // An offer not taken yet, offered again: held again, still in memory only.
        this.#writer.change(activeKey, renewed);
        this.#offers.add(renewed);
        return Promise.resolve({ ok: true, lease: renewed, outcome: "renewed" });
      }
      return this.#writer.apply(activeKey, renewed, "renewed", true);
    }
    const limited = this.#overPrefixLimit(host6, 1);
    if (limited) return limited;
    // Its slot left the pools (or its layout changed, or its pool does not serve this
    // client's link): end that lease now, so that its slot and a blocked address can be
    // picked below, and write both in one batch.
    const end = _copy(row, "expired", now);
    this.#writer.change(activeKey, end);
    return this.#allocate(host6, opts, now, expiresAt, activeKey, end);
  }

  /**
   * A new lease until `expiresAt` on the slot #pick finds, or `pool-exhausted`;
   * `end` (the holder's lease, just ended in memory under `endKey`; −1 and undefined: none)
   * is written in the same batch. An offer that ends nothing stays in memory only.
   */
  #allocate(
    host6: string,
    opts: DiscoverOptions | undefined,
    now: number,
    expiresAt: number,
    endKey: number,
    end: Lease | undefined,
  ): Promise<EngineResult> {
    const ps = this.#pick(host6, holderOf(host6, opts), opts);
    if (!ps) {
      // Decided again from the start (the host may have gained a lease meanwhile). Still no
      // slot (concurrent DISCOVERs took those freed) asks for the next slice; bounded, since
      // each ask needs a slice that freed leases, and the overdue leases are finite.
      const retry = (): Promise<EngineResult> => this.discover(host6, opts);
      const exhausted: EngineResult = {
        ok: false,
        reason: "pool-exhausted",
        message: "no free IPv4 address or port set in any pool",
      };
      if (end === undefined) {
        const later = this.whenExhausted?.(retry, exhausted);
        return later ?? Promise.resolve(exhausted);
      }
      const writer = this.#writer;
      return writer.persist(
        [writer.put(endKey, end)],
        [endKey],
        [end],
        (generations) => {
          this.onEnded?.(end, generations?.[0]);
          return exhausted;
        },
        (f) => f,
      );
    }
    const slot = this.#slot;
    const outcome = this.#outcome;
    const ipv4 = ps.pool.addressOf(slot);
    const portSet = ps.pool.portSetOf(slot);
    const lease = _lease(ipv4, portSet, host6, ps, now, expiresAt, opts?.identity);
    const key = leaseKey(ipv4, portSet.psid);
    if (end === undefined && opts?.persist === false) {
      // Memory only: the durable row stays the rollback point in the writer until a write.
      this.#writer.change(key, lease);
      this.#offers.add(lease);
      return Promise.resolve({ ok: true, lease, outcome });
    }
    if (end === undefined) return this.#writer.apply(key, lease, outcome);
    return this.#writer.apply2(endKey, end, key, lease, outcome, this.onEnded);
  }

  /**
   * The slot a DISCOVER takes, in this order (./engine.ts): the host's reservation, the
   * holder's previous slot if still free, the client's hint, a never-used or the longest-free
   * slot. Returns its pool, with the slot in #slot and the outcome in #outcome (`reused` for
   * the first two, else `allocated`); undefined when no pool serving `scope` has a slot.
   */
  #pick(host6: string, holder: string, scope: DiscoverOptions | undefined): PoolSlots | undefined {
    const index = this.#index;
    this.#outcome = "reused";
    const reserved = index.reservedSlot(host6);
    if (reserved) {
      // Its reservation first: the slot is kept for this host alone (./reservations.ts).
      this.#slot = index.slot;
      return reserved;
    }
    const previous = this.#historyByHost.get(holder);
    if (previous !== undefined) {
      const row = this.#rows.get(previous);
      const candidate = row ? index.locate(row.ipv4, row.portSet.psid) : undefined;
      if (
        candidate &&
        index.slot >= 0 &&
        candidate.state[index.slot] === FREE &&
        poolServes(candidate.pool.name, scope)
      ) {
        this.#slot = index.slot;
        return candidate;
      }
    }
    this.#outcome = "allocated";
    const hint = scope?.hint;
    if (hint !== undefined && _isIPv4(hint)) {
      const candidate = index.locate(hint, 0);
      const free =
        candidate && poolServes(candidate.pool.name, scope)
          ? candidate.freeSlotOf(index.address)
          : -1;
      if (free >= 0) {
        this.#slot = free;
        return candidate;
      }
    }
    const ps = index.pickFresh(scope);
    this.#slot = index.slot;
    return ps;
  }

  /** AllocationEngine.request, once (the engine retries it on a shared store). */
  request(
    host6: string,
    ipv4: number,
    opts?: { leaseTime?: number } & ClientScope,
  ): Promise<EngineResult> {
    const refused = this.#writer.refuse() ?? this.#hostIsTep(host6);
    if (refused) return refused;
    const ps = _isIPv4(ipv4) ? this.#index.locate(ipv4, 0) : undefined;
    if (!ps?.pool.isUsableAddress(this.#index.address)) {
      return _fail("no-such-lease", `${_text(ipv4)} is in no pool of this server; send DISCOVER`);
    }
    if (!poolServes(ps.pool.name, opts)) {
      return _fail(
        "no-such-lease",
        `${_text(ipv4)} is in pool ${ps.pool.name}, which does not serve this client's link; send DISCOVER`,
      );
    }
    const now = this.#now();
    const expiresAt = now + this.leaseMs(opts?.leaseTime);
    const activeKey = this.#activeByHost.get(holderOf(host6, opts));
    if (activeKey === undefined) return this.#initReboot(host6, ipv4, ps, opts, now, expiresAt);
    const row = this.#rows.get(activeKey) as Lease;
    if (row.ipv4 !== ipv4) {
      return _fail(
        "no-such-lease",
        `host ${host6} holds ${formatIPv4(row.ipv4)}, not ${formatIPv4(ipv4)}; renew that one or release it`,
      );
    }
    if (!this.#index.served(row)) {
      return _fail(
        "no-such-lease",
        `host ${host6} holds ${formatIPv4(ipv4)} ports ${formatPortSet(row.portSet)}, which this server no longer hands out; send DISCOVER`,
      );
    }
    const renewed = _lease(ipv4, row.portSet, host6, ps, now, expiresAt, opts?.identity);
    return this.#writer.apply(activeKey, renewed, "renewed", true);
  }

  /**
   * A REQUEST for `ipv4` (an address of `ps`, whose index is in the index's `address`) from a
   * holder with no lease, like DHCP's INIT-REBOOT: the host's reserved slot there, else its
   * previous port set of the address if free, else any free port set of it.
   */
  #initReboot(
    host6: string,
    ipv4: number,
    ps: PoolSlots,
    opts: ({ leaseTime?: number } & ClientScope) | undefined,
    now: number,
    expiresAt: number,
  ): Promise<EngineResult> {
    const index = this.#index;
    const address = index.address;
    const limited = this.#overPrefixLimit(host6, 0);
    if (limited) return limited;
    const refusal = this.#initRebootRefusal(host6, ipv4);
    if (refusal) return refusal;
    let slot = index.reservedSlot(host6) === ps ? index.slot : -1;
    const previous = this.#historyByHost.get(holderOf(host6, opts));
    const before = previous === undefined ? undefined : this.#rows.get(previous);
    if (slot < 0 && before?.ipv4 === ipv4 && index.locate(ipv4, before.portSet.psid) === ps) {
      if (index.slot >= 0 && ps.state[index.slot] === FREE) slot = index.slot;
    }
    if (slot < 0) slot = ps.freeSlotOf(address);
    if (slot < 0) {
      return _fail(
        "address-in-use",
        ps.pool.sharing.share === 1
          ? `${formatIPv4(ipv4)} is leased to another host`
          : `every port set of ${formatIPv4(ipv4)} is leased to other hosts; send DISCOVER`,
      );
    }
    const portSet = ps.pool.portSetOf(slot);
    const lease = _lease(ipv4, portSet, host6, ps, now, expiresAt, opts?.identity);
    return this.#writer.apply(leaseKey(ipv4, portSet.psid), lease, "reused");
  }

  /**
   * A REQUEST for `ipv4` from a host that holds no lease (INIT-REBOOT) is refused when the
   * host has a reservation for another address, or an administrator ended its lease on it.
   */
  #initRebootRefusal(host6: string, ipv4: number): Promise<EngineResult> | undefined {
    const r = this.#index.reservations.ofHost(host6);
    if (r && r.ipv4 !== ipv4) {
      return _fail(
        "no-such-lease",
        `host ${host6} has a reservation for ${formatIPv4(r.ipv4)}; send DISCOVER`,
      );
    }
    const last = this.#historyByHost.get(host6);
    const row = last === undefined ? undefined : this.#rows.get(last);
    if (row && row.ipv4 === ipv4 && this.#index.revoked.has(row)) {
      return _fail(
        "no-such-lease",
        `the lease of ${host6} on ${formatIPv4(ipv4)} was ended by an administrator; send DISCOVER`,
      );
    }
    return undefined;
  }

  /**
   * `host6-is-tep` when the host's IPv6 address is a TEP's (./engine_rows.ts hostIsTep): no
   * lease, nor a renewal of one it held from before the TEP had that address (a reload); it
   * may still release it. Else undefined.
   */
  #hostIsTep(host6: string): Promise<EngineResult> | undefined {
    const tep = _hostIsTep(this.#index.pools, host6);
    return tep ? _fail(tep.reason, tep.message) : undefined;
  }

  /**
   * `prefix-limit` (`site-limit`) when the host's prefix (site prefix) already holds
   * maxLeasesPerPrefix (maxLeasesPerSite) leases, not counting the `held` lease(s) of the host
   * that the new one replaces; else undefined (./prefix_caps.ts).
   */
  #overPrefixLimit(host6: string, held: number): Promise<EngineResult> | undefined {
    const over = this.#index.overCap(host6, held);
    return over ? _fail(over.reason, over.message) : undefined;
  }
}
