/**
 * The DHCPv4 message's constants and types (RFC 2131 §2–3, RFC 2132): ports, the magic
 * cookie, op, message types (option 53), option codes, the decode error codes, and the
 * `Dhcp4Message` / `Dhcp4Options` shapes. Split from ./dhcp4.ts, which re-exports all of it.
 *
 * @module
 */
import type { PortSetValue } from "../net/portset.ts";
import type { Decoded, DecodeError, OptionCodec, RawOption } from "./codec.ts";

/** UDP port of a DHCPv4 server. */
export const DHCP4_SERVER_PORT = 67;
/** UDP port of a DHCPv4 client. */
export const DHCP4_CLIENT_PORT = 68;
/** 99.130.83.99, the four bytes between `file` and the options (RFC 2131 §3). */
export const DHCP4_MAGIC_COOKIE = 0x63825363;
/** The fixed BOOTP fields (236 bytes) plus the magic cookie: the shortest message. */
export const DHCP4_MIN_LENGTH = 240;
/** Broadcast bit of `flags` (RFC 2131 §2); the other 15 bits must be zero. */
export const DHCP4_FLAG_BROADCAST = 0x8000;
/** `htype` of Ethernet (hlen 6). */
export const DHCP4_HTYPE_ETHERNET = 1;
/** Lease time meaning "forever" (RFC 2131 §3.3). */
export const DHCP4_INFINITE_LEASE = 0xffffffff;

export const Dhcp4Op = { BOOTREQUEST: 1, BOOTREPLY: 2 } as const;
export type Dhcp4Op = (typeof Dhcp4Op)[keyof typeof Dhcp4Op];

/** Values of option 53 (RFC 2132 §9.6). */
export const Dhcp4MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type Dhcp4MessageType = (typeof Dhcp4MessageType)[keyof typeof Dhcp4MessageType];

export const Dhcp4OptionCode = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTERS: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLIENT_ID: 61,
  /** RFC 7618 OPTION_V4_PORTPARAMS: offset, PSID length, left-aligned PSID. */
  V4_PORTPARAMS: 159,
  END: 255,
} as const;

/** Every reason `decodeDhcp4` rejects a message; one counter per code suits a server. */
export const DHCP4_DECODE_ERROR_CODES = [
  "bad-offset",
  "truncated",
  "bad-op",
  "bad-hlen",
  "bad-cookie",
  "truncated-option",
  "bad-option-length",
  "bad-overload",
  "missing-message-type",
  "bad-message-type",
  "op-mismatch",
  "bad-subnet-mask",
  "bad-port-params",
] as const;
export type Dhcp4DecodeErrorCode = (typeof DHCP4_DECODE_ERROR_CODES)[number];

/** Why a message was rejected. `message` is one line naming the field or option at fault. */
export type Dhcp4DecodeError = DecodeError<Dhcp4DecodeErrorCode>;

/** Result of a decode: the value and the offset just past it, or the reason it failed. */
export type Dhcp4Decoded<T> = Decoded<T, Dhcp4DecodeError>;

/** An option without a typed field, all its instances concatenated (RFC 3396). */
export type Dhcp4RawOption = RawOption;

/**
 * The options of a message. IPv4 addresses are unsigned 32-bit numbers, times are seconds,
 * texts hold one character per byte (code points 0–255, no decoding), so they round-trip.
 */
export interface Dhcp4Options {
  /** 53, required in every message. */
  readonly messageType: Dhcp4MessageType;
  /** 1, a contiguous mask. */
  readonly subnetMask?: number;
  /** 3, at least one address. */
  readonly routers?: readonly number[];
  /** 6, at least one address. */
  readonly dnsServers?: readonly number[];
  /** 12, at least one character. */
  readonly hostname?: string;
  /** 50 */
  readonly requestedIp?: number;
  /** 51, seconds; `DHCP4_INFINITE_LEASE` for ever. */
  readonly leaseTime?: number;
  /** 54 */
  readonly serverId?: number;
  /** 55, option codes (at least one). */
  readonly parameterRequestList?: readonly number[];
  /** 56, at least one character. */
  readonly message?: string;
  /** 58, T1 in seconds. */
  readonly renewalTime?: number;
  /** 59, T2 in seconds. */
  readonly rebindingTime?: number;
  /** 61, type byte then identifier (at least 2 bytes). */
  readonly clientId?: Uint8Array;
  /** 159 (RFC 7618), a valid RFC 7597 port set. */
  readonly portParams?: PortSetValue;
  /** Every other option except pad, end and overload (52), in order of first appearance. */
  readonly unknown?: readonly Dhcp4RawOption[];
}

/** A DHCPv4 message. `hlen` is `chaddr.length`; `sname`/`file` are omitted when empty. */
export interface Dhcp4Message {
  readonly op: Dhcp4Op;
  readonly htype: number;
  readonly hops: number;
  /** Transaction id chosen by the client (32 bits). */
  readonly xid: number;
  readonly secs: number;
  /** 16 bits; `DHCP4_FLAG_BROADCAST` is the only one defined. */
  readonly flags: number;
  readonly ciaddr: number;
  readonly yiaddr: number;
  readonly siaddr: number;
  readonly giaddr: number;
  /** The significant `hlen` (0–16) bytes of the client hardware address. */
  readonly chaddr: Uint8Array;
  /** Server host name up to the first NUL (≤ 64 bytes); absent when `sname` holds options. */
  readonly sname?: string;
  /** Boot file name up to the first NUL (≤ 128 bytes); absent when `file` holds options. */
  readonly file?: string;
  readonly options: Dhcp4Options;
}

/** The codec trio of one option's value (the bytes after code and length; ./codec.ts). */
export type Dhcp4OptionCodec<T> = OptionCodec<T, Dhcp4DecodeError>;
