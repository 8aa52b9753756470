/**
 * The kernel's own 4over6 pieces over rtnetlink (rtnetlink(7); layouts from
 * include/uapi/linux/{if_link,if_tunnel,ip6_tunnel,fib_rules}.h), for the kernel DTI
 * (lib/client/tunnel_dti.ts):
 *
 * - {@link ip6tnlCreate}: an ip6tnl device in mode ipip6 (`ip link add NAME type ip6tnl mode
 *   ipip6 local L remote R encaplimit none hoplimit H tclass inherit|T`): IPv4 in IPv6, next
 *   header 4 (RFC 2473), from `local` to `remote`, without the Tunnel Encapsulation Limit
 *   destination option (RFC 2473 §4.1.1: "none" leaves the 8-byte option out).
 * - {@link ruleAdd} / {@link ruleDel}: policy routing rules (`ip -6 rule add pref P to DST
 *   ipproto N lookup T`), which the seg6 variant uses to hand IPv4-in-IPv6 addressed to the
 *   host to its End.DX4 route.
 *
 * Kernels built without CONFIG_IPV6_TUNNEL refuse the ip6tnl kind with EOPNOTSUPP ("Unknown
 * device type"): {@link isUnknownKind} tells that refusal apart.
 *
 * @module
 */
import { parseIPv6 } from "../net/addr.ts";
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";
import { exchange, NetlinkMessage } from "./netlink_request.ts";

const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const RTM_NEWLINK = 16;
const RTM_NEWRULE = 32;
const RTM_DELRULE = 33;

const IFLA_MTU = 4;
const IFLA_IFNAME = 3;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
// enum IFLA_IPTUN_* (if_tunnel.h).
const IFLA_IPTUN_LINK = 1;
const IFLA_IPTUN_LOCAL = 2;
const IFLA_IPTUN_REMOTE = 3;
const IFLA_IPTUN_TTL = 4;
const IFLA_IPTUN_ENCAP_LIMIT = 6;
const IFLA_IPTUN_FLOWINFO = 7;
const IFLA_IPTUN_FLAGS = 8;
const IFLA_IPTUN_PROTO = 9;
const IFLA_IPTUN_ENCAP_TYPE = 15;
const IFLA_IPTUN_ENCAP_FLAGS = 16;
const IFLA_IPTUN_ENCAP_SPORT = 17;
const IFLA_IPTUN_ENCAP_DPORT = 18;
const IFLA_IPTUN_FWMARK = 20;
/** ip6_tunnel.h: leave the encapsulation limit option out; copy the inner traffic class. */
const IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1;
const IP6_TNL_F_USE_ORIG_TCLASS = 0x2;
const IPV6_DEFAULT_TNL_ENCAP_LIMIT = 4;
const TUNNEL_ENCAP_FLAG_CSUM6 = 0x2;
const IPPROTO_IPIP = 4;

const FRA_DST = 1;
const FRA_SRC = 2;
const FRA_IIFNAME = 3;
const FRA_PRIORITY = 6;
const FRA_TABLE = 15;
const FRA_IP_PROTO = 22;
const FR_ACT_TO_TBL = 1;
const FR_ACT_UNREACHABLE = 7;

/** An ip6tnl device in mode ipip6 (IPv4 in IPv6). */
export interface Ip6tnlSpec {
  readonly name: string;
  /** The tunnel source: the host's IPv6 address. */
  readonly local: string;
  /** The tunnel destination: the TEP's IPv6 address. */
  readonly remote: string;
  /** Outer hop limit (1–255). */
  readonly hopLimit: number;
  /** Outer DSCP: −1 copies the inner one (RFC 2983, "tclass inherit"), else 0–63. */
  readonly dscp: number;
  /** The device MTU in bytes; absent: the kernel's (the underlying link's − 40). */
  readonly mtu?: number;
}

/** Creates the ip6tnl device of `spec` (down, no address). Throws a {@link SysError}. */
export function ip6tnlCreate(spec: Ip6tnlSpec): void {
  exchange(_describeTunnel(spec), _ip6tnlMessage(spec));
}

/** The bytes of the {@link ip6tnlCreate} request (sequence number 0), for tests. */
export function encodeIp6tnlCreate(spec: Ip6tnlSpec): Uint8Array {
  return _ip6tnlMessage(spec).finish(0);
}

