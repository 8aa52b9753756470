/**
 * A server's DHCPV4-RESPONSE (RFC 7341 §6.2) around a BOOTREPLY, written in one pass into one
 * new buffer: the answers a 4o6 server makes per query (OFFER, ACK, NAK, the ACK to INFORM).
 * The bytes are exactly those of `encodeDhcp4o6({ type: DHCPV4_RESPONSE, flags: 0, dhcp4 })`
 * (./dhcp4o6.ts) for the same message: header, no DHCPv6 option but OPTION_DHCPV4_MSG (87),
 * the DHCPv4 options message type first, then by code, then the end option (./dhcp4.ts).
 * That general encoder takes any message and checks every field against every option spec,
 * sizes it three times and writes through subarrays; a server answering thousands of
 * queries a second needs only this fixed set of options, already valid by construction.
 *
 * Values the fast writer does not take (an option value over 255 bytes, to be split per
 * RFC 3396; a text or number out of range) go to the general encoder, which writes or
 * refuses them exactly as before (`RangeError`).
 *
 * @module
 */
import type { PortSetValue } from "../net/portset.ts";
import {
  DHCP4_MAGIC_COOKIE,
  DHCP4_MIN_LENGTH,
  type Dhcp4Message,
  Dhcp4MessageType,
  Dhcp4Op,
  type Dhcp4Options,
} from "./dhcp4_types.ts";
import { encodeDhcp4o6 } from "./dhcp4o6.ts";

/** What a server's reply carries besides the fields copied from the query (RFC 2131 Table 3). */
export interface Dhcp4ReplyOptions {
  /** OFFER, ACK or NAK (option 53). */
  readonly messageType: Dhcp4MessageType;
  /** Option 54 (32-bit IPv4 address). */
  readonly serverId: number;
  /** Option 1; must be contiguous. */
  readonly subnetMask?: number;
  /** Options 51, 58, 59 (s). */
  readonly leaseTime?: number;
  readonly renewalTime?: number;
  readonly rebindingTime?: number;
  /** Option 56: 1–255 characters U+0000–U+00FF. */
  readonly message?: string;
  /** Option 159 (RFC 7618). */
  readonly portParams?: PortSetValue;
}

/** DHCPV4-RESPONSE (RFC 7341 §5). */
const DHCPV4_RESPONSE = 21;
/** OPTION_DHCPV4_MSG (RFC 7341 §7.1). */
const OPTION_DHCPV4_MSG = 87;
/** The DHCPv6 header (4) and option 87's code and length (4) in front of the BOOTREPLY. */
const AT = 8;

/**
 * The DHCPV4-RESPONSE carrying the BOOTREPLY to `query`: `op` 2, `htype`, `xid`, `flags`,
 * `giaddr`, `chaddr` from the query, `hops` `secs` `siaddr` 0, the given `ciaddr` and
 * `yiaddr`, `options`, and the query's client identifier (61) when it had one (RFC 6842).
 * Throws `RangeError` when the general encoder would (a value out of range).
 *
 * @example const offer = encodeDhcp4Response(query, 0, lease.ipv4, { messageType: 2, serverId, leaseTime: 3600 });
 */
