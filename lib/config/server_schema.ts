/**
 * Every setting of `dstm server`, once: flags, the TOML file, --help and the README table
 * are generated from this list (./setting.ts).
 *
 * @module
 */
import * as v from "valibot";
import { RECLAIM_DEFAULTS } from "../alloc/engine.ts";
import { SITE_DEFAULTS } from "../alloc/prefix_caps.ts";
import { DEFAULT_PSID_OFFSET } from "../alloc/sharing.ts";
import { ADMISSION_DEFAULTS } from "../server/admission.ts";
import { DHCP4O6_IDENTITY_MODES } from "../server/dhcp4o6_identity.ts";
import { TEP_CONTROL_PORT } from "../server/tep_sync.ts";
import { DSTM_PORT } from "../wire/dstm_types.ts";
import { COMMON_SETTINGS, METRICS_SETTING, SERVER_CONTROL_DOC } from "./common_schema.ts";
import type { Setting, SettingSchema } from "./setting.ts";

/** One `[[pool]]` table (or a bare CIDR string). */
export const POOL_TABLE = v.strictObject({
  prefixes: v.optional(v.pipe(v.array(v.string()), v.minLength(1))),
  prefix: v.optional(v.string()),
  exclude: v.optional(v.array(v.string())),
  tep: v.optional(v.string()),
  share: v.optional(v.pipe(v.number(), v.integer())),
  "psid-offset": v.optional(v.pipe(v.number(), v.integer())),
  "allow-well-known-ports": v.optional(v.boolean()),
  links: v.optional(v.array(v.string())),
});

const POOL_SCHEMA = v.union([v.string(), v.array(v.union([v.string(), POOL_TABLE]))]);

