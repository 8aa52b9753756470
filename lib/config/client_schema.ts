/**
 * Every setting of `dstm client`, once (./setting.ts).
 *
 * @module
 */
import { DEFAULT_NAPT_TIMEOUTS } from "../tunnel/napt.ts";
import { DHCP6_SERVER_PORT } from "../wire/dhcp4o6.ts";
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

const napt = (name: string, doc: string, seconds: number): Setting => ({
  name,
  kind: { type: "duration" },
  arg: "<duration>",
  doc,
  default: `${seconds}s`,
  reloadable: true,
});

const settings: Setting[] = [
  {
    name: "protocol",
    kind: { type: "choice", choices: ["dstm", "dhcp4o6"] },
    arg: "<name>",
    doc: "allocation protocol: native DSTM, or DHCPv4-over-DHCPv6 (RFC 7341)",
    default: "dstm",
  },
  serverSetting(
    "the DSTM server's IPv6 address (dhcp4o6: the 4o6 server's, or ff02::1:2[%IF]: without %IF, on the interface of this host's address towards --tep); required; repeat it for servers sharing one database: the next is tried when one stays silent",
  ),
  serverPortSetting({
    defaultDoc: `${DSTM_PORT}; dhcp4o6: ${DHCP6_SERVER_PORT}`,
    deprecated: ["port"],
  }),
  {
    name: "tep",
    kind: { type: "string" },
    arg: "<v6>",
    doc: "use this TEP instead of the one the server names (required with dhcp4o6: DHCP names none)",
  },
  {
    name: "tep4",
    kind: { type: "string" },
    arg: "<v4>",
    doc: "dhcp4o6: the TEP's IPv4 address, if known (shown in the status)",
  },
  {
    name: "host6",
    kind: { type: "string" },
    arg: "<v6>",
    doc: "this host's IPv6 address for the tunnel",
    defaultDoc: "the source address towards the server",
    deprecated: ["source"],
  },
  {
    name: "ifname",
    kind: { type: "string" },
    arg: "<name>",
    doc: "DTI interface name",
    default: "dti0",
  },
  {
    name: "dti",
    // The modes of lib/client/dti.ts (DtiMode); test/client_kernel_dti.test.ts checks they agree.
    kind: { type: "choice", choices: ["tun", "kernel", "ip6tnl", "seg6"] },
    arg: "<mode>",
    doc: "what carries IPv4 in IPv6: tun (userspace, all features), ip6tnl (the kernel's tunnel device), seg6 (kernel seg6 routes, where ip6tnl is missing), kernel (ip6tnl, else seg6); the kernel ones refuse --on-demand and --no-offload and use tun for shared (port-set) leases",
    default: "tun",
  },
  {
    name: "kernel-encap",
    kind: { type: "bool" },
    doc: "with --dti tun: the Workers check each packet (leased source, port set and NAPT, MTU) and hand it back to the kernel through the DTI, which encapsulates it to the TEP (seg6 encap.red) and segments after encapsulation; sets forwarding, accept_local, rp_filter and IPv6 force_forwarding (Linux ≥ 6.17) on the DTI only, and a rule iif DTI lookup 4608; a host firewall's IPv6 FORWARD chain with a policy of DROP (Docker's) must accept iif DTI",
  },
  {
    name: "route",
    kind: { type: "list" },
    arg: "<cidr>",
    doc: "IPv4 route through the DTI (repeatable)",
    defaultDoc: "0.0.0.0/0",
  },
  {
    name: "mtu",
    kind: { type: "int" },
    arg: "<n>",
    doc: "DTI MTU",
    defaultDoc: "IPv6 link MTU − 40",
  },
  ...tunnelSettings({
    device: "DTI",
    peer: "the TEP",
    superPackets: "TCP super-packets cut into checked segments",
  }),
  {
    name: "udp-gro",
    kind: { type: "bool" },
    doc: "also coalesce UDP datagrams into the DTI (Linux ≥ 6.2, with offloads): fewer writes, but the host's netfilter sees a run of datagrams as one packet (length, rate and packet-count rules match it, not each datagram), which the kernel's own UDP GRO does only for sockets that ask (UDP_GRO)",
  },
  {
    name: "on-demand",
    kind: { type: "bool" },
    doc: "hold a lease only while IPv4 traffic flows (DTI up at once with 192.0.0.2)",
  },
  {
    name: "idle",
    kind: { type: "duration" },
    arg: "<duration>",
    doc: "on-demand: release the lease after this long without traffic",
    default: "60s",
    reloadable: true,
  },
  {
    name: "release-wait",
    kind: { type: "duration" },
    arg: "<duration>",
    doc: "at stop (SIGTERM), wait this long at most for the server to acknowledge the RELEASE (sent twice); then stop anyway, logging release-failed (the server frees the address when the lease expires); 1s–60s",
    default: "2s",
  },
  napt(
    "napt-tcp-established",
    "shared lease: idle timeout of an established TCP mapping (RFC 5382: ≥ 7440s)",
    DEFAULT_NAPT_TIMEOUTS.tcpEstablished,
  ),
  napt(
    "napt-tcp-transitory",
    "shared lease: idle timeout of a half-open or closed TCP mapping (RFC 5382: ≥ 240s)",
    DEFAULT_NAPT_TIMEOUTS.tcpTransitory,
  ),
  napt(
    "napt-udp",
    "shared lease: idle timeout of a UDP mapping (RFC 4787: ≥ 120s)",
    DEFAULT_NAPT_TIMEOUTS.udp,
  ),
  napt(
    "napt-icmp",
    "shared lease: idle timeout of an ICMP echo mapping (RFC 5508: ≥ 60s)",
    DEFAULT_NAPT_TIMEOUTS.icmp,
  ),
  napt(
    "fragment-timeout",
    "shared lease: how long the fragments of a datagram are tracked",
    DEFAULT_NAPT_TIMEOUTS.fragment,
  ),
  {
    name: "key",
    kind: { type: "string" },
    arg: "<file>",
    path: true,
    doc: "sign requests with the key in FILE; on reload, answers signed with the key it replaces are still accepted for --key-overlap",
    reloadable: true,
  },
  KEY_OVERLAP_SETTING,
  {
    name: "control",
    kind: { type: "string" },
    arg: "<path>",
    path: true,
    doc: "status socket for `dstm client status`",
    defaultDoc: runtimeSocketDoc("client-IFNAME.sock"),
  },
  METRICS_SETTING,
  ...COMMON_SETTINGS,
];

export const CLIENT_SCHEMA: SettingSchema = { command: "dstm client", settings };
