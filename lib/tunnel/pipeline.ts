/**
 * The per-packet steps of the TEP and of the DSTM client, as plain functions on
 * (buffer, offset, length, …). Each returns a Verdict (a small integer), writes any output in
 * place (the packet itself, the host IPv6 address, or an ICMP error into the context's reply
 * buffer), counts the packet under exactly one forward or drop counter (plus `*-bytes`,
 * `decap-hairpin`, `encap-fragmented`, `icmp-*` where they apply), and allocates nothing.
 *
 * The outer IPv6 header never passes through here: the Worker loops use a raw IPv6 socket
 * with protocol 4, so the kernel strips it on receive (handing over the outer source) and
 * builds it on send (to the address the step wrote), fragmenting when needed.
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
import { equalIPv6 } from "../net/addr.ts";
import { completePartialChecksum } from "../net/csum_partial.ts";
import {
  buildFragmentationNeeded,
  buildHostUnreachable,
  ICMP_ERROR_MAX_LENGTH,
} from "../net/icmp4.ts";
import {
  IPv4Problem,
  ipv4Destination,
  ipv4DontFragment,
  ipv4Source,
  ipv4TotalLength,
  validateIPv4,
} from "../net/ipv4.ts";
import { l4DestinationPort, l4SourcePort } from "../net/l4.ts";
import { type PortSetValue, portSetProblem, psidOfPort } from "../net/portset.ts";
import { type BindingTable, LookupStatus } from "./binding.ts";
import { Counter } from "./counters.ts";
import { TokenBucket } from "./ratelimit.ts";

/** What a step decided. */
export const Verdict = {
  /** Send the packet on. */
  FORWARD: 0,
  /** Send it on; it exceeds the tunnel MTU with DF clear, so the outer IPv6 gets fragmented. */
  FORWARD_FRAGMENT: 1,
  /** Drop the packet and send `ctx.reply` (an ICMPv4 error) to the packet's source. */
  ICMP: 2,
  /** Not a well-formed IPv4 packet. */
  DROP_MALFORMED: 3,
  /** No binding for the address. */
  DROP_NO_BINDING: 4,
  /** The binding names another IPv6 host than the outer source. */
  DROP_SPOOFED_SOURCE: 5,
  /** Shared address, port in no bound port set (TEP) or outside the lease's set (client). */
  DROP_BAD_PORT: 6,
  /** Host-to-host through the TEP while hairpinning is off. */
  DROP_HAIRPIN_DISABLED: 7,
  /** Too big for the tunnel with DF set, and no ICMP error may be sent about it. */
  DROP_TOO_BIG: 8,
  /** An ICMP error was due but the rate limiter had no token. */
  DROP_RATE_LIMITED: 9,
  /** Client: the source is not the leased address. */
  DROP_WRONG_SOURCE: 10,
  /** Client: the outer IPv6 source is not the TEP. */
  DROP_WRONG_TEP: 11,
  /** Client: the inner destination is not the leased address (or port set). */
  DROP_WRONG_DESTINATION: 12,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

const _VERDICT_NAMES = Object.keys(Verdict) as (keyof typeof Verdict)[];

/** The name of a verdict code, e.g. `"DROP_NO_BINDING"`. */
export function verdictName(verdict: number): string {
  return _VERDICT_NAMES[verdict] ?? `UNKNOWN_${verdict}`;
}

/** True for FORWARD and FORWARD_FRAGMENT. */
export function isForward(verdict: number): boolean {
  return verdict <= Verdict.FORWARD_FRAGMENT;
}

/** IPv6 header overhead: tunnel MTU = link MTU − 40 (RFC 2473 §6.1). */
export const TUNNEL_OVERHEAD = 40;

/** Options of `new TepContext`. */
export interface TepOptions {
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
  /** Clock in milliseconds, read only when an ICMP error is due. Default Date.now. */
  now?: () => number;
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
  readonly icmpLimiter: TokenBucket;
  now: () => number;
  /** ICMP error built by the last step that returned ICMP. */
  readonly reply: Uint8Array = new Uint8Array(ICMP_ERROR_MAX_LENGTH);
  /** Bytes of `reply` to send after an ICMP verdict. */
  replyLength = 0;
  /** Bytes of the packet to send after a FORWARD / FORWARD_FRAGMENT verdict. */
  length = 0;

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
    this.icmpLimiter = new TokenBucket(options.icmpRate ?? 100, options.icmpBurst ?? 20);
    this.now = options.now ?? Date.now;
  }
}

