/**
 * Every setting of `dstm tep`, once (./setting.ts).
 *
 * @module
 */
import { TEP_CONTROL_PORT } from "../server/tep_sync.ts";
import { DEFAULT_MAX_BINDINGS, SERVER_ROOM } from "../tep/binding_file.ts";
import { DSTM_PORT } from "../wire/dstm_types.ts";
import {
  COMMON_SETTINGS,
  KEY_OVERLAP_SETTING,
  METRICS_SETTING,
  runtimeSocketDoc,
  serverPortSetting,
  serverSetting,
  tunnelSettings,
} from "./common_schema.ts";
import type { Setting, SettingSchema } from "./setting.ts";

const settings: Setting[] = [
  {
    name: "ipv6",
    kind: { type: "string" },
    arg: "<addr>",
    doc: "this TEP's IPv6 address (tunnel end point, control endpoint); required",
  },
  {
    name: "ipv4",
    kind: { type: "string" },
    arg: "<addr>",
    doc: "this TEP's IPv4 address (source of its ICMPv4 errors); required",
  },
  serverSetting(
    "the DSTM server that installs bindings here; required; repeat it for servers sharing one lease database (each is sent SYNC and may BIND/UNBIND/SNAPSHOT; servers with separate databases would replace each other's bindings: the TEP warns servers-disagree)",
  ),
  serverPortSetting({ default: String(DSTM_PORT) }),
  {
    name: "route",
    kind: { type: "list" },
    arg: "<cidr>",
    doc: "IPv4 prefix served (the server's pools), routed into the tunnel (repeatable); required",
  },
  {
    name: "binding",
    kind: { type: "list" },
    arg: "<v4=v6>",
    doc: "a static binding, kept besides the server's; a reload installs added ones and withdraws removed ones (repeatable)",
    reloadable: true,
  },
  {
    name: "binding-file",
    kind: { type: "list" },
    arg: "<file>",
    path: true,
    doc: "static bindings, one a line: IPV4 IPV6 [OFFSET/PSIDLEN/PSID], # comments; read again on reload (repeatable)",
    reloadable: true,
  },
  {
    name: "key",
    kind: { type: "string" },
    arg: "<file>",
    path: true,
    doc: "the server-TEP key (the server's --tep-key FILE, never the hosts' key): require it on BIND/UNBIND/SNAPSHOT, sign SYNC; on reload, the key it replaces is still accepted for --key-overlap",
    reloadable: true,
  },
  KEY_OVERLAP_SETTING,
  {
    name: "insecure-control",
    kind: { type: "bool" },
    doc: "accept unsigned BIND/UNBIND/SNAPSHOT from a server on another host (anyone who can spoof its address can rebind hosts)",
  },
  {
    name: "ifname",
    kind: { type: "string" },
    arg: "<name>",
    doc: "name of the IPv4-side TUN device",
    default: "tep0",
  },
  {
    name: "link-mtu",
    kind: { type: "int" },
    arg: "<n>",
    doc: "MTU of the IPv6 link to the hosts; tunnel MTU = this − 40",
    default: "1500",
  },
  {
    name: "hairpin",
    kind: { type: "bool" },
    negatable: true,
    doc: "turn host-to-host traffic around (on unless --no-hairpin)",
    offDoc: "drop host-to-host traffic instead of turning it around",
  },
  {
    name: "icmp-rate",
    kind: { type: "int" },
    arg: "<n>",
    doc: "ICMP errors per second at most",
    default: "100",
  },
  {
    name: "fragment",
    kind: { type: "choice", choices: ["outer", "inner"] },
    arg: "<where>",
    doc: "an IPv4 packet above the tunnel MTU without DF: outer fragments the IPv6 packet and the host reassembles it (RFC 2473 §7.2, RFC 6333 §7); inner cuts the IPv4 packet and each fragment goes in a whole IPv6 packet (RFC 4459 §3.4), for hosts that decapsulate before IPv6 reassembly (the Linux kernel's seg6 End.DX4)",
    default: "outer",
  },
  {
    name: "rx-ring",
    kind: { type: "bool" },
    doc: "receive IPv4-in-IPv6 through an AF_PACKET ring (no system call per packet while they come) and an nftables rule in table dstm_ring_IFNAME that keeps those packets from the raw socket; needs the offloads (refused with --no-offload) and nft(8); off by default (docs/tunnel.md)",
  },
  ...tunnelSettings({
    device: "TUN",
    peer: "the host",
    superPackets: "TCP and (Linux ≥ 6.2) UDP super-packets",
  }),
  {
    name: "max-bindings",
    kind: { type: "int" },
    arg: "<n>",
    doc: "binding table size",
    defaultDoc: `${DEFAULT_MAX_BINDINGS}, or the static bindings + ${SERVER_ROOM} when more`,
  },
  {
    name: "tep-port",
    kind: { type: "int" },
    arg: "<n>",
    doc: "UDP port for the server's messages (the server's --tep-port)",
    default: String(TEP_CONTROL_PORT),
    deprecated: ["control-port"],
  },
  {
    name: "control",
    kind: { type: "string" },
    arg: "<path>",
    path: true,
    doc: "control socket for `dstm tep stats`",
    defaultDoc: runtimeSocketDoc("tep.sock"),
    deprecated: ["stats"],
  },
  METRICS_SETTING,
  ...COMMON_SETTINGS,
];

export const TEP_SCHEMA: SettingSchema = { command: "dstm tep", settings };
