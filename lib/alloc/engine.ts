/**
 * The allocation engine: which host gets which IPv4 address (and, when the pool shares its
 * addresses, which port set of it), for how long.
 *
 * The engine keeps the lease table in memory and decides every DISCOVER, REQUEST, RELEASE
 * and expiry synchronously, before its first await: two concurrent requests can never both
 * see one slot as free. Each decision changes the memory index at once and goes to the
 * {@link LeaseStore} through a {@link GroupCommitter}; the caller's promise resolves only
 * once the change is durable. If the write fails, every change not yet durable is undone
 * (and the batch gathering behind it dropped, since it was decided on top of the failed
 * one), so memory again equals the store, and the callers get `store-failed`.
 *
 * The unit of allocation is the **slot** (address, PSID), keyed by `leaseKey(ipv4, psid)`: a
 * whole-address pool has one slot per address (PSID 0, WHOLE_ADDRESS), a pool shared by 2^k
 * has 2^k per address, numbered address-major so that the PSIDs of one address go before the
 * next address (./pool.ts, ./sharing.ts). Slot choice for a DISCOVER (pools in config order):
 * 1. the host's active lease (renewed: a retransmitted DISCOVER gets the same answer), else
 *    the slot reserved for it (./reservations.ts: no other host ever gets that one);
 * 2. the host's previous slot, if still free ("sticky", like a DHCP server);
 * 3. the client's hint (an address), if it is in a pool and one of its port sets is free;
 * 4. a never-used slot (a cursor over the slot states), then the released or expired slot
 *    freed longest ago (a list ordered by time freed), so the sticky slots of other hosts
 *    last as long as possible.
 * REQUEST and RELEASE name an address; a holder (the host, or the 4o6 client's identity:
 * ./client_scope.ts) holds at most one lease, so (holder, address) names the slot. A
 * {@link ClientScope} may also narrow the pools a decision takes from (4o6 links). Every PSID of an address has the pool's PSID length and offset, so the
 * port sets of two leases on one address never overlap; a row left by an earlier
 * configuration with another layout blocks its address while it is active (./slots.ts).
 *
 * Against hosts that misbehave: a DISCOVER never shortens or replaces a committed lease
 * (RFC 2131 §4.3.1); `maxLeasesPerPrefix` caps the active leases of one host prefix
 * (./host_prefix.ts), so one machine with many IPv6 addresses cannot take the pool, and
 * `maxLeasesPerSite` those of one site prefix, so many /64s of one site cannot either
 * (./prefix_caps.ts); and
 * leases expire on the monotonic clock while the engine runs, so a wall-clock step never
 * turns into mass expiry (./lease_clock.ts).
 *
 * @module
 */