// Counter indexes, resolved once.
const DECAP_FORWARD = Counter["decap-forward"];
const DECAP_FORWARD_BYTES = Counter["decap-forward-bytes"];
const DECAP_HAIRPIN = Counter["decap-hairpin"];
const DECAP_DROP_MALFORMED = Counter["decap-drop-malformed"];
const DECAP_DROP_NO_BINDING = Counter["decap-drop-no-binding"];
const DECAP_DROP_SPOOFED = Counter["decap-drop-spoofed-source"];
const DECAP_DROP_BAD_PORT = Counter["decap-drop-bad-port"];
const DECAP_DROP_HAIRPIN = Counter["decap-drop-hairpin-disabled"];
const ENCAP_FORWARD = Counter["encap-forward"];
const ENCAP_FORWARD_BYTES = Counter["encap-forward-bytes"];
const ENCAP_FRAGMENTED = Counter["encap-fragmented"];
const ENCAP_DROP_MALFORMED = Counter["encap-drop-malformed"];
const ENCAP_DROP_NO_BINDING = Counter["encap-drop-no-binding"];
const ENCAP_DROP_TOO_BIG = Counter["encap-drop-too-big"];
const ENCAP_ICMP_TOO_BIG = Counter["encap-icmp-too-big"];
const ENCAP_ICMP_UNREACHABLE = Counter["encap-icmp-host-unreachable"];
const ICMP_RATE_LIMITED = Counter["icmp-rate-limited"];
const CLIENT_ENCAP_FORWARD = Counter["client-encap-forward"];
const CLIENT_ENCAP_FORWARD_BYTES = Counter["client-encap-forward-bytes"];
const CLIENT_ENCAP_DROP_MALFORMED = Counter["client-encap-drop-malformed"];
const CLIENT_ENCAP_DROP_WRONG_SOURCE = Counter["client-encap-drop-wrong-source"];
const CLIENT_ENCAP_DROP_BAD_PORT = Counter["client-encap-drop-bad-port"];
const CLIENT_DECAP_FORWARD = Counter["client-decap-forward"];
const CLIENT_DECAP_FORWARD_BYTES = Counter["client-decap-forward-bytes"];
const CLIENT_DECAP_DROP_MALFORMED = Counter["client-decap-drop-malformed"];
const CLIENT_DECAP_DROP_WRONG_TEP = Counter["client-decap-drop-wrong-tep"];
const CLIENT_DECAP_DROP_WRONG_DESTINATION = Counter["client-decap-drop-wrong-destination"];
const DECAP_CSUM_COMPLETED = Counter["decap-csum-completed"];
const CLIENT_DECAP_CSUM_COMPLETED = Counter["client-decap-csum-completed"];

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
): Verdict {
  const c = ctx.counters;
  if (validateIPv4(pkt, off, len) !== IPv4Problem.NONE) {
    c[DECAP_DROP_MALFORMED]! += 1;
    return Verdict.DROP_MALFORMED;
  }
  const total = ipv4TotalLength(pkt, off);
  const status = ctx.bindings.match(
    ipv4Source(pkt, off),
    l4SourcePort(pkt, off, total),
    src6,
    src6Off,
  );
  if (status !== LookupStatus.FOUND) {
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
  if (ctx.bindings.find(ipv4Destination(pkt, off), -1, _noHost, 0) !== LookupStatus.NO_ADDRESS) {
    if (!ctx.hairpin) {
      c[DECAP_DROP_HAIRPIN]! += 1;
      return Verdict.DROP_HAIRPIN_DISABLED;
    }
    c[DECAP_HAIRPIN]! += 1;
  }
  // A kernel sender on a veth left the L4 checksum to the hardware (lib/net/csum_partial.ts).
  if (completePartialChecksum(pkt, off, total)) c[DECAP_CSUM_COMPLETED]! += 1;
  ctx.length = total;
  c[DECAP_FORWARD]! += 1;
  c[DECAP_FORWARD_BYTES]! += total;
  return Verdict.FORWARD;
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
 * outer IPv6 packet; RFC 6333 §7 says the same for DS-Lite).
 *
 * @example
 * const v = tepEncap(ctx, buf, 0, n, host6, 0);
 * if (isForward(v)) raw6.sendto(buf, ctx.length, host6);
 * else if (v === Verdict.ICMP) raw4.send(ctx.reply, 0, ctx.replyLength);
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
  if (ctx.bindings.find(ipv4Destination(pkt, off), port, outHost6, outOff) !== LookupStatus.FOUND) {
    c[ENCAP_DROP_NO_BINDING]! += 1;
    if (!ctx.icmpHostUnreachable) return Verdict.DROP_NO_BINDING;
    const n = buildHostUnreachable(ctx.reply, 0, ctx.tepIPv4, pkt, off, total);
    if (n === 0) return Verdict.DROP_NO_BINDING;
    if (!ctx.icmpLimiter.take(ctx.now())) {
      c[ICMP_RATE_LIMITED]! += 1;
      return Verdict.DROP_RATE_LIMITED;
    }
    ctx.replyLength = n;
    c[ENCAP_ICMP_UNREACHABLE]! += 1;
    return Verdict.ICMP;
  }
  if (total > ctx.tunnelMtu) {
    if (ipv4DontFragment(pkt, off)) {
      c[ENCAP_DROP_TOO_BIG]! += 1;
      const n = buildFragmentationNeeded(ctx.reply, 0, ctx.tepIPv4, pkt, off, total, ctx.tunnelMtu);
      if (n === 0) return Verdict.DROP_TOO_BIG;
      if (!ctx.icmpLimiter.take(ctx.now())) {
        c[ICMP_RATE_LIMITED]! += 1;
        return Verdict.DROP_RATE_LIMITED;
      }
      ctx.replyLength = n;
      c[ENCAP_ICMP_TOO_BIG]! += 1;
      return Verdict.ICMP;
    }
    ctx.length = total;
    c[ENCAP_FRAGMENTED]! += 1;
    c[ENCAP_FORWARD]! += 1;
    c[ENCAP_FORWARD_BYTES]! += total;
    return Verdict.FORWARD_FRAGMENT;
  }
  ctx.length = total;
  c[ENCAP_FORWARD]! += 1;
  c[ENCAP_FORWARD_BYTES]! += total;
  return Verdict.FORWARD;
}

