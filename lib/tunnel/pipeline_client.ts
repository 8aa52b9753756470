/**
 * The DSTM client's per-packet steps (the DTI's side of the tunnel), in the style of
 * pipeline.ts: plain functions on (buffer, offset, length, …) that return a Verdict, count
 * the packet and allocate nothing.
 *
 * @module
 */
import { equalIPv6 } from "../net/addr.ts";
import { completePartialChecksum } from "../net/csum_partial.ts";
import { DSCP_COPY, outerTrafficClass } from "../net/ecn.ts";
import { flowLabelOf } from "../net/flowlabel.ts";
import { buildFragmentationNeeded, ICMP_ERROR_MAX_LENGTH } from "../net/icmp4.ts";
import {
  IPv4Problem,
  ipv4Destination,
  ipv4DontFragment,
  ipv4Source,
  ipv4TotalLength,
  validateIPv4,
} from "../net/ipv4.ts";
import { l4DestinationPort, l4SourcePort } from "../net/l4.ts";
import { clampTcpMss, TCP_IPV4_OVERHEAD } from "../net/mss.ts";
import { type PortSetValue, portSetProblem, psidOfPort } from "../net/portset.ts";
import { Counter } from "./counters.ts";
import { isLaterFragment } from "./fragments.ts";
import { icmpAnswer } from "./icmp_verdict.ts";
import type { LocalSources } from "./local_sources.ts";
import {
  ALWAYS_FITS,
  checkDscp,
  type DecapTailCounters,
  finishDecap,
  type TunnelHeaderOptions,
  tunnelMtuTo,
} from "./outer_header.ts";
import type { PathMtuTable } from "./pmtu.ts";
import { TokenBucket } from "./ratelimit.ts";
import { Verdict } from "./verdict.ts";

const CLIENT_ENCAP_FORWARD = Counter["client-encap-forward"];
const CLIENT_ENCAP_FORWARD_BYTES = Counter["client-encap-forward-bytes"];
const CLIENT_ENCAP_DROP_MALFORMED = Counter["client-encap-drop-malformed"];
const CLIENT_ENCAP_DROP_WRONG_SOURCE = Counter["client-encap-drop-wrong-source"];
const CLIENT_ENCAP_DROP_BAD_PORT = Counter["client-encap-drop-bad-port"];
const CLIENT_DECAP_CSUM_COMPLETED = Counter["client-decap-csum-completed"];
const CLIENT_DECAP_DROP_MALFORMED = Counter["client-decap-drop-malformed"];
const CLIENT_DECAP_DROP_WRONG_TEP = Counter["client-decap-drop-wrong-tep"];
const CLIENT_DECAP_DROP_WRONG_DESTINATION = Counter["client-decap-drop-wrong-destination"];
const CLIENT_DECAP_DROP_LOCAL_SOURCE = Counter["client-decap-drop-local-source"];
const CLIENT_ENCAP_MSS = Counter["client-encap-mss-clamped"];
const CLIENT_ENCAP_DROP_TOO_BIG = Counter["client-encap-drop-too-big"];
const ENCAP_TOO_BIG_PATH = Counter["encap-too-big-path-mtu"];
/** The client's counters of the end of decapsulation (outer_header.ts finishDecap). */
const CLIENT_DECAP_TAIL: DecapTailCounters = {
  dropEcn: Counter["client-decap-drop-ecn"],
  ecnCe: Counter["client-decap-ecn-ce"],
  mssClamped: Counter["client-decap-mss-clamped"],
  forward: Counter["client-decap-forward"],
  forwardBytes: Counter["client-decap-forward-bytes"],
};

/** Options of `new ClientContext`. */
export interface ClientOptions extends TunnelHeaderOptions {
  /** This Worker's counter slice. */
  counters: Float64Array;
  /** The leased IPv4 address. */
  leasedIPv4: number;
  /** The lease's port set; omit (or psidLength 0) for a whole address. */
  portSet?: PortSetValue;
  /** The TEP's IPv6 address (16 bytes). */
  tep6: Uint8Array;
  /** Largest IPv4 packet the tunnel carries (the DTI MTU). Default 1460. */
  tunnelMtu?: number;
  /** ICMP errors to the host's applications per second. Default 100. */
  icmpRate?: number;
  /** Clock in milliseconds (ICMP rate limit). Default Date.now. */
  now?: () => number;
  /**
   * The host's IPv4 addresses, refused as inner sources by clientDecap (`--kernel-encap`: the
   * DTI accepts local sources, local_sources.ts). The leased address is refused without it.
   */
  localSources?: LocalSources;
}

