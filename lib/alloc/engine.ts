/**
 * The allocation engine: which host gets which IPv4 address, for how long.
 *
 * The engine keeps the lease table in memory and decides every DISCOVER, REQUEST, RELEASE
 * and expiry synchronously, before its first await: two concurrent requests can never both
 * see one address as free. Each decision changes the memory index at once and goes to the
 * {@link LeaseStore} through a {@link GroupCommitter}; the caller's promise resolves only
 * once the change is durable. If the write fails, every change not yet durable is undone
 * (and the batch gathering behind it dropped, since it was decided on top of the failed
 * one), so memory again equals the store, and the callers get `store-failed`.
 *
 * Address choice for a DISCOVER (pools in config order):
 * 1. the host's active lease (renewed: a retransmitted DISCOVER gets the same answer);
 * 2. the host's previous address, if still free ("sticky", like a DHCP server);
 * 3. the client's hint, if it is in a pool and free;
 * 4. a never-used address (a cursor over the slot states), then the released or expired
 *    address freed longest ago (a list ordered by time freed), so the sticky addresses of
 *    other hosts last as long as possible.
 *
 * Whole addresses only for now (`portSet` WHOLE_ADDRESS); the index is keyed by lease key
 * so that port sets (several keys per address) fit later.
 *
 * @module
 */
import { GroupCommitter } from "../lease/group_commit.ts";
import {
  type Lease,
  type LeaseOp,
  type LeaseState,
  type LeaseStore,
  leaseKey,
  WHOLE_ADDRESS,
} from "../lease/lease.ts";
import { canonicalIPv6, formatIPv4 } from "../net/addr.ts";
import { Pool, PoolConfigError, poolsOverlap } from "./pool.ts";

/** One pool of the server configuration and the TEP its leases use. */
export interface PoolConfig {
  name?: string;
  prefixes: string[];
  exclude?: string[];
  /** TEP IPv6 address (any spelling; stored canonical). */
  tep6: string;
  /** TEP IPv4 address, 0 or absent when the TEP has none. */
  tep4?: number;
}

export interface EngineOptions {
  pools: PoolConfig[];
  store: LeaseStore;
  /** Lease time granted when the client asks for none (seconds). */
  leaseTime: number;
  /** Longest lease a client may ask for (seconds); default `leaseTime`. */
  maxLeaseTime?: number;
  /** Clock in ms since the epoch; default `Date.now`. */
  now?: () => number;
  /** Told about every failed store write (the callers get `store-failed`), e.g. to log it. */
  onStoreError?: (error: unknown) => void;
}

export type EngineOutcome = "allocated" | "renewed" | "reused" | "released";
export type EngineFailure = "pool-exhausted" | "no-such-lease" | "address-in-use" | "store-failed";
export type EngineResult =
  | { ok: true; lease: Lease; outcome: EngineOutcome }
  | { ok: false; reason: EngineFailure; message: string };

/** Per-slot state of a pool address (Uint8Array values). */
const NEVER = 0; // usable, no row: never handed out
const ACTIVE = 1; // an active whole-address lease
const FREE = 2; // a released or expired row: on the free list
const OFF = 3; // network/broadcast/excluded, or taken by a row the engine does not serve

class _PoolState {
  readonly state: Uint8Array;
  readonly next: Int32Array;
  readonly prev: Int32Array;
  head = -1;
  tail = -1;
  cursor = 0;
  active = 0;
  blocked = 0;
  constructor(
    readonly pool: Pool,
    readonly tep6: string,
    readonly tep4: number,
  ) {
    const n = pool.slotCount;
    this.state = new Uint8Array(n);
    for (let slot = 0; slot < n; slot++) if (!pool.isUsable(slot)) this.state[slot] = OFF;
    this.next = new Int32Array(n);
    this.prev = new Int32Array(n);
  }
}

/** Decides and persists leases. Call {@link start} before anything else. */
export class AllocationEngine {
  readonly #pools: _PoolState[];
  readonly #store: LeaseStore;
  readonly #committer: GroupCommitter;
  readonly #leaseTime: number;
  readonly #maxLeaseTime: number;
  readonly #now: () => number;
  readonly #onStoreError: ((error: unknown) => void) | undefined;
  /** Every row of the store, by lease key (plus changes not yet durable). */
  readonly #rows = new Map<number, Lease>();
  readonly #activeByHost = new Map<string, number>();
  /** host6 → key of the host's most recently freed row (for sticky re-allocation). */
  readonly #historyByHost = new Map<string, number>();
  /** Keys with changes not yet durable → their durable row (undefined: none). */
  readonly #inflight = new Map<number, Lease | undefined>();
  readonly #expiry = new _ExpiryHeap();
  #orphans = 0;
  /** Bumped by every rollback; callbacks of older changes then know they were undone. */
  #epoch = 0;
  #started = false;
  #closed = false;
  /** Slot found by the last #locate / #pickFresh (saves allocating a pair). */
  #slot = -1;