/** Options of `new ClientContext`. */
export interface ClientOptions {
  /** This Worker's counter slice. */
  counters: Float64Array;
  /** The leased IPv4 address. */
  leasedIPv4: number;
  /** The lease's port set; omit (or psidLength 0) for a whole address. */
  portSet?: PortSetValue;
  /** The TEP's IPv6 address (16 bytes). */
  tep6: Uint8Array;
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
  }
}

/**
 * Client, IPv4 (read from the DTI) → IPv6 to the TEP. The source must be the leased address
 * and, for a shared lease, the source port (echo identifier) must be in the lease's set: the
 * TEP would drop anything else, so it is dropped and counted here, where it is visible.
 *
 * @example if (clientEncap(ctx, buf, 0, n) === Verdict.FORWARD) raw.sendto(buf, ctx.length, tep6)
 */
export function clientEncap(
  ctx: ClientContext,
  pkt: Uint8Array,
  off: number,
  len: number,
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
  if (ctx.psidLength !== 0) {
    const port = l4SourcePort(pkt, off, total);
    if (port < 0 || psidOfPort(port, ctx.offset, ctx.psidLength) !== ctx.psid) {
      c[CLIENT_ENCAP_DROP_BAD_PORT]! += 1;
      return Verdict.DROP_BAD_PORT;
    }
  }
  ctx.length = total;
  c[CLIENT_ENCAP_FORWARD]! += 1;
  c[CLIENT_ENCAP_FORWARD_BYTES]! += total;
  return Verdict.FORWARD;
}

/**
 * Client, IPv6 from the raw socket → IPv4 into the DTI. The outer source must be the TEP
 * (anyone can send protocol-4 packets to the host), the inner destination the leased address
 * (and, for a shared lease, a port of its set).
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
  if (ctx.psidLength !== 0) {
    const port = l4DestinationPort(pkt, off, total);
    if (port < 0 || psidOfPort(port, ctx.offset, ctx.psidLength) !== ctx.psid) {
      c[CLIENT_DECAP_DROP_WRONG_DESTINATION]! += 1;
      return Verdict.DROP_WRONG_DESTINATION;
    }
  }
  if (completePartialChecksum(pkt, off, total)) c[CLIENT_DECAP_CSUM_COMPLETED]! += 1;
  ctx.length = total;
  c[CLIENT_DECAP_FORWARD]! += 1;
  c[CLIENT_DECAP_FORWARD_BYTES]! += total;
  return Verdict.FORWARD;
}
