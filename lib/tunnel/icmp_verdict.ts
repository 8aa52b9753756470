/**
 * The end of every step that answers a packet with an ICMPv4 error (pipeline.ts's tepEncap,
 * pipeline_client.ts's clientEncap): the error is already built in `ctx.reply`; send it only
 * if the rate limiter (RFC 1812 §4.3.2.8) has a token, else count `icmp-rate-limited`.
 * Reached only for a packet that is dropped anyway (too big with DF set, no binding), never on
 * the forwarding path, and allocates nothing.
 *
 * @module
 */
import { Counter } from "./counters.ts";
import type { TokenBucket } from "./ratelimit.ts";
import { Verdict } from "./verdict.ts";

const ICMP_RATE_LIMITED = Counter["icmp-rate-limited"];

/** The fields of a TEP or client context an ICMP answer uses. */
export interface IcmpAnswerContext {
  readonly counters: Float64Array;
  readonly icmpLimiter: TokenBucket;
  now(): number;
  replyLength: number;
}

/**
 * ICMP with `ctx.replyLength = n` when the limiter gives a token; DROP_RATE_LIMITED (counted)
 * when it does not; `unbuilt` when `n` is 0 (no error could be built about the packet).
 */
export function icmpAnswer(ctx: IcmpAnswerContext, n: number, unbuilt: Verdict): Verdict {
  if (n === 0) return unbuilt;
  if (!ctx.icmpLimiter.take(ctx.now())) {
    ctx.counters[ICMP_RATE_LIMITED]! += 1;
    return Verdict.DROP_RATE_LIMITED;
  }
  ctx.replyLength = n;
  return Verdict.ICMP;
}
