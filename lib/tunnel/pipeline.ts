/**
 * The per-packet steps of the TEP and of the DSTM client, as plain functions on
 * (buffer, offset, length, …). Each returns a Verdict (a small integer), writes any output in
 * place (the packet itself, the host IPv6 address, or an ICMP error into the context's reply
 * buffer), counts the packet under exactly one forward or drop counter (plus `*-bytes`,
 * `decap-hairpin`, `encap-fragmented`, `icmp-*` where they apply), and allocates nothing.
 *
 * The outer IPv6 header never passes through here: the Worker loops use a raw IPv6 socket
 * with protocol 4, so the kernel strips it on receive (handing over the outer source and
 * traffic class) and builds it on send (to the address the step wrote, with the traffic class
 * and flow label it chose: `ctx.trafficClass`, `ctx.flowLabel`), fragmenting to the path MTU
 * when needed. Path MTU, ICMP relay, ECN, DSCP, flow label and MSS rules: docs/tunnel.md.
 *
 * ## TTL (RFC 2473 §3.1)
 *
 * The steps never change the inner IPv4 TTL. RFC 2473 treats the tunnel as one virtual link
 * and the entry point as a node that forwards the packet onto it, so the IPv4 TTL drops once,
 * by the router that routes the packet into the tunnel, and the tunnel's own hops are counted
 * by the outer hop limit (§3.1, §6.3). On the TEP that router is the kernel: it forwards from
 * the IPv4 interface to the TUN device (encapsulation side) and from the TUN device to the
 * IPv4 interface (decapsulation side), decrementing the TTL and sending ICMP time-exceeded
 * itself. Decrementing here as well would count the TEP twice. On the client the packets
 * originate on the host and no IPv4 router is crossed before the tunnel.
 *
 * ## Reading a Verdict
 *
 * FORWARD and FORWARD_FRAGMENT: send `ctx.length` bytes of the packet (the IPv4 total length;
 * link padding dropped). ICMP: send the IPv4 packet `ctx.reply[0 .. ctx.replyLength)`, an
 * error from `ctx.tepIPv4` addressed to the offending packet's source, on the IPv4 side (a
 * raw IPv4 socket, or back into the TUN device where the TEP address is not local). Any
 * DROP_*: nothing to send.
 *
 * @module
 */

import {
  completePartialChecksum,
  hasPartialTcpChecksum,
  hasPartialUdpChecksum,
} from "../net/csum_partial.ts";
import { DSCP_COPY, outerTrafficClass } from "../net/ecn.ts";
import { flowLabelOf } from "../net/flowlabel.ts";
import {
  buildFragmentationNeeded,
  buildHostUnreachable,
  ICMP_ERROR_MAX_LENGTH,
} from "../net/icmp4.ts";
import { ICMP6_ERROR_MAX_LENGTH } from "../net/icmp6.ts";
import {
  IPv4Problem,
  ipv4Destination,
  ipv4DontFragment,
  ipv4Source,
  ipv4TotalLength,
  validateIPv4,
} from "../net/ipv4.ts";
import { ipv4FragmentCount } from "../net/ipv4_fragment.ts";
import { l4DestinationPort, l4SourcePort } from "../net/l4.ts";
import { clampTcpMss, TCP_IPV4_OVERHEAD } from "../net/mss.ts";
import { tcpChecksumValid, tcpSegmentCount } from "../net/tcp_segment.ts";
import type { BatchLookups } from "./batch_lookups.ts";
import { type BindingTable, LookupStatus } from "./binding.ts";
import { Counter } from "./counters.ts";
import { tepFragmentTables, trackDecapFragment, trackEncapFragment } from "./fragment_steps.ts";
import { FragmentLookup, type FragmentTable, isIPv4Fragment } from "./fragments.ts";
import { icmpAnswer } from "./icmp_verdict.ts";
import {
  ALWAYS_FITS,
  checkDscp,
  type DecapTailCounters,
  finishDecap,
  TUNNEL_OVERHEAD,
  type TunnelHeaderOptions,
  tunnelMtuTo,
} from "./outer_header.ts";
import type { PathMtuTable } from "./pmtu.ts";
import { TokenBucket } from "./ratelimit.ts";
import { sourcePolicyFailed } from "./source_policy.ts";
import { Verdict } from "./verdict.ts";

