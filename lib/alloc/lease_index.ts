/**
 * The allocation engine's memory (./engine.ts): every row by lease key (./lease_table.ts), a
 * holder's active row and its most recently freed one (the slot a DISCOVER gives back first,
 * "sticky" re-allocation: lib/lease/holder_index.ts), the expiry queue (./expiry_heap.ts), the orphan
 * count, the per-prefix caps (./prefix_caps.ts), the reservations (./reservations.ts), the
 * marks on rows (offers not yet committed, leases an administrator ended) and the slot state
 * of each pool (./slots.ts). One method, {@link LeaseIndex.setRow}, changes a row and keeps
 * all of them in step.
 *
 * It decides nothing and writes nothing: ./allocator.ts, ./release_paths.ts, ./reclamation.ts
 * and ./engine_admin.ts decide, ./lease_writer.ts makes their changes durable (and puts the
 * durable rows back here when a write fails).
 *
 * @module
 */

import { HolderIndex } from "../lease/holder_index.ts";
import { type Lease, type LeaseState, leaseHolder } from "../lease/lease.ts";
import { canonicalIPv6 } from "../net/addr.ts";
import { type ClientScope, holderOf, poolServes } from "./client_scope.ts";
import { rowKey as _key } from "./engine_rows.ts";
import type { EngineOptions, PoolConfig, PoolStats } from "./engine_types.ts";
import { ExpiryHeap } from "./expiry_heap.ts";
import { DEFAULT_HOST_PREFIX_LENGTH } from "./host_prefix.ts";
import type { LeaseClock } from "./lease_clock.ts";
import { LeaseTable } from "./lease_table.ts";
import { Pool, PoolConfigError, poolsOverlap } from "./pool.ts";
import { PrefixCaps, SITE_DEFAULTS } from "./prefix_caps.ts";
import { Reservations } from "./reservations.ts";
import { ACTIVE, OFF, PoolSlots, RESERVED } from "./slots.ts";

/** The engine options the index reads: the pools and the per-prefix caps (./engine_types.ts). */
export type IndexOptions = Pick<
  EngineOptions,
  "pools" | "maxLeasesPerPrefix" | "hostPrefixLength" | "maxLeasesPerSite" | "sitePrefixLength"
>;

/**
 * The engine's memory (see the module doc). The deciding parts read its public fields (and
 * keep the readonly ones in fields of their own); only {@link setRow} changes a row.
 */
