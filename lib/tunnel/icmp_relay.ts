/**
 * ICMPv6 errors about packets we tunnelled, turned into ICMPv4 errors for the inner source
 * (RFC 2473 §8; the TEP and the DSTM client both encapsulate, so both relay).
 *
 * An ICMPv6 error quotes the start of the tunnel packet: the outer IPv6 header, then the
 * inner IPv4 header and (at least) 8 bytes of its payload, which is what an ICMPv4 error must
 * quote (RFC 792). The kernel hands us that quote from the raw socket's error queue, starting
 * at the inner IPv4 header, with the original outer destination (the host) and the ICMPv6
 * type, code and MTU (lib/sys/raw6.ts).
 *
 * What goes back to the inner source (RFC 2473 §8.3 treats the tunnel as a link; a failure on
 * it is the next hop's failure, reported as such):
 *
 * | ICMPv6 error                        | action                                           |
 * |-------------------------------------|--------------------------------------------------|
 * | Packet Too Big (type 2), MTU m      | path MTU of the host := min(estimate, m) (RFC 8201 §4); if the quoted packet had DF and exceeds m − 40: ICMPv4 3/4 with next-hop MTU m − 40 (RFC 2473 §7.1, RFC 1191) |
 * | Destination Unreachable code 1      | ICMPv4 3/13 communication administratively prohibited (RFC 1812 §5.2.7.1) |
 * | Destination Unreachable other codes | ICMPv4 3/1 host unreachable                      |
 * | Time Exceeded (hop limit in transit)| ICMPv4 3/1 host unreachable (the inner TTL did not expire; RFC 2473 §8.3) |
 * | Parameter Problem                   | ICMPv4 3/1 host unreachable                      |
 *
 * Each relayed error spends a token of the context's limiter (RFC 1812 §4.3.2.8) and is
 * counted by type. Never an error about an ICMP error, a non-first fragment, a broadcast
 * (icmpErrorAllowed). Nothing here allocates.
 *
 * @module
 */

import { equalIPv6 } from "../net/addr.ts";
import { buildIcmpError, IcmpType, UnreachableCode } from "../net/icmp4.ts";
import { ipv4Destination, ipv4DontFragment, ipv4Source } from "../net/ipv4.ts";
import { l4DestinationPort } from "../net/l4.ts";
import type { BindingTable } from "./binding.ts";
import { Counter } from "./counters.ts";
import type { PathMtuTable } from "./pmtu.ts";
import type { TokenBucket } from "./ratelimit.ts";

/** ICMPv6 error types (RFC 4443 §2.1). */
export const Icmp6Type = {
  DEST_UNREACHABLE: 1,
  PACKET_TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAMETER_PROBLEM: 4,
} as const;

/** ICMPv6 Destination Unreachable code 1 (RFC 4443 §3.1). */
const ADMIN_PROHIBITED6 = 1;
/** ICMPv4 3/13, communication administratively prohibited (RFC 1812 §5.2.7.1). */
const ADMIN_PROHIBITED4 = 13;
const TUNNEL_OVERHEAD = 40;

/** What {@link relayTunnelError} needs and where it writes. */
export interface RelayContext {
  readonly counters: Float64Array;
  /** Output: the ICMPv4 error (ICMP_ERROR_MAX_LENGTH bytes). */
  readonly reply: Uint8Array;
  replyLength: number;
  readonly icmpLimiter: TokenBucket;
  /** Milliseconds, for the limiter. */
  now: () => number;
  /** Per-host path MTU; null to learn nothing. */
  readonly pathMtu: PathMtuTable | null;
  /** Largest IPv4 packet the tunnel carries at all (link MTU − 40): the upper bound. */
  readonly tunnelMtu: number;
}

/** One ICMPv6 error as the error queue reports it. */
export interface TunnelError {
  type: number;
  code: number;
  /** MTU of a Packet Too Big (bytes). */
  info: number;
  /** The error's sender (16 bytes), when the error queue reported it. */
  offender6?: Uint8Array;
}

const TOO_BIG = Counter["tunnel-error-too-big"];
const UNREACHABLE = Counter["tunnel-error-unreachable"];
const TIME_EXCEEDED = Counter["tunnel-error-time-exceeded"];
const PARAMETER_PROBLEM = Counter["tunnel-error-parameter-problem"];
const OTHER = Counter["tunnel-error-other"];
const NOT_RELAYED = Counter["tunnel-error-not-relayed"];
const PMTU_LEARNED = Counter["pmtu-learned"];
const RELAY_FRAG_NEEDED = Counter["icmp-relay-frag-needed"];
const RELAY_HOST_UNREACHABLE = Counter["icmp-relay-host-unreachable"];
const RELAY_ADMIN_PROHIBITED = Counter["icmp-relay-admin-prohibited"];
const RATE_LIMITED = Counter["icmp-rate-limited"];
const NOT_OURS = Counter["tunnel-error-not-ours"];