export {
  ALWAYS_FITS,
  TUNNEL_OVERHEAD,
  type TunnelHeaderOptions,
} from "./outer_header.ts";
export { ClientContext, type ClientOptions, clientDecap, clientEncap } from "./pipeline_client.ts";
export { isForward, Verdict, verdictName } from "./verdict.ts";

/** Options of `new TepContext`. */
export interface TepOptions extends TunnelHeaderOptions {
  bindings: BindingTable;
  /** This Worker's counter slice (Counters.slice). */
  counters: Float64Array;
  /** Source of the ICMPv4 errors the TEP sends. */
  tepIPv4: number;
  /** MTU of the IPv6 link to the hosts; tunnel MTU = linkMtu − 40. Default 1500, at least 1280. */
  linkMtu?: number;
  /** Let host-to-host traffic turn around at the TEP (RFC 7597 §8.3). Default true. */
  hairpin?: boolean;
  /** ICMP errors per second (token bucket rate). Default 100; 0 sends none. */
  icmpRate?: number;
  /** ICMP errors that may go out back to back. Default 20. */
  icmpBurst?: number;
  /** Answer unbound destinations with ICMPv4 3/1 (RFC 7596 §5.1 makes it optional). Default false. */
  icmpHostUnreachable?: boolean;
  /**
   * An IPv4 packet without DF above the tunnel MTU: cut the inner packet into IPv4 fragments
   * that each fit (RFC 4459 §3.4, `dstm tep --fragment inner`; lib/net/ipv4_fragment.ts)
   * instead of letting the outer IPv6 packet be fragmented (RFC 2473 §7.2, RFC 6333 §7: the
   * default). Default false.
   */
  fragmentInner?: boolean;
  /** Clock in milliseconds, read only when an ICMP error is due or for fragments. Default Date.now. */
  now?: () => number;
  /** Fragment tracking of shared-address flows (fragments.ts); defaults there. */
  fragments?: { datagrams?: number; holdSlots?: number; timeoutMs?: number };
  /**
   * The TEP's IPv6 address (16 bytes): given, a decapsulated packet whose source no binding
   * allows is answered with ICMPv6 1/5 to its outer source ({@link TepContext.reply6}), rate
   * limited with the ICMPv4 errors. Default none (no ICMPv6 error is built).
   */
  tep6?: Uint8Array;
  /**
   * With `tep6`: no ICMPv6 1/5 while element 0 is 0 (the TEP's table is still loading after a
   * start: "no binding" may only mean "not yet"; lib/tep/node.ts sets it). Default: always on.
   */
  sourcePolicyReady?: Int32Array;
}

/**
 * State of one TEP Worker: configuration, its counter slice, its ICMP rate limiter and its
 * output fields. One per Worker (the rate limiter and `reply` are not shared).
 */