  /** Validates the pools (each, and that no two overlap); throws {@link PoolConfigError}. */
  constructor(opts: EngineOptions) {
    if (opts.pools.length === 0) throw new PoolConfigError("no pool configured");
    if (!(opts.leaseTime >= 1)) throw new RangeError("lease time must be at least 1 second");
    const max = opts.maxLeaseTime ?? opts.leaseTime;
    if (!(max >= opts.leaseTime)) {
      throw new RangeError("max lease time must not be below lease time");
    }
    const names = new Set<string>();
    this.#pools = opts.pools.map((config) => {
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
      return new _PoolState(pool, tep6, tep4);
    });
    const overlap = poolsOverlap(this.#pools.map((p) => p.pool));
    if (overlap) throw new PoolConfigError(overlap.message);
    this.#store = opts.store;
    this.#committer = new GroupCommitter(opts.store);
    this.#leaseTime = opts.leaseTime;
    this.#maxLeaseTime = max;
    this.#now = opts.now ?? Date.now;
    this.#onStoreError = opts.onStoreError;
  }

  /** Loads every row of the store and builds the index. Rows outside every pool are kept, not served. */
  async start(): Promise<void> {
    if (this.#started) throw new Error("AllocationEngine.start() called twice");
    const rows = await this.#store.loadAll();
    // Freed rows oldest first, so each lands at the tail of its pool's free list.
    const order = rows.slice().sort((a, b) => a.expiresAt - b.expiresAt || _key(a) - _key(b));
    for (const row of order) {
      this.#rows.set(_key(row), row);
      this.#index(_key(row), row);
    }
    this.#started = true;
  }

  /** DSTM_DISCOVER: the host's lease, renewed, or a new one. */
  discover(host6: string, opts?: { hint?: number; leaseTime?: number }): Promise<EngineResult> {
    const refused = this.#refuse();
    if (refused) return refused;
    const now = this.#now();
    const expiresAt = now + this.#leaseMs(opts?.leaseTime);
    let endKey = -1;
    let end: Lease | undefined;
    const activeKey = this.#activeByHost.get(host6);
    if (activeKey !== undefined) {
      const row = this.#rows.get(activeKey) as Lease;
      const ps = row.portSet.psidLength === 0 ? this.#locate(row.ipv4) : undefined;
      if (ps) {
        const renewed = _lease(row.ipv4, host6, ps, "active", now, expiresAt);
        return this.#apply(activeKey, renewed, "renewed");
      }
      // Its address left the pools: end that lease in the same write as the new one.
      endKey = activeKey;
      end = _copy(row, "expired", now);
    }
    let ps: _PoolState | undefined;
    let outcome: EngineOutcome = "allocated";
    const previous = this.#historyByHost.get(host6);
    if (previous !== undefined) {
      const row = this.#rows.get(previous);
      const candidate = row && row.state !== "active" ? this.#locate(row.ipv4) : undefined;
      if (candidate && candidate.state[this.#slot] === FREE) {
        ps = candidate;
        outcome = "reused";
      }
    }
    const hint = opts?.hint;
    if (!ps && hint !== undefined && _isIPv4(hint)) {
      const candidate = this.#locate(hint);
      const state = candidate?.state[this.#slot];
      if (state === NEVER || state === FREE) ps = candidate;
    }
    if (!ps) ps = this.#pickFresh();
    if (!ps) return _fail("pool-exhausted", "no free IPv4 address in any pool");
    const ipv4 = ps.pool.addressOf(this.#slot);
    const lease = _lease(ipv4, host6, ps, "active", now, expiresAt);
    if (end === undefined) return this.#apply(leaseKey(ipv4, 0), lease, outcome);
    return this.#apply2(endKey, end, leaseKey(ipv4, 0), lease, outcome);
  }

  /** DSTM_REQUEST: renew the host's lease on `ipv4`, or grant `ipv4` if it is free (INIT-REBOOT). */
  request(host6: string, ipv4: number, opts?: { leaseTime?: number }): Promise<EngineResult> {
    const refused = this.#refuse();
    if (refused) return refused;
    const ps = _isIPv4(ipv4) ? this.#locate(ipv4) : undefined;
    const key = ps ? leaseKey(ipv4, 0) : -1;
    const state = ps ? ps.state[this.#slot] : OFF;
    const activeKey = this.#activeByHost.get(host6);
    if (!ps) {
      return _fail("no-such-lease", `${_text(ipv4)} is in no pool of this server; send DISCOVER`);
    }
    if (activeKey !== undefined && (activeKey !== key || state !== ACTIVE)) {
      const held = formatIPv4((this.#rows.get(activeKey) as Lease).ipv4);
      return _fail(
        "no-such-lease",
        `host ${host6} holds ${held}, not ${_text(ipv4)}; renew that one or release it`,
      );
    }
    if (activeKey === undefined && (state === ACTIVE || state === OFF)) {
      return _fail("address-in-use", `${formatIPv4(ipv4)} is leased to another host`);
    }
    const now = this.#now();
    const lease = _lease(ipv4, host6, ps, "active", now, now + this.#leaseMs(opts?.leaseTime));
    return this.#apply(key, lease, activeKey === undefined ? "reused" : "renewed");
  }

  /** DSTM_RELEASE: the host gives back its active lease on `ipv4`. Never frees another host's lease. */
  release(host6: string, ipv4: number): Promise<EngineResult> {
    const refused = this.#refuse();
    if (refused) return refused;
    const key = _isIPv4(ipv4) ? leaseKey(ipv4, 0) : -1;
    const row = this.#rows.get(key);
    if (row?.state !== "active" || row.host6 !== host6) {
      return _fail("no-such-lease", `host ${host6} holds no active lease on ${_text(ipv4)}`);
    }
    return this.#apply(key, _copy(row, "released", this.#now()), "released");
  }

  /** Marks every active lease with expiresAt ≤ now expired (durably) and returns them. */
  sweep(): Promise<Lease[]> {
    if (!this.#started || this.#closed) return Promise.resolve([]);
    const now = this.#now();
    const ops: LeaseOp[] = [];
    const keys: number[] = [];
    const expired: Lease[] = [];
    const heap = this.#expiry;
    while (heap.size > 0 && heap.topTime() <= now) {
      const key = heap.topKey();
      const due = heap.topTime();
      heap.pop();
      const row = this.#rows.get(key);
      if (row?.state !== "active" || row.expiresAt !== due) continue; // renewed or freed since
      const lease = _copy(row, "expired", now);
      this.#change(key, lease);
      ops.push({ op: "put", lease });
      keys.push(key);
      expired.push(lease);
    }
    if (ops.length === 0) return Promise.resolve([]);
    return this.#persist(ops, keys, expired, expired, (): Lease[] => []);
  }

  /** Earliest expiry among active leases (ms), or null: when the sweeper should next run. */
  nextExpiry(): number | null {
    const heap = this.#expiry;
    while (heap.size > 0) {
      const row = this.#rows.get(heap.topKey());
      if (row?.state === "active" && row.expiresAt === heap.topTime()) return row.expiresAt;
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

  /** The host's active lease. */
  lookupHost(host6: string): Lease | undefined {
    const key = this.#activeByHost.get(host6);
    return key === undefined ? undefined : this.#rows.get(key);
  }

  /** Per pool: usable addresses, active leases, addresses free to hand out. */
  stats(): { pool: string; size: number; active: number; free: number }[] {
    return this.#pools.map((p) => ({
      pool: p.pool.name,
      size: p.pool.size,
      active: p.active,
      free: p.pool.size - p.active - p.blocked,
    }));
  }

  /** Rows kept but not served: their address is in no pool (or is a shared-address lease). */
  orphans(): number {
    return this.#orphans;
  }

  /** Store writes so far and the ops they carried (ops/batches is the group-commit factor). */
  writeStats(): { readonly batches: number; readonly ops: number } {
    return this.#committer.stats;
  }

  /** Refuses new calls and waits until every change made so far is settled. Does not close the store. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#committer.flush();
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
    return this.#committer.submit([{ op: "put", lease }]).then(
      (): EngineResult => {
        this.#durable(key, lease);
        return { ok: true, lease, outcome };
      },
      (error: unknown) => this.#failed(epoch, error),
    );
  }

  #apply2(
    endKey: number,
    end: Lease,
    key: number,
    lease: Lease,
    outcome: EngineOutcome,
  ): Promise<EngineResult> {
    this.#change(endKey, end);
    this.#change(key, lease);
    const ops: LeaseOp[] = [
      { op: "put", lease: end },
      { op: "put", lease },
    ];
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
    if (this.#rows.get(key) === lease) this.#inflight.delete(key);
    else this.#inflight.set(key, lease);
  }

  #failed(epoch: number, error: unknown): EngineResult {
    this.#rollback(epoch, error);
    const message = `lease store write failed: ${error instanceof Error ? error.message : String(error)}`;
    return { ok: false, reason: "store-failed", message };
  }

  /** Undoes every change not yet durable, once per failure (the first failed callback does it). */
  #rollback(epoch: number, error: unknown): void {
    if (epoch !== this.#epoch) return;
    this.#epoch++;
    this.#committer.abortPending(error);
    for (const [key, durable] of this.#inflight) this.#setRow(key, durable);
    this.#inflight.clear();
    try {
      this.#onStoreError?.(error);
    } catch {
      // a failing logger must not turn a store-failed answer into a rejection
    }
  }

  /** Replaces the row of `key` and keeps every index in step. */
  #setRow(key: number, next: Lease | undefined): void {
    const old = this.#rows.get(key);
    if (old) this.#unindex(key, old);
    if (next) {
      this.#rows.set(key, next);
      this.#index(key, next);
      return;
    }
    this.#rows.delete(key);
    if (old?.portSet.psidLength !== 0) return;
    const ps = this.#locate(old.ipv4);
    if (ps && ps.state[this.#slot] !== OFF) {
      ps.state[this.#slot] = NEVER;
      if (this.#slot < ps.cursor) ps.cursor = this.#slot;
    }
  }

  #index(key: number, row: Lease): void {
    const active = row.state === "active";
    if (active) {
      this.#activeByHost.set(row.host6, key);
      this.#expiry.push(row.expiresAt, key);
      if (this.#expiry.size > 2 * this.#activeByHost.size + 1024) this.#compactExpiry();
    }
    const ps = this.#locate(row.ipv4);
    const slot = this.#slot;
    if (!ps || row.portSet.psidLength !== 0) {
      this.#orphans++;
      if (ps && ps.state[slot] !== OFF) {
        ps.state[slot] = OFF;
        ps.blocked++;
      }
      return;
    }
    if (active) {
      ps.state[slot] = ACTIVE;
      ps.active++;
      return;
    }
    ps.state[slot] = FREE;
    this.#freeInsert(ps, slot, row);
    const newest = this.#historyByHost.get(row.host6);
    const current = newest === undefined ? undefined : this.#rows.get(newest);
    if (!current || current.state === "active" || current.expiresAt <= row.expiresAt) {
      this.#historyByHost.set(row.host6, key);
    }
  }

  #unindex(key: number, row: Lease): void {
    if (row.state === "active" && this.#activeByHost.get(row.host6) === key) {
      this.#activeByHost.delete(row.host6);
    }
    const ps = this.#locate(row.ipv4);
    if (!ps || row.portSet.psidLength !== 0) {
      this.#orphans--;
      return;
    }
    if (row.state === "active") {
      ps.active--;
      return;
    }
    this.#freeRemove(ps, this.#slot);
    if (this.#historyByHost.get(row.host6) === key) this.#historyByHost.delete(row.host6);
  }

  /** The pool whose usable addresses include `ipv4` (its slot in #slot), if any. */
  #locate(ipv4: number): _PoolState | undefined {
    for (const ps of this.#pools) {
      const slot = ps.pool.slotOf(ipv4);
      if (slot < 0) continue;
      this.#slot = slot;
      return ps.pool.isUsable(slot) ? ps : undefined;
    }
    return undefined;
  }

  /** A never-used slot of the first pool that has one, else the longest-free slot. */
  #pickFresh(): _PoolState | undefined {
    for (const ps of this.#pools) {
      const state = ps.state;
      let cursor = ps.cursor;
      while (cursor < state.length && state[cursor] !== NEVER) cursor++;
      ps.cursor = cursor;
      if (cursor < state.length) {
        this.#slot = cursor;
        return ps;
      }
    }
    for (const ps of this.#pools) {
      if (ps.head >= 0) {
        this.#slot = ps.head;
        return ps;
      }
    }
    return undefined;
  }

  /** Inserts a freed slot ordered by (time freed, key): at the tail unless a rollback puts it back. */
  #freeInsert(ps: _PoolState, slot: number, row: Lease): void {
    const key = _key(row);
    let after = ps.tail;
    while (after >= 0) {
      const other = this.#rows.get(leaseKey(ps.pool.addressOf(after), 0)) as Lease;
      const earlier = other.expiresAt < row.expiresAt;
      if (earlier || (other.expiresAt === row.expiresAt && _key(other) < key)) break;
      after = ps.prev[after] as number;
    }
    const before = after >= 0 ? (ps.next[after] as number) : ps.head;
    ps.prev[slot] = after;
    ps.next[slot] = before;
    if (after >= 0) ps.next[after] = slot;
    else ps.head = slot;
    if (before >= 0) ps.prev[before] = slot;
    else ps.tail = slot;
  }

  #freeRemove(ps: _PoolState, slot: number): void {
    const before = ps.prev[slot] as number;
    const after = ps.next[slot] as number;
    if (before >= 0) ps.next[before] = after;
    else ps.head = after;
    if (after >= 0) ps.prev[after] = before;
    else ps.tail = before;
  }

  #compactExpiry(): void {
    this.#expiry.retain((time, key) => {
      const row = this.#rows.get(key);
      return row?.state === "active" && row.expiresAt === time;
    });
  }
}

/** Min-heap of (expiresAt, key) with lazy deletion: stale entries are skipped when they surface. */
class _ExpiryHeap {
  #times = new Float64Array(1024);
  #keys = new Float64Array(1024);
  size = 0;

  topTime(): number {
    return this.#times[0] as number;
  }

  topKey(): number {
    return this.#keys[0] as number;
  }

  push(time: number, key: number): void {
    if (this.size === this.#times.length) {
      const times = new Float64Array(this.size * 2);
      const keys = new Float64Array(this.size * 2);
      times.set(this.#times);
      keys.set(this.#keys);
      this.#times = times;
      this.#keys = keys;
    }
    let i = this.size++;
    const t = this.#times;
    const k = this.#keys;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((t[parent] as number) <= time) break;
      t[i] = t[parent] as number;
      k[i] = k[parent] as number;
      i = parent;
    }
    t[i] = time;
    k[i] = key;
  }

  pop(): void {
    const t = this.#times;
    const k = this.#keys;
    const n = --this.size;
    if (n === 0) return;
    const time = t[n] as number;
    const key = k[n] as number;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && (t[child + 1] as number) < (t[child] as number)) child++;
      if ((t[child] as number) >= time) break;
      t[i] = t[child] as number;
      k[i] = k[child] as number;
      i = child;
    }
    t[i] = time;
    k[i] = key;
  }

  /** Keeps only the entries `keep` accepts (O(n), used when stale entries pile up). */
  retain(keep: (time: number, key: number) => boolean): void {
    const entries: [number, number][] = [];
    for (let i = 0; i < this.size; i++) {
      const time = this.#times[i] as number;
      const key = this.#keys[i] as number;
      if (keep(time, key)) entries.push([time, key]);
    }
    this.size = 0;
    for (const [time, key] of entries) this.push(time, key);
  }
}

function _key(lease: Lease): number {
  return leaseKey(lease.ipv4, lease.portSet.psid);
}

function _lease(
  ipv4: number,
  host6: string,
  ps: _PoolState,
  state: LeaseState,
  grantedAt: number,
  expiresAt: number,
): Lease {
  return {
    ipv4,
    portSet: WHOLE_ADDRESS,
    host6,
    tep4: ps.tep4,
    tep6: ps.tep6,
    pool: ps.pool.name,
    state,
    grantedAt,
    expiresAt,
  };
}

/** The same lease in another state; `at` is when that happened (kept in expiresAt). */
function _copy(row: Lease, state: LeaseState, at: number): Lease {
  return {
    ipv4: row.ipv4,
    portSet: row.portSet,
    host6: row.host6,
    tep4: row.tep4,
    tep6: row.tep6,
    pool: row.pool,
    state,
    grantedAt: row.grantedAt,
    expiresAt: at,
  };
}

function _fail(reason: EngineFailure, message: string): Promise<EngineResult> {
  return Promise.resolve({ ok: false, reason, message });
}

function _isIPv4(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function _text(ipv4: number): string {
  return _isIPv4(ipv4) ? formatIPv4(ipv4) : String(ipv4);
}
