/**
 * The DHCPv6 (RFC 8415) and DHCPv4-over-DHCPv6 (RFC 7341) vocabulary shared by the codecs:
 * ports, message types and option codes, the decoded message shapes, the decode errors, and
 * `dhcp6MessageTypeName` / `peekDhcp6MessageType`. Types and constants only: the codecs are
 * ./dhcp6.ts (plain DHCPv6), ./dhcp4o6.ts (the 4o6 envelope) and ./dhcp6_options.ts (options).
 *
 * @module
 */
import type { Decoded, DecodeError, OptionCodec, RawOption } from "./codec.ts";
import type { Dhcp4DecodeError, Dhcp4Message } from "./dhcp4.ts";

/** UDP port a DHCPv6 (and 4o6) client listens on and sends from. */
export const DHCP6_CLIENT_PORT = 546;
/** UDP port of DHCPv6 (and 4o6) servers and relays. */
export const DHCP6_SERVER_PORT = 547;
/** All_DHCP_Relay_Agents_and_Servers: where a 4o6 query goes without a server list. */
export const ALL_DHCP_RELAY_AGENTS_AND_SERVERS = "ff02::1:2";
/**
 * U flag of DHCPV4-QUERY (RFC 7341 §6.1): the top bit of the 24-bit flags, first byte 0x80.
 * Set when the DHCPv4 message would have been unicast over IPv4 (renewing, releasing).
 */
export const DHCP4O6_FLAG_UNICAST = 0x800000;

export const Dhcp6MessageType = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  REPLY: 7,
  INFORMATION_REQUEST: 11,
  DHCPV4_QUERY: 20,
  DHCPV4_RESPONSE: 21,
} as const;
/** The plain DHCPv6 messages `encodeDhcp6`/`decodeDhcp6` handle. */
export type Dhcp6MessageType = 1 | 2 | 3 | 7 | 11;
/** The two RFC 7341 envelope messages. */
export type Dhcp4o6MessageType = 20 | 21;

export const Dhcp6OptionCode = {
  CLIENTID: 1,
  SERVERID: 2,
  ORO: 6,
  ELAPSED_TIME: 8,
  DHCPV4_MSG: 87,
  DHCP4_O_DHCP6_SERVER: 88,
} as const;

/** Every reason `decodeDhcp4o6` or `decodeDhcp6` rejects a message. */
export const DHCP6_DECODE_ERROR_CODES = [
  "bad-offset",
  "truncated",
  "bad-msg-type",
  "truncated-option",
  "bad-option-length",
  "duplicate-option",
  "missing-option",
  "option-not-allowed",
  "bad-dhcpv4-msg",
  "bad-direction",
] as const;
export type Dhcp6DecodeErrorCode = (typeof DHCP6_DECODE_ERROR_CODES)[number];

/** Why a message was rejected; `dhcp4` is the inner fault of a `bad-dhcpv4-msg`. */
export interface Dhcp6DecodeError extends DecodeError<Dhcp6DecodeErrorCode> {
  readonly dhcp4?: Dhcp4DecodeError;
}

/** Result of a decode: the value and the offset just past it, or the reason it failed. */
export type Dhcp6Decoded<T> = Decoded<T, Dhcp6DecodeError>;

/** An option without a typed field, kept as it came (repeats kept, in order). */
export type Dhcp6RawOption = RawOption;

/** Options typed in both kinds of message. DUIDs are kept as raw bytes. */
export interface Dhcp6CommonOptions {
  /** OPTION_CLIENTID (1): the client's DUID, 3–130 bytes. */
  readonly clientId?: Uint8Array;
  /** OPTION_SERVERID (2): the server's DUID, 3–130 bytes. */
  readonly serverId?: Uint8Array;
  /**
   * OPTION_DHCP4_O_DHCP6_SERVER (88): IPv6 addresses of the 4o6 servers, canonical text.
   * An empty list (option length 0) means "send to ff02::1:2".
   */
  readonly dhcp4o6Servers?: readonly string[];
  /** Every other option, in order. */
  readonly unknown?: readonly Dhcp6RawOption[];
}

/** DHCPV4-QUERY (20) or DHCPV4-RESPONSE (21): no transaction id, the DHCPv4 xid serves. */
export interface Dhcp4o6Message extends Dhcp6CommonOptions {
  readonly type: Dhcp4o6MessageType;
  /** 24 bits; `DHCP4O6_FLAG_UNICAST` in a query. Kea echoes them in responses: ignore there. */
  readonly flags: number;
  /** OPTION_DHCPV4_MSG (87), required: BOOTREQUEST in a query, BOOTREPLY in a response. */
  readonly dhcp4: Dhcp4Message;
}

/** SOLICIT, ADVERTISE, REQUEST, REPLY or INFORMATION-REQUEST, with the options 4o6 needs. */
export interface Dhcp6Message extends Dhcp6CommonOptions {
  readonly type: Dhcp6MessageType;
  /** Transaction id, 24 bits. */
  readonly xid: number;
  /** OPTION_ORO (6): option codes requested, e.g. `[88]`. */
  readonly oro?: readonly number[];
  /** OPTION_ELAPSED_TIME (8): hundredths of a second since the exchange began, 0–65535. */
  readonly elapsedTime?: number;
}

/** The codec trio of one option's value (the bytes after code and length; ./codec.ts). */
export type Dhcp6OptionCodec<T> = OptionCodec<T, Dhcp6DecodeError>;

const _TYPE_NAMES: Record<number, string> = {
  1: "SOLICIT",
  2: "ADVERTISE",
  3: "REQUEST",
  7: "REPLY",
  11: "INFORMATION-REQUEST",
  20: "DHCPV4-QUERY",
  21: "DHCPV4-RESPONSE",
};

/** Name of a DHCPv6 message type for logs: `dhcp6MessageTypeName(20)` is `"DHCPV4-QUERY"`. */
export function dhcp6MessageTypeName(type: number): string {
  return _TYPE_NAMES[type] ?? `type ${type}`;
}

/**
 * The message type (first byte) without decoding anything else, to choose between
 * `decodeDhcp4o6` (20, 21) and `decodeDhcp6`; `null` for an empty buffer.
 */
export function peekDhcp6MessageType(buf: Uint8Array, offset = 0): number | null {
  return Number.isInteger(offset) && offset >= 0 && offset < buf.length ? buf[offset]! : null;
}