export class TepContext {
  readonly bindings: BindingTable;
  readonly counters: Float64Array;
  readonly tepIPv4: number;
  /** Largest IPv4 packet that fits the tunnel unfragmented. */
  readonly tunnelMtu: number;
  hairpin: boolean;
  icmpHostUnreachable: boolean;
  /** TepOptions.fragmentInner. */
  readonly fragmentInner: boolean;
  /**
   * Output of tepEncap with a FORWARD_FRAGMENT verdict: the number of inner IPv4 fragments of
   * at most {@link innerMtu} bytes to send instead of the packet (lib/net/ipv4_fragment.ts
   * writeIPv4Fragment), each in its own outer packet; 0: send the packet whole and let the
   * outer IPv6 packet be fragmented (a loop that does not cut sends it whole: still correct).
   */
  innerFragments = 0;
  /** Output of tepEncap with {@link innerFragments}: the largest fragment (bytes). */
  innerMtu = 0;
  readonly icmpLimiter: TokenBucket;
  now: () => number;
  /** ICMP error built by the last step that returned ICMP. */
  readonly reply: Uint8Array = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
  /** Bytes of `reply` to send after an ICMP verdict. */
  replyLength = 0;
  /** The TEP's IPv6 address (TepOptions.tep6), or null: no ICMPv6 source-policy errors. */
  readonly tep6: Uint8Array | null;
  /** TepOptions.sourcePolicyReady, or null (always ready). */
  readonly sourcePolicyReady: Int32Array | null;
  /**
   * ICMPv6 1/5 "source address failed ingress/egress policy" (RFC 4443 §3.1, RFC 7597 §8.2)
   * built by the last tepDecap that refused a packet's source: when {@link reply6Length} is
   * not 0 after a drop, send `reply6[0, reply6Length)` on a raw ICMPv6 socket to
   * {@link reply6To} and set reply6Length back to 0 (lib/net/icmp6.ts).
   */
  readonly reply6: Uint8Array = new Uint8Array(ICMP6_ERROR_MAX_LENGTH);
  reply6Length = 0;
  /** Destination of `reply6`: the refused packet's outer IPv6 source. */
  readonly reply6To: Uint8Array = new Uint8Array(16);
  /**
   * Set by a batched loop whose TUN finishes partial checksums: `tepDecap` then leaves a TCP
   * packet above the tunnel MTU in CHECKSUM_PARTIAL state and says so in {@link partialChecksum}.
   */
  deferLargePartialChecksum = false;
  /** Decap output: the forwarded packet's TCP checksum is still partial (see above). */
  partialChecksum = false;
  /**
   * Set by a batched loop whose UDP GRO takes datagrams with partial checksums (tep_batch.ts):
   * `tepDecap` then leaves a UDP datagram's CHECKSUM_PARTIAL checksum as it came and says so in
   * {@link udpChecksumPartial}; the GRO completes it where it writes the datagram alone, and a
   * super-datagram's checksums are the kernel's anyway (gro_udp.ts `UdpHint`).
   */
  deferPartialUdpChecksum = false;
  /** Decap output: the forwarded UDP datagram's checksum is still partial (see above). */
  udpChecksumPartial = false;
  /**
   * Set by a batched loop (tep_batch.ts), which forgets it at the start of every batch:
   * `tepDecap`'s binding lookups answered from the batch's last ones (batch_lookups.ts).
   * Null (default): every packet looked up in the table.
   */
  batchLookups: BatchLookups | null = null;
  /**
   * Decap output: the forwarded packet's TCP/UDP checksum was completed here (it came in the
   * sender's CHECKSUM_PARTIAL state), so it is right by construction (the UDP GRO need not
   * verify it again, gro_udp.ts `UdpHint`).
   */
  checksumCompleted = false;
  /** Bytes of the packet to send after a FORWARD / FORWARD_FRAGMENT verdict. */
  length = 0;
  /** Fragments of shared-address flows, per direction (a Worker uses one; drain `popReleased`). */
  readonly decapFragments: FragmentTable;
  readonly encapFragments: FragmentTable;
  readonly pathMtu: PathMtuTable | null;
  readonly mssClamp: boolean;
  readonly dscp: number;
  readonly ecnNormal: boolean;
  readonly flowLabels: boolean;
  /** Output of tepEncap: the outer traffic class (RFC 6040, RFC 2983). */
  trafficClass = 0;
  /** Output of tepEncap: the outer flow label (RFC 6438), 0 for none. */
  flowLabel = 0;

  constructor(options: TepOptions) {
    const linkMtu = options.linkMtu ?? 1500;
    if (!Number.isInteger(linkMtu) || linkMtu < 1280 || linkMtu > 65575) {
      throw new RangeError(`link MTU ${linkMtu} is not 1280–65575 (IPv6 minimum MTU is 1280)`);
    }
    this.bindings = options.bindings;
    this.counters = options.counters;
    this.tepIPv4 = options.tepIPv4 >>> 0;
    this.tunnelMtu = linkMtu - TUNNEL_OVERHEAD;
    this.hairpin = options.hairpin ?? true;
    this.icmpHostUnreachable = options.icmpHostUnreachable ?? false;
    this.fragmentInner = options.fragmentInner ?? false;
    const icmpRate = options.icmpRate ?? 100;
    // Rate 0 means none at all (`--icmp-rate 0`), not a first burst.
    this.icmpLimiter = new TokenBucket(icmpRate, icmpRate === 0 ? 0 : (options.icmpBurst ?? 20));
    this.now = options.now ?? Date.now;
    const fragments = tepFragmentTables(this.counters, linkMtu, options.fragments);
    this.decapFragments = fragments.decap;
    this.encapFragments = fragments.encap;
    this.pathMtu = options.pathMtu ?? null;
    this.mssClamp = options.mssClamp ?? true;
    this.dscp = checkDscp(options.dscp ?? DSCP_COPY);
    this.ecnNormal = options.ecnNormal ?? true;
    this.flowLabels = options.flowLabel ?? true;
    this.tep6 = options.tep6 ?? null;
    this.sourcePolicyReady = options.sourcePolicyReady ?? null;
  }
}

