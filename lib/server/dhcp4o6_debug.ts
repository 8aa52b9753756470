/**
 * `--log-level debug` of the server's DHCPv4-over-DHCPv6 service (./dhcp4o6.ts): each datagram
 * and its answer as `message-received` / `message-sent` lines (lib/control/dhcp4o6_message_log.ts),
 * with the `result` the service counted it under (`dstm_dhcp4o6_messages_total`'s label:
 * `offer`, `ack`, `nak`, `released`, `pool-exhausted`, `malformed-truncated`, …) and, for a
 * query admission refused (rate limit, allow list), `result=refused`; a link-local client's
 * holder key in `source` mode as `holder=` (./dhcp4o6_identity.ts).
 *
 * The result of one datagram is carried through its asynchronous handling in an
 * AsyncLocalStorage, so concurrent queries never see each other's; only with debug on.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { logDhcp4o6Message } from "../control/dhcp4o6_message_log.ts";
import type { Logger } from "../control/log.ts";

interface Trace {
  result?: string;
  reason?: string;
  holder?: string;
}
const _trace = new AsyncLocalStorage<Trace>();

/**
 * Records how the datagram being handled ended, and why (a NAK's whole message, which the
 * NAK itself may carry cut: ./dhcp4o6_reply.ts); the last call wins; a no-op without debug.
 */
export function noteDhcp4o6Result(result: string, reason?: string): void {
  const trace = _trace.getStore();
  if (!trace) return;
  trace.result = result;
  trace.reason = reason;
}

/**
 * Records the holder key of a link-local client (./dhcp4o6_identity.ts linkLocalHolder), logged
 * as `holder=`; a no-op without debug.
 */
export function noteDhcp4o6Holder(holder: string): void {
  const trace = _trace.getStore();
  if (trace) trace.holder = holder;
}

/**
 * Runs `handle` for the datagram `raw` from `source`; with debug on, logs it and its answer
 * (to `source`) with the result noted meanwhile. Resolves to `handle`'s answer.
 */
export function handleLogged(
  log: Logger,
  raw: Uint8Array,
  source: string,
  handle: () => Promise<Uint8Array | null>,
): Promise<Uint8Array | null> {
  // Without debug, no wrapper promise per datagram.
  return log.enabled("debug") ? _logged(log, raw, source, handle) : handle();
}

async function _logged(
  log: Logger,
  raw: Uint8Array,
  source: string,
  handle: () => Promise<Uint8Array | null>,
): Promise<Uint8Array | null> {
  const trace: Trace = {};
  const answer = await _trace.run(trace, handle);
  const extra = {
    result: trace.result ?? (answer ? "answered" : "refused"),
    reason: trace.reason,
    holder: trace.holder,
  };
  logDhcp4o6Message(log, "received", raw, source, extra);
  if (answer) logDhcp4o6Message(log, "sent", answer, source, extra);
  return answer;
}
