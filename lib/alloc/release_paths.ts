/**
 * The ways a host gives a slot back, for the allocation engine (./engine.ts): DSTM_RELEASE,
 * a DHCP offer it declined by asking another server (RFC 2131 §4.3.2), and DHCPDECLINE (RFC
 * 2131 §4.3.3: the address is in use by another machine). Each frees or holds only the
 * asking holder's own lease: anyone can send these from a host's address.
 *
 * @module
 */

import type { HolderIndex } from "../lease/holder_index.ts";
import type { Lease } from "../lease/lease.ts";
import { type ClientScope, holderOf } from "./client_scope.ts";
import {
  leaseInState as _copy,
  failure as _fail,
  activeLease as _lease,
  ipv4Text as _text,
  declinedHost,
} from "./engine_rows.ts";
import type { EngineResult } from "./engine_types.ts";
import type { LeaseIndex } from "./lease_index.ts";
import type { LeaseTable } from "./lease_table.ts";
import type { LeaseWriter } from "./lease_writer.ts";

/** Decides RELEASE, DECLINE and a withdrawn offer (see the module doc). */
export class ReleasePaths {
  readonly #index: LeaseIndex;
  readonly #rows: LeaseTable;
  readonly #activeByHost: HolderIndex;
  readonly #offers: WeakSet<Lease>;
  readonly #writer: LeaseWriter;
  readonly #now: () => number;

  constructor(index: LeaseIndex, writer: LeaseWriter, now: () => number) {
    this.#index = index;
    this.#rows = index.rows;
    this.#activeByHost = index.activeByHost;
    this.#offers = index.offers;
    this.#writer = writer;
    this.#now = now;
  }

  /** AllocationEngine.withdrawOffer, once: frees the holder's lease if it is an offer never committed. */
  withdrawOffer(host6: string, scope?: ClientScope): Promise<EngineResult> {
    const refused = this.#writer.refuse();
    if (refused) return refused;
    const key = this.#activeByHost.get(holderOf(host6, scope));
    const row = key === undefined ? undefined : this.#rows.get(key);
    if (key === undefined || !row || !this.#offers.has(row)) {
      return _fail("no-such-lease", `host ${host6} holds no offer`);
    }
    return this.#writer.apply(key, _copy(row, "released", this.#now()), "released");
  }

  /**
   * AllocationEngine.decline: the slot of the holder's lease on `ipv4` goes to
   * {@link declinedHost} until `probationSeconds` (s) from now, durably.
   */
  decline(
    host6: string,
    ipv4: number,
    probationSeconds: number,
    scope?: ClientScope,
  ): Promise<EngineResult> {
    const refused = this.#writer.refuse();
    if (refused) return refused;
    const key = this.#activeByHost.get(holderOf(host6, scope));
    const row = key === undefined ? undefined : this.#rows.get(key);
    const ps = row ? this.#index.served(row) : undefined;
    if (key === undefined || !row || row.ipv4 !== ipv4 || !ps) {
      return _fail("no-such-lease", `host ${host6} holds no lease on ${_text(ipv4)} to decline`);
    }
    const now = this.#now();
    const held = _lease(ipv4, row.portSet, declinedHost(ipv4, row.portSet.psid), ps, now, now);
    const lease = { ...held, expiresAt: now + Math.max(1, probationSeconds) * 1000 };
    return this.#writer.apply(key, lease, "renewed");
  }

  /** AllocationEngine.release, once: the holder's active lease on `ipv4` becomes `released`. */
  release(host6: string, ipv4: number, scope?: ClientScope): Promise<EngineResult> {
    const refused = this.#writer.refuse();
    if (refused) return refused;
    const key = this.#activeByHost.get(holderOf(host6, scope));
    const row = key === undefined ? undefined : this.#rows.get(key);
    if (key === undefined || row?.ipv4 !== ipv4) {
      return _fail("no-such-lease", `host ${host6} holds no active lease on ${_text(ipv4)}`);
    }
    return this.#writer.apply(key, _copy(row, "released", this.#now()), "released");
  }
}
