/**
 * Interface, address and route configuration over rtnetlink (rtnetlink(7), netlink(7);
 * message layouts from include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h), through
 * the libc wrappers of `libc.ts` (`bun:ffi`). One blocking request/ACK exchange per call
 * (netlink_request.ts: open a NETLINK_ROUTE socket, send the request with NLM_F_ACK, wait,
 * bounded, for the kernel's answer, close).
 *
 * Everything acts in the network namespace of the calling process. Errors are
 * {@link SysError}s; when the kernel explains a refusal (extended ACK, NETLINK_EXT_ACK) its
 * text is part of the message.
 *
 * @module
 */
import { parseIPv4, parseIPv6 } from "../net/addr.ts";
import * as libc from "./libc.ts";
import { Errno, SysError } from "./libc.ts";
import { exchange, NetlinkMessage } from "./netlink_request.ts";

const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLM_F_REPLACE = 0x100;

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;

const IFF_UP = 0x1;
const IFLA_MTU = 4;
const IFLA_TXQLEN = 13;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_F_NODAD = 0x02;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_TABLE = 15;
const RTA_METRICS = 8;
const RTAX_MTU = 2;
const RTAX_ADVMSS = 8;
const RTA_ENCAP_TYPE = 21;
const RTA_ENCAP = 22;
const NLA_F_NESTED = 0x8000;
const LWTUNNEL_ENCAP_SEG6 = 5;
const LWTUNNEL_ENCAP_SEG6_LOCAL = 7;
const SEG6_IPTUNNEL_SRH = 1;
const SEG6_IPTUN_MODE_ENCAP_RED = 3;
const SEG6_LOCAL_ACTION = 1;
const SEG6_LOCAL_NH4 = 4;
const SEG6_LOCAL_ACTION_END_DX4 = 6;
const RT_TABLE_MAIN = 254;
const RT_TABLE_COMPAT = 252;
const RTPROT_STATIC = 4;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const RT_SCOPE_NOWHERE = 255;
const RTN_UNICAST = 1;

/** The index of interface `name`; throws a {@link SysError} ENODEV when there is none. */
export function linkIndex(name: string): number {
  return _index(name, `interface ${name}`);
}

function _index(name: string, op: string): number {
  const index = libc.ifNameToIndex(name);
  if (index < 0) throw new SysError(op, index, `no interface ${name}`);
  return index;
}

/** Sets interface `name` up (`ip link set NAME up`). */
export function linkSetUp(name: string): void {
  _link(`link set ${name} up`, name, IFF_UP, IFF_UP);
}

/** Sets interface `name` down (`ip link set NAME down`). */
export function linkSetDown(name: string): void {
  _link(`link set ${name} down`, name, 0, IFF_UP);
}

/** Sets the MTU of interface `name` (`ip link set NAME mtu MTU`). */
export function linkSetMtu(name: string, mtu: number): void {
  _link(`link set ${name} mtu ${mtu}`, name, 0, 0, (m) => m.attrU32(IFLA_MTU, mtu));
}

/** Sets the transmit queue length of `name` (`ip link set NAME txqueuelen N`). */
export function linkSetTxQueueLen(name: string, length: number): void {
  _link(`link set ${name} txqueuelen ${length}`, name, 0, 0, (m) => m.attrU32(IFLA_TXQLEN, length));
}

/** Deletes interface `name` (`ip link del NAME`). */
export function linkDelete(name: string): void {
  const index = _index(name, `link del ${name}`);
  const m = new NetlinkMessage(RTM_DELLINK, 0);
  _ifinfomsg(m, index, 0, 0);
  exchange(`link del ${name}`, m);
}

export interface AddressOptions {
  /** IPv6 only: skip duplicate address detection, so the address is usable at once. */
  noDad?: boolean;
}

/**
 * Adds an address with its prefix length to `name`: `"192.0.2.2/32"`, `"2001:db8:1::2/64"`
 * (`ip addr add CIDR dev NAME`). A bare address gets /32 or /128.
 */
export function addressAdd(name: string, cidr: string, opts: AddressOptions = {}): void {
  _address(
    RTM_NEWADDR,
    NLM_F_CREATE | NLM_F_EXCL,
    `addr add ${cidr} dev ${name}`,
    name,
    cidr,
    opts,
  );
}

/** Removes an address from `name` (`ip addr del CIDR dev NAME`). */
export function addressDel(name: string, cidr: string): void {
  _address(RTM_DELADDR, 0, `addr del ${cidr} dev ${name}`, name, cidr, {});
}

