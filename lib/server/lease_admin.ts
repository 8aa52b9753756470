/**
 * Lease administration on a running server (ISC Kea's lease4-add / lease4-del /
 * lease4-wipe and host reservations), behind the control API's lease routes
 * (lib/control/lease_admin_api.ts):
 *
 * - **delete** (`DELETE /v1/leases/{ipv4}`): the lease ends now. The change is durable in the
 *   store first (AllocationEngine.endLeases: the row becomes `released`), then the TEP gets
 *   UNBIND through TepSync, then the reply. The host learns on its next renewal: a native
 *   DSTM_REQUEST gets NO_SUCH_LEASE, a 4o6 DHCPREQUEST a DHCPNAK (RFC 2131 §4.3.2), and it
 *   starts over with DISCOVER.
 * - **add** (`POST /v1/leases`): a static lease for a host on a chosen slot, BIND-ed at the
 *   TEP before the reply (as for a host's own lease), or a **reservation**: the host always
 *   gets that slot and no other host ever does. Refused (409) on a slot outside every pool,
 *   leased to or reserved for another host, or when the host holds another lease.
 * - **wipe** (`POST /v1/pools/{pool}/wipe`): every active lease of the pool ends, in durable
 *   batches of {@link WIPE_SLICE} (hosts are answered in between), each unbound at its TEP.
 *
 * Reservations hold under active-active too (several servers on one PostgreSQL database): the
 * database refuses an active lease on a reserved slot for another host (a trigger), so a
 * server that has not yet learned of a reservation made through another cannot hand its
 * slot out, and each server follows the reservations as they change (NOTIFY, or a poll each
 * second), after which it gives the reserved host its slot (docs/scale-out.md).
 *
 * Every change is logged at info with what changed and counted in
 * `dstm_lease_admin_total{action}`; every refusal is logged at warn (rate-limited) with its
 * reason and counted in `dstm_lease_admin_refused_total{action,reason}`.
 *
 * @module
 */
import type { AdminResult } from "../alloc/admin.ts";
import type { AllocationEngine, Generations } from "../alloc/engine.ts";
import type { AddLeaseRequest, AdminReply, LeaseAdminSource } from "../control/lease_admin_api.ts";
import { reservationJson } from "../control/lease_admin_api.ts";
import { leaseToJson } from "../control/lease_view.ts";
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import { WarnLimit } from "../control/warn_limit.ts";
import { type Lease, leaseKey, type Reservation } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import { formatPortSet } from "../net/portset.ts";
import type { BindingSink } from "./tep_sync.ts";

export interface LeaseAdminOptions {
  readonly engine: AllocationEngine;
  /** The TEPs' bindings (TepSync); undefined while none. */
  readonly bindings: () => BindingSink | undefined;
  /** The server's lease time now (s): a static lease's default. */
  readonly leaseTime: () => number;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
}

/** Leases a wipe ends per store write. */
export const WIPE_SLICE = 1000;

/** HTTP status of each refusal reason of the engine. */
const STATUS: Record<string, number> = {
  "not-in-pool": 409,
  "in-use": 409,
  "no-such-lease": 404,
  unsupported: 409,
  "store-failed": 503,
  // A binding of a TEP's own IPv6 address would make the TEP tunnel to itself.
  "host6-is-tep": 409,
};

export class LeaseAdmin implements LeaseAdminSource {
  readonly #o: LeaseAdminOptions;
  readonly #warn: WarnLimit;
  readonly #now: () => number;

  constructor(options: LeaseAdminOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#warn = new WarnLimit(options.log);
    options.metrics.counter(
      "dstm_lease_admin_total",
      "Lease administration changes applied (control API), by action",
      ["action"],
    );
    options.metrics.counter(
      "dstm_lease_admin_refused_total",
      "Lease administration requests refused (control API), by action and reason",
      ["action", "reason"],
    );
  }

