/**
 * The lease: one row of the paper's IPv4 lease table (its figure 3), plus what a real
 * server needs to keep it correct across restarts.
 *
 * The paper's `struct IPv4Lease_Table` has host IPv4, host IPv6, TEP IPv4, TEP IPv6,
 * `allocated_port` and the expiry. We keep the same fields; the port range is expressed
 * as an RFC 7597 port set (offset, PSID length, PSID) so that whole addresses
 * (`psidLength` 0) and shared addresses use one representation.
 *
 * A lease is identified by its **key** `(ipv4, psid)`: a whole address has psid 0 and
 * psidLength 0. A host (its IPv6 address) holds at most one active lease.
 *
 * @module
 */
import { bindingKey } from "../net/portset.ts";

/** RFC 7597 §5.1 port set. `psidLength` 0 means the whole port space (no sharing). */
export interface PortSet {
  /** Offset bits `a` (0–15): excludes the low ports when > 0. */
  readonly offset: number;
  /** PSID length `k` (0–16): 2^k hosts share the address. */
  readonly psidLength: number;
  /** Port set identifier (0 ≤ psid < 2^k). */
  readonly psid: number;
}

/** The whole port space of one address. */
export const WHOLE_ADDRESS: PortSet = Object.freeze({ offset: 0, psidLength: 0, psid: 0 });

/**
 * - `active`: held by `host6` until `expiresAt`.
 * - `released`: given back by the host (DSTM_RELEASE); kept so a later DISCOVER from the
 *   same host can get the same address back while it is still free.
 * - `expired`: reclaimed by the sweeper; kept for the same reason.
 */
export type LeaseState = "active" | "released" | "expired";

export interface Lease {
  /** Host IPv4 address (unsigned 32-bit). */
  readonly ipv4: number;
  /** Port set within `ipv4`; WHOLE_ADDRESS for an unshared address. */
  readonly portSet: PortSet;
  /** Host IPv6 address, canonical RFC 5952 text: the tunnel's far end at the TEP. */
  readonly host6: string;
  /** TEP IPv4 address (unsigned 32-bit); 0 when the TEP has none configured. */
  readonly tep4: number;
  /** TEP IPv6 address, canonical text. */
  readonly tep6: string;
  /** Name of the pool the address came from (its first CIDR as text). */
  readonly pool: string;
  readonly state: LeaseState;
  /** When the lease was granted or last renewed (ms since the Unix epoch). */
  readonly grantedAt: number;
  /** Expiry (ms since the Unix epoch). For released/expired leases: when that happened. */
  readonly expiresAt: number;
  /**
   * The DHCPv4 client the lease belongs to, in the keyed 4o6 identity modes (RFC 2131 §4.2:
   * `id:HEX` of option 61, or `hw:HTYPE:HEX` of chaddr; lib/server/dhcp4o6_identity.ts);
   * absent (stored as NULL) when the host's IPv6 address is the holder, as in the native
   * protocol. Stored with the lease, so a client is known after a restart.
   */
  readonly identity?: string;
}

/**
 * Who holds a lease, for the one-active-lease rule: its `identity` when it has one, else its
 * `host6`. The two never collide (an identity starts with `id:` or `hw:`, which no IPv6
 * address text does).
 */
export function leaseHolder(lease: Pick<Lease, "host6" | "identity">): string {
  return lease.identity ?? lease.host6;
}

/**
 * A lease row built field by field (what the stores and the engine make): always the same
 * object shape for leases with and without an `identity` (absent stays absent), so a million
 * of them share two hidden classes and no spread is paid per row.
 */
export function leaseOf(
  ipv4: number,
  portSet: PortSet,
  host6: string,
  tep4: number,
  tep6: string,
  pool: string,
  state: LeaseState,
  grantedAt: number,
  expiresAt: number,
  identity: string | undefined,
): Lease {
  if (identity === undefined) {
    return { ipv4, portSet, host6, tep4, tep6, pool, state, grantedAt, expiresAt };
  }
  return { ipv4, portSet, host6, tep4, tep6, pool, state, grantedAt, expiresAt, identity };
}

/** Most distinct strings one {@link stringInterner} shares; beyond it, strings pass through. */
export const INTERNED_STRINGS_MAX = 4096;

/**
 * A function returning one shared string per distinct text it is given (up to
 * {@link INTERNED_STRINGS_MAX} of them), for the few values a million rows repeat (TEP
 * address, pool name, state): a store loading rows gives each column value its own string
 * otherwise, about 100 bytes a row.
 */
export function stringInterner(): (text: string) => string {
  const seen = new Map<string, string>();
  return (text) => {
    const shared = seen.get(text);
    if (shared !== undefined) return shared;
    if (seen.size < INTERNED_STRINGS_MAX) seen.set(text, text);
    return text;
  };
}