/** State of one client Worker. A new lease means a new context (post it to the Worker). */
export class ClientContext {
  readonly counters: Float64Array;
  readonly leasedIPv4: number;
  readonly offset: number;
  readonly psidLength: number;
  readonly psid: number;
  readonly tep6: Uint8Array;
  /** Bytes of the packet to send after a FORWARD verdict. */
  length = 0;
  readonly tunnelMtu: number;
  readonly pathMtu: PathMtuTable | null;
  readonly mssClamp: boolean;
  readonly dscp: number;
  readonly ecnNormal: boolean;
  readonly flowLabels: boolean;
  readonly icmpLimiter: TokenBucket;
  readonly localSources: LocalSources | null;
  now: () => number;
  /** Output of clientEncap: outer traffic class and flow label. */
  trafficClass = 0;
  flowLabel = 0;
  /** ICMP error for the application after an ICMP verdict (write it into the DTI). */
  readonly reply: Uint8Array = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
  replyLength = 0;

  constructor(options: ClientOptions) {
    const set = options.portSet ?? { offset: 0, psidLength: 0, psid: 0 };
    const problem = portSetProblem(set);
    if (problem !== null) throw new RangeError(`lease port set: ${problem}`);
    if (options.tep6.length !== 16) throw new RangeError("tep6 needs 16 bytes");
    this.counters = options.counters;
    this.leasedIPv4 = options.leasedIPv4 >>> 0;
    this.offset = set.offset;
    this.psidLength = set.psidLength;
    this.psid = set.psidLength === 0 ? 0 : set.psid;
    this.tep6 = Uint8Array.from(options.tep6);
    this.tunnelMtu = options.tunnelMtu ?? 1460;
    this.pathMtu = options.pathMtu ?? null;
    this.mssClamp = options.mssClamp ?? true;
    this.dscp = checkDscp(options.dscp ?? DSCP_COPY);
    this.ecnNormal = options.ecnNormal ?? true;
    this.flowLabels = options.flowLabel ?? true;
    const icmpRate = options.icmpRate ?? 100;
    this.icmpLimiter = new TokenBucket(icmpRate, icmpRate === 0 ? 0 : 20);
    this.now = options.now ?? Date.now;
    this.localSources = options.localSources ?? null;
  }
}

/**
 * Client, IPv4 (read from the DTI) → IPv6 to the TEP. The source must be the leased address
 * and, for a shared lease, the source port (echo identifier) must be in the lease's set: the
 * TEP would drop anything else, so it is dropped and counted here, where it is visible.
 *
 * `countForward` false: a FORWARD is not counted in `client-encap-forward(-bytes)` (the
 * kernel-encap out path checks a super-packet on its segments and counts what it hands to the
 * kernel itself, lib/dataplane/client_kernel_encap.ts).
 *
 * @example if (clientEncap(ctx, buf, 0, n) === Verdict.FORWARD) raw.sendto(buf, ctx.length, tep6)
 */
export function clientEncap(
  ctx: ClientContext,
  pkt: Uint8Array,
  off: number,
  len: number,
  countForward = true,
): Verdict {
  const c = ctx.counters;
  if (validateIPv4(pkt, off, len) !== IPv4Problem.NONE) {
    c[CLIENT_ENCAP_DROP_MALFORMED]! += 1;
    return Verdict.DROP_MALFORMED;
  }
  if (ipv4Source(pkt, off) !== ctx.leasedIPv4) {
    c[CLIENT_ENCAP_DROP_WRONG_SOURCE]! += 1;
    return Verdict.DROP_WRONG_SOURCE;
  }
  const total = ipv4TotalLength(pkt, off);
  // A later fragment has no port: the NAPT let it through after its first fragment.
  if (ctx.psidLength !== 0 && !isLaterFragment(pkt, off)) {
    const port = l4SourcePort(pkt, off, total);
    if (port < 0 || psidOfPort(port, ctx.offset, ctx.psidLength) !== ctx.psid) {
      c[CLIENT_ENCAP_DROP_BAD_PORT]! += 1;
      return Verdict.DROP_BAD_PORT;
    }
  }
  const tcp = pkt[off + 9] === 6;
  const mtu =
    total > ALWAYS_FITS || (ctx.mssClamp && tcp)
      ? tunnelMtuTo(ctx.pathMtu, ctx.tunnelMtu, ctx.tep6, 0)
      : ctx.tunnelMtu;
  if (ctx.mssClamp && tcp) {
    if (clampTcpMss(pkt, off, total, mtu - TCP_IPV4_OVERHEAD) !== 0) c[CLIENT_ENCAP_MSS]! += 1;
  }
  if (total > mtu) {
    if (mtu < ctx.tunnelMtu) c[ENCAP_TOO_BIG_PATH]! += 1;
    if (ipv4DontFragment(pkt, off)) {
      // RFC 2473 §7.1 at the entry point on the host: "fragmentation needed" with path MTU − 40,
      // from the destination (the host has no address of its own on the path).
      c[CLIENT_ENCAP_DROP_TOO_BIG]! += 1;
      const n = buildFragmentationNeeded(
        ctx.reply,
        0,
        ipv4Destination(pkt, off),
        pkt,
        off,
        total,
        mtu,
      );
      return icmpAnswer(ctx, n, Verdict.DROP_TOO_BIG);
    }
  }
  ctx.trafficClass = outerTrafficClass(pkt[off + 1]!, ctx.dscp, ctx.ecnNormal);
  ctx.flowLabel = ctx.flowLabels ? flowLabelOf(pkt, off, total) : 0;
  ctx.length = total;
  if (countForward) {
    c[CLIENT_ENCAP_FORWARD]! += 1;
    c[CLIENT_ENCAP_FORWARD_BYTES]! += total;
  }
  return Verdict.FORWARD;
}