export class LeaseIndex {
  #pools: PoolSlots[];
  #caps: PrefixCaps;
  #expiry = new ExpiryHeap();
  #orphans = 0;
  readonly #shared: boolean;
  readonly #hostPrefixLength: number;
  readonly #sitePrefixLength: number;
  /** Every row of the store, by lease key (plus changes not yet durable). */
  readonly rows = new LeaseTable();
  /** holder → key of its active row (lib/lease/holder_index.ts: typed arrays, checked against `rows`). */
  readonly activeByHost = new HolderIndex((key) => this.#holderAt(key, true));
  /** holder → key of the holder's most recently freed row (for sticky re-allocation). */
  readonly historyByHost = new HolderIndex((key) => this.#holderAt(key, false));
  /** Host reservations (./reservations.ts); their free slots are RESERVED in their pool. */
  readonly reservations = new Reservations();
  /** Leases made by an OFFER (discover with persist: false) and not changed since: never committed. */
  readonly offers = new WeakSet<Lease>();
  /** Rows an administrator ended (./admin.ts): their host's INIT-REBOOT REQUEST is refused. */
  readonly revoked = new WeakSet<Lease>();
  /** Wall clock for the stored times, monotonic deadlines for expiry (./lease_clock.ts). */
  readonly clock: LeaseClock;
  /** Address index and slot (−1: none) found by the last {@link locate} / {@link pickFresh} (saves allocating a tuple). */
  address = -1;
  slot = -1;

  /**
   * Indexes rows under the pools of `opts` (validated: throws {@link PoolConfigError}), with
   * its per-prefix caps (RangeError: {@link buildCaps}). `shared`: the store is shared by
   * several servers, so a never-used slot is taken near a random place.
   */
  constructor(opts: IndexOptions, clock: LeaseClock, shared: boolean) {
    this.#pools = this.buildPools(opts.pools);
    this.rows.setPools(this.#pools.map((p) => p.pool));
    this.#hostPrefixLength = opts.hostPrefixLength ?? DEFAULT_HOST_PREFIX_LENGTH;
    this.#sitePrefixLength = opts.sitePrefixLength ?? SITE_DEFAULTS.sitePrefixLength;
    this.#caps = this.buildCaps(opts.maxLeasesPerPrefix, opts.maxLeasesPerSite);
    this.clock = clock;
    this.#shared = shared;
  }

  /** The pools in config order, with their slot state. */
  get pools(): readonly PoolSlots[] {
    return this.#pools;
  }

  /** The expiry queue: (monotonic deadline, key) of each active row, and stale entries. */
  get expiry(): ExpiryHeap {
    return this.#expiry;
  }

  /** Rows kept but not served (AllocationEngine.orphans). */
  get orphans(): number {
    return this.#orphans;
  }

  /** Validated pools with fresh slot state: unique names, TEP addresses, no overlap. */
  buildPools(configs: readonly PoolConfig[]): PoolSlots[] {
    if (configs.length === 0) throw new PoolConfigError("no pool configured");
    const names = new Set<string>();
    const rowAt = (key: number) => this.rows.get(key);
    const pools = configs.map((config) => {
      const pool = new Pool(config);
      if (names.has(pool.name)) {
        throw new PoolConfigError(`two pools are named ${pool.name}; names must be unique`);
      }
      names.add(pool.name);
      const tep6 = canonicalIPv6(config.tep6);
      if (tep6 === null) {
        throw new PoolConfigError(`pool ${pool.name}: TEP "${config.tep6}" is not an IPv6 address`);
      }
      const tep4 = config.tep4 ?? 0;
      if (!Number.isInteger(tep4) || tep4 < 0 || tep4 > 0xffffffff) {
        throw new PoolConfigError(`pool ${pool.name}: TEP IPv4 ${tep4} is not an IPv4 address`);
      }
      return new PoolSlots(pool, tep6, tep4, rowAt, (key) => this.reservations.has(key));
    });
    const overlap = poolsOverlap(pools.map((p) => p.pool));
    if (overlap) throw new PoolConfigError(overlap.message);
    return pools;
  }

  /**
   * Caps of `perPrefix` active leases per host prefix and `perSite` per site prefix (0 or
   * absent: none; the prefix lengths are the engine's); throws RangeError (./prefix_caps.ts).
   */
  buildCaps(perPrefix: number | undefined, perSite: number | undefined): PrefixCaps {
    return new PrefixCaps(
      perPrefix ?? 0,
      this.#hostPrefixLength,
      perSite ?? 0,
      this.#sitePrefixLength,
    );
  }

  /**
   * Loads the store's rows at start (`loaded`: their deadlines come from one clock offset,
   * ./lease_clock.ts). Active rows as they come (their order changes no index: ./slots.ts);
   * freed rows oldest first, so each lands at the tail of its pool's free list (no walk).
   * Only the freed ones are sorted: at a million active leases the sort of them all took 0.7 s.
   */
  load(rows: readonly Lease[]): void {
    const freed: Lease[] = [];
    this.clock.markLoad();
    for (const row of rows) {
      if (row.state === "active") this.setRow(_key(row), this.#shareStrings(row), true);
      else freed.push(row);
    }
    freed.sort((a, b) => a.expiresAt - b.expiresAt || _key(a) - _key(b));
    for (const row of freed) this.setRow(_key(row), this.#shareStrings(row), true);
    for (const r of this.reservations.list()) this.settleSlot(r.ipv4, r.psid);
    this.clock.check();
  }

  /**
   * A reload's new pools (from {@link buildPools}) and caps: every row is kept and re-indexed
   * under them in one synchronous step. Returns the number of orphans.
   */
  reindex(pools: PoolSlots[], caps: PrefixCaps): number {
    this.#pools = pools;
    this.#caps = caps;
    const rows = [...this.rows.values()].sort(
      (a, b) => a.expiresAt - b.expiresAt || _key(a) - _key(b),
    );
    // Rows still as loaded at start keep their deadline from the load (./lease_clock.ts).
    const loaded = new Set<Lease>();
    for (const row of rows) if (this.rows.isLoaded(_key(row))) loaded.add(row);
    this.rows.clear();
    this.rows.setPools(pools.map((p) => p.pool));
    this.activeByHost.clear();
    this.historyByHost.clear();
    this.#expiry = new ExpiryHeap();
    this.#orphans = 0;
    for (const row of rows) this.setRow(_key(row), row, loaded.has(row));
    for (const r of this.reservations.list()) this.settleSlot(r.ipv4, r.psid);
    return this.#orphans;
  }

  /**
   * Replaces the row of `key` and keeps every index in step: host maps, expiry queue, orphan
   * count, address blocking and the slot's state (which reads the new row). `loaded`: a row
   * loaded from the store at start.
   */
  setRow(key: number, next: Lease | undefined, loaded = false): void {
    const old = this.rows.get(key);
    const row = next ?? old;
    if (!row) return;
    const ps = this.locate(row.ipv4, row.portSet.psid);
    const slot = this.slot;
    const usable = ps !== undefined && slot >= 0 && ps.state[slot] !== OFF;
    if (old) {
      const holder = leaseHolder(old);
      if (old.state === "active") {
        this.#caps.add(old.host6, -1);
        if (this.activeByHost.get(holder) === key) this.activeByHost.delete(holder);
      } else if (this.historyByHost.get(holder) === key) {
        this.historyByHost.delete(holder);
      }
      if (!usable || (old.state === "active" && !ps.matches(old))) this.#orphans--;
    }
    // The holder indexes check their entries against the table: out before, in after.
    if (next && loaded) this.rows.load(key, next);
    else if (next) this.rows.set(key, next);
    else this.rows.delete(key);
    if (next) {
      if (next.state === "active") {
        this.#caps.add(next.host6, 1);
        this.activeByHost.set(leaseHolder(next), key);
        this.#expiry.push(this.clock.deadlineOf(next, loaded), key);
        if (this.#expiry.size > 2 * this.activeByHost.size + 1024) this.#compactExpiry();
      } else if (usable) {
        this.#remember(key, next);
      }
      if (!usable || (next.state === "active" && !ps.matches(next))) this.#orphans++;
    }
    if (!ps) return;
    const wasBlocking = old?.state === "active" && !ps.matches(old);
    const blocks = next?.state === "active" && !ps.matches(next);
    if (blocks && !wasBlocking) ps.block(this.address);
    else if (wasBlocking && !blocks) ps.unblock(this.address);
    if (usable) ps.settle(slot, key, next);
  }

  /**
   * `row` with the strings its pool already holds (TEP, pool name) and a literal state: the
   * row itself when its TEP and pool name are the pool's (a store shares each value's string
   * among the rows it loads: lib/lease/lease.ts stringInterner), else a copy. About 100 bytes
   * less per lease, a million times over.
   */
  #shareStrings(row: Lease): Lease {
    const ps = this.locate(row.ipv4, row.portSet.psid);
    if (ps && row.tep6 === ps.tep6 && row.pool === ps.pool.name) return row;
    const state: LeaseState =
      row.state === "active" ? "active" : row.state === "released" ? "released" : "expired";
    return {
      ipv4: row.ipv4,
      portSet: row.portSet,
      host6: row.host6,
      tep4: row.tep4,
      tep6: ps && row.tep6 === ps.tep6 ? ps.tep6 : row.tep6,
      pool: ps && row.pool === ps.pool.name ? ps.pool.name : row.pool,
      state,
      grantedAt: row.grantedAt,
      expiresAt: row.expiresAt,
      ...(row.identity === undefined ? {} : { identity: row.identity }),
    };
  }

  /** The holder of the row of `key` when that row is active (`active`) or freed (not), else undefined. */
  #holderAt(key: number, active: boolean): string | undefined {
    const row = this.rows.get(key);
    return row !== undefined && (row.state === "active") === active ? leaseHolder(row) : undefined;
  }

  /** Makes a freed row its holder's sticky slot unless the holder has a newer one. */
  #remember(key: number, row: Lease): void {
    const holder = leaseHolder(row);
    const newest = this.historyByHost.get(holder);
    const current = newest === undefined ? undefined : this.rows.get(newest);
    if (!current || current.state === "active" || current.expiresAt <= row.expiresAt) {
      this.historyByHost.set(holder, key);
    }
  }

  /**
   * The pool whose prefixes contain `ipv4` (usable or not), with the address index in
   * {@link address} and the slot of (`ipv4`, `psid`) in {@link slot} (−1 when the PSID is
   * beyond the share).
   */
  locate(ipv4: number, psid: number): PoolSlots | undefined {
    for (const ps of this.#pools) {
      const index = ps.pool.addressIndexOf(ipv4);
      if (index < 0) continue;
      const share = ps.pool.sharing.share;
      this.address = index;
      this.slot = psid < share ? index * share + psid : -1;
      return ps;
    }
    this.address = -1;
    this.slot = -1;
    return undefined;
  }

  /** The pool serving an active row (its slot is usable and ACTIVE under it), if any. */
  served(row: Lease): PoolSlots | undefined {
    const ps = this.locate(row.ipv4, row.portSet.psid);
    return ps && this.slot >= 0 && ps.state[this.slot] === ACTIVE ? ps : undefined;
  }

  /** The pool serving an active row, if it also serves `scope` (its link). */
  servedIn(row: Lease, scope: ClientScope | undefined): PoolSlots | undefined {
    const ps = this.served(row);
    return ps && poolServes(ps.pool.name, scope) ? ps : undefined;
  }

  /**
   * A never-used slot of the first pool (serving `scope`) that has one, else the longest-free
   * slot (in {@link slot}).
   */
  pickFresh(scope?: ClientScope): PoolSlots | undefined {
    for (const ps of this.#pools) {
      if (!poolServes(ps.pool.name, scope)) continue;
      const slot = this.#shared
        ? ps.takeNeverNear(Math.floor(Math.random() * ps.state.length))
        : ps.takeNever();
      if (slot >= 0) {
        this.slot = slot;
        return ps;
      }
    }
    for (const ps of this.#pools) {
      if (ps.head >= 0 && poolServes(ps.pool.name, scope)) {
        this.slot = ps.head;
        return ps;
      }
    }
    return undefined;
  }

  /** The pool of the host's reservation when its slot is free for it (RESERVED; slot in {@link slot}), else undefined. */
  reservedSlot(host6: string): PoolSlots | undefined {
    const r = this.reservations.ofHost(host6);
    if (!r) return undefined;
    const ps = this.locate(r.ipv4, r.psid);
    return ps && this.slot >= 0 && ps.state[this.slot] === RESERVED ? ps : undefined;
  }

  /** Recomputes the state of the slot (`ipv4`, `psid`) after its reservation changed. */
  settleSlot(ipv4: number, psid: number): void {
    const ps = this.locate(ipv4, psid);
    if (ps && this.slot >= 0 && ps.state[this.slot] !== OFF) ps.settle(this.slot);
  }

  /** A snapshot of the rows in key order, of `state` only when given. */
  leases(state: LeaseState | undefined): Lease[] {
    const out: Lease[] = [];
    for (const row of this.rows.values()) {
      if (state === undefined || row.state === state) out.push(row);
    }
    return out.sort((a, b) => _key(a) - _key(b));
  }

  /** Per pool, in slots: usable, active, free to hand out, reserved, blocked; plus usable addresses and the share. */
  stats(): PoolStats[] {
    return this.#pools.map((p) => ({
      pool: p.pool.name,
      size: p.pool.size,
      active: p.active,
      free: p.pool.size - p.active - p.blocked - p.reserved,
      reserved: p.reserved,
      blocked: p.blocked,
      addresses: p.pool.addresses,
      share: p.pool.sharing.share,
    }));
  }

