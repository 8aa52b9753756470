/**
 * The TEP's answer to a decapsulated packet whose source no binding allows: ICMPv6 1/5
 * "source address failed ingress/egress policy" (RFC 4443 §3.1, RFC 7597 §8.1–8.2) built into
 * the context's `reply6` for the Worker to send (pipeline.ts tepDecap; the message itself:
 * lib/net/icmp6.ts). Off the forwarding path; allocates nothing.
 *
 * @module
 */
import { buildSourcePolicyFailed, icmp6ErrorAllowed } from "../net/icmp6.ts";
import { Counter } from "./counters.ts";
import type { TokenBucket } from "./ratelimit.ts";

/** The fields of a TepContext (pipeline.ts) this step reads and writes. */
export interface SourcePolicyContext {
  readonly counters: Float64Array;
  readonly icmpLimiter: TokenBucket;
  now(): number;
  readonly tep6: Uint8Array | null;
  readonly sourcePolicyReady: Int32Array | null;
  readonly reply6: Uint8Array;
  reply6Length: number;
  readonly reply6To: Uint8Array;
}

const DECAP_ICMP_SOURCE_POLICY = Counter["decap-icmp-source-policy"];
const ICMP_RATE_LIMITED = Counter["icmp-rate-limited"];

/**
 * A decapsulated packet's source is bound to nobody, to another host or is outside the
 * sender's port set: with `ctx.tep6`, build ICMPv6 1/5 to the outer source in `ctx.reply6`
 * (RFC 4443 §3.1; RFC 7597 §8.1: "SHOULD send ... Type 1, Code 5"), if the limiter has a
 * token (else count `icmp-rate-limited`). The sender learns its binding is gone (a DSTM client
 * renews at once: lib/dataplane/client_lease.ts). Off the forwarding path; allocates nothing.
 */
export function sourcePolicyFailed(
  ctx: SourcePolicyContext,
  pkt: Uint8Array,
  off: number,
  len: number,
  src6: Uint8Array,
  src6Off: number,
  trafficClass: number,
): void {
  const tep6 = ctx.tep6;
  if (tep6 === null) return;
  const ready = ctx.sourcePolicyReady;
  if (ready !== null && ready[0] === 0) return;
  // RFC 4443 §2.4 (e): never to an unspecified or multicast source; checked before the
  // limiter, so that such packets neither spend its tokens nor count as rate limited.
  if (!icmp6ErrorAllowed(src6, src6Off)) return;
  if (!ctx.icmpLimiter.take(ctx.now())) {
    ctx.counters[ICMP_RATE_LIMITED]! += 1;
    return;
  }
  const n = buildSourcePolicyFailed(
    ctx.reply6,
    0,
    src6,
    src6Off,
    tep6,
    0,
    trafficClass,
    pkt,
    off,
    len,
  );
  if (n === 0) return;
  for (let i = 0; i < 16; i++) ctx.reply6To[i] = src6[src6Off + i]!;
  ctx.reply6Length = n;
  ctx.counters[DECAP_ICMP_SOURCE_POLICY]! += 1;
}