// Counter indexes, resolved once.
const DECAP_HAIRPIN = Counter["decap-hairpin"];
const DECAP_DROP_MALFORMED = Counter["decap-drop-malformed"];
const DECAP_DROP_NO_BINDING = Counter["decap-drop-no-binding"];
const DECAP_DROP_SPOOFED = Counter["decap-drop-spoofed-source"];
const DECAP_DROP_BAD_PORT = Counter["decap-drop-bad-port"];
const DECAP_DROP_HAIRPIN = Counter["decap-drop-hairpin-disabled"];
const ENCAP_FORWARD = Counter["encap-forward"];
const ENCAP_FORWARD_BYTES = Counter["encap-forward-bytes"];
const ENCAP_FRAGMENTED = Counter["encap-fragmented"];
const ENCAP_FRAGMENTED_INNER = Counter["encap-fragmented-inner"];
const ENCAP_DROP_MALFORMED = Counter["encap-drop-malformed"];
const ENCAP_DROP_NO_BINDING = Counter["encap-drop-no-binding"];
const ENCAP_DROP_TOO_BIG = Counter["encap-drop-too-big"];
const ENCAP_ICMP_TOO_BIG = Counter["encap-icmp-too-big"];
const ENCAP_ICMP_UNREACHABLE = Counter["encap-icmp-host-unreachable"];
const ENCAP_TOO_BIG_PATH = Counter["encap-too-big-path-mtu"];
const ENCAP_MSS = Counter["encap-mss-clamped"];
/** The TEP's counters of the end of decapsulation (outer_header.ts finishDecap). */
const DECAP_TAIL: DecapTailCounters = {
  dropEcn: Counter["decap-drop-ecn"],
  ecnCe: Counter["decap-ecn-ce"],
  mssClamped: Counter["decap-mss-clamped"],
  forward: Counter["decap-forward"],
  forwardBytes: Counter["decap-forward-bytes"],
};
const DECAP_CSUM_COMPLETED = Counter["decap-csum-completed"];
/**
 * TEP, IPv6 → IPv4. `pkt[off .. off+len)` is the inner IPv4 packet of a 4over6 packet whose
 * outer source is `src6[src6Off .. +16)`. The packet's (source address, source port) must be
 * bound to that outer source (RFC 7596 §5.2, RFC 7597 §8.1); a destination that is itself a
 * bound address is hairpinned (RFC 7597 §8.3) unless `ctx.hairpin` is false.
 *
 * With a shared source address, "bad port" means the source port is in no bound port set
 * (or the packet has none, e.g. a non-first fragment); a port in *another* host's set is a
 * spoofed source.
 *
 * @example if (tepDecap(ctx, buf, 0, n, from6, 0) === Verdict.FORWARD) tun.write(buf, 0, ctx.length)
 */
