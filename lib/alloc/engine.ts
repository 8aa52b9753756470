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
 * The parts, each in its own file: the memory (rows, holder indexes, expiry queue, slot
 * states: ./lease_index.ts), the write path (memory → store, rollback, conflicts with other
 * servers: ./lease_writer.ts), DISCOVER and REQUEST (./allocator.ts), RELEASE, DECLINE and a
 * withdrawn offer (./release_paths.ts), expiry (./reclamation.ts) and administration
 * (./engine_admin.ts). This class puts them together, loads and reloads, and is what the
 * rest of dstm calls.
 *
 * @module
 */
import type { Lease, LeaseState, LeaseStore, Reservation } from "../lease/lease.ts";
import type { AdminResult, SlotView } from "./admin.ts";
import { Allocator, type DiscoverOptions } from "./allocator.ts";
import { type ClientScope, holderOf } from "./client_scope.ts";
import { EngineAdmin } from "./engine_admin.ts";
import type {
  EngineOptions,
  EngineResult,
  ExpiredLeases,
  PoolConfig,
  PoolStats,
} from "./engine_types.ts";
import { LeaseClock } from "./lease_clock.ts";
import { LeaseIndex } from "./lease_index.ts";
import { LeaseWriter } from "./lease_writer.ts";
import { type Pool, PoolConfigError } from "./pool.ts";
import { Reclamation } from "./reclamation.ts";
import { ReleasePaths } from "./release_paths.ts";

export type { DiscoverOptions } from "./allocator.ts";
export { declinedHost, isDeclinedHost } from "./engine_rows.ts";
// The types and constants of the engine's configuration and results (all of engine_types.ts).
export * from "./engine_types.ts";

/** Decides and persists leases. Call {@link start} before anything else. */
export class AllocationEngine {
  readonly #store: LeaseStore;
  /** The store is shared by several servers (docs/scale-out.md): conflicts are retried. */
  readonly #shared: boolean;
  readonly #index: LeaseIndex;
  readonly #writer: LeaseWriter;
  readonly #allocator: Allocator;
  readonly #releases: ReleasePaths;
  readonly #reclamation: Reclamation;
  readonly #admin: EngineAdmin;
  #unwatch: (() => Promise<void>) | undefined;
  /** Shared store: each holder's last decision not yet answered ({@link #decide}). */
  readonly #deciding = new Map<string, Promise<EngineResult>>();
  /** Shared store with a clock: the database's wall clock − `opts.now` (ms), from start(). */
  #storeClockOffset = 0;
  readonly #base: () => number;
  readonly #clock: LeaseClock;
  readonly #onStoreClock: ((offsetMs: number) => void) | undefined;

