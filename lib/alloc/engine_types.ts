/**
 * The allocation engine's configuration and result types (./engine.ts re-exports them): a
 * pool of the configuration, the engine's options, what a decision returns, and a pool's
 * occupancy.
 *
 * @module
 */
import type { Lease, LeaseStore } from "../lease/lease.ts";
import type { SharingSpec } from "./sharing.ts";

/** One pool of the server configuration and the TEP its leases use. */
export interface PoolConfig extends SharingSpec {
  name?: string;
  prefixes: string[];
  exclude?: string[];
  /** TEP IPv6 address (any spelling; stored canonical). */
  tep6: string;
  /** TEP IPv4 address, 0 or absent when the TEP has none. */
  tep4?: number;
  /**
   * The IPv6 links whose DHCPv4-over-DHCPv6 clients this pool serves (lib/server/dhcp4o6_link.ts);
   * absent or empty: every link. The engine does not read it (the 4o6 service passes the
   * chosen pools in a ClientScope).
   */
  links?: readonly string[];
}

export interface EngineOptions {
  pools: PoolConfig[];
  store: LeaseStore;
  /** Lease time granted when the client asks for none (seconds). */
  leaseTime: number;
  /** Longest lease a client may ask for (seconds); default `leaseTime`. */
  maxLeaseTime?: number;
  /** Wall clock in ms since the epoch (stored in leases); default `Date.now`. */
  now?: () => number;
  /**
   * Monotonic clock in ms, any origin: what expiry runs on while the engine runs, so that a
   * step of the wall clock never expires leases early (nor keeps them late). Default: `now`
   * when `now` is given (a test clock), else `performance.now()`.
   */
  monotonic?: () => number;
  /** Told (by {@link AllocationEngine.sweep}) when the wall clock stepped by more than clockStepMs (ms; + forward). */
  onClockStep?: (stepMs: number) => void;
  /**
   * Shared store with a clock (PostgreSQL): told at {@link AllocationEngine.start} how far the
   * database's wall clock is from this engine's `now` (ms; + the database is ahead). The engine
   * takes the database's clock from then on, whatever the offset.
   */
  onStoreClock?: (offsetMs: number) => void;
  /** How far wall − monotonic may move between two sweeps before it counts as a step (ms, default 2000). */
  clockStepMs?: number;
  /**
   * Most active leases the hosts of one host prefix may hold (0 or absent: no cap): one
   * machine with many IPv6 addresses must not take the whole pool. A new lease over the cap
   * fails with `prefix-limit`; renewals are never refused.
   */
  maxLeasesPerPrefix?: number;
  /** Host prefix length in bits for maxLeasesPerPrefix (default 64, ./host_prefix.ts). */
  hostPrefixLength?: number;
  /**
   * Most active leases the hosts of one site prefix may hold (0 or absent: no cap); a new
   * lease over it fails with `site-limit` (./prefix_caps.ts).
   */
  maxLeasesPerSite?: number;
  /** Site prefix length in bits for maxLeasesPerSite (default 56). */
  sitePrefixLength?: number;
  /**
   * Told about every failed store write (the callers get `store-failed`), e.g. to log it;
   * not about a write another server sharing the store won (decided again, see conflicts()).
   */
  onStoreError?: (error: unknown) => void;
  /**
   * Told about every decision refused because its store write failed (once per caller);
   * `kept`: a renewal answered with the lease the store holds, unextended.
   */
  onStoreRefused?: (error: unknown, kept: boolean) => void;
  /** Told once when a store write succeeds after failed ones. */
  onStoreRecovered?: () => void;
  /**
   * Most leases one {@link AllocationEngine.sweep} reclaims (default 100, Kea's
   * max-reclaim-leases; 0: no limit). More due leases are left for the next sweep and
   * {@link AllocationEngine.reclaimPending} says so.
   */
  reclaimMaxLeases?: number;
  /** Longest one sweep may spend picking leases (ms of elapsed time, default 250, Kea's max-reclaim-time; 0: no limit). */
  reclaimMaxMs?: number;
  /**
   * A DISCOVER found no free slot while leases are overdue (their time is up, the sweeper has
   * not reached them yet): reclaim now, through the same path as the sweeper so that the
   * TEPs and the counters hear of each expiry (lib/alloc/reclaimer.ts `sliceNow`), and
   * resolve to the number of leases freed; the DISCOVER is then decided once more instead of
   * being refused `pool-exhausted`. Absent: refused until the next sweep.
   */
  reclaimNow?: () => Promise<number>;
  /**
   * Shared stores: told about every row taken in from the store that changed this engine's
   * view (another server's decision), with the row it replaced, e.g. to tell the TEPs.
   */
  onAbsorb?: (before: Lease | undefined, after: Lease | undefined) => void;
  /**
   * Told of a lease this engine ended while deciding a DISCOVER, durably: the holder's lease
   * whose slot left the pools (a reload removed its prefix or changed its pool's layout) or
   * whose pool no longer serves the client's link, ended (state `expired`) in the batch that
   * wrote the holder's new lease, or alone when no slot was left for one. With the end's
   * generation (a shared store; docs/protocol.md, "Generations"). The server UNBINDs it at
   * its TEP: nothing else would before the binding's own expiry.
   */
  onEnded?: (lease: Lease, generation: number | undefined) => void;
}