/** A route, as `ip route add DST [via GW] [dev DEV] [src SRC] [table T] [metric M]` takes it. */
export interface RouteSpec {
  /** `"0.0.0.0/0"`, `"default"` (IPv4), `"::/0"`, any CIDR, or a bare address (host route). */
  dst: string;
  /** Output interface. */
  dev?: string;
  /** Next hop (same family as dst). */
  via?: string;
  /** Preferred source address for locally generated packets. */
  src?: string;
  /** Routing table (default main, 254). */
  table?: number;
  /** Route metric / priority. */
  metric?: number;
  /** Path MTU of the route in bytes (RTAX_MTU, `mtu N`). */
  mtu?: number;
  /** MSS advertised by TCP connections using the route, bytes (RTAX_ADVMSS, `advmss N`). */
  advmss?: number;
  /** A lightweight tunnel on the route (`encap …`): see {@link RouteEncap}. */
  encap?: RouteEncap;
}

/**
 * Lightweight tunnel encapsulations (include/uapi/linux/{lwtunnel,seg6_iptunnel,seg6_local}.h):
 * - `seg6-encap-red`: `encap seg6 mode encap.red segs SEGMENT`: an outer IPv6 header to
 *   `segment`, no SRH for one segment (RFC 8986 H.Encaps.Red): IPv4-in-IPv6, next header 4.
 * - `seg6local-end-dx4`: `encap seg6local action End.DX4 nh4 NH4`: remove the outer IPv6
 *   header and route the inner IPv4 packet (RFC 8986 §4.6; nh4 0.0.0.0: by its destination).
 */
export type RouteEncap =
  | { readonly kind: "seg6-encap-red"; readonly segment: string }
  | { readonly kind: "seg6local-end-dx4"; readonly nh4?: string };

/** Adds a route (fails with EEXIST when it is there already). */
export function routeAdd(route: RouteSpec): void {
  _route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, `route add ${_describe(route)}`, route);
}

/**
 * Adds a route, or changes the one with the same destination, table and metric in place
 * (`ip route replace`): no moment without it, as a delete and add would leave.
 */
export function routeReplace(route: RouteSpec): void {
  _route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, `route replace ${_describe(route)}`, route);
}

/** Deletes a route (ESRCH when there is no such route). */
export function routeDel(route: RouteSpec): void {
  _route(RTM_DELROUTE, 0, `route del ${_describe(route)}`, route);
}

// --- request builders ------------------------------------------------------------------

function _link(
  op: string,
  name: string,
  flags: number,
  change: number,
  attrs?: (m: NetlinkMessage) => void,
): void {
  const index = _index(name, op);
  const m = new NetlinkMessage(RTM_NEWLINK, 0);
  _ifinfomsg(m, index, flags, change);
  attrs?.(m);
  exchange(op, m);
}

/** struct ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32. */
function _ifinfomsg(m: NetlinkMessage, index: number, flags: number, change: number): void {
  m.u8(0).u8(0).u16(0).u32(index).u32(flags).u32(change);
}

function _address(
  type: number,
  flags: number,
  op: string,
  name: string,
  cidr: string,
  opts: AddressOptions,
): void {
  const prefix = _parseCidr(cidr, op);
  const index = _index(name, op);
  const m = new NetlinkMessage(type, flags);
  // struct ifaddrmsg: family u8, prefixlen u8, flags u8, scope u8, index u32.
  m.u8(prefix.family)
    .u8(prefix.length)
    .u8(opts.noDad ? IFA_F_NODAD : 0)
    .u8(RT_SCOPE_UNIVERSE)
    .u32(index);
  m.attr(IFA_LOCAL, prefix.bytes);
  m.attr(IFA_ADDRESS, prefix.bytes);
  exchange(op, m);
}

function _route(type: number, flags: number, op: string, route: RouteSpec): void {
  exchange(op, _routeMessage(type, flags, op, route));
}

/**
 * The bytes of the `ip route add` request for `route` (sequence number 0), for tests that
 * compare them with iproute2's. Throws like {@link routeAdd} on a bad spec or unknown device.
 */
export function encodeRouteAdd(route: RouteSpec): Uint8Array {
  const op = `route add ${_describe(route)}`;
  return _routeMessage(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, op, route).finish(0);
}