  /** The active lease of the host (or, with `scope.identity`, of that 4o6 client, wherever it is). */
  lookupHost(host6: string, scope?: ClientScope): Lease | undefined {
    const key = this.activeByHost.get(holderOf(host6, scope));
    return key === undefined ? undefined : this.rows.get(key);
  }

  /**
   * The reason and message when the host's prefix (site prefix) already holds its cap of
   * active leases, not counting the `held` lease(s) of the host that the new one replaces;
   * else undefined (./prefix_caps.ts).
   */
  overCap(host6: string, held: number): ReturnType<PrefixCaps["over"]> {
    return this.#caps.over(host6, held);
  }

  /**
   * Time left (ms) of an active lease this engine returned, on the monotonic clock (so a
   * wall-clock step does not change it); for other leases `expiresAt` − now.
   */
  remainingMs(lease: Lease): number {
    const key = _key(lease);
    return this.clock.remainingMs(lease, this.rows.isLoadedRow(key, lease));
  }

  /** True when `time` is the expiry deadline of `row`, the current row of `key` (./lease_clock.ts). */
  isDeadline(key: number, row: Lease, time: number): boolean {
    return this.clock.isDeadline(row, time, this.rows.isLoaded(key));
  }

  #compactExpiry(): void {
    this.#expiry.retain((time, key) => {
      const row = this.rows.get(key);
      return row?.state === "active" && this.isDeadline(key, row, time);
    });
  }
}
