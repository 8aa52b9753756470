/**
 * DHCPv6 relay framing (RFC 8415 §9, §19, §20): RELAY-FORW (12) and RELAY-REPL (13), the
 * envelope a relay agent puts around a client's message (here a DHCPV4-QUERY, RFC 7341 §5)
 * and the server's answer to it.
 *
 * ```
 *  0        1        2 … 17          18 … 33         34 …
 *  msg-type hop-count link-address   peer-address    options
 * ```
 *
 * - OPTION_RELAY_MSG (9): required once; the relayed message, kept raw (it may be another
 *   RELAY-FORW: relays nest, the outermost is the last relay before the server).
 * - OPTION_INTERFACE_ID (18): opaque, at most once; the server echoes it (RFC 8415 §19.3).
 * - Every other option (remote-id 37, subscriber-id 38, client link-layer address 79, …) is
 *   kept raw, in order, so that it round-trips.
 *
 * Same shape as `dhcp4o6.ts`: `encodeDhcp6Relay` / `decodeDhcp6Relay` /
 * `dhcp6RelayEncodingLength`; decoding never throws, encoding throws `RangeError` on a value
 * it could not decode back. {@link unwrapRelays} and {@link wrapRelayReply} take a whole
 * relay chain apart and build the RELAY-REPL chain that carries the answer back.
 *
 * @module
 */

import { formatIPv6, parseIPv6 } from "../net/addr.ts";
import { readU16, writeU16 } from "../net/bytes.ts";
import type { Decoded, DecodeError } from "./codec.ts";
import { encodeTarget, fail } from "./codec.ts";

export const Dhcp6RelayType = { RELAY_FORW: 12, RELAY_REPL: 13 } as const;
export type Dhcp6RelayType = 12 | 13;

export const Dhcp6RelayOptionCode = {
  RELAY_MSG: 9,
  INTERFACE_ID: 18,
  REMOTE_ID: 37,
} as const;

/** RFC 8415 §7.6 HOP_COUNT_LIMIT: a relay drops a RELAY-FORW whose hop-count reached it. */
export const DHCP6_HOP_COUNT_LIMIT = 8;
/** Most nested relay envelopes {@link unwrapRelays} opens (hop-count is a byte, 0–255). */
export const DHCP6_MAX_RELAY_DEPTH = 32;

/** Every reason `decodeDhcp6Relay` or `unwrapRelays` rejects a message. */
export const DHCP6_RELAY_DECODE_ERROR_CODES = [
  "bad-offset",
  "truncated",
  "bad-msg-type",
  "truncated-option",
  "duplicate-option",
  "missing-option",
  "too-deep",
] as const;
export type Dhcp6RelayDecodeErrorCode = (typeof DHCP6_RELAY_DECODE_ERROR_CODES)[number];

/** Result of a decode (./codec.ts). */
export type Dhcp6RelayDecoded<T> = Decoded<T, DecodeError<Dhcp6RelayDecodeErrorCode>>;

/** One relay envelope. */
export interface Dhcp6RelayMessage {
  readonly type: Dhcp6RelayType;
  /** Relays the message went through before this one (0: this relay heard the client). */
  readonly hopCount: number;
  /** An address of the client's link, canonical text; `::` when the relay has none (RFC 8415 §19.1.1). */
  readonly linkAddress: string;
  /** Where the message came from (the client, or the previous relay), canonical text. */
  readonly peerAddress: string;
  /** OPTION_RELAY_MSG (9): the relayed message, raw. */
  readonly relayMessage: Uint8Array;
  /** OPTION_INTERFACE_ID (18): opaque bytes naming the relay's interface. */
  readonly interfaceId?: Uint8Array;
  /** Every other option, in order. */
  readonly unknown?: readonly { readonly code: number; readonly data: Uint8Array }[];
}

const HEADER = 34;

/**
 * Decodes a RELAY-FORW or RELAY-REPL from the `length` bytes at `offset` (default: the rest of
 * `buf`, the UDP payload). The relayed message is returned as a view, not decoded. Never throws.
 */
export function decodeDhcp6Relay(
  buf: Uint8Array,
  offset = 0,
  length = buf.length - offset,
): Dhcp6RelayDecoded<Dhcp6RelayMessage> {
  if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(length) || length < 0)
    return fail("bad-offset", `offset ${offset}, length ${length}: not integers ≥ 0`);
  if (offset + length > buf.length) return fail("truncated", "length past the buffer");
  if (length < HEADER) return fail("truncated", `${length} bytes: a relay message has 34 or more`);
  const type = buf[offset]!;
  if (type !== 12 && type !== 13)
    return fail("bad-msg-type", `message type ${type} is not RELAY-FORW (12) or RELAY-REPL (13)`);
  const end = offset + length;
  let relayMessage: Uint8Array | undefined;
  let interfaceId: Uint8Array | undefined;
  const unknown: { code: number; data: Uint8Array }[] = [];
  let at = offset + HEADER;
  while (at < end) {
    if (end - at < 4) return fail("truncated-option", `option header at ${at - offset} cut off`);
    const code = readU16(buf, at);
    const len = readU16(buf, at + 2);
    if (at + 4 + len > end)
      return fail("truncated-option", `option ${code} of ${len} bytes runs past the message`);
    const data = buf.subarray(at + 4, at + 4 + len);
    if (code === Dhcp6RelayOptionCode.RELAY_MSG) {
      if (relayMessage) return fail("duplicate-option", "OPTION_RELAY_MSG (9) twice");
      relayMessage = data;
    } else if (code === Dhcp6RelayOptionCode.INTERFACE_ID) {
      if (interfaceId) return fail("duplicate-option", "OPTION_INTERFACE_ID (18) twice");
      interfaceId = data;
    } else {
      unknown.push({ code, data });
    }
    at += 4 + len;
  }
  if (!relayMessage) return fail("missing-option", "no OPTION_RELAY_MSG (9)");
  const value: Dhcp6RelayMessage = {
    type,
    hopCount: buf[offset + 1]!,
    linkAddress: formatIPv6(buf.subarray(offset + 2, offset + 18)),
    peerAddress: formatIPv6(buf.subarray(offset + 18, offset + 34)),
    relayMessage,
    ...(interfaceId ? { interfaceId } : {}),
    ...(unknown.length ? { unknown } : {}),
  };
  return { ok: true, value, offset: end };
}

