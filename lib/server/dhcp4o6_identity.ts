/**
 * Who a DHCPv4-over-DHCPv6 client is (`dstm server --dhcp4o6-identity`):
 *
 * - `source` (default): the IPv6 address the query came from (relayed: the peer-address). The
 *   lease, the TEP binding and the identity are one address, and no one can touch a lease
 *   without sending from (and receiving at) that address. A host that changes its source
 *   (RFC 8981 temporary addresses) gets another lease; two DHCPv4 clients behind one address
 *   share one.
 * - `client-id`: the DHCPv4 client identifier (option 61), else `htype` + `chaddr` (RFC 2131
 *   §4.2), as ISC Kea keys leases. A client that comes back from another IPv6 address gets its
 *   lease, which moves there (the TEP binding with it) when it REQUESTs it; a second client
 *   behind an address that holds another client's lease gets no address (the engine and the
 *   TEP bind one IPv4 lease to one IPv6 address), counted as `identity-conflict`.
 * - `chaddr`: the same with `htype` + `chaddr` only.
 *
 * The identity is not authenticated (RFC 7341 has none): in the keyed modes, anyone who sends a
 * client's identifier can move that client's lease to itself, as on any DHCPv4 link. The table
 * lives in memory, at most `max` identities, least recently used forgotten; after a restart a
 * client is known again at its next REQUEST.
 *
 * @module
 */
import type { Dhcp4Message } from "../wire/dhcp4.ts";

export type Dhcp4o6IdentityMode = "source" | "client-id" | "chaddr";
export const DHCP4O6_IDENTITY_MODES: readonly Dhcp4o6IdentityMode[] = [
  "source",
  "client-id",
  "chaddr",
];

/** The identity key of a query in `mode`, or null in `source` mode. */
export function dhcp4Identity(mode: Dhcp4o6IdentityMode, m: Dhcp4Message): string | null {
  if (mode === "source") return null;
  const id = m.options.clientId;
  if (mode === "client-id" && id && id.length > 0) return `id:${Buffer.from(id).toString("hex")}`;
  return `hw:${m.htype}:${Buffer.from(m.chaddr).toString("hex")}`;
}

/** identity ⇄ the IPv6 address its lease is bound to; bounded, least recently used forgotten. */
export class IdentityTable {
  readonly #byKey = new Map<string, string>();
  readonly #byHost = new Map<string, string>();
  readonly #max: number;

  constructor(max = 65_536) {
    this.#max = max;
  }

  /** The IPv6 address whose lease is `key`'s, if known. */
  hostOf(key: string): string | undefined {
    return this.#byKey.get(key);
  }

  /** The identity whose lease `host6` holds, if known. */
  keyOf(host6: string): string | undefined {
    return this.#byHost.get(host6);
  }

  /** `key`'s lease is now bound to `host6`. */
  set(key: string, host6: string): void {
    this.forget(key);
    this.forgetHost(host6);
    if (this.#byKey.size >= this.#max) {
      const oldest = this.#byKey.keys().next().value as string;
      this.forget(oldest);
    }
    this.#byKey.set(key, host6);
    this.#byHost.set(host6, key);
  }

  forget(key: string): void {
    const host = this.#byKey.get(key);
    if (host === undefined) return;
    this.#byKey.delete(key);
    if (this.#byHost.get(host) === key) this.#byHost.delete(host);
  }

  forgetHost(host6: string): void {
    const key = this.#byHost.get(host6);
    if (key !== undefined) this.forget(key);
  }

  get size(): number {
    return this.#byKey.size;
  }
}