export function encodeDhcp4Response(
  query: Dhcp4Message,
  ciaddr: number,
  yiaddr: number,
  options: Dhcp4ReplyOptions,
): Uint8Array {
  const clientId = query.options.clientId;
  const { messageType, subnetMask, leaseTime, serverId, message, renewalTime, rebindingTime } =
    options;
  const portParams = options.portParams;
  if (
    !_fits(options, clientId) ||
    query.chaddr.length > 16 ||
    !_uint(query.htype, 0xff) ||
    !_uint(query.flags, 0xffff) ||
    !_u32(ciaddr) ||
    !_u32(yiaddr) ||
    !_u32(query.xid) ||
    !_u32(query.giaddr)
  )
    return _general(query, ciaddr, yiaddr, options);
  let n = DHCP4_MIN_LENGTH + 3 + 6 + 1; // option 53, option 54, end
  if (subnetMask !== undefined) n += 6;
  if (leaseTime !== undefined) n += 6;
  if (message !== undefined) n += 2 + message.length;
  if (renewalTime !== undefined) n += 6;
  if (rebindingTime !== undefined) n += 6;
  if (clientId !== undefined) n += 2 + clientId.length;
  if (portParams !== undefined) n += 6;
  const out = new Uint8Array(AT + n);
  out[0] = DHCPV4_RESPONSE; // flags 0 (RFC 7341 §6.2: unused in a response)
  out[5] = OPTION_DHCPV4_MSG;
  out[6] = n >>> 8;
  out[7] = n;
  out[AT] = Dhcp4Op.BOOTREPLY;
  out[AT + 1] = query.htype;
  out[AT + 2] = query.chaddr.length;
  _put32(out, AT + 4, query.xid);
  out[AT + 10] = query.flags >>> 8;
  out[AT + 11] = query.flags;
  _put32(out, AT + 12, ciaddr);
  _put32(out, AT + 16, yiaddr);
  _put32(out, AT + 24, query.giaddr);
  out.set(query.chaddr, AT + 28);
  _put32(out, AT + 236, DHCP4_MAGIC_COOKIE);
  let p = AT + DHCP4_MIN_LENGTH;
  out[p] = 53;
  out[p + 1] = 1;
  out[p + 2] = messageType;
  p += 3;
  if (subnetMask !== undefined) p = _option32(out, p, 1, subnetMask);
  if (leaseTime !== undefined) p = _option32(out, p, 51, leaseTime);
  p = _option32(out, p, 54, serverId);
  if (message !== undefined) {
    out[p] = 56;
    out[p + 1] = message.length;
    for (let i = 0; i < message.length; i++) out[p + 2 + i] = message.charCodeAt(i);
    p += 2 + message.length;
  }
  if (renewalTime !== undefined) p = _option32(out, p, 58, renewalTime);
  if (rebindingTime !== undefined) p = _option32(out, p, 59, rebindingTime);
  if (clientId !== undefined) {
    out[p] = 61;
    out[p + 1] = clientId.length;
    out.set(clientId, p + 2);
    p += 2 + clientId.length;
  }
  if (portParams !== undefined) {
    out[p] = 159;
    out[p + 1] = 4;
    out[p + 2] = portParams.offset;
    out[p + 3] = portParams.psidLength;
    const field = portParams.psidLength === 0 ? 0 : portParams.psid << (16 - portParams.psidLength);
    out[p + 4] = field >>> 8;
    out[p + 5] = field;
    p += 6;
  }
  out[p] = 255;
  return out;
}

/** True when every value is one the fast writer takes as the general encoder would. */
function _fits(o: Dhcp4ReplyOptions, clientId: Uint8Array | undefined): boolean {
  const t = o.messageType;
  if (t !== Dhcp4MessageType.OFFER && t !== Dhcp4MessageType.ACK && t !== Dhcp4MessageType.NAK)
    return false;
  if (!_u32(o.serverId)) return false;
  if (o.subnetMask !== undefined && !(_u32(o.subnetMask) && _contiguous(o.subnetMask)))
    return false;
  if (o.leaseTime !== undefined && !_u32(o.leaseTime)) return false;
  if (o.renewalTime !== undefined && !_u32(o.renewalTime)) return false;
  if (o.rebindingTime !== undefined && !_u32(o.rebindingTime)) return false;
  if (o.message !== undefined) {
    const m = o.message;
    if (typeof m !== "string" || m.length === 0 || m.length > 255) return false;
    for (let i = 0; i < m.length; i++) if (m.charCodeAt(i) > 0xff) return false;
  }
  if (clientId !== undefined && (clientId.length < 2 || clientId.length > 255)) return false;
  const pp = o.portParams;
  if (pp !== undefined) {
    const { offset, psidLength: k, psid } = pp;
    if (!(_uint(offset, 15) && _uint(k, 16) && offset + k <= 16)) return false;
    if (!_uint(psid, 2 ** k - 1)) return false;
  }
  return true;
}

/** The general encoder (./dhcp4o6.ts), for what {@link _fits} leaves to it. */
function _general(
  query: Dhcp4Message,
  ciaddr: number,
  yiaddr: number,
  options: Dhcp4ReplyOptions,
): Uint8Array {
  const clientId = query.options.clientId;
  const opts: Dhcp4Options = clientId ? { ...options, clientId } : options;
  return encodeDhcp4o6({
    type: DHCPV4_RESPONSE,
    flags: 0,
    dhcp4: {
      op: Dhcp4Op.BOOTREPLY,
      htype: query.htype,
      hops: 0,
      xid: query.xid,
      secs: 0,
      flags: query.flags,
      ciaddr,
      yiaddr,
      siaddr: 0,
      giaddr: query.giaddr,
      chaddr: query.chaddr,
      options: opts,
    },
  });
}

function _option32(out: Uint8Array, p: number, code: number, value: number): number {
  out[p] = code;
  out[p + 1] = 4;
  _put32(out, p + 2, value);
  return p + 6;
}

function _put32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = v >>> 16;
  out[at + 2] = v >>> 8;
  out[at + 3] = v;
}

function _u32(v: number): boolean {
  return _uint(v, 0xffffffff);
}

function _uint(v: number, max: number): boolean {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;
}

function _contiguous(mask: number): boolean {
  const inverted = ~mask >>> 0;
  return (inverted & (inverted + 1)) === 0;
}