/**
 * A host reservation: `host6` always gets the slot (`ipv4`, `psid`) and no other host ever
 * does (lib/alloc/reservations.ts). `psid` is 0 for a whole address. `createdAt`: ms since
 * the Unix epoch. A store holds at most one per host and one per slot.
 */
export interface Reservation {
  readonly host6: string;
  readonly ipv4: number;
  readonly psid: number;
  readonly createdAt: number;
}

/** A change to the stored reservations: add or replace the host's, or remove it. */
export type ReservationOp =
  | { readonly op: "put"; readonly reservation: Reservation }
  | { readonly op: "delete"; readonly host6: string };

/** The store key of a lease: `ipv4 * 65536 + psid`, exact in a double. */
export function leaseKey(ipv4: number, psid: number): number {
  return bindingKey(ipv4, psid); // one key for a lease and its binding (lib/net/portset.ts)
}

/** The IPv4 address (u32) of store key `key` ({@link leaseKey}'s inverse, with {@link keyPsid}). */
export function keyIpv4(key: number): number {
  return (key - (key % 65536)) / 65536;
}

/** The PSID of store key `key` ({@link leaseKey}'s inverse, with {@link keyIpv4}). */
export function keyPsid(key: number): number {
  return key % 65536;
}

/**
 * One change to apply to a store. `put` inserts or replaces the row with the same key.
 *
 * `expected` makes the put a compare-and-set, for stores shared by several servers
 * (lib/lease/postgres.ts): it is the row the writer believes is stored under the key now
 * (`null`: none). When the stored row differs (another server changed it since), the batch
 * rejects with {@link LeaseConflictError} and nothing of it applies. Absent: a plain put.
 *
 * `lapse` (with `expected`): when the stored row differs, this put is skipped instead — the
 * batch's other ops apply, and the write resolves with the key and the row stored now in
 * {@link WriteOutcome.skipped}. For the sweeper's expiries: a lease another server already
 * expired (or renewed) is an expected outcome, not a conflict that fails the allocations
 * sharing the batch. A later op of the same batch on that key still compares with its own
 * `expected`, so it conflicts as usual.
 *
 * `holderHash`: `holderHash(leaseHolder(lease))` (./holder_index.ts: keyed under this
 * process's key), given by a writer that has just computed it (the engine's holder index
 * hashed the same holder), so that a store keeping a table of holders' hashes (SQLite,
 * ./sqlite_holders.ts) does not hash the holder again. Only that value may be given; absent:
 * the store computes it.
 */
export type LeaseOp =
  | {
      readonly op: "put";
      readonly lease: Lease;
      readonly expected?: Lease | null;
      readonly lapse?: boolean;
      readonly holderHash?: number;
    }
  | { readonly op: "delete"; readonly key: number };

/**
 * What a shared store's `write` tells besides success:
 * - `skipped`: the keys of the `lapse` puts whose expected row was no longer stored → the row
 *   stored under the key now (undefined: none). Absent: none was skipped.
 * - `generations`: stores that number their writes in one order for every writer (PostgreSQL:
 *   the row's `seq`, docs/protocol.md "Generations"): `generations[i]` is the version op `i`
 *   of the batch wrote — a put's new row, a delete's removal (a number taken from the same
 *   sequence, so a later write of the key by any writer has a higher one). Undefined for an op
 *   that wrote nothing (a skipped `lapse` put, a delete of a key with no row). The array itself
 *   is absent for a store that numbers nothing: SQLite and an unshared memory store have one
 *   writer, so BIND and UNBIND go without GENERATION.
 */
export interface WriteOutcome {
  readonly skipped?: ReadonlyMap<number, Lease | undefined>;
  readonly generations?: readonly (number | undefined)[];
}

/**
 * Persistence of leases. The allocation engine keeps the working set in memory and is the
 * only writer; a store makes changes durable. Implementations: memory, SQLite.
 *
 * Contract (checked by test/lease_conformance.test.ts for every backend):
 * - `write(ops)` applies all ops atomically, in order, and resolves only when they are
 *   durable (for SQLite: committed, and the WAL fsynced after the commit, ./wal_sync.ts). If
 *   it rejects, none applied — except with an error whose `fatal` is true (SQLite: the fsync
 *   after the commit failed, or the database vanished): then the ops may or may not be
 *   stored, and the store accepts no further write; the server stops. The one exception to
 *   all-or-nothing: a shared store skips a `lapse` put whose `expected` row is not stored
 *   and reports it ({@link WriteOutcome}).
 * - A `put` whose lease is `active` for a holder ({@link leaseHolder}: the identity, else the
 *   host) that already has another active lease under a different key rejects the whole
 *   batch (one holder, one active lease).
 * - `identity` round-trips (absent stays absent).
 * - `loadAll()` returns every row, in key order.
 * - After `close()`, every call rejects.
 * - Stores with `shared` (PostgreSQL; also memory, as the reference) check a put's
 *   `expected` row; SQLite has one writer and ignores it.
 */
