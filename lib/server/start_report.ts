/**
 * What the server says once at start (./server.ts): the `start` line (where it listens, the
 * pools and their size, the lease store, authentication, the admission limits in force, the
 * control and metrics endpoints) and the warnings about channels nobody authenticates:
 *
 * - `auth-off`: no `--key`, so nobody authenticates the hosts' DISCOVER / REQUEST / RELEASE
 *   (any host on the link can take leases, and with a spoofed source renew or release another
 *   host's); `dstm server --check` says it too ({@link AUTH_OFF_WARNING});
 * - `tep-auth-off`: BIND / UNBIND / SNAPSHOT to the TEPs are unsigned (no `--tep-key`) and a
 *   TEP address is not on this host (docs/security.md);
 * - `dhcp4o6-open`: DHCPv4-over-DHCPv6 is on with host keys but no allow list; RFC 7341 has no
 *   authentication, so any host can lease over it whatever `--key` says.
 *
 * @module
 */
import type { PoolStats } from "../alloc/engine.ts";
import type { Logger } from "../control/log.ts";
import { interfaceOfIPv6 } from "../sys/ifinfo.ts";
import { ADMISSION_DEFAULTS, siteCap } from "./admission.ts";
import type { ServerConfig } from "./server_config.ts";

/** Where the running server is: its UDP endpoint, pools, store, keys and metrics endpoint. */
export interface StartFacts {
  /** `[address]:port` of the native protocol's endpoint. */
  readonly listen: string;
  readonly pools: readonly PoolStats[];
  /** The PostgreSQL store's description; undefined: SQLite at `config.db`, or memory. */
  readonly store?: string;
  /** Host keys in use; undefined: authentication off. */
  readonly keys?: number;
  /** Where the metrics endpoint listens, if any. */
  readonly metrics?: string;
  /** Active leases the pools do not serve (./orphans.ts): in `active`, and said as `orphaned`. */
  readonly orphaned?: number;
}

/** Logs the one `start` line at info. */
export function logStart(log: Logger, config: ServerConfig, facts: StartFacts): void {
  const pools = facts.pools;
  log.info("start", {
    listen: facts.listen,
    pools: pools.map((p) => p.pool).join(","),
    addresses: pools.reduce((n, p) => n + p.addresses, 0),
    capacity: pools.reduce((n, p) => n + p.size, 0),
    // Every active lease, orphans included: as `lease ls` and dstm_leases_active count them.
    active: pools.reduce((n, p) => n + p.active, 0) + (facts.orphaned ?? 0),
    orphaned: facts.orphaned || undefined,
    store: facts.store ?? (config.db ? `sqlite:${config.db}` : "memory"),
    auth: facts.keys !== undefined ? `${facts.keys} key(s)` : "off",
    "max-leases-per-prefix":
      config.admission?.maxLeasesPerPrefix ?? ADMISSION_DEFAULTS.maxLeasesPerPrefix,
    "max-leases-per-site": siteCap(config.admission),
    "prefix-rate": config.admission?.ratePerSecond ?? ADMISSION_DEFAULTS.ratePerSecond,
    "tep-auth": config.tepKeys?.length ? `${config.tepKeys.length} key(s)` : "off",
    control: config.control,
    metrics: facts.metrics,
  });
}

/**
 * What `auth-off` says: what a server without `--key` exposes and how to close it. The native
 * protocol's authentication is docs/security.md's (an AUTH option with an HMAC over the
 * message); without it the server answers anyone who can reach its UDP port.
 */
export const AUTH_OFF_WARNING =
  "no --key: DSTM requests are not authenticated, so any host that reaches this server's port can take leases (exhaust the pools) and, with a spoofed IPv6 source, renew or release another host's lease; make a key with `dstm keygen /etc/dstm/key` and give it as --key (TOML key = ...) to the server and every client";

/**
 * Warns once about each unauthenticated channel: the native protocol without `--key`
 * (`auth-off`, {@link AUTH_OFF_WARNING}); DHCPv4-over-DHCPv6 with host keys on
 * (`keysOn`) and no allow list; the TEP channel unsigned, unless every TEP address is
 * configured on this host (loopback included): then that channel never leaves it.
 */
export function warnUnauthenticated(log: Logger, config: ServerConfig, keysOn: boolean): void {
  if (!keysOn) log.warn("auth-off", { detail: AUTH_OFF_WARNING });
  if (config.dhcp4o6 && keysOn && !config.dhcp4o6.allow) {
    log.warn("dhcp4o6-open", {
      detail:
        "DHCPv4-over-DHCPv6 has no authentication: any host can lease over it, whatever --key says",
    });
  }
  if (config.tepKeys?.length) return;
  if (config.pools.every((pool) => interfaceOfIPv6(pool.tep6) !== null)) return;
  log.warn("tep-auth-off", {
    detail:
      "BIND/UNBIND/SNAPSHOT to the TEPs are unsigned; give --tep-key FILE here and --key FILE to each dstm tep on another machine",
  });
}
