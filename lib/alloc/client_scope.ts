/**
 * Who asks the allocation engine, beyond the host's IPv6 address: what the DHCPv4-over-DHCPv6
 * service adds to a decision (issue 11). The native protocol passes none of it: its holder is
 * the host6, every pool serves it.
 *
 * - `identity`: the lease's holder is this DHCPv4 client (RFC 2131 §4.2; lib/lease/lease.ts
 *   `leaseHolder`), not the IPv6 address, so two clients behind one address hold a lease each
 *   and a client's lease follows it to another address.
 * - `pools`: the names of the pools that serve the client's link (lib/server/dhcp4o6_link.ts,
 *   RFC 8415 §13.1): a new lease comes only from them, a REQUEST for an address of another
 *   pool is refused (`no-such-lease`: the client starts again with DISCOVER), and a lease the
 *   holder has in another pool is ended when it asks for one on this link. Absent: every pool.
 *
 * @module
 */

export interface ClientScope {
  /** The DHCPv4 client's identity (`id:…` / `hw:…`), the lease's holder; absent: the host6. */
  readonly identity?: string;
  /** Names of the pools that may serve this client; absent: every pool. */
  readonly pools?: ReadonlySet<string>;
}

/** True when the pool named `pool` may serve a client of `scope`. */
export function poolServes(pool: string, scope: ClientScope | undefined): boolean {
  return scope?.pools === undefined || scope.pools.has(pool);
}

/** The holder key of a decision: the identity when the scope has one, else the host6. */
export function holderOf(host6: string, scope: ClientScope | undefined): string {
  return scope?.identity ?? host6;
}
