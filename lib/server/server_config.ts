/**
 * The settings of one DSTM server process ({@link ServerConfig}): pools, lease times, where
 * it listens (native protocol on UDP 4607, DHCPv4-over-DHCPv6 on 547, RFC 7341), the lease
 * database, keys, admission control, the TEP channel and the clocks. Plain data, made by
 * lib/config/server_resolve.ts from flags and the configuration file (for cli/server.ts),
 * compared setting by setting on reload (./reload.ts). Times are in seconds unless the name
 * says ms.
 *
 * @module
 */
import type { PoolConfig } from "../alloc/engine.ts";
import type { Logger } from "../control/log.ts";
import type { AuthKey } from "../wire/auth.ts";
import type { Dhcp4o6IdentityMode } from "./dhcp4o6_identity.ts";
import type { ListenUdp } from "./listeners.ts";

export interface ServerConfig {
  readonly pools: readonly PoolConfig[];
  /**
   * Reloadable settings given as command-line flags (cli/server.ts): a reload reads the config
   * file again, but a flag keeps winning over it, so the reload says so; `inFile` when the
   * file sets that setting too (its value is not used).
   */
  readonly pinnedByFlags?: readonly { readonly name: string; readonly inFile: boolean }[];
  /** Default (and, unless maxLeaseTime says more, maximum) lease time in seconds. */
  readonly leaseTime: number;
  readonly maxLeaseTime?: number;
  readonly listen: { readonly address: string; readonly port: number };
  /** SQLite lease database, or a `postgres://` URL (shared by several servers); in-memory leases when absent. */
  readonly db?: string;
  /** Create the database empty even though dstm created one at `db` before (it vanished). */
  readonly newDb?: boolean;
  readonly keys?: readonly AuthKey[];
  /**
   * Server ⇄ TEP keys (`--tep-key`): sign BIND/UNBIND/SNAPSHOT, verify SYNC and BIND_ACK.
   * Never a host key (hosts hold those). Absent: the TEP channel is unauthenticated.
   */
  readonly tepKeys?: readonly AuthKey[];
  readonly sourceCheck: boolean;
  /** After a reload that changed `keys`, how long the keys it dropped stay accepted (s; default 3600). */
  readonly keyOverlapSeconds?: number;
  /** Log format and level the logger was made with (compared on reload; default text, info). */
  readonly logFormat?: "text" | "json";
  readonly logLevel?: "debug" | "info" | "warn" | "error";
  /** Unix socket path of the control API; none when absent. */
  readonly control?: string;
  /** Prometheus endpoint; none when absent. */
  readonly metrics?: { readonly address: string; readonly port: number };
  /** Warn when a pool is this full, in percent (default 90; ./pool_watch.ts). */
  readonly poolWarnPercent?: number;
  /** UDP port of the TEPs' control endpoint (default 4608). */
  readonly tepPort?: number;
  /** Source of BIND / UNBIND to the TEPs (default: the listen address, or where each TEP's SYNC arrived). */
  readonly tepSource?: string;
  /** Refuse leases whose TEP has not synced yet, instead of delivering them in its first snapshot. */
  readonly requireTep?: boolean;
  /**
   * Also answer DHCPv4-over-DHCPv6 (RFC 7341) on `address`:`port` (547), joining ff02::1:2 on
   * `interfaces`; `serverId` is the DHCPv4 server identifier (option 54).
   */
  readonly dhcp4o6?: {
    readonly address: string;
    readonly port: number;
    readonly interfaces: readonly string[];
    readonly serverId: number;
    /** IPv6 prefixes whose hosts may use 4o6 (RFC 7341 has no authentication); absent: any. */
    readonly allow?: readonly string[];
    /** IPv6 prefixes of the relays allowed to send RELAY-FORW (`--dhcp4o6-relay`); absent: see Admission. */
    readonly relays?: readonly string[];
    /** How long a DECLINEd address stays unavailable (s); default 86400. */
    readonly declineProbation?: number;
    /** Who a 4o6 client is: its IPv6 address (default), client identifier or chaddr. */
    readonly identity?: Dhcp4o6IdentityMode;
    /** Declared links, each its IPv6 prefixes (`--dhcp4o6-link-prefix`, ./dhcp4o6_link_names.ts). */
    readonly linkPrefixes?: readonly (readonly string[])[];
  };
  /**
   * Admission control (./admission.ts); each setting defaults to ADMISSION_DEFAULTS, 0 turns
   * the cap or the rate limit off.
   */
  readonly admission?: {
    readonly maxLeasesPerPrefix?: number;
    readonly hostPrefixLength?: number;
    /** Leases per site prefix (lib/alloc/prefix_caps.ts); default defaultSiteCap(maxLeasesPerPrefix). */
    readonly maxLeasesPerSite?: number;
    readonly sitePrefixLength?: number;
    readonly ratePerSecond?: number;
    readonly burst?: number;
  };
  /** Clocks (ms), injectable for tests: wall (default Date.now), monotonic (default performance.now). */
  readonly clock?: { readonly now?: () => number; readonly monotonic?: () => number };
  /** How often the sweeper looks for expired leases (ms). */
  readonly sweepIntervalMs?: number;
  /**
   * Bounds of one reclamation slice (lib/alloc/reclaimer.ts): most leases (default 100) and
   * longest time (ms, default 250); 0: no bound. Answers go out between slices.
   */
  readonly reclaim?: { readonly maxLeases?: number; readonly maxMs?: number };
  /**
   * Run the request paths on synthetic exchanges before listening (./warm_up.ts; at most
   * 2,000 exchanges or 400 ms), so that the first hosts are answered as fast as the later
   * ones. `dstm server` sets it; absent (tests that start a server in-process): no warm-up.
   */
  readonly warmUp?: boolean;
  /**
   * Makes the UDP listeners' endpoints (default: sockets, lib/sys/udp.ts). Set only by the
   * warm-up for its twin servers (./warm_up.ts), which listen on no socket.
   */
  readonly listenUdp?: ListenUdp;
  readonly log: Logger;
}
