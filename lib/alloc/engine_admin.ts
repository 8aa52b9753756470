/**
 * The allocation engine's administration operations (./engine.ts; Kea's lease4-del,
 * lease4-add and host reservations): end leases, grant a static lease, reserve and unreserve
 * a slot, show a slot. Result types and slot checks are in ./admin.ts; lib/server/lease_admin.ts
 * drives these with the TEPs, logs and metrics.
 *
 * @module
 */
import {
  type Lease,
  LeaseConflictError,
  type LeaseOp,
  type LeaseStore,
  leaseKey,
  type Reservation,
} from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import {
  type AdminResult,
  adminFail,
  adminOk,
  type SlotView,
  slotProblem,
  slotState,
} from "./admin.ts";
import {
  leaseInState as _copy,
  hostIsTep as _hostIsTep,
  isIPv4Number as _isIPv4,
  activeLease as _lease,
} from "./engine_rows.ts";
import type { Generations } from "./engine_types.ts";
import type { LeaseIndex } from "./lease_index.ts";
import type { LeaseWriter } from "./lease_writer.ts";
import type { PoolSlots } from "./slots.ts";

/** The administrator's operations on the engine (see the module doc). */
export class EngineAdmin {
  readonly #index: LeaseIndex;
  readonly #writer: LeaseWriter;
  readonly #store: LeaseStore;
  readonly #now: () => number;

  constructor(index: LeaseIndex, writer: LeaseWriter, store: LeaseStore, now: () => number) {
    this.#index = index;
    this.#writer = writer;
    this.#store = store;
    this.#now = now;
  }

  /** Where (`ipv4`, `psid`) lies: its pool and slot state, its row, its reservation; undefined: in no pool. */
  slotView(ipv4: number, psid: number): SlotView | undefined {
    const index = this.#index;
    const ps = _isIPv4(ipv4) ? index.locate(ipv4, psid) : undefined;
    if (!ps) return undefined;
    const key = leaseKey(ipv4, psid);
    return {
      pool: ps.pool.name,
      share: ps.pool.sharing.share,
      state: index.slot < 0 ? "beyond-share" : slotState(ps.state[index.slot] as number),
      row: index.rows.get(key),
      reservation: index.reservations.ofKey(key),
    };
  }

  /**
   * An administrator ends these active leases now (Kea's lease4-del): each becomes
   * `released`, all in one durable batch, and their hosts' INIT-REBOOT REQUEST for that
   * address is refused (`no-such-lease`: NAK) until they DISCOVER again. Keys without an
   * active lease are skipped. Resolves with the leases ended (as they were), and the
   * generation of the write that ended each (`generations`, a shared store): their UNBINDs
   * carry it (docs/protocol.md, "Generations").
   */
  endLeases(keys: readonly number[]): Promise<AdminResult<Lease[]>> {
    const writer = this.#writer;
    if (writer.closed || !writer.started)
      return adminFail("store-failed", "the server is stopping");
    const now = this.#now();
    const ops: LeaseOp[] = [];
    const done: number[] = [];
    const ended: Lease[] = [];
    const rows: Lease[] = [];
    for (const key of new Set(keys)) {
      const row = this.#index.rows.get(key);
      if (row?.state !== "active") continue;
      const end = _copy(row, "released", now);
      writer.change(key, end);
      this.#index.revoked.add(end);
      ops.push(writer.put(key, end));
      done.push(key);
      rows.push(end);
      ended.push(row);
    }
    if (ops.length === 0) return adminOk([]);
    const success = (generations: Generations): AdminResult<Lease[]> =>
      generations ? { ok: true, value: ended, generations } : { ok: true, value: ended };
    return writer.persist<AdminResult<Lease[]>>(ops, done, rows, success, (f) => ({
      ok: false,
      reason: "store-failed",
      message: f.ok ? "lease store write failed" : f.message,
    }));
  }

  /**
   * An administrator gives `host6` the slot (`ipv4`, `psid`) for `seconds` from now (Kea's
   * lease4-add), outside the pools' lease-time limits. Refused when the slot is in no pool or
   * not usable, held or reserved by another host, or the host holds another active lease, or
   * its IPv6 address is a TEP's (`host6-is-tep`).
   */
  grant(host6: string, ipv4: number, psid: number, seconds: number): Promise<AdminResult<Lease>> {
    const writer = this.#writer;
    if (writer.closed || !writer.started)
      return adminFail("store-failed", "the server is stopping");
    const problem = this.#slotProblem(host6, ipv4, psid);
    if (problem) return adminFail(problem.reason, problem.message);
    const ps = this.#index.locate(ipv4, psid) as PoolSlots;
    const now = this.#now();
    const portSet = ps.pool.portSetOf(this.#index.slot);
    const lease = _lease(ipv4, portSet, host6, ps, now, now + seconds * 1000);
    return writer
      .apply(leaseKey(ipv4, psid), lease, "allocated")
      .then(
        (r): AdminResult<Lease> =>
          r.ok
            ? r.generation === undefined
              ? { ok: true, value: r.lease }
              : { ok: true, value: r.lease, generations: [r.generation] }
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
    const index = this.#index;
    const held = index.reservations.ofHost(host6);
    if (held) {
      return adminFail(
        "in-use",
        `host ${host6} already has a reservation (${formatIPv4(held.ipv4)} psid ${held.psid}); remove it first`,
      );
    }
    const problem = this.#slotProblem(host6, ipv4, psid);
    if (problem) return adminFail(problem.reason, problem.message);
    // Memory first, synchronously: no allocation can take the slot while the write is out.
    index.reservations.set(reservation);
    index.settleSlot(ipv4, psid);
    try {
      await this.#store.writeReservation({ op: "put", reservation });
    } catch (error) {
      index.reservations.delete(host6);
      index.settleSlot(ipv4, psid);
      this.#writer.tellStoreError(error);
      // Another server's host holds the slot (a shared store): its row comes in by watch().
      if (error instanceof LeaseConflictError)
        return adminFail("in-use", `${formatIPv4(ipv4)}: ${error.message}`);
      return adminFail("store-failed", `lease store write failed: ${(error as Error).message}`);
    }
    return { ok: true, value: reservation };
  }

  /** Removes the host's reservation (durable before it resolves); its lease, if any, stays. */
  async unreserve(host6: string): Promise<AdminResult<Reservation>> {
    const index = this.#index;
    const old = index.reservations.ofHost(host6);
    if (!old || !this.#store.writeReservation) {
      return adminFail("no-such-lease", `host ${host6} has no reservation`);
    }
    index.reservations.delete(host6);
    index.settleSlot(old.ipv4, old.psid);
    try {
      await this.#store.writeReservation({ op: "delete", host6 });
    } catch (error) {
      index.reservations.set(old);
      index.settleSlot(old.ipv4, old.psid);
      this.#writer.tellStoreError(error);
      return adminFail("store-failed", `lease store write failed: ${(error as Error).message}`);
    }
    return { ok: true, value: old };
  }

  /** Why `host6` may not take (`ipv4`, `psid`) by an administrator's hand (./admin.ts), or undefined. */
  #slotProblem(host6: string, ipv4: number, psid: number) {
    return (
      _hostIsTep(this.#index.pools, host6) ??
      slotProblem(ipv4, psid, this.slotView(ipv4, psid), host6, this.#index.lookupHost(host6))
    );
  }
}