import { GroupCommitter } from "../lease/group_commit.ts";
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  type LeaseState,
  type LeaseStore,
  leaseHolder,
  leaseKey,
  type Reservation,
  sameLease,
} from "../lease/lease.ts";
import { canonicalIPv6, formatIPv4 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";
import {
  type AdminResult,
  adminFail,
  adminOk,
  type SlotView,
  slotProblem,
  slotState,
} from "./admin.ts";
import { type ClientScope, holderOf, poolServes } from "./client_scope.ts";
import {
  leaseInState as _copy,
  failure as _fail,
  isIPv4Number as _isIPv4,
  rowKey as _key,
  activeLease as _lease,
  reclaimLimit as _limit,
  ipv4Text as _text,
  declinedHost,
} from "./engine_rows.ts";
import {
  CONFLICT_RETRIES,
  type EngineOptions,
  type EngineOutcome,
  type EngineResult,
  type PoolConfig,
  type PoolStats,
  RECLAIM_DEFAULTS,
} from "./engine_types.ts";
import { ExpiryHeap } from "./expiry_heap.ts";
import { HolderIndex } from "./holder_index.ts";
import { DEFAULT_HOST_PREFIX_LENGTH } from "./host_prefix.ts";
import { LeaseClock } from "./lease_clock.ts";
import { LeaseTable } from "./lease_table.ts";
import { Pool, PoolConfigError, poolsOverlap } from "./pool.ts";
import { PrefixCaps, SITE_DEFAULTS } from "./prefix_caps.ts";
import { Reservations } from "./reservations.ts";
import { ACTIVE, FREE, OFF, PoolSlots, RESERVED } from "./slots.ts";

export { declinedHost, isDeclinedHost } from "./engine_rows.ts";
// The types and constants of the engine's configuration and results (all of engine_types.ts).
export * from "./engine_types.ts";

/** Results of writes another server won (retried by #retry). */
const _conflicted = new WeakSet<EngineResult>();

/** Decides and persists leases. Call {@link start} before anything else. */
export class AllocationEngine {
  #pools: PoolSlots[];
  readonly #store: LeaseStore;
  readonly #committer: GroupCommitter;
  #leaseTime: number;
  #maxLeaseTime: number;
  readonly #now: () => number;
  /** Wall clock for the stored times, monotonic deadlines for expiry (./lease_clock.ts). */
  readonly #clock: LeaseClock;
  /** Leases made by an OFFER (discover with persist: false) and not changed since: never committed. */
  readonly #offers = new WeakSet<Lease>();
  #caps: PrefixCaps;
  readonly #hostPrefixLength: number;
  readonly #sitePrefixLength: number;
  readonly #onStoreError: ((error: unknown) => void) | undefined;
  /** Every row of the store, by lease key (plus changes not yet durable). */
  readonly #rows = new LeaseTable();
  /** holder → key of its active row (./holder_index.ts: typed arrays, checked against #rows). */
  readonly #activeByHost = new HolderIndex((key) => this.#holderAt(key, true));
  /** host6 → key of the host's most recently freed row (for sticky re-allocation). */
  readonly #historyByHost = new HolderIndex((key) => this.#holderAt(key, false));
  /** Keys with changes not yet durable → their durable row (undefined: none). */
  readonly #inflight = new Map<number, Lease | undefined>();
  /** Keys with a put submitted and not yet durable → the last row submitted (what the store will hold). */
  readonly #submitted = new Map<number, Lease>();
  /** The store is shared by several servers (./shared.md in docs/scale-out.md): conflicts are retried. */
  readonly #shared: boolean;
  #unwatch: (() => Promise<void>) | undefined;
  readonly #onAbsorb: ((before: Lease | undefined, after: Lease | undefined) => void) | undefined;
  /** Writes another server won (LeaseConflictError), for metrics. */
  #conflicts = 0;
  #expiry = new ExpiryHeap();
  readonly #reclaimMaxLeases: number;
  readonly #reclaimMaxMs: number;
  /** Due leases were left by the last sweep (it stopped at its count or time limit). */
  #reclaimPending = false;
  #orphans = 0;
  /** Bumped by every rollback; callbacks of older changes then know they were undone. */
  #epoch = 0;
  #started = false;
  #closed = false;
  /** Address index and slot (−1: none) found by the last #locate / #pickFresh (saves allocating a tuple). */
  #address = -1;
  #slot = -1;
  /** Host reservations (./reservations.ts); their free slots are RESERVED in their pool. */
  readonly #reservations = new Reservations();
  /** Rows an administrator ended (./admin.ts): their host's INIT-REBOOT REQUEST is refused. */
  readonly #revoked = new WeakSet<Lease>();

  /** Validates the pools (each, and that no two overlap); throws {@link PoolConfigError}. */
  constructor(opts: EngineOptions) {
    if (opts.pools.length === 0) throw new PoolConfigError("no pool configured");
    if (!(opts.leaseTime >= 1)) throw new RangeError("lease time must be at least 1 second");
    const max = opts.maxLeaseTime ?? opts.leaseTime;
    if (!(max >= opts.leaseTime)) {
      throw new RangeError("max lease time must not be below lease time");
    }
    this.#pools = this.#buildPools(opts.pools);
    this.#rows.setPools(this.#pools.map((p) => p.pool));
    this.#store = opts.store;
    this.#committer = new GroupCommitter(opts.store);
    this.#leaseTime = opts.leaseTime;
    this.#maxLeaseTime = max;
    this.#now = opts.now ?? Date.now;
    this.#clock = new LeaseClock({
      now: this.#now,
      monotonic: opts.monotonic ?? opts.now ?? (() => performance.now()),
      stepMs: opts.clockStepMs,
      onStep: opts.onClockStep,
    });
    this.#hostPrefixLength = opts.hostPrefixLength ?? DEFAULT_HOST_PREFIX_LENGTH;
    this.#sitePrefixLength = opts.sitePrefixLength ?? SITE_DEFAULTS.sitePrefixLength;
    this.#caps = new PrefixCaps(
      opts.maxLeasesPerPrefix ?? 0,
      this.#hostPrefixLength,
      opts.maxLeasesPerSite ?? 0,
      this.#sitePrefixLength,
    );
    this.#onStoreError = opts.onStoreError;
    this.#shared = opts.store.shared === true;
    this.#onAbsorb = opts.onAbsorb;
    this.#reclaimMaxLeases = _limit(opts.reclaimMaxLeases, RECLAIM_DEFAULTS.maxLeases, "leases");
    this.#reclaimMaxMs = _limit(opts.reclaimMaxMs, RECLAIM_DEFAULTS.maxMs, "ms");
  }

  /** Validated pools with fresh slot state: unique names, TEP addresses, no overlap. */
  #buildPools(configs: readonly PoolConfig[]): PoolSlots[] {
    if (configs.length === 0) throw new PoolConfigError("no pool configured");
    const names = new Set<string>();
    const rowAt = (key: number) => this.#rows.get(key);
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
      return new PoolSlots(pool, tep6, tep4, rowAt, (key) => this.#reservations.has(key));
    });
    const overlap = poolsOverlap(pools.map((p) => p.pool));
    if (overlap) throw new PoolConfigError(overlap.message);
    return pools;
  }

  /**
   * Reload: new pools (added, removed, resized, re-shared), lease times and per-prefix cap,
   * without dropping a lease. Every row is kept and re-indexed under the new pools in one
   * synchronous step (no request sees a half-built index); an active lease whose slot is in
   * no pool any more is an orphan: kept until it expires or is released, its address never
   * handed out meanwhile (a renewal is refused: `no-such-lease`, send DISCOVER). Throws
   * {@link PoolConfigError} / RangeError (and changes nothing) when the pools are invalid.
   * Returns the number of orphans (rows kept but not served).
   */
  reconfigure(next: {
    pools: readonly PoolConfig[];
    leaseTime: number;
    maxLeaseTime?: number;
    maxLeasesPerPrefix?: number;
    maxLeasesPerSite?: number;
  }): number {
    const pools = this.#buildPools(next.pools);
    const max = next.maxLeaseTime ?? next.leaseTime;
    if (!(next.leaseTime >= 1) || !(max >= next.leaseTime))
      throw new RangeError("lease time must be at least 1 second and at most the max lease time");
    const caps = new PrefixCaps(
      next.maxLeasesPerPrefix ?? 0,
      this.#hostPrefixLength,
      next.maxLeasesPerSite ?? 0,
      this.#sitePrefixLength,
    );
    // From here on nothing throws: swap and re-index in one step.
    this.#pools = pools;
    this.#leaseTime = next.leaseTime;
    this.#maxLeaseTime = max;
    this.#caps = caps;
    const rows = [...this.#rows.values()].sort(
      (a, b) => a.expiresAt - b.expiresAt || _key(a) - _key(b),
    );
    // Rows still as loaded at start keep their deadline from the load (./lease_clock.ts).
    const loaded = new Set<Lease>();
    for (const row of rows) if (this.#rows.isLoaded(_key(row))) loaded.add(row);
    this.#rows.clear();
    this.#rows.setPools(pools.map((p) => p.pool));
    this.#activeByHost.clear();
    this.#historyByHost.clear();
    this.#expiry = new ExpiryHeap();
    this.#orphans = 0;
    for (const row of rows) this.#setRow(_key(row), row, loaded.has(row));
    for (const r of this.#reservations.list()) this.#settleSlot(r.ipv4, r.psid);
    return this.#orphans;
  }

  /** Loads every row of the store and builds the index. Rows the pools do not serve are kept, not served. */
  async start(): Promise<void> {
    if (this.#started) throw new Error("AllocationEngine.start() called twice");
    // Shared store: follow the other servers' changes from before the load on (rows changed
    // meanwhile come again, as they are now), taking them in once the load is in.
    let early: Lease[] | undefined = [];
    if (this.#shared && this.#store.watch) {
      this.#unwatch = this.#store.watch((rows) => {
        if (early) early.push(...rows);
        else this.absorb(rows);
      });
    }
    // Shared store: the other servers' reservations as they change (./reservations.ts).
    if (this.#shared && this.#store.watchReservations) {
      const unwatch = this.#store.watchReservations((all) => {
        for (const r of this.#reservations.replace(all)) this.#settleSlot(r.ipv4, r.psid);
      });
      const unwatchRows = this.#unwatch;
      this.#unwatch = async () => {
        await unwatchRows?.();
        await unwatch();
      };
    }
    for (const r of (await this.#store.loadReservations?.()) ?? []) this.#reservations.set(r);
    const rows = await this.#store.loadAll();
    // Active rows as they come (their order changes no index: ./slots.ts); freed rows oldest
    // first, so each lands at the tail of its pool's free list (no walk). Only the freed ones
    // are sorted: at a million active leases the sort of them all took 0.7 s.
    const freed: Lease[] = [];
    this.#clock.markLoad();
    for (const row of rows) {
      if (row.state === "active") this.#setRow(_key(row), this.#shareStrings(row), true);
      else freed.push(row);
    }
    freed.sort((a, b) => a.expiresAt - b.expiresAt || _key(a) - _key(b));
    for (const row of freed) this.#setRow(_key(row), this.#shareStrings(row), true);
    for (const r of this.#reservations.list()) this.#settleSlot(r.ipv4, r.psid);
    this.#clock.check();
    this.#started = true;
    const backlog = early;
    early = undefined;
    this.absorb(backlog);
  }

  /**
   * DSTM_DISCOVER: the host's lease, or a new one.
   *
   * A DISCOVER never shortens a committed lease (RFC 2131 §4.3.1: a client that holds an
   * address is offered it with its existing expiry): the lease comes back unchanged unless
   * the time asked for ends later, and then it is renewed to that. Anyone who can send from
   * a host's address can send a DISCOVER; it must not be able to cut the host off.
   *
   * `persist: false` (a DHCP OFFER): a NEW lease is held in memory only and becomes durable
   * with the REQUEST that renews it; lost in a crash, it is simply offered again (the REQUEST
   * still succeeds through the INIT-REBOOT path of {@link request}). A committed lease is
   * returned as it is, never changed by an offer.
   *
   * Fails with `prefix-limit` when a new lease would put the host's prefix over
   * `maxLeasesPerPrefix`.
   */
  discover(
    host6: string,
    opts?: { hint?: number; leaseTime?: number; persist?: boolean } & ClientScope,
  ): Promise<EngineResult> {
    if (this.#shared) return this.#retry(() => this.#discover(host6, opts));
    return this.#discover(host6, opts);
  }

  #discover(
    host6: string,
    opts?: { hint?: number; leaseTime?: number; persist?: boolean } & ClientScope,
  ): Promise<EngineResult> {
    const refused = this.#refuse();
    if (refused) return refused;
    const now = this.#now();
    const leaseMs = this.#leaseMs(opts?.leaseTime);
    const expiresAt = now + leaseMs;
    const offer = opts?.persist === false;
    let endKey = -1;
    let end: Lease | undefined;
    const holder = holderOf(host6, opts);
    const identity = opts?.identity;
    const activeKey = this.#activeByHost.get(holder);
    if (activeKey !== undefined) {
      const row = this.#rows.get(activeKey) as Lease;
      const ps = this.#servedIn(row, opts);
      if (ps) {
        const committed = !this.#offers.has(row);
        if (committed && (offer || this.remainingMs(row) >= leaseMs)) {
          return Promise.resolve({ ok: true, lease: row, outcome: "renewed" });
        }
        const renewed = _lease(row.ipv4, row.portSet, host6, ps, now, expiresAt, identity);
        if (offer) {
          // An offer not taken yet, offered again: held again, still in memory only.
          this.#change(activeKey, renewed);
          this.#offers.add(renewed);
          return Promise.resolve({ ok: true, lease: renewed, outcome: "renewed" });
        }
        return this.#apply(activeKey, renewed, "renewed");
      }
      const limited = this.#overPrefixLimit(host6, 1);
      if (limited) return limited;
      // Its slot left the pools (or its layout changed, or its pool does not serve this
      // client's link): end that lease now, so that its slot and a blocked address can be
      // picked below, and write both in one batch.
      endKey = activeKey;
      end = _copy(row, "expired", now);
      this.#change(endKey, end);
    } else {
      const limited = this.#overPrefixLimit(host6, 0);
      if (limited) return limited;
    }
    let ps: PoolSlots | undefined;
    let slot = -1;
    let outcome: EngineOutcome = "allocated";
    const reserved = this.#reservedSlot(host6);
    if (reserved) {
      // Its reservation first: the slot is kept for this host alone (./reservations.ts).
      ps = reserved;
      slot = this.#slot;
      outcome = "reused";
    }
    const previous = this.#historyByHost.get(holder);
    if (!ps && previous !== undefined) {
      const row = this.#rows.get(previous);
      const candidate = row ? this.#locate(row.ipv4, row.portSet.psid) : undefined;
      if (
        candidate &&
        this.#slot >= 0 &&
        candidate.state[this.#slot] === FREE &&
        poolServes(candidate.pool.name, opts)
      ) {
        ps = candidate;
        slot = this.#slot;
        outcome = "reused";
      }
    }
    const hint = opts?.hint;
    if (!ps && hint !== undefined && _isIPv4(hint)) {
      const candidate = this.#locate(hint, 0);
      const free =
        candidate && poolServes(candidate.pool.name, opts)
          ? candidate.freeSlotOf(this.#address)
          : -1;
      if (free >= 0) {
        ps = candidate;
        slot = free;
      }
    }
    if (!ps) {
      ps = this.#pickFresh(opts);
      slot = this.#slot;
    }
    if (!ps) {
      const exhausted: EngineResult = {
        ok: false,
        reason: "pool-exhausted",
        message: "no free IPv4 address or port set in any pool",
      };
      if (end === undefined) return Promise.resolve(exhausted);
      return this.#persist([this.#put(endKey, end)], [endKey], [end], exhausted, (f) => f);
    }
    const ipv4 = ps.pool.addressOf(slot);
    const portSet = ps.pool.portSetOf(slot);
    const lease = _lease(ipv4, portSet, host6, ps, now, expiresAt, identity);
    const key = leaseKey(ipv4, portSet.psid);
    if (end === undefined && offer) {
      // Memory only: the durable row stays the rollback point in #inflight until a write.
      this.#change(key, lease);
      this.#offers.add(lease);
      return Promise.resolve({ ok: true, lease, outcome });
    }
    if (end === undefined) return this.#apply(key, lease, outcome);
    return this.#apply2(endKey, end, key, lease, outcome);
  }

  /**
   * DSTM_REQUEST: renew the host's lease on `ipv4`, or, when the host holds none, grant a free
   * port set of `ipv4` (its previous one first), like DHCP's INIT-REBOOT.
   */
  request(
    host6: string,
    ipv4: number,
    opts?: { leaseTime?: number } & ClientScope,
  ): Promise<EngineResult> {
    if (this.#shared) return this.#retry(() => this.#request(host6, ipv4, opts));
    return this.#request(host6, ipv4, opts);
  }

  #request(
    host6: string,
    ipv4: number,
    opts?: { leaseTime?: number } & ClientScope,
  ): Promise<EngineResult> {
    const refused = this.#refuse();
    if (refused) return refused;
    const ps = _isIPv4(ipv4) ? this.#locate(ipv4, 0) : undefined;
    if (!ps?.pool.isUsableAddress(this.#address)) {
      return _fail("no-such-lease", `${_text(ipv4)} is in no pool of this server; send DISCOVER`);
    }
    if (!poolServes(ps.pool.name, opts)) {
      return _fail(
        "no-such-lease",
        `${_text(ipv4)} is in pool ${ps.pool.name}, which does not serve this client's link; send DISCOVER`,
      );
    }
    const holder = holderOf(host6, opts);
    const identity = opts?.identity;
    const index = this.#address;
    const now = this.#now();
    const expiresAt = now + this.#leaseMs(opts?.leaseTime);
    const activeKey = this.#activeByHost.get(holder);
    if (activeKey !== undefined) {
      const row = this.#rows.get(activeKey) as Lease;
      if (row.ipv4 !== ipv4) {
        return _fail(
          "no-such-lease",
          `host ${host6} holds ${formatIPv4(row.ipv4)}, not ${formatIPv4(ipv4)}; renew that one or release it`,
        );
      }
      if (!this.#served(row)) {
        return _fail(
          "no-such-lease",
          `host ${host6} holds ${formatIPv4(ipv4)} ports ${formatPortSet(row.portSet)}, which this server no longer hands out; send DISCOVER`,
        );
      }
      const renewed = _lease(ipv4, row.portSet, host6, ps, now, expiresAt, identity);
      return this.#apply(activeKey, renewed, "renewed");
    }
    const limited = this.#overPrefixLimit(host6, 0);
    if (limited) return limited;
    const refusal = this.#initRebootRefusal(host6, ipv4);
    if (refusal) return refusal;
    let slot = this.#reservedSlot(host6) === ps ? this.#slot : -1;
    const previous = this.#historyByHost.get(holder);
    const before = previous === undefined ? undefined : this.#rows.get(previous);
    if (slot < 0 && before?.ipv4 === ipv4 && this.#locate(ipv4, before.portSet.psid) === ps) {
      if (this.#slot >= 0 && ps.state[this.#slot] === FREE) slot = this.#slot;
    }
    if (slot < 0) slot = ps.freeSlotOf(index);
    if (slot < 0) {
      return _fail(
        "address-in-use",
        ps.pool.sharing.share === 1
          ? `${formatIPv4(ipv4)} is leased to another host`
          : `every port set of ${formatIPv4(ipv4)} is leased to other hosts; send DISCOVER`,
      );
    }
    const portSet = ps.pool.portSetOf(slot);
    const lease = _lease(ipv4, portSet, host6, ps, now, expiresAt, identity);
    return this.#apply(leaseKey(ipv4, portSet.psid), lease, "reused");
  }

  /**
   * The host declined our offer (RFC 2131 §4.3.2: its REQUEST names another server): frees the
   * host's lease if it is an offer never committed; a committed lease is left alone
   * (`no-such-lease`), since anyone can send such a REQUEST from the host's address.
   */
  withdrawOffer(host6: string, scope?: ClientScope): Promise<EngineResult> {
    if (this.#shared) return this.#retry(() => this.#withdrawOffer(host6, scope));
    return this.#withdrawOffer(host6, scope);
  }

  #withdrawOffer(host6: string, scope?: ClientScope): Promise<EngineResult> {
    const refused = this.#refuse();
    if (refused) return refused;
    const key = this.#activeByHost.get(holderOf(host6, scope));
    const row = key === undefined ? undefined : this.#rows.get(key);
    if (key === undefined || !row || !this.#offers.has(row)) {
      return _fail("no-such-lease", `host ${host6} holds no offer`);
    }
    return this.#apply(key, _copy(row, "released", this.#now()), "released");
  }

  /**
   * DHCPDECLINE (RFC 2131 §4.3.3): the host found its address (`ipv4`, offered or leased) in
   * use by another machine. The slot is taken from the host and held, durably, by
   * {@link declinedHost} for `probationSeconds`, then freed by the sweeper like any lease.
   * Only the host's own address can be declined (`no-such-lease` otherwise).
   */
  decline(
    host6: string,
    ipv4: number,
    probationSeconds: number,
    scope?: ClientScope,
  ): Promise<EngineResult> {
    const refused = this.#refuse();
    if (refused) return refused;
    const key = this.#activeByHost.get(holderOf(host6, scope));
    const row = key === undefined ? undefined : this.#rows.get(key);
    const ps = row ? this.#served(row) : undefined;
    if (key === undefined || !row || row.ipv4 !== ipv4 || !ps) {
      return _fail("no-such-lease", `host ${host6} holds no lease on ${_text(ipv4)} to decline`);
    }
    const now = this.#now();
    const held = _lease(ipv4, row.portSet, declinedHost(ipv4, row.portSet.psid), ps, now, now);
    const lease = { ...held, expiresAt: now + Math.max(1, probationSeconds) * 1000 };
    return this.#apply(key, lease, "renewed");
  }

  /** True when `lease` is the host's current lease and was made by an offer not yet committed. */
  isOffer(lease: Lease | undefined): boolean {
    return lease !== undefined && this.#offers.has(lease);
  }

  /** Lease time a REQUEST asking for `requested` seconds (or none) is granted (s). */
  grantSeconds(requested?: number): number {
    return Math.round(this.#leaseMs(requested) / 1000);
  }

  /**
   * Time left (ms) of an active lease this engine returned, on the monotonic clock (so a
   * wall-clock step does not change it); for other leases `expiresAt` − now.
   */
  remainingMs(lease: Lease): number {
    const key = _key(lease);
    return this.#clock.remainingMs(
      lease,
      this.#rows.get(key) === lease && this.#rows.isLoaded(key),
    );
  }

  /** True when `time` is the expiry deadline of `row`, the current row of `key` (./lease_clock.ts). */
  #isDeadline(key: number, row: Lease, time: number): boolean {
    return this.#clock.isDeadline(row, time, this.#rows.isLoaded(key));
  }

  /** DSTM_RELEASE: the host gives back its active lease on `ipv4`. Never frees another host's lease. */
  release(host6: string, ipv4: number, scope?: ClientScope): Promise<EngineResult> {
    if (this.#shared) return this.#retry(() => this.#release(host6, ipv4, scope));
    return this.#release(host6, ipv4, scope);
  }

  #release(host6: string, ipv4: number, scope?: ClientScope): Promise<EngineResult> {
    const refused = this.#refuse();
    if (refused) return refused;
    const key = this.#activeByHost.get(holderOf(host6, scope));
    const row = key === undefined ? undefined : this.#rows.get(key);
    if (key === undefined || row?.ipv4 !== ipv4) {
      return _fail("no-such-lease", `host ${host6} holds no active lease on ${_text(ipv4)}`);
    }
    return this.#apply(key, _copy(row, "released", this.#now()), "released");
  }

  /**
   * Marks active leases whose time is up expired (durably) and returns them: at most
   * `reclaimMaxLeases` of them, and it stops picking once `reclaimMaxMs` have passed, so that
   * a crowd of overdue leases (a restart after a downtime longer than the lease time) never
   * holds up the answers; {@link reclaimPending} then says more are due, and the caller sweeps
   * again after letting other work run (lib/alloc/reclaimer.ts). Each slice is one store write.
   *
   * Time is up on the monotonic clock: a lease expires its lease time after it was granted
   * (or, for a lease loaded at start, after the time its stored `expiresAt` had left then).
   * A step of the wall clock (wall − monotonic moved by more than `clockStepMs` since the
   * last sweep) is reported to `onClockStep` and expires nothing early.
   *
   * Cost: O(k log n) for k leases reclaimed among n, whatever order their keys come in (the
   * freed slots go to the free lists in key order, each at the tail: ./slots.ts).
   */
  sweep(): Promise<Lease[]> {
    this.#reclaimPending = false;
    if (!this.#started || this.#closed) return Promise.resolve([]);
    const now = this.#now();
    const mono = this.#clock.check();
    const maxLeases = this.#reclaimMaxLeases || Number.POSITIVE_INFINITY;
    const deadline = this.#reclaimMaxMs ? performance.now() + this.#reclaimMaxMs : 0;
    const due: number[] = [];
    const heap = this.#expiry;
    while (heap.size > 0 && heap.topTime() <= mono) {
      if (due.length >= maxLeases || (deadline && performance.now() >= deadline)) {
        this.#reclaimPending = true;
        break;
      }
      const key = heap.topKey();
      const time = heap.topTime();
      heap.pop();
      const row = this.#rows.get(key);
      // renewed or freed since
      if (row?.state !== "active" || !this.#isDeadline(key, row, time)) continue;
      due.push(key);
    }
    if (due.length === 0) return Promise.resolve([]);
    // Every lease of this slice is freed at `now`: in key order, each one goes to the tail of
    // its free list at once (in heap order, each insertion walked the list: O(k²)).
    due.sort((a, b) => a - b);
    const ops: LeaseOp[] = [];
    const expired: Lease[] = [];
    const keys: number[] = [];
    for (let i = 0; i < due.length; i++) {
      const key = due[i] as number;
      // A key can be in the heap twice with one deadline (renewed within the same ms).
      if (i > 0 && due[i - 1] === key) continue;
      keys.push(key);
      const lease = _copy(this.#rows.get(key) as Lease, "expired", now);
      this.#change(key, lease);
      ops.push(this.#put(key, lease));
      expired.push(lease);
    }
    return this.#persist(ops, keys, expired, expired, (): Lease[] => []);
  }

  /**
   * True when the last {@link sweep} stopped at its count or time limit with due leases left:
   * sweep again soon (after letting pending answers go out), not at the next interval.
   */
  get reclaimPending(): boolean {
    return this.#reclaimPending;
  }

  /** The stored expiry (wall clock, ms) of the active lease the sweeper expires next, or null. */
  nextExpiry(): number | null {
    const heap = this.#expiry;
    while (heap.size > 0) {
      const row = this.#rows.get(heap.topKey());
      if (row?.state === "active" && this.#isDeadline(heap.topKey(), row, heap.topTime())) {
        return row.expiresAt;
      }
      heap.pop();
    }
    return null;
  }

  /** A snapshot of the lease table in key order, optionally of one state. */
  leases(filter?: { state?: LeaseState }): Lease[] {
    const state = filter?.state;
    const out: Lease[] = [];
    for (const row of this.#rows.values()) {
      if (state === undefined || row.state === state) out.push(row);
    }
    return out.sort((a, b) => _key(a) - _key(b));
  }

  /** The active lease of the host (or, with `scope.identity`, of that 4o6 client, wherever it is). */
  lookupHost(host6: string, scope?: ClientScope): Lease | undefined {
    const key = this.#activeByHost.get(holderOf(host6, scope));
    return key === undefined ? undefined : this.#rows.get(key);
  }

  /** Per pool, in slots: usable, active, free to hand out; plus usable addresses and the share. */
  stats(): PoolStats[] {
    return this.#pools.map((p) => ({
      pool: p.pool.name,
      size: p.pool.size,
      active: p.active,
      free: p.pool.size - p.active - p.blocked - p.reserved,
      addresses: p.pool.addresses,
      share: p.pool.sharing.share,
    }));
  }

  /** The validated pools, in config order (their sharing, for logs). */
  pools(): readonly Pool[] {
    return this.#pools.map((p) => p.pool);
  }

  /**
   * Rows kept but not served: their slot is in no pool or not usable (excluded, a PSID with
   * well-known ports, a PSID beyond the share), or they are active with another port-set
   * layout than their pool's (left by an earlier configuration).
   */
  orphans(): number {
    return this.#orphans;
  }

  /**
   * Rows stepped over so far by insertions into the free lists (each freed slot goes to its
   * place in (time freed, key) order, walking from the tail): a cost counter for tests and
   * benchmarks, linear in the slots freed when they are freed in order.
   */
  freeListSteps(): number {
    let steps = 0;
    for (const ps of this.#pools) steps += ps.walked;
    return steps;
  }

  /** Store writes so far and the ops they carried (ops/batches is the group-commit factor). */
  writeStats(): { readonly batches: number; readonly ops: number } {
    return this.#committer.stats;
  }

  /** Refuses new calls and waits until every change made so far is settled. Does not close the store. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#unwatch?.();
    await this.#committer.flush();
  }

  // ── administration (./admin.ts, lib/server/lease_admin.ts) ───────────────────────────

  /** Every row, live and in no particular order (a row changed meanwhile is seen as it is then). */
  rows(): IterableIterator<Lease> {
    return this.#rows.values();
  }

  /** Where (`ipv4`, `psid`) lies: its pool and slot state, its row, its reservation; undefined: in no pool. */
  slotView(ipv4: number, psid: number): SlotView | undefined {
    const ps = _isIPv4(ipv4) ? this.#locate(ipv4, psid) : undefined;
    if (!ps) return undefined;
    const key = leaseKey(ipv4, psid);
    return {
      pool: ps.pool.name,
      share: ps.pool.sharing.share,
      state: this.#slot < 0 ? "beyond-share" : slotState(ps.state[this.#slot] as number),
      row: this.#rows.get(key),
      reservation: this.#reservations.ofKey(key),
    };
  }

  /** Every reservation, in key order. */
  reservations(): Reservation[] {
    return this.#reservations.list();
  }

  /** The host's reservation. */
  reservationOf(host6: string): Reservation | undefined {
    return this.#reservations.ofHost(host6);
  }

  /**
   * An administrator ends these active leases now (Kea's lease4-del): each becomes
   * `released`, all in one durable batch, and their hosts' INIT-REBOOT REQUEST for that
   * address is refused (`no-such-lease`: NAK) until they DISCOVER again. Keys without an
   * active lease are skipped. Resolves with the leases ended (as they were).
   */
  endLeases(keys: readonly number[]): Promise<AdminResult<Lease[]>> {
    if (this.#closed || !this.#started) return adminFail("store-failed", "the server is stopping");
    const now = this.#now();
    const ops: LeaseOp[] = [];
    const done: number[] = [];
    const ended: Lease[] = [];
    const rows: Lease[] = [];
    for (const key of new Set(keys)) {
      const row = this.#rows.get(key);
      if (row?.state !== "active") continue;
      const end = _copy(row, "released", now);
      this.#change(key, end);
      this.#revoked.add(end);
      ops.push(this.#put(key, end));
      done.push(key);
      rows.push(end);
      ended.push(row);
    }
    if (ops.length === 0) return adminOk([]);
    const success: AdminResult<Lease[]> = { ok: true, value: ended };
    return this.#persist<AdminResult<Lease[]>>(ops, done, rows, success, (f) => ({
      ok: false,
      reason: "store-failed",
      message: f.ok ? "lease store write failed" : f.message,
    }));
  }

  /**
   * An administrator gives `host6` the slot (`ipv4`, `psid`) for `seconds` from now (Kea's
   * lease4-add), outside the pools' lease-time limits. Refused when the slot is in no pool or
   * not usable, held or reserved by another host, or the host holds another active lease.
   */
  grant(host6: string, ipv4: number, psid: number, seconds: number): Promise<AdminResult<Lease>> {
    if (this.#closed || !this.#started) return adminFail("store-failed", "the server is stopping");
    const problem = this.#slotProblem(host6, ipv4, psid);
    if (problem) return adminFail(problem.reason, problem.message);
    const ps = this.#locate(ipv4, psid) as PoolSlots;
    const now = this.#now();
    const lease = _lease(ipv4, ps.pool.portSetOf(this.#slot), host6, ps, now, now + seconds * 1000);
    return this.#apply(leaseKey(ipv4, psid), lease, "allocated").then(
      (r): AdminResult<Lease> =>
        r.ok
          ? { ok: true, value: r.lease }
          : { ok: false, reason: "store-failed", message: r.message },
    );
  }

  /**
   * Reserves the slot (`ipv4`, `psid`) for `host6` (Kea's host reservation): from now on no
   * other host gets it, and this host gets it whenever it asks. Durable before it resolves;
   * refused like {@link grant}, and when the host has a reservation already.
   */
  async reserve(reservation: Reservation): Promise<AdminResult<Reservation>> {
    const { host6, ipv4, psid } = reservation;
    if (!this.#store.writeReservation) {
      return adminFail("unsupported", `the ${this.#store.kind} lease store keeps no reservations`);
    }
    const held = this.#reservations.ofHost(host6);
    if (held) {
      return adminFail(
        "in-use",
        `host ${host6} already has a reservation (${formatIPv4(held.ipv4)} psid ${held.psid}); remove it first`,
      );
    }
    const problem = this.#slotProblem(host6, ipv4, psid);
    if (problem) return adminFail(problem.reason, problem.message);
    // Memory first, synchronously: no allocation can take the slot while the write is out.
    this.#reservations.set(reservation);
    this.#settleSlot(ipv4, psid);
    try {
      await this.#store.writeReservation({ op: "put", reservation });
    } catch (error) {
      this.#reservations.delete(host6);
      this.#settleSlot(ipv4, psid);
      // Another server's host holds the slot (a shared store): its row comes in by watch().
      if (error instanceof LeaseConflictError)
        return adminFail("in-use", `${formatIPv4(ipv4)}: ${error.message}`);
      return adminFail("store-failed", `lease store write failed: ${(error as Error).message}`);
    }
    return { ok: true, value: reservation };
  }

  /** Removes the host's reservation (durable before it resolves); its lease, if any, stays. */
  async unreserve(host6: string): Promise<AdminResult<Reservation>> {
    const old = this.#reservations.ofHost(host6);
    if (!old || !this.#store.writeReservation) {
      return adminFail("no-such-lease", `host ${host6} has no reservation`);
    }
    this.#reservations.delete(host6);
    this.#settleSlot(old.ipv4, old.psid);
    try {
      await this.#store.writeReservation({ op: "delete", host6 });
    } catch (error) {
      this.#reservations.set(old);
      this.#settleSlot(old.ipv4, old.psid);
      return adminFail("store-failed", `lease store write failed: ${(error as Error).message}`);
    }
    return { ok: true, value: old };
  }

  /** Why `host6` may not take (`ipv4`, `psid`) by an administrator's hand (./admin.ts), or undefined. */
  #slotProblem(host6: string, ipv4: number, psid: number) {
    return slotProblem(ipv4, psid, this.slotView(ipv4, psid), host6, this.lookupHost(host6));
  }

  /** The pool of the host's reservation when its slot is free for it (RESERVED; slot in #slot), else undefined. */
  #reservedSlot(host6: string): PoolSlots | undefined {
    const r = this.#reservations.ofHost(host6);
    if (!r) return undefined;
    const ps = this.#locate(r.ipv4, r.psid);
    return ps && this.#slot >= 0 && ps.state[this.#slot] === RESERVED ? ps : undefined;
  }

  /**
   * A REQUEST for `ipv4` from a host that holds no lease (INIT-REBOOT) is refused when the
   * host has a reservation for another address, or an administrator ended its lease on it.
   */
  #initRebootRefusal(host6: string, ipv4: number): Promise<EngineResult> | undefined {
    const r = this.#reservations.ofHost(host6);
    if (r && r.ipv4 !== ipv4) {
      return _fail(
        "no-such-lease",
        `host ${host6} has a reservation for ${formatIPv4(r.ipv4)}; send DISCOVER`,
      );
    }
    const last = this.#historyByHost.get(host6);
    const row = last === undefined ? undefined : this.#rows.get(last);
    if (row && row.ipv4 === ipv4 && this.#revoked.has(row)) {
      return _fail(
        "no-such-lease",
        `the lease of ${host6} on ${formatIPv4(ipv4)} was ended by an administrator; send DISCOVER`,
      );
    }
    return undefined;
  }

  /** Recomputes the state of the slot (`ipv4`, `psid`) after its reservation changed. */
  #settleSlot(ipv4: number, psid: number): void {
    const ps = this.#locate(ipv4, psid);
    if (ps && this.#slot >= 0 && ps.state[this.#slot] !== OFF) ps.settle(this.#slot);
  }

  // ── decisions → memory → store ──────────────────────────────────────────────────────

  #refuse(): Promise<EngineResult> | undefined {
    if (this.#closed) return _fail("store-failed", "the allocation engine is shut down");
    if (!this.#started) {
      return Promise.reject(new Error("AllocationEngine.start() has not been called"));
    }
    return undefined;
  }

  #leaseMs(requested: number | undefined): number {
    const seconds =
      requested === undefined || !Number.isFinite(requested) ? this.#leaseTime : requested;
    return Math.round(Math.min(this.#maxLeaseTime, Math.max(1, seconds)) * 1000);
  }

  /** The hot path: one changed row. */
  #apply(key: number, lease: Lease, outcome: EngineOutcome): Promise<EngineResult> {
    this.#change(key, lease);
    const epoch = this.#epoch;
    return this.#committer.submit([this.#put(key, lease)]).then(
      (): EngineResult => {
        this.#durable(key, lease);
        return { ok: true, lease, outcome };
      },
      (error: unknown) => this.#failed(epoch, error),
    );
  }

  /** The hot path's twin: `end` (already changed in memory) and a new lease in one batch. */
  #apply2(
    endKey: number,
    end: Lease,
    key: number,
    lease: Lease,
    outcome: EngineOutcome,
  ): Promise<EngineResult> {
    this.#change(key, lease);
    const ops: LeaseOp[] = [this.#put(endKey, end), this.#put(key, lease)];
    const success: EngineResult = { ok: true, lease, outcome };
    return this.#persist(ops, [endKey, key], [end, lease], success, (failure) => failure);
  }

  /** Changes memory now, remembering the durable row for a rollback. */
  #change(key: number, lease: Lease): void {
    if (!this.#inflight.has(key)) this.#inflight.set(key, this.#rows.get(key));
    this.#setRow(key, lease);
  }

  /** Writes several changed rows in one batch; resolves `success`, or `failed()` when the write fails. */
  #persist<T>(
    ops: LeaseOp[],
    keys: number[],
    leases: Lease[],
    success: T,
    failed: (result: EngineResult) => T,
  ): Promise<T> {
    const epoch = this.#epoch;
    return this.#committer.submit(ops).then(
      () => {
        for (let i = 0; i < keys.length; i++) this.#durable(keys[i] as number, leases[i] as Lease);
        return success;
      },
      (error: unknown) => failed(this.#failed(epoch, error)),
    );
  }

  /** `lease` of `key` is durable; if a later change of the key is pending, it is now the rollback point. */
  #durable(key: number, lease: Lease): void {
    if (this.#submitted.get(key) === lease) this.#submitted.delete(key);
    if (this.#rows.get(key) === lease) this.#inflight.delete(key);
    else this.#inflight.set(key, lease);
  }

  /**
   * The put of `lease` (already in memory) with the row the store holds under `key` when the
   * put reaches it: the last row submitted for the key, else the durable row (the one an
   * offer kept in memory only replaced). A shared store checks it (compare-and-set).
   */
  #put(key: number, lease: Lease): LeaseOp {
    const expected = this.#submitted.has(key)
      ? this.#submitted.get(key)
      : this.#inflight.has(key)
        ? this.#inflight.get(key)
        : this.#rows.get(key);
    this.#submitted.set(key, lease);
    return { op: "put", lease, expected: expected ?? null };
  }

  #failed(epoch: number, error: unknown): EngineResult {
    this.#rollback(epoch, error);
    const message = `lease store write failed: ${error instanceof Error ? error.message : String(error)}`;
    const result: EngineResult = { ok: false, reason: "store-failed", message };
    if (error instanceof LeaseConflictError) _conflicted.add(result);
    return result;
  }

  /**
   * Runs a decision; when another server won the write (the rows it wrote are in memory
   * now), decides again, up to {@link CONFLICT_RETRIES} times, after a random wait of up to
   * 2^i ms (i = the retry, at most 64 ms): one conflicting op fails its whole group-commit
   * batch, so two busy servers retrying at once would meet again in their next batches; the
   * jitter lets one batch land first (exponential backoff with full jitter).
   */
  async #retry(decide: () => Promise<EngineResult>): Promise<EngineResult> {
    let result = await decide();
    for (let i = 0; i < CONFLICT_RETRIES && _conflicted.has(result); i++) {
      if (this.#closed) break;
      const waitMs = Math.random() * Math.min(64, 2 ** i);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      if (this.#closed) break;
      result = await decide();
    }
    return result;
  }

  /**
   * Takes in rows the store holds now (written by another server, or by this one): each
   * replaces the row of its key in memory, unless this engine has a change of that key not
   * yet durable (its write then succeeds, or fails and brings the stored row back).
   */
  absorb(rows: readonly Lease[]): void {
    if (!this.#started) return;
    for (const row of rows) {
      const key = _key(row);
      const before = this.#rows.get(key);
      if (this.#inflight.has(key) || sameLease(before, row)) continue;
      this.#setRow(key, row);
      this.#tellAbsorbed(before, row);
    }
  }

  #tellAbsorbed(before: Lease | undefined, after: Lease | undefined): void {
    try {
      this.#onAbsorb?.(before, after);
    } catch {
      // a failing listener must not break the engine's view
    }
  }

  /** Writes another server won so far (each made this engine take the stored rows and decide again). */
  conflicts(): number {
    return this.#conflicts;
  }

  /** Undoes every change not yet durable, once per failure (the first failed callback does it). */
  #rollback(epoch: number, error: unknown): void {
    if (epoch !== this.#epoch) return;
    this.#epoch++;
    this.#committer.abortPending(error);
    for (const [key, durable] of this.#inflight) this.#setRow(key, durable);
    this.#inflight.clear();
    this.#submitted.clear();
    if (error instanceof LeaseConflictError) {
      // Another server changed these rows first: take them as they are stored now.
      this.#conflicts++;
      this.absorb(error.rows);
      // A slot reserved at another server, not yet heard of here: learn it now, so that the
      // retry does not pick it again (each retry would conflict on it the same way).
      for (const r of error.reservations) {
        const before = this.#reservations.ofHost(r.host6);
        const other = this.#reservations.ofKey(leaseKey(r.ipv4, r.psid));
        if (other && other.host6 !== r.host6) this.#reservations.delete(other.host6);
        this.#reservations.set(r);
        if (before) this.#settleSlot(before.ipv4, before.psid);
        this.#settleSlot(r.ipv4, r.psid);
      }
      for (const key of error.missing) {
        const before = this.#rows.get(key);
        if (!before) continue;
        this.#setRow(key, undefined);
        this.#tellAbsorbed(before, undefined);
      }
      this.#reclaimPending = true;
      return; // not a store failure: the shared store decided (counted by conflicts())
    }
    try {
      this.#onStoreError?.(error);
    } catch {
      // a failing logger must not turn a store-failed answer into a rejection
    }
  }

  /**
   * Replaces the row of `key` and keeps every index in step: host maps, expiry queue, orphan
   * count, address blocking and the slot's state (which reads the new row).
   */
  #setRow(key: number, next: Lease | undefined, loaded = false): void {
    const old = this.#rows.get(key);
    const row = next ?? old;
    if (!row) return;
    const ps = this.#locate(row.ipv4, row.portSet.psid);
    const slot = this.#slot;
    const usable = ps !== undefined && slot >= 0 && ps.state[slot] !== OFF;
    if (old) {
      const holder = leaseHolder(old);
      if (old.state === "active") {
        this.#caps.add(old.host6, -1);
        if (this.#activeByHost.get(holder) === key) this.#activeByHost.delete(holder);
      } else if (this.#historyByHost.get(holder) === key) {
        this.#historyByHost.delete(holder);
      }
      if (!usable || (old.state === "active" && !ps.matches(old))) this.#orphans--;
    }
    // The holder indexes check their entries against the table: out before, in after.
    if (next && loaded) this.#rows.load(key, next);
    else if (next) this.#rows.set(key, next);
    else this.#rows.delete(key);
    if (next) {
      if (next.state === "active") {
        this.#caps.add(next.host6, 1);
        this.#activeByHost.set(leaseHolder(next), key);
        this.#expiry.push(this.#clock.deadlineOf(next, loaded), key);
        if (this.#expiry.size > 2 * this.#activeByHost.size + 1024) this.#compactExpiry();
      } else if (usable) {
        this.#remember(key, next);
      }
      if (!usable || (next.state === "active" && !ps.matches(next))) this.#orphans++;
    }
    if (!ps) return;
    const wasBlocking = old?.state === "active" && !ps.matches(old);
    const blocks = next?.state === "active" && !ps.matches(next);
    if (blocks && !wasBlocking) ps.block(this.#address);
    else if (wasBlocking && !blocks) ps.unblock(this.#address);
    if (usable) ps.settle(slot, key, next);
  }

  /**
   * `row` with the strings its pool already holds (TEP, pool name) and a literal state: the
   * row itself when its TEP and pool name are the pool's (a store shares each value's string
   * among the rows it loads: lib/lease/lease.ts stringInterner), else a copy. About 100 bytes
   * less per lease, a million times over.
   */
  #shareStrings(row: Lease): Lease {
    const ps = this.#locate(row.ipv4, row.portSet.psid);
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
    const row = this.#rows.get(key);
    return row !== undefined && (row.state === "active") === active ? leaseHolder(row) : undefined;
  }

  /** Makes a freed row its holder's sticky slot unless the holder has a newer one. */
  #remember(key: number, row: Lease): void {
    const holder = leaseHolder(row);
    const newest = this.#historyByHost.get(holder);
    const current = newest === undefined ? undefined : this.#rows.get(newest);
    if (!current || current.state === "active" || current.expiresAt <= row.expiresAt) {
      this.#historyByHost.set(holder, key);
    }
  }

  /**
   * The pool whose prefixes contain `ipv4` (usable or not), with the address index in
   * #address and the slot of (`ipv4`, `psid`) in #slot (−1 when the PSID is beyond the share).
   */
  #locate(ipv4: number, psid: number): PoolSlots | undefined {
    for (const ps of this.#pools) {
      const index = ps.pool.addressIndexOf(ipv4);
      if (index < 0) continue;
      const share = ps.pool.sharing.share;
      this.#address = index;
      this.#slot = psid < share ? index * share + psid : -1;
      return ps;
    }
    this.#address = -1;
    this.#slot = -1;
    return undefined;
  }

  /** The pool serving an active row (its slot is usable and ACTIVE under it), if any. */
  #served(row: Lease): PoolSlots | undefined {
    const ps = this.#locate(row.ipv4, row.portSet.psid);
    return ps && this.#slot >= 0 && ps.state[this.#slot] === ACTIVE ? ps : undefined;
  }

  /** The pool serving an active row, if it also serves `scope` (its link). */
  #servedIn(row: Lease, scope: ClientScope | undefined): PoolSlots | undefined {
    const ps = this.#served(row);
    return ps && poolServes(ps.pool.name, scope) ? ps : undefined;
  }

  /**
   * A never-used slot of the first pool (serving `scope`) that has one, else the longest-free
   * slot (in #slot).
   */
  #pickFresh(scope?: ClientScope): PoolSlots | undefined {
    for (const ps of this.#pools) {
      if (!poolServes(ps.pool.name, scope)) continue;
      const slot = this.#shared
        ? ps.takeNeverNear(Math.floor(Math.random() * ps.state.length))
        : ps.takeNever();
      if (slot >= 0) {
        this.#slot = slot;
        return ps;
      }
    }
    for (const ps of this.#pools) {
      if (ps.head >= 0 && poolServes(ps.pool.name, scope)) {
        this.#slot = ps.head;
        return ps;
      }
    }
    return undefined;
  }

  #compactExpiry(): void {
    this.#expiry.retain((time, key) => {
      const row = this.#rows.get(key);
      return row?.state === "active" && this.#isDeadline(key, row, time);
    });
  }

  /**
   * `prefix-limit` (`site-limit`) when the host's prefix (site prefix) already holds
   * maxLeasesPerPrefix (maxLeasesPerSite) leases, not counting the `held` lease(s) of the host
   * that the new one replaces; else undefined (./prefix_caps.ts).
   */
  #overPrefixLimit(host6: string, held: number): Promise<EngineResult> | undefined {
    const over = this.#caps.over(host6, held);
    return over ? _fail(over.reason, over.message) : undefined;
  }
}