export interface LeaseStore {
  /** `"memory"`, `"sqlite"`, … for logs and metrics. */
  readonly kind: string;
  loadAll(): Promise<Lease[]>;
  /**
   * Resolves with the skipped `lapse` puts and each op's generation (shared stores,
   * {@link WriteOutcome}), or undefined when there is nothing to tell (SQLite, memory).
   */
  write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined>;
  /**
   * `write` in two steps, for a store whose transaction commits on the calling thread
   * (SQLite): applies `ops` in one transaction now, or throws (nothing of them applied), and
   * returns a promise that resolves once they are durable (rejects when that fails). The group
   * committer (./group_commit.ts) then commits the next batch while this one is made durable.
   */
  commit?(ops: readonly LeaseOp[]): Promise<void>;
  close(): Promise<void>;
  /**
   * Several servers may write this store at once (PostgreSQL): the engine then sends
   * `expected` rows, and follows the other servers' changes with {@link watch}.
   */
  readonly shared?: boolean;
  /**
   * Calls `onRows` with the rows other writers (and this one) changed, oldest change first,
   * from now until the returned stop function is called. Shared stores only.
   */
  watch?(onRows: (rows: Lease[]) => void): () => Promise<void>;
  /**
   * Shared stores: resolves once every {@link watch} callback has been given the rows committed
   * before the call (or reading them failed). Never rejects.
   */
  caughtUp?(): Promise<void>;
  /**
   * Shared stores: a version every change up to which the {@link watch} callbacks have been
   * given (or that the rows loaded at start hold); undefined before the watch's first read.
   */
  watchedThrough?(): number | undefined;
  /**
   * Shared stores: the database's wall clock (ms since the Unix epoch). Servers sharing the
   * store take it as their wall clock, so that an expiry stored by one means the same moment
   * to the others, whatever their own clocks say. Rejects when it cannot be read.
   */
  clockMs?(): Promise<number>;
  /** Every stored reservation, in key order (absent: the store keeps none). */
  loadReservations?(): Promise<Reservation[]>;
  /**
   * Applies one reservation change durably. A put replaces the host's reservation; it rejects
   * (and changes nothing) with {@link LeaseStoreError} when another host holds a reservation
   * on the same slot, with {@link LeaseConflictError} when another host holds an active lease
   * on it. Deleting a host without one is no error.
   *
   * Stores that keep reservations also refuse, in `write`, an active lease on a reserved slot
   * for another host than the reserved one (the whole batch; LeaseConflictError when that put
   * has `expected`, else LeaseStoreError): with a shared store, a server that has not yet
   * learned of a reservation made by another cannot hand its slot out.
   */
  writeReservation?(op: ReservationOp): Promise<void>;
  /**
   * Shared stores: calls `onChange` with every reservation whenever they changed (any
   * writer's change), from now until the returned stop function is called.
   */
  watchReservations?(onChange: (all: Reservation[]) => void): () => Promise<void>;
}

/** A compare-and-set put found another row than it expected: another server changed the key. */
export class LeaseConflictError extends Error {
  override readonly name = "LeaseConflictError";
  /**
   * @param rows the stored rows now under the batch's keys and the active rows of its hosts
   * @param missing the batch's keys that have no row now
   * @param reservations the stored reservations of the batch's keys (stores that keep them):
   *   a server that had not learned of one learns it here, instead of picking the slot again
   */
  constructor(
    message: string,
    readonly rows: readonly Lease[] = [],
    readonly missing: readonly number[] = [],
    readonly reservations: readonly Reservation[] = [],
  ) {
    super(message);
  }
}

/** True when two rows are the same lease (every field equal). */
export function sameLease(a: Lease | null | undefined, b: Lease | null | undefined): boolean {
  if (!a || !b) return !a && !b;
  return (
    a.ipv4 === b.ipv4 &&
    a.portSet.psid === b.portSet.psid &&
    a.portSet.psidLength === b.portSet.psidLength &&
    a.portSet.offset === b.portSet.offset &&
    a.host6 === b.host6 &&
    a.tep4 === b.tep4 &&
    a.tep6 === b.tep6 &&
    a.pool === b.pool &&
    a.state === b.state &&
    a.grantedAt === b.grantedAt &&
    a.expiresAt === b.expiresAt &&
    (a.identity ?? null) === (b.identity ?? null)
  );
}

/**
 * A store failure a user can act on (database path missing, file in use, not a database…)
 * or a contract violation (a second active lease for a host, a call after `close()`).
 * The message is one line that says what happened and, where it helps, what to do.
 */
export class LeaseStoreError extends Error {
  override readonly name = "LeaseStoreError";
}