const settings: Setting[] = [
  {
    name: "pool",
    kind: {
      type: "custom",
      schema: POOL_SCHEMA,
      describe:
        'a CIDR, an array of CIDRs, or [[pool]] tables (prefixes = ["CIDR", …], exclude, tep, share, psid-offset, allow-well-known-ports, links)',
    },
    arg: "<cidr>",
    repeatable: true,
    doc: "IPv4 pool (repeatable); each --pool is one pool; TOML: [[pool]] tables with their own tep, share, exclude",
    reloadable: true,
  },
  {
    name: "exclude",
    kind: { type: "list" },
    arg: "<addr>",
    doc: "address or CIDR never to hand out (repeatable)",
    reloadable: true,
  },
  {
    name: "share",
    kind: { type: "int" },
    arg: "<n>",
    doc: "share each pool address among N hosts (a power of two), each with its own port set (RFC 7597 PSID)",
    default: "1",
    reloadable: true,
  },
  {
    name: "psid-offset",
    kind: { type: "int" },
    arg: "<a>",
    doc: "RFC 7597 offset bits of the port sets, 0–15 (6: ports 0–1023 are in no set)",
    default: String(DEFAULT_PSID_OFFSET),
    reloadable: true,
  },
  {
    name: "allow-well-known-ports",
    kind: { type: "bool" },
    doc: "also hand out port sets that contain ports 0–1023 (only matters with --psid-offset 0 or above 6)",
    reloadable: true,
  },
  {
    name: "tep",
    kind: { type: "string" },
    arg: "<v6[,v4]>",
    doc: "tunnel end point the leases use: its IPv6 address and optionally its IPv4 address",
    reloadable: true,
  },
  {
    name: "listen",
    kind: { type: "string" },
    arg: "<addr:port>",
    doc: "UDP address to answer on",
    default: `[::]:${DSTM_PORT}`,
  },
  {
    name: "lease-time",
    kind: { type: "duration" },
    arg: "<duration>",
    doc: "lease time granted",
    default: "1h",
    reloadable: true,
  },
  {
    name: "max-lease-time",
    kind: { type: "duration" },
    arg: "<duration>",
    doc: "longest lease a client may ask for",
    defaultDoc: "--lease-time",
    reloadable: true,
  },
  {
    name: "db",
    kind: { type: "string" },
    arg: "<path|url>",
    path: true,
    doc: 'SQLite lease database, a postgres:// URL (several servers may share it, active-active: docs/scale-out.md), or "memory"',
    defaultDoc:
      "$DSTM_STATE_DIR/leases.db if set, else /var/lib/dstm/leases.db as root, else $XDG_STATE_HOME/dstm/leases.db (~/.local/state/dstm/leases.db)",
  },
  {
    name: "new-db",
    kind: { type: "bool" },
    doc: "start an empty lease database although one existed at --db and is gone (only once its leases have expired)",
    flagOnly: true,
  },
  {
    name: "key",
    kind: { type: "string" },
    arg: "<file>",
    path: true,
    doc: "require HMAC-SHA256 authentication with the keys in FILE (see `dstm keygen`); on reload, keys no longer in FILE are still accepted for --key-overlap",
    reloadable: true,
  },
  {
    name: "key-overlap",
    kind: { type: "duration" },
    arg: "<duration>",
    doc: "after a reload that changed --key or --tep-key, how long the keys it removed are still accepted",
    default: "1h",
    reloadable: true,
  },
  {
    name: "tep-key",
    kind: { type: "string" },
    arg: "<file>",
    path: true,
    doc: "sign BIND/UNBIND/SNAPSHOT and verify the TEPs' SYNC with the server-TEP keys in FILE (each dstm tep --key FILE); the first key signs, each verifies; on reload, keys no longer in FILE are still accepted for --key-overlap (docs/security.md); never give hosts this file",
    reloadable: true,
  },
  {
    name: "source-check",
    kind: { type: "bool" },
    negatable: true,
    doc: "refuse a HOST_IPV6 that differs from the request's source address (on unless --no-source-check)",
    offDoc: "accept a HOST_IPV6 that differs from the request's source address",
  },
  {
    name: "control",
    kind: { type: "string" },
    arg: "<path>",
    path: true,
    offable: true,
    doc: "control socket for `dstm lease ls` and `dstm server reload`",
    offDoc: "do not open a control socket (TOML: control = false)",
    defaultDoc: SERVER_CONTROL_DOC,
  },
  METRICS_SETTING,
  {
    name: "tep-port",
    kind: { type: "int" },
    arg: "<n>",
    doc: "UDP port of the TEPs' control endpoint (the TEPs' --tep-port)",
    default: String(TEP_CONTROL_PORT),
  },
  {
    name: "tep-source",
    kind: { type: "string" },
    arg: "<v6>",
    doc: "source address of BIND/UNBIND/SNAPSHOT to the TEPs (each TEP accepts only its --server address)",
    defaultDoc: "the --listen address, or where the TEP's SYNC arrived",
  },
  {
    name: "require-tep",
    kind: { type: "bool" },
    doc: "refuse leases (TEP_UNAVAILABLE) while their TEP has not connected",
  },
  {
    name: "dhcp4o6",
    kind: { type: "bool" },
    doc: "also answer DHCPv4-over-DHCPv6 (RFC 7341) on UDP 547, from the same pools",
  },
  {
    name: "dhcp4o6-listen",
    kind: { type: "string" },
    arg: "<addr:port>",
    doc: "DHCPv4-over-DHCPv6 address",
    default: "[::]:547",
  },
  {
    name: "dhcp4o6-interface",
    kind: { type: "list" },
    arg: "<ifname>",
    doc: "join ff02::1:2 on this interface (repeatable)",
    deprecatedKeys: ["dhcp4o6-interfaces"],
  },
  {
    name: "dhcp4o6-server-id",
    kind: { type: "string" },
    arg: "<ipv4>",
    doc: "DHCPv4 server identifier",
    defaultDoc: "the first pool's TEP IPv4",
  },
  {
    name: "dhcp4o6-allow",
    kind: { type: "list" },
    arg: "<prefix>",
    doc: "answer DHCPv4-over-DHCPv6 only from hosts in this IPv6 prefix (repeatable); needed with --key",
  },
  {
    name: "dhcp4o6-relay",
    kind: { type: "list" },
    arg: "<prefix>",
    doc: "take RELAY-FORW only from relays in this IPv6 prefix (repeatable); without it, any source in --dhcp4o6-allow may relay and name any host, and a link-local client heard directly is keyed by its interface (two leases when a relay hears it too)",
  },
  {
    name: "dhcp4o6-link-prefix",
    kind: { type: "list" },
    arg: "<prefix[,prefix]>",
    doc: "the IPv6 prefixes (/64 or shorter, comma-separated) of one link (repeatable; two values may not overlap): a relay's link-address in them names that link whatever Interface-ID it sends, so a link-local 4o6 client heard by two relays of it holds one lease (docs/dhcp4o6.md)",
  },
  {
    name: "pool-link",
    kind: { type: "list" },
    arg: "<addr=link>",
    doc: "the pool holding IPv4 ADDR serves the DHCPv4-over-DHCPv6 clients of LINK: an IPv6 prefix (the relay's link-address or the source), %IFNAME (receiving interface) or interface-id:TEXT (TOML: links = [...] in [[pool]]); a pool with links serves no other link (RFC 8415 §13.1)",
    reloadable: true,
  },
  {
    name: "dhcp4o6-open",
    kind: { type: "bool" },
    doc: "with --key, answer DHCPv4-over-DHCPv6 (which has no authentication) from any host anyway",
  },
  {
    name: "dhcp4o6-identity",
    kind: { type: "choice", choices: DHCP4O6_IDENTITY_MODES },
    arg: "<key>",
    doc: "who a DHCPv4-over-DHCPv6 client is: its IPv6 source address, its client identifier (option 61) or its chaddr, as Kea (docs/dhcp4o6.md)",
    default: "source",
  },
  {
    name: "decline-probation",
    kind: { type: "duration" },
    arg: "<duration>",
    doc: "how long an address a DHCPv4-over-DHCPv6 client DECLINEd stays unavailable (RFC 2131 §4.3.3; Kea's decline-probation-period; 0: none)",
    default: "24h",
  },
  {
    name: "pool-warn-percent",
    kind: { type: "int" },
    arg: "<n>",
    doc: "warn once when a pool is this full (1–100), again when it is exhausted; re-armed 5 points below",
    default: "90",
    reloadable: true,
  },
  {
    name: "max-leases-per-prefix",
    kind: { type: "int" },
    arg: "<n>",
    doc: "most leases the hosts of one host prefix may hold (0: no cap)",
    default: String(ADMISSION_DEFAULTS.maxLeasesPerPrefix),
    reloadable: true,
  },
  {
    name: "host-prefix-length",
    kind: { type: "int" },
    arg: "<bits>",
    doc: "host prefix length for the lease cap and the rate limit",
    default: String(ADMISSION_DEFAULTS.hostPrefixLength),
  },
  {
    name: "max-leases-per-site",
    kind: { type: "int" },
    arg: "<n>",
    doc: "most leases the hosts of one site prefix (a customer's /56 or /48) may hold, so that many /64s of one site cannot take the pool (0: no cap)",
    defaultDoc: `${SITE_DEFAULTS.perPrefixFactor} × --max-leases-per-prefix: ${SITE_DEFAULTS.perPrefixFactor * ADMISSION_DEFAULTS.maxLeasesPerPrefix}`,
    reloadable: true,
  },
  {
    name: "site-prefix-length",
    kind: { type: "int" },
    arg: "<bits>",
    doc: "site prefix length for --max-leases-per-site (RFC 6177: a site gets a /48 or /56)",
    default: String(SITE_DEFAULTS.sitePrefixLength),
  },
  {
    name: "prefix-rate",
    kind: { type: "int" },
    arg: "<n>",
    doc: "requests per second per source prefix, native and 4o6 (0: no limit)",
    default: String(ADMISSION_DEFAULTS.ratePerSecond),
    reloadable: true,
  },
  {
    name: "prefix-burst",
    kind: { type: "int" },
    arg: "<n>",
    doc: "requests per source prefix at once before --prefix-rate applies",
    default: String(ADMISSION_DEFAULTS.burst),
    reloadable: true,
  },
  {
    name: "reclaim-max-leases",
    kind: { type: "int" },
    arg: "<n>",
    doc: "most expired leases reclaimed in one slice; answers go out between slices (Kea's max-reclaim-leases; 0: no limit)",
    default: String(RECLAIM_DEFAULTS.maxLeases),
  },
  {
    name: "reclaim-max-ms",
    kind: { type: "int" },
    arg: "<ms>",
    doc: "longest one reclamation slice runs, in ms (Kea's max-reclaim-time; 0: no limit)",
    default: String(RECLAIM_DEFAULTS.maxMs),
  },
  ...COMMON_SETTINGS,
];

export const SERVER_SCHEMA: SettingSchema = { command: "dstm server", settings };