/** True when `error` is the kernel refusing a link kind it was built without. */
export function isUnknownKind(error: unknown): boolean {
  return error instanceof SysError && error.errno === Errno.EOPNOTSUPP;
}

function _ip6tnlMessage(spec: Ip6tnlSpec): NetlinkMessage {
  const op = _describeTunnel(spec);
  const local = _ipv6(spec.local, op);
  const remote = _ipv6(spec.remote, op);
  if (!Number.isInteger(spec.hopLimit) || spec.hopLimit < 1 || spec.hopLimit > 255)
    throw new SysError(op, Errno.EINVAL, `hop limit ${spec.hopLimit} is not 1–255`);
  if (!Number.isInteger(spec.dscp) || spec.dscp < -1 || spec.dscp > 63)
    throw new SysError(op, Errno.EINVAL, `DSCP ${spec.dscp} is not −1 (copy) or 0–63`);
  const name = new TextEncoder().encode(`${spec.name}\0`);
  if (name.length > 16)
    throw new SysError(op, Errno.EINVAL, `interface name ${spec.name} is too long`);
  const m = new NetlinkMessage(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  // struct ifinfomsg: family, pad, type, index, flags, change: all 0 for a new link.
  m.u8(0).u8(0).u16(0).u32(0).u32(0).u32(0);
  if (spec.mtu !== undefined) m.attrU32(IFLA_MTU, spec.mtu);
  m.attr(IFLA_IFNAME, name);
  m.nest(IFLA_LINKINFO, (info) => {
    info.attr(IFLA_INFO_KIND, new TextEncoder().encode("ip6tnl"));
    info.nest(IFLA_INFO_DATA, (d) => {
      // The attributes and their order are iproute2's (ip/link_ip6tnl.c), defaults included.
      d.attrU8(IFLA_IPTUN_PROTO, IPPROTO_IPIP)
        .attr(IFLA_IPTUN_LOCAL, local)
        .attr(IFLA_IPTUN_REMOTE, remote)
        .attrU8(IFLA_IPTUN_TTL, spec.hopLimit)
        .attrU8(IFLA_IPTUN_ENCAP_LIMIT, IPV6_DEFAULT_TNL_ENCAP_LIMIT)
        // Flow information, network byte order: the traffic class in bits 20–27.
        .attr(IFLA_IPTUN_FLOWINFO, _be32(spec.dscp < 0 ? 0 : (spec.dscp << 2) << 20))
        .attrU32(
          IFLA_IPTUN_FLAGS,
          IP6_TNL_F_IGN_ENCAP_LIMIT | (spec.dscp < 0 ? IP6_TNL_F_USE_ORIG_TCLASS : 0),
        )
        .attrU32(IFLA_IPTUN_LINK, 0)
        .attrU32(IFLA_IPTUN_FWMARK, 0)
        .attrU16(IFLA_IPTUN_ENCAP_TYPE, 0)
        .attrU16(IFLA_IPTUN_ENCAP_FLAGS, TUNNEL_ENCAP_FLAG_CSUM6)
        .attrU16(IFLA_IPTUN_ENCAP_SPORT, 0)
        .attrU16(IFLA_IPTUN_ENCAP_DPORT, 0);
    });
  });
  return m;
}

/**
 * A policy routing rule: packets to `dst` (CIDR) of protocol `ipProto` use `table`. IPv6
 * unless `ipv4`.
 */
export interface RuleSpec {
  readonly priority: number;
  /** An IPv4 rule (`ip -4 rule`; no `dst` / `src` then); default IPv6. */
  readonly ipv4?: boolean;
  /** Input interface name (`iif NAME`); absent: any. */
  readonly iif?: string;
  /** IPv6 destination prefix; absent: any. */
  readonly dst?: string;
  /** IPv6 source prefix; absent: any (and, deleting, a rule with any source). */
  readonly src?: string;
  /** IP protocol (next header) to match; absent: any. */
  readonly ipProto?: number;
  /** Routing table (255 local, 254 main, or any id); 0 with `unreachable`. */
  readonly table: number;
  /** No lookup: refuse what matches with ICMP unreachable (`ip rule … unreachable`, FR_ACT_UNREACHABLE). */
  readonly unreachable?: boolean;
}

/** Adds an IPv6 rule (`ip -6 rule add …`); EEXIST when the same one is there. */
export function ruleAdd(rule: RuleSpec): void {
  exchange(`rule add ${_describeRule(rule)}`, _ruleMessage(RTM_NEWRULE, rule));
}

/** Deletes an IPv6 rule (`ip -6 rule del …`); ENOENT when there is no such rule. */
export function ruleDel(rule: RuleSpec): void {
  exchange(`rule del ${_describeRule(rule)}`, _ruleMessage(RTM_DELRULE, rule));
}

/** The bytes of the {@link ruleAdd} request (sequence number 0), for tests. */
export function encodeRuleAdd(rule: RuleSpec): Uint8Array {
  return _ruleMessage(RTM_NEWRULE, rule).finish(0);
}

function _ruleMessage(type: number, rule: RuleSpec): NetlinkMessage {
  const op = `rule ${_describeRule(rule)}`;
  if (rule.ipv4 && (rule.dst !== undefined || rule.src !== undefined))
    throw new SysError(op, Errno.EINVAL, "an IPv4 rule here takes no from/to prefix");
  const [dst, dstLength] = _prefix(rule.dst, op);
  const [src, srcLength] = _prefix(rule.src, op);
  const m = new NetlinkMessage(type, type === RTM_NEWRULE ? NLM_F_CREATE | NLM_F_EXCL : 0);
  // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; flags u32.
  // Like iproute2: a table id over 255 goes in FRA_TABLE only.
  m.u8(rule.ipv4 ? libc.AF_INET : libc.AF_INET6)
    .u8(dstLength)
    .u8(srcLength)
    .u8(0)
    .u8(rule.table < 256 ? rule.table : 0)
    .u8(0)
    .u8(0)
    .u8(rule.unreachable ? FR_ACT_UNREACHABLE : FR_ACT_TO_TBL)
    .u32(0);
  m.attrU32(FRA_PRIORITY, rule.priority);
  if (dst) m.attr(FRA_DST, dst);
  if (src) m.attr(FRA_SRC, src);
  if (rule.ipProto !== undefined) m.attrU8(FRA_IP_PROTO, rule.ipProto);
  if (rule.iif !== undefined) m.attr(FRA_IIFNAME, new TextEncoder().encode(`${rule.iif}\0`));
  if (rule.table >= 256) m.attrU32(FRA_TABLE, rule.table);
  return m;
}

function _describeTunnel(spec: Ip6tnlSpec): string {
  return `link add ${spec.name} type ip6tnl mode ipip6 local ${spec.local} remote ${spec.remote}`;
}

function _describeRule(rule: RuleSpec): string {
  let text = `${rule.ipv4 ? "-4 " : ""}pref ${rule.priority}`;
  if (rule.iif !== undefined) text += ` iif ${rule.iif}`;
  if (rule.src !== undefined) text += ` from ${rule.src}`;
  if (rule.dst !== undefined) text += ` to ${rule.dst}`;
  if (rule.ipProto !== undefined) text += ` ipproto ${rule.ipProto}`;
  return rule.unreachable ? `${text} unreachable` : `${text} lookup ${rule.table}`;
}

/** An IPv6 prefix `A/N` (N 128 when absent) as its bytes and length; [undefined, 0] for none. */
function _prefix(prefix: string | undefined, op: string): [Uint8Array | undefined, number] {
  if (prefix === undefined) return [undefined, 0];
  const [text, lengthText] = prefix.split("/");
  const bytes = _ipv6(text ?? "", op);
  const length = lengthText === undefined ? 128 : Number(lengthText);
  if (!Number.isInteger(length) || length < 0 || length > 128)
    throw new SysError(op, Errno.EINVAL, `${prefix} is not an IPv6 prefix`);
  return [bytes, length];
}

function _ipv6(text: string, op: string): Uint8Array {
  const bytes = parseIPv6(text);
  if (bytes === null) throw new SysError(op, Errno.EINVAL, `${text} is not an IPv6 address`);
  return bytes;
}

function _be32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0, false);
  return out;
}
