/**
 * Lease administration, the engine's side (ISC Kea's lease commands): results of the
 * administrator's operations and how a slot looks to them. The operations themselves are
 * small engine methods (AllocationEngine.grant, endLeases, reserve, unreserve, slotView);
 * lib/server/lease_admin.ts drives them with the TEPs, logs and metrics.
 *
 * @module
 */
import type { Lease, Reservation } from "../lease/lease.ts";
import { formatIPv4 } from "../net/addr.ts";
import type { Generations } from "./engine_types.ts";
import { ACTIVE, BLOCKED, FREE, NEVER, RESERVED } from "./slots.ts";

/** Why an administrator's operation was refused. */
export type AdminFailure =
  | "not-in-pool"
  | "in-use"
  | "no-such-lease"
  | "store-failed"
  | "unsupported"
  | "host6-is-tep";

/**
 * What an administrator's operation returns. `generations` (ok; the operations that write
 * leases: endLeases, grant): the shared store's generation of each lease written, in the order
 * of `value` (grant: one), which the UNBIND or BIND it causes carries (./engine_types.ts
 * `Generations`, docs/protocol.md "Generations"); absent when the store numbers no writes.
 */
export type AdminResult<T> =
  | { ok: true; value: T; generations?: Generations }
  | { ok: false; reason: AdminFailure; message: string };

export function adminOk<T>(value: T): Promise<AdminResult<T>> {
  return Promise.resolve({ ok: true, value });
}

export function adminFail<T>(reason: AdminFailure, message: string): Promise<AdminResult<T>> {
  return Promise.resolve({ ok: false, reason, message });
}

/** A slot as an administrator sees it. */
export interface SlotView {
  /** The pool whose prefixes contain the address. */
  pool: string;
  /** Hosts per address in that pool (1: whole addresses). */
  share: number;
  state: "never-used" | "active" | "free" | "reserved" | "blocked" | "off" | "beyond-share";
  /** The row stored under the slot's key (any state), if any. */
  row: Lease | undefined;
  reservation: Reservation | undefined;
}

export function slotState(state: number): SlotView["state"] {
  switch (state) {
    case NEVER:
      return "never-used";
    case ACTIVE:
      return "active";
    case FREE:
      return "free";
    case RESERVED:
      return "reserved";
    case BLOCKED:
      return "blocked";
    default:
      return "off";
  }
}

/**
 * Why `host6` may not take the slot (`ipv4`, `psid`) by an administrator's hand (a static
 * lease or a reservation), or undefined: the slot is in no pool or not usable there
 * (`not-in-pool`), is leased to or reserved for another host, or blocked, or the host holds
 * another active lease (`in-use`). `held`: the host's active lease, if any.
 */
export function slotProblem(
  ipv4: number,
  psid: number,
  view: SlotView | undefined,
  host6: string,
  held: Lease | undefined,
): { reason: "not-in-pool" | "in-use"; message: string } | undefined {
  const where = `${formatIPv4(ipv4)}${psid ? ` psid ${psid}` : ""}`;
  if (!view) return { reason: "not-in-pool", message: `${where} is in no pool of this server` };
  if (view.state === "beyond-share" || view.state === "off") {
    return {
      reason: "not-in-pool",
      message: `${where} cannot be leased from pool ${view.pool} (${view.state === "beyond-share" ? `psid beyond its share of ${view.share}` : "excluded, network or broadcast address, or a port set with well-known ports"})`,
    };
  }
  const row = view.row;
  if (row?.state === "active" && row.host6 !== host6)
    return { reason: "in-use", message: `${where} is leased to ${row.host6}` };
  const reserved = view.reservation;
  if (reserved && reserved.host6 !== host6)
    return { reason: "in-use", message: `${where} is reserved for ${reserved.host6}` };
  if (view.state === "blocked")
    return {
      reason: "in-use",
      message: `${where} is blocked by a lease with another port-set layout`,
    };
  if (held && (held.ipv4 !== ipv4 || held.portSet.psid !== psid)) {
    return {
      reason: "in-use",
      message: `host ${host6} holds ${formatIPv4(held.ipv4)}${held.portSet.psidLength ? ` psid ${held.portSet.psid}` : ""}; delete that lease first`,
    };
  }
  return undefined;
}