function _routeMessage(type: number, flags: number, op: string, route: RouteSpec): NetlinkMessage {
  const dst = _parseCidr(route.dst, op);
  const via = route.via === undefined ? undefined : _parseAddress(route.via, dst.family, op);
  const src = route.src === undefined ? undefined : _parseAddress(route.src, dst.family, op);
  if (route.dev === undefined && via === undefined) {
    throw new SysError(op, Errno.EINVAL, "a route needs a device (dev) or a next hop (via)");
  }
  const index = route.dev === undefined ? undefined : _index(route.dev, op);
  const table = route.table ?? RT_TABLE_MAIN;
  const adding = type === RTM_NEWROUTE;
  // Like iproute2: a route without a next hop is on-link (scope link) for IPv4; a delete
  // matches any scope, protocol and type.
  const scope = !adding
    ? RT_SCOPE_NOWHERE
    : via === undefined && dst.family === libc.AF_INET
      ? RT_SCOPE_LINK
      : RT_SCOPE_UNIVERSE;
  const m = new NetlinkMessage(type, flags);
  // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8); flags u32.
  m.u8(dst.family)
    .u8(dst.length)
    .u8(0)
    .u8(0)
    .u8(table < 256 ? table : RT_TABLE_COMPAT)
    .u8(adding ? RTPROT_STATIC : 0)
    .u8(scope)
    .u8(adding ? RTN_UNICAST : 0)
    .u32(0);
  if (dst.length > 0) m.attr(RTA_DST, dst.bytes);
  if (index !== undefined) m.attrU32(RTA_OIF, index);
  if (via !== undefined) m.attr(RTA_GATEWAY, via);
  if (src !== undefined) m.attr(RTA_PREFSRC, src);
  if (route.metric !== undefined) m.attrU32(RTA_PRIORITY, route.metric);
  m.attrU32(RTA_TABLE, table);
  if (route.mtu !== undefined || route.advmss !== undefined) {
    m.nest(RTA_METRICS, (n) => {
      if (route.mtu !== undefined) n.attrU32(RTAX_MTU, route.mtu);
      if (route.advmss !== undefined) n.attrU32(RTAX_ADVMSS, route.advmss);
    });
  }
  if (route.encap) _encap(m, route.encap, op);
  return m;
}

function _encap(m: NetlinkMessage, encap: RouteEncap, op: string): void {
  if (encap.kind === "seg6-encap-red") {
    const segment = _parseAddress(encap.segment, libc.AF_INET6, op);
    // struct seg6_iptunnel_encap { int mode; struct ipv6_sr_hdr srh; } with one segment:
    // nexthdr 0, hdrlen 2 (8-byte units past the first 8), type 4 (SRH), segments_left 0,
    // first_segment 0, flags 0, tag 0, then the segment (as iproute2 encodes it).
    const info = new Uint8Array(28);
    new DataView(info.buffer).setInt32(0, SEG6_IPTUN_MODE_ENCAP_RED, true);
    info.set([0, 2, 4, 0, 0, 0, 0, 0], 4);
    info.set(segment, 12);
    m.nest(RTA_ENCAP | NLA_F_NESTED, (n) => n.attr(SEG6_IPTUNNEL_SRH, info));
    m.attrU16(RTA_ENCAP_TYPE, LWTUNNEL_ENCAP_SEG6);
  } else {
    const nh4 = _parseAddress(encap.nh4 ?? "0.0.0.0", libc.AF_INET, op);
    m.nest(RTA_ENCAP | NLA_F_NESTED, (n) =>
      n.attrU32(SEG6_LOCAL_ACTION, SEG6_LOCAL_ACTION_END_DX4).attr(SEG6_LOCAL_NH4, nh4),
    );
    m.attrU16(RTA_ENCAP_TYPE, LWTUNNEL_ENCAP_SEG6_LOCAL);
  }
}

function _describe(route: RouteSpec): string {
  let text = route.dst;
  if (route.via !== undefined) text += ` via ${route.via}`;
  if (route.dev !== undefined) text += ` dev ${route.dev}`;
  if (route.src !== undefined) text += ` src ${route.src}`;
  if (route.table !== undefined) text += ` table ${route.table}`;
  if (route.metric !== undefined) text += ` metric ${route.metric}`;
  if (route.encap?.kind === "seg6-encap-red")
    text += ` encap seg6 mode encap.red segs ${route.encap.segment}`;
  if (route.encap?.kind === "seg6local-end-dx4")
    text += ` encap seg6local action End.DX4 nh4 ${route.encap.nh4 ?? "0.0.0.0"}`;
  return text;
}

interface _Prefix {
  family: number;
  bytes: Uint8Array;
  length: number;
}

function _parseAddress(text: string, family: number, op: string): Uint8Array {
  const parsed = _parseCidr(text, op);
  if (parsed.family !== family) {
    throw new SysError(op, Errno.EINVAL, `${text} is not of the destination's address family`);
  }
  return parsed.bytes;
}

function _parseCidr(text: string, op: string): _Prefix {
  const spec = text === "default" ? "0.0.0.0/0" : text;
  const slash = spec.indexOf("/");
  const addrText = slash < 0 ? spec : spec.slice(0, slash);
  const lenText = slash < 0 ? undefined : spec.slice(slash + 1);
  const v4 = parseIPv4(addrText);
  const family = v4 !== null ? libc.AF_INET : libc.AF_INET6;
  const bytes = v4 !== null ? _ipv4Bytes(v4) : parseIPv6(addrText);
  const max = family === libc.AF_INET ? 32 : 128;
  const length = lenText === undefined ? max : /^\d{1,3}$/.test(lenText) ? Number(lenText) : -1;
  if (bytes === null || length < 0 || length > max) {
    throw new SysError(op, Errno.EINVAL, `${JSON.stringify(text)} is not an address or CIDR`);
  }
  return { family, bytes, length };
}

function _ipv4Bytes(value: number): Uint8Array {
  return new Uint8Array([value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]);
}

// --- the exchange ------------------------------------------------------------------------