/**
 * TEP: true when the quoted inner packet is one the TEP sends to `host6`: its destination
 * (and port, for a shared address) is bound to that host. Anyone on the IPv6 side can send an
 * ICMPv6 error quoting a made-up packet; without this check it would lower a host's path MTU
 * or make the TEP send ICMPv4 errors to any IPv4 address. Counts `tunnel-error-not-ours`.
 */
export function tepSentTo(
  bindings: BindingTable,
  counters: Float64Array,
  inner: Uint8Array,
  innerOff: number,
  innerLen: number,
  host6: Uint8Array,
  host6Off: number,
): boolean {
  const ours =
    innerLen >= 20 &&
    inner[innerOff]! >>> 4 === 4 &&
    bindings.matchesHost(
      ipv4Destination(inner, innerOff),
      l4DestinationPort(inner, innerOff, innerLen),
      host6,
      host6Off,
    );
  if (!ours) counters[NOT_OURS]! += 1;
  return ours;
}

/**
 * Client: true when the quoted packet is one the client sent: from the leased address, to the
 * TEP. Counts `tunnel-error-not-ours` otherwise.
 */
export function clientSentTo(
  counters: Float64Array,
  leasedIPv4: number,
  tep6: Uint8Array,
  inner: Uint8Array,
  innerOff: number,
  innerLen: number,
  host6: Uint8Array,
  host6Off: number,
): boolean {
  const ours =
    innerLen >= 20 &&
    inner[innerOff]! >>> 4 === 4 &&
    ipv4Source(inner, innerOff) === leasedIPv4 &&
    equalIPv6(host6, host6Off, tep6, 0);
  if (!ours) counters[NOT_OURS]! += 1;
  return ours;
}

/**
 * Handles one ICMPv6 error about a tunnel packet to `host6[host6Off, +16)` whose inner IPv4
 * packet starts at `inner[innerOff]` (`innerLen` bytes quoted). Returns true when
 * `ctx.reply[0 .. ctx.replyLength)` holds an ICMPv4 error to send to the inner source, from
 * `source` (u32; 0 means "from the inner destination", for a client that has no address of
 * its own on the path). `nowSeconds` dates a learned path MTU.
 *
 * @example if (relayTunnelError(ctx, err, dst6, 0, buf, 0, n, tep4, now)) raw4.send(ctx.reply, …)
 */
export function relayTunnelError(
  ctx: RelayContext,
  error: TunnelError,
  host6: Uint8Array,
  host6Off: number,
  inner: Uint8Array,
  innerOff: number,
  innerLen: number,
  source: number,
  nowSeconds: number,
): boolean {
  const c = ctx.counters;
  const type: number = IcmpType.DEST_UNREACHABLE;
  let code: number = UnreachableCode.HOST;
  let rest = 0;
  let relayed = RELAY_HOST_UNREACHABLE;
  const quoted = innerLen >= 20 && inner[innerOff]! >>> 4 === 4;
  switch (error.type) {
    case Icmp6Type.PACKET_TOO_BIG: {
      c[TOO_BIG]! += 1;
      if (ctx.pathMtu && ctx.pathMtu.learn(host6, host6Off, error.info, nowSeconds) !== 0)
        c[PMTU_LEARNED]! += 1;
      const mtu = Math.min(Math.max(error.info, 1280) - TUNNEL_OVERHEAD, ctx.tunnelMtu);
      const total = quoted ? (inner[innerOff + 2]! << 8) | inner[innerOff + 3]! : 0;
      if (!quoted || !ipv4DontFragment(inner, innerOff) || total <= mtu) {
        // Not DF: the kernel fragments the next such packet (it applied the PTB to its route
        // cache); this one is lost, as on any link, and the sender's transport repairs it.
        c[NOT_RELAYED]! += 1;
        return false;
      }
      code = UnreachableCode.FRAGMENTATION_NEEDED;
      rest = mtu & 0xffff;
      relayed = RELAY_FRAG_NEEDED;
      break;
    }
    case Icmp6Type.DEST_UNREACHABLE:
      c[UNREACHABLE]! += 1;
      if (error.code === ADMIN_PROHIBITED6) {
        code = ADMIN_PROHIBITED4;
        relayed = RELAY_ADMIN_PROHIBITED;
      }
      break;
    case Icmp6Type.TIME_EXCEEDED:
      c[TIME_EXCEEDED]! += 1;
      break;
    case Icmp6Type.PARAMETER_PROBLEM:
      c[PARAMETER_PROBLEM]! += 1;
      break;
    default:
      c[OTHER]! += 1;
      return false;
  }
  if (!quoted) {
    c[NOT_RELAYED]! += 1;
    return false;
  }
  const from = source !== 0 ? source : ipv4Destination(inner, innerOff);
  const n = buildIcmpError(ctx.reply, 0, type, code, rest, from, inner, innerOff, innerLen);
  if (n === 0) {
    c[NOT_RELAYED]! += 1;
    return false;
  }
  if (!ctx.icmpLimiter.take(ctx.now())) {
    c[RATE_LIMITED]! += 1;
    return false;
  }
  ctx.replyLength = n;
  c[relayed]! += 1;
  return true;
}
