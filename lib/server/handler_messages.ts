/**
 * Messages of the native protocol handler (./handler.ts): what kind a datagram is, the ACK a
 * granted request gets, and how every answer is encoded: STATUS text cut to fit, signed
 * with the request's key, and a NAK to an unvouched source never longer than the request.
 *
 * @module
 */
import type { AllocationEngine, EngineOutcome } from "../alloc/engine.ts";
import type { Metrics } from "../control/metrics.ts";
import type { Lease } from "../lease/lease.ts";
import { type AuthKey, signMessage } from "../wire/auth.ts";
import { encodeMessage } from "../wire/dstm.ts";
import { type DstmMessage, MessageType, Status } from "../wire/dstm_types.ts";

/** The `type` label of each message type in `dstm_messages_total` and in logs. */
export const TYPE_NAMES: Record<number, string> = {
  [MessageType.DISCOVER]: "discover",
  [MessageType.DISCOVER_ACK]: "discover_ack",
  [MessageType.REQUEST]: "request",
  [MessageType.REQUEST_ACK]: "request_ack",
  [MessageType.RELEASE]: "release",
  [MessageType.RELEASE_ACK]: "release_ack",
  [MessageType.NAK]: "nak",
};

/** What a TEP sends the server: SYNC, and the answers to BIND / UNBIND. */
export function isTepMessage(type: number): boolean {
  return type === MessageType.SYNC || type === MessageType.BIND_ACK || type === MessageType.NAK;
}

/** What a host sends the server: DISCOVER, REQUEST, RELEASE. */
export function isRequestType(type: number): boolean {
  return (
    type === MessageType.DISCOVER || type === MessageType.REQUEST || type === MessageType.RELEASE
  );
}

/**
 * RELEASE_ACK, or DISCOVER_ACK / REQUEST_ACK with the lease (`outcome`: the engine's), its
 * lease time the seconds it has left on `engine`'s clock.
 */
export function ackFor(
  request: DstmMessage,
  lease: Lease,
  outcome: EngineOutcome,
  engine: Pick<AllocationEngine, "remainingMs">,
): DstmMessage {
  const host6 = request.host6!;
  if (request.type === MessageType.RELEASE) {
    return { type: MessageType.RELEASE_ACK, xid: request.xid, host4: lease.ipv4, host6 };
  }
  return {
    type:
      request.type === MessageType.DISCOVER ? MessageType.DISCOVER_ACK : MessageType.REQUEST_ACK,
    xid: request.xid,
    host4: lease.ipv4,
    host6,
    tep6: lease.tep6,
    tep4: lease.tep4 === 0 ? undefined : lease.tep4,
    portSet: lease.portSet.psidLength === 0 ? undefined : lease.portSet,
    // On the engine's monotonic clock: a wall-clock step does not change the time left.
    leaseTime: Math.max(1, Math.round(engine.remainingMs(lease) / 1000)),
    // The host held this lease before the DISCOVER: tell the requester it is not its own
    // to RELEASE (docs/protocol.md, EXISTING_LEASE).
    existingLease:
      request.type === MessageType.DISCOVER && outcome === "renewed" ? true : undefined,
  };
}

/** The bytes of `message`, its STATUS text cut to 253 bytes, signed with `key` (at `now()`) when given. */
export function encodeAnswer(
  message: DstmMessage,
  key: AuthKey | undefined,
  now: () => number,
): Uint8Array {
  const m =
    message.statusText === undefined
      ? message
      : { ...message, statusText: truncateText(message.statusText) };
  return key ? signMessage(m, key, now()) : encodeMessage(m);
}

/**
 * A NAK to a source nobody vouches for yet (a malformed or unauthenticated request, or one
 * whose HOST_IPV6 is not its source): never longer than the request (`limit` bytes), so a
 * spoofed request cannot make the server a reflection amplifier. Its text is cut to fit;
 * when even a NAK without text would be longer, nothing is sent (null, counted
 * `dstm_dropped_total{reason="answer-too-long"}` in `metrics`).
 */
export function nakWithin(
  limit: number,
  nak: DstmMessage,
  text: string,
  key: AuthKey | undefined,
  now: () => number,
  metrics: Metrics,
): Uint8Array | null {
  const bare = encodeAnswer({ ...nak, statusText: "" }, key, now);
  if (bare.length > limit) {
    metrics.inc("dstm_dropped_total", { reason: "answer-too-long" });
    return null;
  }
  return encodeAnswer({ ...nak, statusText: cutText(text, limit - bare.length) }, key, now);
}

/** STATUS text is at most 253 bytes on the wire; longer messages are cut (see {@link cutText}). */
function truncateText(text: string): string {
  return cutText(text, 253);
}

/** "…" (U+2026), 3 bytes in UTF-8: what marks a text as cut. */
const ELLIPSIS = "…";
const ELLIPSIS_BYTES = 3;

/**
 * `text` in at most `max` UTF-8 bytes: whole, or cut at the last word boundary that leaves
 * room for "…" and ended with it (`HOST_IPV6 must be the address…`, not `HOST_IPV6 must`
 * mid-phrase as a whole reason), on a character boundary when a first word alone is too long;
 * "" when not even "…" fits. A client that knows the reason says it in full
 * (lib/client/protocol.ts refusalHint).
 *
 * @example cutText("HOST_IPV6 must be the address the request is sent from", 32) // "HOST_IPV6 must be the address…"
 */
export function cutText(text: string, max: number): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= max) return text;
  if (max < ELLIPSIS_BYTES) return "";
  let cut = max - ELLIPSIS_BYTES;
  while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--;
  // The last space at or before the cut (bytes[cut] itself may be the space after a word).
  let space = cut;
  while (space > 0 && bytes[space] !== 0x20) space--;
  const end = space > 0 ? space : cut;
  const head = new TextDecoder().decode(bytes.subarray(0, end)).replace(/[\s;,:.(]+$/u, "");
  return head === "" ? "" : `${head}${ELLIPSIS}`;
}

/** Status code → its lower-case name, for the `result` label (`nak_pool_exhausted`). */
export const STATUS_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Status).map(([name, code]) => [code, name.toLowerCase()]),
);

/** The engine's refusal reasons → the NAK status that answers them. */
export const REASON_STATUS: Record<string, Status> = {
  "pool-exhausted": Status.POOL_EXHAUSTED,
  "no-such-lease": Status.NO_SUCH_LEASE,
  "address-in-use": Status.ADDRESS_IN_USE,
  "store-failed": Status.SERVER_ERROR,
  // The host's prefix holds all the leases one prefix may: for this host, the pool is empty.
  "prefix-limit": Status.POOL_EXHAUSTED,
  "site-limit": Status.POOL_EXHAUSTED,
  // The host's IPv6 address is a TEP's: no lease, ever (lib/alloc/allocator.ts).
  "host6-is-tep": Status.NOT_AUTHORISED,
};

/** Registers the handler's metric families (also used by the server to expose them at zero). */
export function declareHandlerMetrics(metrics: Metrics): void {
  metrics.counter("dstm_messages_total", "DSTM requests received, by message type and result", [
    "type",
    "result",
  ]);
  metrics.counter("dstm_dropped_total", "Datagrams dropped without an answer, by reason", [
    "reason",
  ]);
  metrics.counter(
    "dstm_malformed_total",
    "Malformed requests (answered with NAK MALFORMED), by decode error",
    ["error"],
  );
  metrics.counter("dstm_auth_failures_total", "Requests refused by authentication, by reason", [
    "reason",
  ]);
}