  rows(): Iterable<Lease> {
    return { [Symbol.iterator]: () => this.#o.engine.rows() };
  }

  isOffer(lease: Lease): boolean {
    return this.#o.engine.isOffer(lease);
  }

  rowsAfter(after: number): Iterable<Lease> {
    return { [Symbol.iterator]: () => this.#o.engine.rowsAfter(after) };
  }

  reservations(): readonly Reservation[] {
    return this.#o.engine.reservations();
  }

  pools(): readonly { name: string; prefixes: readonly string[] }[] {
    return this.#o.engine.pools().map((pool) => ({
      name: pool.name,
      prefixes: pool.prefixes.map((p) => `${formatIPv4(p.base)}/${p.length}`),
    }));
  }

  shareOf(ipv4: number): number {
    return this.#o.engine.slotView(ipv4, 0)?.share ?? 0;
  }

  async end(ipv4: number, psid: number): Promise<AdminReply> {
    const where = `${formatIPv4(ipv4)}${psid ? ` psid ${psid}` : ""}`;
    const row = this.#o.engine.slotView(ipv4, psid)?.row;
    if (row?.state !== "active") {
      return this.#refuse("delete", "no-such-lease", 404, `no active lease on ${where}`);
    }
    const result = await this.#o.engine.endLeases([leaseKey(ipv4, psid)]);
    if (!result.ok) return this.#failed("delete", result);
    if (result.value.length === 0)
      return this.#refuse("delete", "no-such-lease", 404, `no active lease on ${where}`);
    this.#unbind(result.value, result.generations);
    for (const lease of result.value) this.#applied("delete", lease);
    return { status: 200, body: { ended: result.value.map((l) => leaseToJson(l)) } };
  }

  async add(request: AddLeaseRequest): Promise<AdminReply> {
    const { engine } = this.#o;
    if (request.reserve) {
      const reservation: Reservation = {
        host6: request.host6,
        ipv4: request.ipv4,
        psid: request.psid,
        createdAt: this.#now(),
      };
      const result = await engine.reserve(reservation);
      if (!result.ok) return this.#failed("reserve", result);
      this.#count("reserve");
      this.#o.log.info("lease-admin", {
        action: "reserve",
        ipv4: formatIPv4(request.ipv4),
        psid: request.psid,
        host6: request.host6,
      });
      return {
        status: 201,
        body: { reservation: reservationJson(result.value, this.shareOf(result.value.ipv4)) },
      };
    }
    const seconds = request.leaseTime ?? this.#o.leaseTime();
    const result = await engine.grant(request.host6, request.ipv4, request.psid, seconds);
    if (!result.ok) return this.#failed("add", result);
    const lease = result.value;
    // As for a host's own lease: the TEP holds the binding before the answer.
    const bindings = this.#o.bindings();
    if (bindings && !(await bindings.install(lease, result.generations?.[0]))) {
      this.#o.log.warn("lease-admin", {
        action: "add",
        ipv4: formatIPv4(lease.ipv4),
        detail: `the lease is stored, but TEP ${lease.tep6} has not acknowledged its binding yet; it gets it with its next snapshot`,
      });
    }
    this.#applied("add", lease, seconds);
    return { status: 201, body: { lease: leaseToJson(lease) } };
  }

  async unreserve(host6: string): Promise<AdminReply> {
    const result = await this.#o.engine.unreserve(host6);
    if (!result.ok) {
      const status = result.reason === "no-such-lease" ? 404 : (STATUS[result.reason] ?? 409);
      return this.#refuse("unreserve", result.reason, status, result.message);
    }
    this.#count("unreserve");
    this.#o.log.info("lease-admin", {
      action: "unreserve",
      ipv4: formatIPv4(result.value.ipv4),
      psid: result.value.psid,
      host6,
    });
    return {
      status: 200,
      body: { removed: reservationJson(result.value, this.shareOf(result.value.ipv4)) },
    };
  }

  async wipe(pool: string): Promise<AdminReply> {
    const keys: number[] = [];
    for (const row of this.#o.engine.rows()) {
      if (row.pool === pool && row.state === "active")
        keys.push(leaseKey(row.ipv4, row.portSet.psid));
    }
    // In slices of WIPE_SLICE leases, each one durable batch: hosts are answered in between.
    let ended = 0;
    for (let i = 0; i < keys.length; i += WIPE_SLICE) {
      const result = await this.#o.engine.endLeases(keys.slice(i, i + WIPE_SLICE));
      if (!result.ok) {
        this.#o.log.info("lease-admin", { action: "wipe", pool, ended, failed: result.message });
        return this.#failed("wipe", result);
      }
      this.#unbind(result.value, result.generations);
      ended += result.value.length;
    }
    this.#count("wipe");
    this.#o.log.info("lease-admin", { action: "wipe", pool, ended });
    return { status: 200, body: { pool, ended } };
  }

  refused(action: string, reason: string, message: string): void {
    this.#o.metrics.inc("dstm_lease_admin_refused_total", { action, reason });
    this.#warn.warn("lease-admin-refused", { action, reason, detail: message });
  }

  /**
   * UNBINDs the bindings of `leases` (ended by an administrator), each with the generation of
   * the write that ended it (`generations[i]`; undefined: the store numbers no writes), so a
   * TEP that already holds a later grant of the slot ignores it (docs/protocol.md, "Generations").
   */
  #unbind(leases: readonly Lease[], generations: Generations): void {
    const bindings = this.#o.bindings();
    if (!bindings) return;
    for (let i = 0; i < leases.length; i++) bindings.remove(leases[i] as Lease, generations?.[i]);
  }

  #applied(action: string, lease: Lease, seconds?: number): void {
    this.#count(action);
    this.#o.log.info("lease-admin", {
      action,
      ipv4: formatIPv4(lease.ipv4),
      ports: lease.portSet.psidLength ? formatPortSet(lease.portSet) : undefined,
      host6: lease.host6,
      pool: lease.pool,
      "lease-s": seconds,
    });
  }

  #count(action: string): void {
    this.#o.metrics.inc("dstm_lease_admin_total", { action });
  }

  #failed(action: string, result: AdminResult<unknown> & { ok: false }): AdminReply {
    return this.#refuse(action, result.reason, STATUS[result.reason] ?? 409, result.message);
  }

  #refuse(action: string, reason: string, status: number, message: string): AdminReply {
    this.refused(action, reason, message);
    return { status, body: { error: message } };
  }
}
