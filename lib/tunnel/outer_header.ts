/**
 * What both tunnel ends share about the outer IPv6 header and the tunnel MTU: the settings
 * (DSCP, ECN mode, flow labels, MSS clamping, path MTU table) and helpers of the steps: the
 * tunnel MTU towards a host, RFC 6040 decapsulation, and the end of decapsulation both ends
 * run on a packet that passed their checks ({@link finishDecap}). See docs/tunnel.md.
 *
 * @module
 */
import { DSCP_COPY, ECN_DROP, Ecn, ecnDecapsulate, setIPv4Ecn } from "../net/ecn.ts";
import { clampTcpMss, TCP_IPV4_OVERHEAD } from "../net/mss.ts";
import type { PathMtuTable } from "./pmtu.ts";
import { Verdict } from "./verdict.ts";

/** IPv6 header overhead: tunnel MTU = link MTU − 40 (RFC 2473 §6.1). */
export const TUNNEL_OVERHEAD = 40;
/** Below this an IPv4 packet fits any IPv6 path (minimum MTU 1280 − 40): no path MTU lookup. */
export const ALWAYS_FITS = 1280 - TUNNEL_OVERHEAD;

/** Tunnel settings shared by the TEP and the client (docs/tunnel.md). */
export interface TunnelHeaderOptions {
  /** Learned path MTU per host (RFC 8201); none: only the link MTU applies. */
  pathMtu?: PathMtuTable;
  /** Clamp the MSS of TCP SYNs to the tunnel (RFC 4459 §3.2). Default true. */
  mssClamp?: boolean;
  /** Outer DSCP: DSCP_COPY (−1, the default: copy the inner one, RFC 2983) or 0–63. */
  dscp?: number;
  /** RFC 6040 normal mode (true, default) or compatibility mode (outer ECN Not-ECT). */
  ecnNormal?: boolean;
  /** Give each inner flow its own outer flow label (RFC 6438). Default true. */
  flowLabel?: boolean;
}

/** `dscp` when it is DSCP_COPY or 0–63; throws a RangeError otherwise. */
export function checkDscp(dscp: number): number {
  if (dscp !== DSCP_COPY && !(Number.isInteger(dscp) && dscp >= 0 && dscp <= 63))
    throw new RangeError(`DSCP ${dscp} is not 0–63 (or copy)`);
  return dscp;
}

/**
 * The largest IPv4 packet that reaches `host6` unfragmented: the link's tunnel MTU, lowered by
 * a learned path MTU (RFC 2473 §7.1: path MTU − 40).
 */
export function tunnelMtuTo(
  pathMtu: PathMtuTable | null,
  linkTunnelMtu: number,
  host6: Uint8Array,
  host6Off: number,
): number {
  if (pathMtu === null || pathMtu.count === 0) return linkTunnelMtu;
  const p = pathMtu.lookup(host6, host6Off);
  if (p === 0 || p - TUNNEL_OVERHEAD >= linkTunnelMtu) return linkTunnelMtu;
  return p - TUNNEL_OVERHEAD;
}

/**
 * RFC 6040 §4.2 on the inner header at `pkt[off]` given the outer traffic class. Returns
 * 0 to forward unchanged, 1 when CE was written into the inner header, −1 to drop.
 */
export function decapEcn(pkt: Uint8Array, off: number, outerTrafficClass: number): number {
  const outer = outerTrafficClass & 3;
  if (outer === Ecn.NOT_ECT) return 0; // the common case: inner unchanged
  const inner = pkt[off + 1]! & 3;
  const result = ecnDecapsulate(inner, outer);
  if (result === ECN_DROP) return -1;
  if (result === inner) return 0;
  setIPv4Ecn(pkt, off, result);
  return result === Ecn.CE ? 1 : 0;
}

/** The counters (indexes into the counter array) of one end's {@link finishDecap}. */
export interface DecapTailCounters {
  /** Dropped: CE outside, Not-ECT inside (RFC 6040 §4.2). */
  readonly dropEcn: number;
  /** CE copied into the inner header. */
  readonly ecnCe: number;
  /** A TCP SYN's MSS lowered. */
  readonly mssClamped: number;
  readonly forward: number;
  readonly forwardBytes: number;
}

/** What {@link finishDecap} reads of an end's context, and the inner length it sets. */
export interface DecapTailContext {
  readonly counters: Float64Array;
  readonly mssClamp: boolean;
  readonly pathMtu: PathMtuTable | null;
  readonly tunnelMtu: number;
  length: number;
}

/**
 * The end of decapsulation of the inner IPv4 packet `pkt[off …]` (`total` bytes, every check
 * passed, checksum finished): RFC 6040 §4.2 with the outer traffic class (drop, or CE copied
 * in), the MSS of a TCP SYN clamped to the tunnel MTU towards `peer6` (at `peer6Off`) − 40
 * (RFC 4459 §3.2: the other side's segments must fit the path), then `ctx.length = total` and
 * the forward counters. Returns Verdict.FORWARD or Verdict.DROP_ECN (counted).
 */
export function finishDecap(
  ctx: DecapTailContext,
  k: DecapTailCounters,
  pkt: Uint8Array,
  off: number,
  total: number,
  outerTrafficClass: number,
  peer6: Uint8Array,
  peer6Off: number,
): Verdict {
  const c = ctx.counters;
  const ecn = decapEcn(pkt, off, outerTrafficClass);
  if (ecn !== 0) {
    if (ecn < 0) {
      c[k.dropEcn]! += 1;
      return Verdict.DROP_ECN;
    }
    c[k.ecnCe]! += 1;
  }
  if (ctx.mssClamp && pkt[off + 9] === 6) {
    const mtu = tunnelMtuTo(ctx.pathMtu, ctx.tunnelMtu, peer6, peer6Off);
    if (clampTcpMss(pkt, off, total, mtu - TCP_IPV4_OVERHEAD) !== 0) c[k.mssClamped]! += 1;
  }
  ctx.length = total;
  c[k.forward]! += 1;
  c[k.forwardBytes]! += total;
  return Verdict.FORWARD;
}