/** Bytes `encodeDhcp6Relay` writes. */
export function dhcp6RelayEncodingLength(msg: Dhcp6RelayMessage): number {
  let n = HEADER + 4 + msg.relayMessage.length;
  if (msg.interfaceId) n += 4 + msg.interfaceId.length;
  for (const o of msg.unknown ?? []) n += 4 + o.data.length;
  return n;
}

/**
 * Encodes `msg` into `buf` at `offset` (a new buffer when omitted). Options go in the order
 * interface-id, the others, relay message. Throws `RangeError` on a bad type, hop-count,
 * address or an option over 65535 bytes.
 */
export function encodeDhcp6Relay(msg: Dhcp6RelayMessage, buf?: Uint8Array, offset = 0): Uint8Array {
  if (msg.type !== 12 && msg.type !== 13) throw new RangeError(`relay type ${msg.type}`);
  if (!Number.isInteger(msg.hopCount) || msg.hopCount < 0 || msg.hopCount > 255)
    throw new RangeError(`hop-count ${msg.hopCount} is not 0–255`);
  const link = parseIPv6(msg.linkAddress);
  const peer = parseIPv6(msg.peerAddress);
  if (!link) throw new RangeError(`link-address "${msg.linkAddress}" is not an IPv6 address`);
  if (!peer) throw new RangeError(`peer-address "${msg.peerAddress}" is not an IPv6 address`);
  const n = dhcp6RelayEncodingLength(msg);
  const out = encodeTarget(buf, offset, n, "relay message");
  out[0] = msg.type;
  out[1] = msg.hopCount;
  out.set(link, 2);
  out.set(peer, 18);
  let at = HEADER;
  const put = (code: number, data: Uint8Array) => {
    if (data.length > 0xffff) throw new RangeError(`option ${code}: ${data.length} bytes`);
    writeU16(out, at, code);
    writeU16(out, at + 2, data.length);
    out.set(data, at + 4);
    at += 4 + data.length;
  };
  if (msg.interfaceId) put(Dhcp6RelayOptionCode.INTERFACE_ID, msg.interfaceId);
  for (const o of msg.unknown ?? []) put(o.code, o.data);
  put(Dhcp6RelayOptionCode.RELAY_MSG, msg.relayMessage);
  return buf === undefined ? out : buf;
}

/** A message taken out of its relays: `relays` outermost (the server's peer) first. */
export interface Dhcp6Unwrapped {
  readonly relays: readonly Dhcp6RelayMessage[];
  /** The client's own message (e.g. a DHCPV4-QUERY), a view of the input. */
  readonly inner: Uint8Array;
}

/**
 * Opens every RELAY-FORW around a client message (RFC 8415 §19.2 / §19.1.2: each relay's
 * message is in the option 9 of the next), or with `type` RELAY_REPL every RELAY-REPL around
 * a server's answer (what a relay does). A message of another type comes back with no relays. Fails on a malformed envelope or more than {@link DHCP6_MAX_RELAY_DEPTH}.
 * The client is `relays.at(-1).peerAddress`, its link `relays.at(-1).linkAddress` (or, when
 * that is `::`, the first relay outward with a link-address).
 */
export function unwrapRelays(
  payload: Uint8Array,
  type: Dhcp6RelayType = Dhcp6RelayType.RELAY_FORW,
): Dhcp6RelayDecoded<Dhcp6Unwrapped> {
  const relays: Dhcp6RelayMessage[] = [];
  let inner = payload;
  while (inner[0] === type) {
    if (relays.length >= DHCP6_MAX_RELAY_DEPTH)
      return fail("too-deep", `more than ${DHCP6_MAX_RELAY_DEPTH} nested RELAY-FORW`);
    const r = decodeDhcp6Relay(inner);
    if (!r.ok) return r;
    relays.push(r.value);
    inner = r.value.relayMessage;
  }
  return { ok: true, value: { relays, inner }, offset: payload.length };
}

/**
 * The RELAY-REPL chain carrying `answer` back through `relays` (as {@link unwrapRelays} gave
 * them): each envelope copies hop-count, link-address, peer-address and interface-id of its
 * RELAY-FORW (RFC 8415 §19.3), the innermost holding `answer`. No relays: `answer` itself.
 */
export function wrapRelayReply(
  relays: readonly Dhcp6RelayMessage[],
  answer: Uint8Array,
): Uint8Array {
  let out = answer;
  for (let i = relays.length - 1; i >= 0; i--) {
    const r = relays[i]!;
    out = encodeDhcp6Relay({
      type: Dhcp6RelayType.RELAY_REPL,
      hopCount: r.hopCount,
      linkAddress: r.linkAddress,
      peerAddress: r.peerAddress,
      relayMessage: out,
      ...(r.interfaceId ? { interfaceId: r.interfaceId } : {}),
    });
  }
  return out;
}
