/**
 * The DHCPv4-over-DHCPv6 client's settings, constants and binding (split from
 * ./dhcp4o6_client.ts, which re-exports them).
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import type { RetryPolicy } from "./protocol.ts";

/** Retransmission as RFC 2131 §4.1: 4 s, 8 s, 16 s, 32 s (each ± 1 s), then give up. */
export const DHCP4O6_DEFAULT_RETRY: RetryPolicy = { initialMs: 4000, maxMs: 64_000, tries: 4 };

/** Option 55 of the client's requests (lib/wire/dhcp4_requests.ts). */
export { DHCP4O6_PARAMETER_REQUEST_LIST } from "../wire/dhcp4_requests.ts";

/**
 * Longest lease the client reports (s). The client service arms a timer at half the lease;
 * timers beyond 2^31 − 1 ms fire at once, so an infinite (or 136-year) lease is reported as
 * this, about 49 days, and renewed every 24.
 */
export const DHCP4O6_MAX_REPORTED_LEASE = Math.floor((2 ** 31 - 1) / 500);

export interface Dhcp4o6ClientOptions {
  /** A unicast IPv6 address of the 4o6 server, or `ff02::1:2` (optionally `ff02::1:2%IF`). */
  readonly server: string;
  /** Outgoing interface for `ff02::1:2` (discovery, rebinding); default the one of `host6`. */
  readonly ifname?: string;
  /** The host's IPv6 address: the socket's address, the tunnel source. */
  readonly host6: string;
  /** The TEP's IPv6 address (DHCP does not carry it). */
  readonly tep6: string;
  /** The TEP's IPv4 address, when known. */
  readonly tep4?: number;
  /** Client hardware address; default the MAC of `host6`'s interface, else a stable 02:… one. */
  readonly chaddr?: Uint8Array;
  /** Option 61 value (type byte + id); default `1` + `chaddr`. */
  readonly clientId?: Uint8Array;
  /**
   * Option 88 server list (see {@link discoverServers}): where rebinding goes, and with
   * `server` `ff02::1:2` also DISCOVER; default `ff02::1:2`.
   */
  readonly servers?: readonly string[];
  /** Retransmission (default {@link DHCP4O6_DEFAULT_RETRY}). */
  readonly retry?: Partial<RetryPolicy>;
  readonly now?: () => number;
  readonly log?: Logger;
  /** Local address of the socket (default `host6`). */
  readonly bind?: string;
  /** UDP port the client sends from and listens on (default 546; tests use others). */
  readonly clientPort?: number;
  /** UDP port of the servers (default 547). */
  readonly serverPort?: number;
  /** Sees every query as it is sent (the raw DHCPv6 payload and where it goes): for tests. */
  readonly onSend?: (payload: Uint8Array, address: string) => void;
}

/** The lease as the protocol knows it (what ClientLease does not carry). */
export interface Dhcp4o6Binding {
  readonly ipv4: number;
  /** Server identifier (option 54) of the ACK: needed by RELEASE. */
  readonly serverId: number;
  /** IPv6 address (with zone for link-local) the ACK came from. */
  readonly responder: string;
  readonly leaseTime: number;
  /** T1 and T2 in seconds after `obtainedAt`. */
  readonly t1: number;
  readonly t2: number;
  readonly obtainedAt: number;
}