export function tepDecap(
  ctx: TepContext,
  pkt: Uint8Array,
  off: number,
  len: number,
  src6: Uint8Array,
  src6Off: number,
  outerTrafficClass = 0,
): Verdict {
  const c = ctx.counters;
  if (validateIPv4(pkt, off, len) !== IPv4Problem.NONE) {
    c[DECAP_DROP_MALFORMED]! += 1;
    return Verdict.DROP_MALFORMED;
  }
  const total = ipv4TotalLength(pkt, off);
  const port = l4SourcePort(pkt, off, total);
  const memo = ctx.batchLookups;
  const src4 = ipv4Source(pkt, off);
  let status: number = memo
    ? memo.match(ctx.bindings, src4, port, src6, src6Off)
    : ctx.bindings.match(src4, port, src6, src6Off);
  if (isIPv4Fragment(pkt, off)) {
    // RFC 7597 §8.3.3: a fragment without ports follows its first fragment.
    status = trackDecapFragment(ctx, pkt, off, total, port, status, src6, src6Off);
    if (status < 0)
      return status === FragmentLookup.HELD ? Verdict.HELD : Verdict.DROP_FRAGMENT_NO_ROOM;
  }
  if (status !== LookupStatus.FOUND) {
    sourcePolicyFailed(ctx, pkt, off, len, src6, src6Off, outerTrafficClass);
    if (status === LookupStatus.OTHER_HOST) {
      c[DECAP_DROP_SPOOFED]! += 1;
      return Verdict.DROP_SPOOFED_SOURCE;
    }
    if (status === LookupStatus.NO_PORT_SET) {
      c[DECAP_DROP_BAD_PORT]! += 1;
      return Verdict.DROP_BAD_PORT;
    }
    c[DECAP_DROP_NO_BINDING]! += 1;
    return Verdict.DROP_NO_BINDING;
  }
  // Hairpin: the destination address is tunnelled too (any port: port −1 answers FOUND for a
  // whole address and NO_PORT_SET for a shared one, both mean "bound").
  const dst4 = ipv4Destination(pkt, off);
  const bound = memo ? memo.find(ctx.bindings, dst4) : ctx.bindings.find(dst4, -1, _noHost, 0);
  if (bound !== LookupStatus.NO_ADDRESS) {
    if (!ctx.hairpin) {
      c[DECAP_DROP_HAIRPIN]! += 1;
      return Verdict.DROP_HAIRPIN_DISABLED;
    }
    c[DECAP_HAIRPIN]! += 1;
  }
  // A kernel sender on a veth left the L4 checksum to the hardware (lib/net/csum_partial.ts);
  // finished first, since the MSS clamp below updates the checksum incrementally.
  // A kernel peer's whole TSO packet may be left partial for a TUN that finishes it
  // (NEEDS_CSUM, tep_batch.ts): one pass over 64 KiB less; so may a UDP datagram for the UDP
  // GRO, which completes it unless it joins a super-datagram (whose checksums the kernel makes).
  ctx.partialChecksum =
    ctx.deferLargePartialChecksum &&
    total > ctx.tunnelMtu + TUNNEL_OVERHEAD &&
    hasPartialTcpChecksum(pkt, off, total);
  ctx.udpChecksumPartial = ctx.deferPartialUdpChecksum && hasPartialUdpChecksum(pkt, off, total);
  ctx.checksumCompleted =
    !ctx.partialChecksum && !ctx.udpChecksumPartial && completePartialChecksum(pkt, off, total);
  if (ctx.partialChecksum || ctx.checksumCompleted || ctx.udpChecksumPartial)
    c[DECAP_CSUM_COMPLETED]! += 1;
  // A SYN from the host: the IPv4 peer must not send segments the path to the host drops.
  return finishDecap(ctx, DECAP_TAIL, pkt, off, total, outerTrafficClass, src6, src6Off);
}

/**
 * After a FORWARD from {@link tepDecap}: how many segments of at most `ctx.tunnelMtu` bytes the
 * forwarded packet `pkt[off, off + ctx.length)` is to be cut into (lib/net/tcp_segment.ts), or
 * 0 to write it as it is. Only a TCP packet larger than the IPv6 link carries in one piece (a
 * kernel sender's TSO packet, whole) is cut, and only when the cut may compute its segments'
 * checksums afresh, as a NIC does for the CHECKSUM_PARTIAL packets it is handed: one left
 * partial or completed by tepDecap, or one whose checksum verifies as it came. A finished,
 * wrong one is corrupt (RFC 9293 §3.1): it goes as it is, for the receiver to drop (or the
 * IPv4 network to refuse as too big), never cut into segments that verify.
 */
export function tepSegmentCount(ctx: TepContext, pkt: Uint8Array, off: number): number {
  const len = ctx.length;
  if (len <= ctx.tunnelMtu + TUNNEL_OVERHEAD) return 0;
  const count = tcpSegmentCount(pkt, off, len, ctx.tunnelMtu);
  if (count === 0 || ctx.partialChecksum || ctx.checksumCompleted) return count;
  return tcpChecksumValid(pkt, off, len) ? count : 0;
}

/** Scratch for the hairpin lookup (its host is not needed; single-threaded per Worker). */
const _noHost = new Uint8Array(16);

/**
 * TEP, IPv4 → IPv6. `pkt[off .. off+len)` is an IPv4 packet the kernel routed to the TUN
 * device. Looks up the host of (destination, destination port / echo identifier / quoted
 * source port) and copies its IPv6 address to `outHost6[outOff .. +16)`.
 *
 * MTU (RFC 2473 §7.2): above `ctx.tunnelMtu` with DF set → ICMPv4 3/4 carrying the tunnel MTU
 * (RFC 1191), rate limited; with DF clear → FORWARD_FRAGMENT (the kernel fragments the
 * outer IPv6 packet; RFC 6333 §7 says the same for DS-Lite), or with `fragmentInner` the
 * inner packet is to be cut into `ctx.innerFragments` IPv4 fragments of at most
 * `ctx.innerMtu` bytes (RFC 4459 §3.4; the loop writes them: lib/net/ipv4_fragment.ts).
 *
 * @example
 * const v = tepEncap(ctx, buf, 0, n, host6, 0); // raw6: Raw6Socket, raw4: Raw4Socket (lib/sys)
 * if (isForward(v)) raw6.sendTo(buf, 0, ctx.length, host6);
 * else if (v === Verdict.ICMP) raw4.send(ctx.reply, 0, ctx.replyLength, ipv4Destination(ctx.reply, 0));
 */
