/**
 * Reservations: a host (its IPv6 address) that always gets one slot (IPv4 address, PSID),
 * and no other host ever gets that slot, as a DHCP server's host reservations (ISC Kea's
 * `reservations`, RFC 2131 §2 "manual allocation").
 *
 * The engine keeps them here, by host and by lease key; a reserved slot that no lease holds
 * is in state RESERVED in its pool (./slots.ts), so no allocation path (never-used cursor,
 * free list, hint, sticky, INIT-REBOOT) can hand it to anyone, and the reserved host's
 * DISCOVER or REQUEST takes it (./engine.ts). They are stored with the leases
 * (LeaseStore.writeReservation), so they survive a restart.
 *
 * @module
 */
import { leaseKey, type Reservation } from "../lease/lease.ts";

export class Reservations {
  readonly #byHost = new Map<string, Reservation>();
  readonly #byKey = new Map<number, Reservation>();

  /** How many there are. */
  get size(): number {
    return this.#byHost.size;
  }

  /** The host's reservation. */
  ofHost(host6: string): Reservation | undefined {
    return this.#byHost.get(host6);
  }

  /** The reservation of the slot with lease key `key`. */
  ofKey(key: number): Reservation | undefined {
    return this.#byKey.get(key);
  }

  /** True when the slot with lease key `key` is reserved (for anyone). */
  has(key: number): boolean {
    return this.#byKey.has(key);
  }

  /** Adds or replaces (same host) a reservation; the caller checked the slot is not another host's. */
  set(reservation: Reservation): void {
    this.delete(reservation.host6);
    this.#byHost.set(reservation.host6, reservation);
    this.#byKey.set(leaseKey(reservation.ipv4, reservation.psid), reservation);
  }

  /** Removes the host's reservation; returns it. */
  delete(host6: string): Reservation | undefined {
    const old = this.#byHost.get(host6);
    if (!old) return undefined;
    this.#byHost.delete(host6);
    this.#byKey.delete(leaseKey(old.ipv4, old.psid));
    return old;
  }

  /**
   * Makes `all` the reservations (as another server's change came in) and returns those
   * whose slot may have changed state: the ones that went and the ones that came.
   */
  replace(all: readonly Reservation[]): Reservation[] {
    const changed: Reservation[] = [];
    const next = new Map(all.map((r) => [r.host6, r]));
    for (const [host6, old] of this.#byHost) {
      const now = next.get(host6);
      if (!now || now.ipv4 !== old.ipv4 || now.psid !== old.psid) {
        this.delete(host6);
        changed.push(old);
      }
    }
    for (const r of all) {
      if (this.#byHost.get(r.host6)) continue;
      const other = this.#byKey.get(leaseKey(r.ipv4, r.psid));
      if (other) this.delete(other.host6);
      this.set(r);
      changed.push(r);
    }
    return changed;
  }

  /** Every reservation, in key order. */
  list(): Reservation[] {
    return [...this.#byKey.entries()].sort((a, b) => a[0] - b[0]).map(([, r]) => r);
  }
}