  /** Validates the pools (each, and that no two overlap); throws {@link PoolConfigError}. */
  constructor(opts: EngineOptions) {
    if (opts.pools.length === 0) throw new PoolConfigError("no pool configured");
    if (!(opts.leaseTime >= 1)) throw new RangeError("lease time must be at least 1 second");
    const max = opts.maxLeaseTime ?? opts.leaseTime;
    if (!(max >= opts.leaseTime)) {
      throw new RangeError("max lease time must not be below lease time");
    }
    const base = opts.now ?? Date.now;
    // Shared store: the database's clock, set by start() (0 until then, and for other stores).
    const now = () => base() + this.#storeClockOffset;
    const clock = new LeaseClock({
      now,
      monotonic: opts.monotonic ?? opts.now ?? (() => performance.now()),
      stepMs: opts.clockStepMs,
      onStep: opts.onClockStep,
    });
    this.#base = base;
    this.#clock = clock;
    this.#onStoreClock = opts.onStoreClock;
    this.#store = opts.store;
    this.#shared = opts.store.shared === true;
    this.#index = new LeaseIndex(opts, clock, this.#shared);
    this.#writer = new LeaseWriter(this.#index, opts.store, {
      onStoreError: opts.onStoreError,
      onStoreRefused: opts.onStoreRefused,
      onStoreRecovered: opts.onStoreRecovered,
      onAbsorb: opts.onAbsorb,
      onConflict: () => this.#reclamation.markPending(),
    });
    const reclaimNow = opts.reclaimNow;
    this.#allocator = new Allocator(this.#index, this.#writer, now, opts.leaseTime, max);
    this.#allocator.onEnded = opts.onEnded;
    if (reclaimNow) {
      this.#allocator.whenExhausted = (retry, exhausted) => {
        if (!this.#reclamation.hasDue()) return undefined;
        const conflicts = this.#writer.conflicts;
        const lapsed = this.#writer.lapsed;
        return reclaimNow().then((freed) => {
          if (freed > 0) return retry();
          // Shared store: the slice freed nothing because another server's write won — its
          // batch failed on a conflict (the slice's expiries rolled back with it) or its
          // expiries had been done there. Due leases may be free now: decided again as any
          // write another server won (LeaseWriter.retry: bounded, with jitter), not refused.
          if (this.#writer.conflicts > conflicts || this.#writer.lapsed > lapsed)
            return this.#writer.conflicted(exhausted);
          return exhausted;
        });
      };
    }
    this.#releases = new ReleasePaths(this.#index, this.#writer, now);
    this.#reclamation = new Reclamation(
      this.#index,
      this.#writer,
      now,
      opts.reclaimMaxLeases,
      opts.reclaimMaxMs,
    );
    this.#admin = new EngineAdmin(this.#index, this.#writer, opts.store, now);
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
    const pools = this.#index.buildPools(next.pools);
    const max = next.maxLeaseTime ?? next.leaseTime;
    if (!(next.leaseTime >= 1) || !(max >= next.leaseTime))
      throw new RangeError("lease time must be at least 1 second and at most the max lease time");
    const caps = this.#index.buildCaps(next.maxLeasesPerPrefix, next.maxLeasesPerSite);
    // From here on nothing throws: swap and re-index in one step.
    this.#allocator.setLeaseTimes(next.leaseTime, max);
    return this.#index.reindex(pools, caps);
  }

  /** Loads every row of the store and builds the index. Rows the pools do not serve are kept, not served. */
  async start(): Promise<void> {
    if (this.#writer.started) throw new Error("AllocationEngine.start() called twice");
    if (this.#shared && this.#store.clockMs) await this.#takeStoreClock(this.#store.clockMs);
    const writer = this.#writer;
    // Shared store: follow the other servers' changes from before the load on (rows changed
    // meanwhile come again, as they are now), taking them in once the load is in.
    let early: Lease[] | undefined = [];
    if (this.#shared && this.#store.watch) {
      this.#unwatch = this.#store.watch((rows) => {
        if (early) early.push(...rows);
        else writer.absorb(rows);
      });
    }
    const index = this.#index;
    // Shared store: the other servers' reservations as they change (./reservations.ts).
    if (this.#shared && this.#store.watchReservations) {
      const unwatch = this.#store.watchReservations((all) => {
        for (const r of index.reservations.replace(all)) index.settleSlot(r.ipv4, r.psid);
      });
      const unwatchRows = this.#unwatch;
      this.#unwatch = async () => {
        await unwatchRows?.();
        await unwatch();
      };
    }
    for (const r of (await this.#store.loadReservations?.()) ?? []) index.reservations.set(r);
    index.load(await this.#store.loadAll());
    writer.started = true;
    const backlog = early;
    early = undefined;
    writer.absorb(backlog);
  }

  /**
   * Servers sharing a store read each other's stored wall-clock times (`expiresAt`): with
   * clocks that disagree, one whose clock runs ahead reclaims the other's leases that much
   * early (the address goes to another host while the first still holds it), and its own
   * grants look longer to the others. So all take the database's clock: this engine's wall
   * clock becomes `opts.now` + (database − `opts.now`), measured once here, at the middle of
   * the query's round trip (its error is half the round trip). Deadlines already run on the
   * monotonic clock (./lease_clock.ts) and are not moved.
   */
  async #takeStoreClock(clockMs: () => Promise<number>): Promise<void> {
    const before = this.#base();
    const db = await clockMs.call(this.#store);
    const after = this.#base();
    if (!Number.isFinite(db)) return;
    this.#storeClockOffset = Math.round(db - (before + after) / 2);
    this.#clock.rebase();
    this.#onStoreClock?.(this.#storeClockOffset);
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
  discover(host6: string, opts?: DiscoverOptions): Promise<EngineResult> {
    if (this.#shared) {
      return this.#decide(holderOf(host6, opts), () => this.#allocator.discover(host6, opts));
    }
    return this.#allocator.discover(host6, opts);
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
    if (this.#shared) {
      return this.#decide(holderOf(host6, opts), () => this.#allocator.request(host6, ipv4, opts));
    }
    return this.#allocator.request(host6, ipv4, opts);
  }

  /**
   * The host declined our offer (RFC 2131 §4.3.2: its REQUEST names another server): frees the
   * host's lease if it is an offer never committed; a committed lease is left alone
   * (`no-such-lease`), since anyone can send such a REQUEST from the host's address.
   */
  withdrawOffer(host6: string, scope?: ClientScope): Promise<EngineResult> {
    if (this.#shared) {
      return this.#decide(holderOf(host6, scope), () => this.#releases.withdrawOffer(host6, scope));
    }
    return this.#releases.withdrawOffer(host6, scope);
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
    return this.#releases.decline(host6, ipv4, probationSeconds, scope);
  }

  /** DSTM_RELEASE: the host gives back its active lease on `ipv4`. Never frees another host's lease. */
  release(host6: string, ipv4: number, scope?: ClientScope): Promise<EngineResult> {
    if (this.#shared) {
      return this.#decide(holderOf(host6, scope), () => this.#releases.release(host6, ipv4, scope));
    }
    return this.#releases.release(host6, ipv4, scope);
  }

  /**
   * Shared store: `decide` for `holder`, retried while another server wins its writes
   * ({@link LeaseWriter.retry}), after the holder's decisions already under way here have
   * been answered. Between two tries of a decision the holder has nothing in this engine's
   * view (its write was undone), so a second one decided then (a retransmitted DISCOVER)
   * would find the pool full — the slots held by this engine's writes still on their way,
   * some of which may fail too — and answer `pool-exhausted` while the first, tried again once
   * those failed, took a freed slot: the host told the pool is exhausted, and the address
   * stored for it (test/alloc_shared.test.ts). One after the other, the second sees the
   * first's lease, or the pool the first found full, and answers alike. DECLINE is not
   * retried, so not queued.
   */
  #decide(holder: string, decide: () => Promise<EngineResult>): Promise<EngineResult> {
    const before = this.#deciding.get(holder);
    const run = (): Promise<EngineResult> => this.#writer.retry(decide);
    const result = before ? before.then(run, run) : run();
    this.#deciding.set(holder, result);
    const done = (): void => {
      if (this.#deciding.get(holder) === result) this.#deciding.delete(holder);
    };
    result.then(done, done);
    return result;
  }

  /** True when `lease` is the host's current lease and was made by an offer not yet committed. */
  isOffer(lease: Lease | undefined): boolean {
    return lease !== undefined && this.#index.offers.has(lease);
  }

  /** Lease time a REQUEST asking for `requested` seconds (or none) is granted (s). */
  grantSeconds(requested?: number): number {
    return Math.round(this.#allocator.leaseMs(requested) / 1000);
  }

  /**
   * Time left (ms) of an active lease this engine returned, on the monotonic clock (so a
   * wall-clock step does not change it); for other leases `expiresAt` − now.
   */
  remainingMs(lease: Lease): number {
    return this.#index.remainingMs(lease);
  }

  /**
   * Takes in rows the store holds now (written by another server, or by this one): each
   * replaces the row of its key in memory, unless this engine has a change of that key not
   * yet durable (its write then succeeds, or fails and brings the stored row back).
   */
  absorb(rows: readonly Lease[]): void {
    this.#writer.absorb(rows);
  }

  /** Whether the store is shared by several servers (PostgreSQL: docs/scale-out.md). */
  get shared(): boolean {
    return this.#shared;
  }

  /**
   * Shared store: resolves once the rows other servers committed before the call are taken in
   * ({@link absorb}: the `onAbsorb` hook has seen them); at once for a store that is not shared
   * or cannot say. Never rejects.
   */
  caughtUp(): Promise<void> {
    if (!this.#shared || !this.#store.caughtUp) return Promise.resolve();
    return this.#store.caughtUp();
  }

  /**
   * Shared store: a version every change up to which is in this engine's memory and has been
   * told to its callers (the rows the store's watch gave so far, lib/lease/lease.ts
   * `watchedThrough`, but below any write of this engine whose result is still on its way:
   * lib/lease/group_commit.ts `watchedThrough`); undefined otherwise. A snapshot cut now
   * carries it (docs/protocol.md, "Generations").
   */
  watchedThrough(): number | undefined {
    return this.#shared ? this.#writer.watchedThrough() : undefined;
  }

  /** Writes another server won so far (each made this engine take the stored rows and decide again). */
  conflicts(): number {
    return this.#writer.conflicts;
  }

  /**
   * Expiries the sweeper left to another server sharing the store so far: that server had
   * expired (or renewed) the lease first, so the store skipped this one's write (not a
   * conflict: nothing else in its batch failed; the lease counts as expired there).
   */
  expiriesLapsed(): number {
    return this.#writer.lapsed;
  }

  /**
   * Marks active leases whose time is up expired (durably) and returns them: at most
   * `reclaimMaxLeases` of them, and it stops picking once `reclaimMaxMs` have passed, so that
   * a crowd of overdue leases (a restart after a downtime longer than the lease time) never
   * holds up the answers; {@link reclaimPending} then says more are due, and the caller sweeps
   * again after letting other work run (lib/alloc/reclaimer.ts). Each slice is one store write.
   * On a shared store the leases another server expired (or renewed) first are not returned:
   * each expiry is returned by exactly one server ({@link expiriesLapsed} counts the others).
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
    return this.#reclamation.sweep().then((expired) => expired.leases);
  }

  /**
   * {@link sweep}, with the generation of each expiry (a shared store: {@link ExpiredLeases}),
   * which the UNBINDs of the expired leases carry (docs/protocol.md, "Generations").
   */
  reclaim(): Promise<ExpiredLeases> {
    return this.#reclamation.sweep();
  }

  /**
   * True when the last {@link sweep} stopped at its count or time limit with due leases left:
   * sweep again soon (after letting pending answers go out), not at the next interval.
   */
  get reclaimPending(): boolean {
    return this.#reclamation.pending;
  }

  /** The stored expiry (wall clock, ms) of the active lease the sweeper expires next, or null. */
  nextExpiry(): number | null {
    return this.#reclamation.nextExpiry();
  }

  /** A snapshot of the lease table in key order, optionally of one state. */
  leases(filter?: { state?: LeaseState }): Lease[] {
    return this.#index.leases(filter?.state);
  }

  /** The active lease of the host (or, with `scope.identity`, of that 4o6 client, wherever it is). */
  lookupHost(host6: string, scope?: ClientScope): Lease | undefined {
    return this.#index.lookupHost(host6, scope);
  }

  /** Per pool, in slots: usable, active, free to hand out; plus usable addresses and the share. */
  stats(): PoolStats[] {
    return this.#index.stats();
  }

  /** The validated pools, in config order (their sharing, for logs). */
  pools(): readonly Pool[] {
    return this.#index.pools.map((p) => p.pool);
  }

  /**
   * Rows kept but not served: their slot is in no pool or not usable (excluded, a PSID with
   * well-known ports, a PSID beyond the share), or they are active with another port-set
   * layout than their pool's (left by an earlier configuration).
   */
  orphans(): number {
    return this.#index.orphans;
  }

  /**
   * Rows stepped over so far by insertions into the free lists (each freed slot goes to its
   * place in (time freed, key) order, walking from the tail): a cost counter for tests and
   * benchmarks, linear in the slots freed when they are freed in order.
   */
  freeListSteps(): number {
    let steps = 0;
    for (const ps of this.#index.pools) steps += ps.walked;
    return steps;
  }

  /** Store writes so far and the ops they carried (ops/batches is the group-commit factor). */
  writeStats(): { readonly batches: number; readonly ops: number } {
    return this.#writer.stats;
  }

  /** Refuses new calls and waits until every change made so far is settled. Does not close the store. */
  async close(): Promise<void> {
    this.#writer.closed = true;
    await this.#unwatch?.();
    await this.#writer.flush();
  }

  // ── administration (./engine_admin.ts, ./admin.ts, lib/server/lease_admin.ts) ────────────

  /** Every row, live and in no particular order (a row changed meanwhile is seen as it is then). */
  rows(): IterableIterator<Lease> {
    return this.#index.rows.values();
  }

  /** The rows whose key (`leaseKey`) is greater than `after`, live, in ascending key order (a `lease ls` page). */
  rowsAfter(after: number): IterableIterator<Lease> {
    return this.#index.rows.valuesAfter(after);
  }

  /** Where (`ipv4`, `psid`) lies: its pool and slot state, its row, its reservation; undefined: in no pool. */
  slotView(ipv4: number, psid: number): SlotView | undefined {
    return this.#admin.slotView(ipv4, psid);
  }

  /** Every reservation, in key order. */
  reservations(): Reservation[] {
    return this.#index.reservations.list();
  }

  /** The host's reservation. */
  reservationOf(host6: string): Reservation | undefined {
    return this.#index.reservations.ofHost(host6);
  }

  /**
   * An administrator ends these active leases now (Kea's lease4-del), in one durable batch;
   * their hosts' INIT-REBOOT REQUEST is then refused. Resolves with the leases ended (as they
   * were); see {@link EngineAdmin.endLeases}.
   */
  endLeases(keys: readonly number[]): Promise<AdminResult<Lease[]>> {
    return this.#admin.endLeases(keys);
  }

  /**
   * An administrator gives `host6` the slot (`ipv4`, `psid`) for `seconds` (s) from now (Kea's
   * lease4-add); refused (`not-in-pool`, `in-use`) as {@link EngineAdmin.grant} says.
   */
  grant(host6: string, ipv4: number, psid: number, seconds: number): Promise<AdminResult<Lease>> {
    return this.#admin.grant(host6, ipv4, psid, seconds);
  }

  /** Reserves a slot for a host, durably (Kea's host reservation): {@link EngineAdmin.reserve}. */
  reserve(reservation: Reservation): Promise<AdminResult<Reservation>> {
    return this.#admin.reserve(reservation);
  }

  /** Removes the host's reservation (durable before it resolves); its lease, if any, stays. */
  unreserve(host6: string): Promise<AdminResult<Reservation>> {
    return this.#admin.unreserve(host6);
  }
}