export function tepEncap(
  ctx: TepContext,
  pkt: Uint8Array,
  off: number,
  len: number,
  outHost6: Uint8Array,
  outOff: number,
): Verdict {
  const c = ctx.counters;
  if (validateIPv4(pkt, off, len) !== IPv4Problem.NONE) {
    c[ENCAP_DROP_MALFORMED]! += 1;
    return Verdict.DROP_MALFORMED;
  }
  const total = ipv4TotalLength(pkt, off);
  const port = l4DestinationPort(pkt, off, total);
  let status: number = ctx.bindings.find(ipv4Destination(pkt, off), port, outHost6, outOff);
  if (isIPv4Fragment(pkt, off)) {
    // RFC 7597 §8.3.3: a fragment without ports goes where its first fragment went.
    status = trackEncapFragment(ctx, pkt, off, total, port, status, outHost6, outOff);
    if (status < 0)
      return status === FragmentLookup.HELD ? Verdict.HELD : Verdict.DROP_FRAGMENT_NO_ROOM;
  }
  if (status !== LookupStatus.FOUND) {
    c[ENCAP_DROP_NO_BINDING]! += 1;
    if (!ctx.icmpHostUnreachable) return Verdict.DROP_NO_BINDING;
    const n = buildHostUnreachable(ctx.reply, 0, ctx.tepIPv4, pkt, off, total);
    const v = icmpAnswer(ctx, n, Verdict.DROP_NO_BINDING);
    if (v === Verdict.ICMP) c[ENCAP_ICMP_UNREACHABLE]! += 1;
    return v;
  }
  const tcp = pkt[off + 9] === 6;
  const mtu =
    total > ALWAYS_FITS || (ctx.mssClamp && tcp)
      ? tunnelMtuTo(ctx.pathMtu, ctx.tunnelMtu, outHost6, outOff)
      : ctx.tunnelMtu;
  const tos = pkt[off + 1]!;
  ctx.trafficClass = outerTrafficClass(tos, ctx.dscp, ctx.ecnNormal);
  ctx.flowLabel = ctx.flowLabels ? flowLabelOf(pkt, off, total) : 0;
  if (ctx.mssClamp && tcp) {
    if (clampTcpMss(pkt, off, total, mtu - TCP_IPV4_OVERHEAD) !== 0) c[ENCAP_MSS]! += 1;
  }
  if (total > mtu) {
    if (mtu < ctx.tunnelMtu) c[ENCAP_TOO_BIG_PATH]! += 1;
    if (ipv4DontFragment(pkt, off)) {
      c[ENCAP_DROP_TOO_BIG]! += 1;
      const n = buildFragmentationNeeded(ctx.reply, 0, ctx.tepIPv4, pkt, off, total, mtu);
      const v = icmpAnswer(ctx, n, Verdict.DROP_TOO_BIG);
      if (v === Verdict.ICMP) c[ENCAP_ICMP_TOO_BIG]! += 1;
      return v;
    }
    ctx.length = total;
    // --fragment inner: cut the IPv4 packet, not the outer one (RFC 4459 §3.4).
    const pieces = ctx.fragmentInner ? ipv4FragmentCount(pkt, off, total, mtu) : 0;
    ctx.innerFragments = pieces;
    ctx.innerMtu = mtu;
    c[pieces > 0 ? ENCAP_FRAGMENTED_INNER : ENCAP_FRAGMENTED]! += 1;
    c[ENCAP_FORWARD]! += 1;
    c[ENCAP_FORWARD_BYTES]! += total;
    return Verdict.FORWARD_FRAGMENT;
  }
  ctx.innerFragments = 0;
  ctx.length = total;
  c[ENCAP_FORWARD]! += 1;
  c[ENCAP_FORWARD_BYTES]! += total;
  return Verdict.FORWARD;
}