/**
 * Client, IPv6 from the raw socket → IPv4 into the DTI. The outer source must be the TEP
 * (anyone can send protocol-4 packets to the host), the inner destination the leased address
 * (and, for a shared lease, a port of its set), the inner source none of the host's own: not
 * the leased address (a packet the host sent itself would not come through the tunnel; a
 * sharer's hairpinned packet from the same address is refused too, as the kernel always did),
 * nor, with `ctx.localSources`, another of its addresses (`client-decap-drop-local-source`:
 * with `--kernel-encap` the DTI has accept_local=1 and the kernel would deliver them;
 * local_sources.ts).
 *
 * @example if (clientDecap(ctx, buf, 0, n, from6, 0) === Verdict.FORWARD) tun.write(buf, 0, ctx.length)
 */
export function clientDecap(
  ctx: ClientContext,
  pkt: Uint8Array,
  off: number,
  len: number,
  src6: Uint8Array,
  src6Off: number,
  outerTrafficClass = 0,
): Verdict {
  const c = ctx.counters;
  if (!equalIPv6(src6, src6Off, ctx.tep6, 0)) {
    c[CLIENT_DECAP_DROP_WRONG_TEP]! += 1;
    return Verdict.DROP_WRONG_TEP;
  }
  if (validateIPv4(pkt, off, len) !== IPv4Problem.NONE) {
    c[CLIENT_DECAP_DROP_MALFORMED]! += 1;
    return Verdict.DROP_MALFORMED;
  }
  const total = ipv4TotalLength(pkt, off);
  if (ipv4Destination(pkt, off) !== ctx.leasedIPv4) {
    c[CLIENT_DECAP_DROP_WRONG_DESTINATION]! += 1;
    return Verdict.DROP_WRONG_DESTINATION;
  }
  const source = ipv4Source(pkt, off);
  if (source === ctx.leasedIPv4 || ctx.localSources?.has(source)) {
    c[CLIENT_DECAP_DROP_LOCAL_SOURCE]! += 1;
    return Verdict.DROP_WRONG_SOURCE;
  }
  // A later fragment has no port: the NAPT checks it against its first fragment.
  if (ctx.psidLength !== 0 && !isLaterFragment(pkt, off)) {
    const port = l4DestinationPort(pkt, off, total);
    if (port < 0 || psidOfPort(port, ctx.offset, ctx.psidLength) !== ctx.psid) {
      c[CLIENT_DECAP_DROP_WRONG_DESTINATION]! += 1;
      return Verdict.DROP_WRONG_DESTINATION;
    }
  }
  // A kernel TEP on a veth left the L4 checksum to the hardware (lib/net/csum_partial.ts);
  // finished first, since the MSS clamp below updates the checksum incrementally.
  if (completePartialChecksum(pkt, off, total)) c[CLIENT_DECAP_CSUM_COMPLETED]! += 1;
  // A SYN-ACK from the IPv4 peer: our applications' segments must fit the path to the TEP.
  return finishDecap(ctx, CLIENT_DECAP_TAIL, pkt, off, total, outerTrafficClass, ctx.tep6, 0);
}