/**
 * How often a decision is made again after another server won its write (shared stores). Each
 * lost write means another server's landed, so contention always makes progress; 16 tries
 * (waits of up to 64 ms each, lib/alloc/lease_writer.ts) outlast two servers racing for the
 * last free slots of a pool under load, where 8 were seen to run out (SERVER_ERROR).
 */
export const CONFLICT_RETRIES = 16;

/** Kea's defaults for one reclamation run: 100 leases or 250 ms, whichever comes first. */
export const RECLAIM_DEFAULTS = { maxLeases: 100, maxMs: 250 } as const;

export type EngineOutcome = "allocated" | "renewed" | "reused" | "released";
export type EngineFailure =
  | "pool-exhausted"
  | "no-such-lease"
  | "address-in-use"
  | "store-failed"
  | "prefix-limit"
  | "site-limit"
  | "host6-is-tep";
/**
 * What a decision returns. `generation` (ok): the shared store's version of the write that made
 * `lease` (PostgreSQL: the row's `seq`, lib/lease/lease.ts `WriteOutcome`), sent as the
 * GENERATION of the BIND (a grant) or UNBIND (a release, a decline) it causes, so that a TEP
 * orders it against the other servers' (docs/protocol.md, "Generations"). Undefined when the
 * store numbers no writes (SQLite, an unshared memory store: one server, no GENERATION), and
 * when this decision wrote nothing (a lease given back as it is, an offer kept in memory, a
 * renewal answered as stored after a failed write).
 */
export type EngineResult =
  | { ok: true; lease: Lease; outcome: EngineOutcome; generation?: number }
  | { ok: false; reason: EngineFailure; message: string };

/**
 * The store's generation of each write of one batch, in the order of the leases it goes with
 * (`[i]`: of lease `i`; undefined: that write has none); the whole is undefined when the store
 * numbers no writes (SQLite, an unshared memory store). See {@link EngineResult}.
 */
export type Generations = readonly (number | undefined)[] | undefined;

/**
 * Leases one sweep expired, durably and each exactly once across servers (as written: state
 * `expired`), and the generation of each expiry (`generations[i]`: of `leases[i]`), which their
 * UNBINDs carry (docs/protocol.md, "Generations").
 */
export interface ExpiredLeases {
  readonly leases: Lease[];
  readonly generations: Generations;
}

/** Occupancy of one pool, counted in slots (leases it can hold at once). */
export interface PoolStats {
  pool: string;
  /** Slots that can be handed out: usable addresses × usable PSIDs per address. */
  size: number;
  /** Slots held by an active lease. */
  active: number;
  /** Slots that can be handed out now. */
  free: number;
  /** Free slots kept for the host they are reserved for (`dstm lease add --reserve`). */
  reserved: number;
  /**
   * Slots not handed out because their address carries an active lease with another layout
   * (an orphan of a re-shared pool, or a static lease on another PSID layout).
   */
  blocked: number;
  /** Usable addresses. */
  addresses: number;
  /** Hosts per address (1: whole addresses). */
  share: number;
}
