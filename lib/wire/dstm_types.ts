/**
 * Types of the DSTM native protocol (see docs/protocol.md for the bytes).
 *
 * The paper defined five messages; a real protocol needs a version, a transaction id, a
 * negative answer with a status code, a release acknowledgement and authentication, so
 * version 1 of the protocol has these message types.
 *
 * @module
 */

/** Protocol version carried in every message. */
export const DSTM_VERSION = 1;

/** Default UDP port of a DSTM server (client source port is ephemeral). See docs/protocol.md. */
export const DSTM_PORT = 4607;

/** Largest message accepted or produced: the IPv6 minimum MTU (1280) minus IPv6 (40) and UDP (8) headers. */
export const DSTM_MAX_MESSAGE = 1232;

/** Length of the fixed header that starts every message. */
export const DSTM_HEADER_LENGTH = 12;

/**
 * Option codes. Unknown codes 0x80–0xFF are skipped by a receiver (room for extensions);
 * unknown codes below 0x80 make the message malformed.
 */
export const OptionCode = {
  HOST_IPV4: 1,
  HOST_IPV6: 2,
  TEP_IPV4: 3,
  TEP_IPV6: 4,
  PORT_SET: 5,
  LEASE_TIME: 6,
  STATUS: 7,
  AUTH: 8,
  /** SYNC: the TEP's binding count (4 bytes) and digest (4 bytes). */
  SYNC_STATE: 9,
  /** SNAPSHOT: snapshot id (4), part (2), parts (2). */
  SNAPSHOT_PART: 10,
  /** SNAPSHOT: one binding, host IPv4 (4) + host IPv6 (16) + port set (4); repeatable. */
  BINDING: 11,
  /**
   * DISCOVER_ACK, no value (length 0): the host already held this committed lease before the
   * DISCOVER (it is returned with its existing expiry, RFC 2131 §4.3.1), so the requester did
   * not create it and must not RELEASE it unless it owns it. An extension code (≥ 0x80): a
   * receiver that does not know it skips it.
   */
  EXISTING_LEASE: 0x80,
  /**
   * SYNC (TEP → server): the parts of a snapshot the TEP is still missing, so the server sends
   * those again instead of a new snapshot: snapshot id (4), parts (2), then 1–62 ranges of
   * first part (2), last part (2). An extension code: a server that does not know it skips it
   * and answers the SYNC as before (docs/protocol.md, "SNAPSHOT_MISSING").
   */
  SNAPSHOT_MISSING: 0x81,
  /**
   * BIND, UNBIND, SNAPSHOT (server → TEP): the generation, 8 bytes, an unsigned integer below
   * 2^53. In BIND / UNBIND the version of the lease the binding belongs to in the servers'
   * shared lease store (PostgreSQL: the row's change sequence number, one order for every
   * server); in SNAPSHOT the snapshot's cut (every lease change up to it is in the snapshot).
   * The TEP orders BIND / UNBIND of one binding by it, whichever server sent them. An
   * extension code: a TEP that does not know it skips it and behaves as before
   * (docs/protocol.md, "Generations").
   */
  GENERATION: 0x82,
} as const;
export type OptionCode = (typeof OptionCode)[keyof typeof OptionCode];

/** Longest STATUS text in bytes: an option value holds 255 bytes, two of which are the code. */
export const STATUS_TEXT_MAX = 253;

/** Bytes of the AUTH nonce. */
export const AUTH_NONCE_LENGTH = 8;

/** Bytes of the AUTH MAC (HMAC-SHA256). */
export const AUTH_MAC_LENGTH = 32;

export const MessageType = {
  DISCOVER: 1,
  DISCOVER_ACK: 2,
  REQUEST: 3,
  REQUEST_ACK: 4,
  RELEASE: 5,
  RELEASE_ACK: 6,
  NAK: 7,
  /** Server → TEP: install a binding (host IPv4[, port set] ⇄ host IPv6). */
  BIND: 8,
  /** Server → TEP: remove a binding. */
  UNBIND: 9,
  /** TEP → server: BIND or UNBIND applied. */
  BIND_ACK: 10,
  /** TEP → server: "this is my state" (at start and periodically); the server answers with SNAPSHOTs when it differs. */
  SYNC: 11,
  /** Server → TEP: one part of the full binding table of that TEP. */
  SNAPSHOT: 12,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const Status = {
  SUCCESS: 0,
  POOL_EXHAUSTED: 1,
  NO_SUCH_LEASE: 2,
  NOT_AUTHORISED: 3,
  MALFORMED: 4,
  TEP_UNAVAILABLE: 5,
  ADDRESS_IN_USE: 6,
  UNSUPPORTED_VERSION: 7,
  SERVER_ERROR: 8,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** RFC 7597 port set as carried on the wire (same meaning as lib/lease PortSet). */
export interface WirePortSet {
  readonly offset: number;
  readonly psidLength: number;
  readonly psid: number;
}

/** One binding of a SNAPSHOT: a host's IPv4 address (and port set) and its IPv6 address. */
export interface WireBinding {
  readonly host4: number;
  readonly host6: string;
  readonly portSet: WirePortSet;
}

/** Which part of which snapshot a SNAPSHOT message is. */
export interface WireSnapshotPart {
  /** Same for every part of one snapshot; a new id per snapshot. */
  readonly id: number;
  /** 0-based index of this part. */
  readonly part: number;
  /** Number of parts (≥ 1). */
  readonly parts: number;
}

/** Parts `first` to `last` (both included, 0-based) of a snapshot. */
export interface WirePartRange {
  readonly first: number;
  readonly last: number;
}

/**
 * What SNAPSHOT_MISSING (in SYNC) asks for: parts of snapshot `id` (of `parts` parts) the TEP
 * has not received. The codec checks only the shape (32/16-bit fields, 1 to
 * {@link SNAPSHOT_MISSING_MAX_RANGES} ranges); the server checks the rest (first ≤ last <
 * parts, ranges ascending and apart; lib/server/tep_snapshot_keep.ts).
 */
export interface WireSnapshotMissing {
  readonly id: number;
  readonly parts: number;
  readonly ranges: readonly WirePartRange[];
}

/** Most ranges one SNAPSHOT_MISSING holds: (255 − 6) / 4 bytes, so a SYNC stays one small datagram. */
export const SNAPSHOT_MISSING_MAX_RANGES = 62;

/** Most bindings one SNAPSHOT carries, leaving room for header, SNAPSHOT_PART and AUTH. */
export const SNAPSHOT_MAX_BINDINGS = 44;

/** HMAC-SHA256 authentication block (option AUTH). */
export interface WireAuth {
  /** Which shared key signed the message (32 bits). */
  readonly keyId: number;
  /** Sender's clock, ms since the Unix epoch. */
  readonly timestamp: number;
  /** 8 random bytes, never reused within the replay window. */
  readonly nonce: Uint8Array;
  /**
   * 32-byte HMAC-SHA256 over the message from its first header byte up to, not including,
   * these 32 bytes (AUTH is the last option and the MAC its last field).
   */
  readonly mac: Uint8Array;
}

/**
 * A decoded DSTM message. Every field beyond the header is optional at the type level;
 * `decodeMessage` enforces which ones each message type requires.
 */
export interface DstmMessage {
  readonly type: MessageType;
  /** Chosen by the client, echoed by the server; 32 bits. */
  readonly xid: number;
  /** Host IPv4 address (unsigned 32-bit). */
  readonly host4?: number;
  /** Host IPv6 address, canonical text. */
  readonly host6?: string;
  readonly tep4?: number;
  readonly tep6?: string;
  readonly portSet?: WirePortSet;
  /** Lease time in seconds. */
  readonly leaseTime?: number;
  readonly status?: Status;
  /** Human-readable text accompanying a status (UTF-8, ≤ 253 bytes); omitted when empty. */
  readonly statusText?: string;
  readonly auth?: WireAuth;
  /** SYNC: how many bindings the TEP holds. */
  readonly syncCount?: number;
  /** SYNC: order-independent digest of those bindings (see bindingDigest). */
  readonly syncDigest?: number;
  readonly snapshot?: WireSnapshotPart;
  /** SYNC only (option SNAPSHOT_MISSING): the parts of an incomplete snapshot the TEP asks for again. */
  readonly snapshotMissing?: WireSnapshotMissing;
  /**
   * BIND, UNBIND, SNAPSHOT only (option GENERATION): the lease's version in the shared store
   * (BIND / UNBIND), the snapshot's cut (SNAPSHOT); an integer, 0 ≤ n < 2^53. Absent: unknown
   * (an older server, or a store that is not shared).
   */
  readonly generation?: number;
  /** SNAPSHOT: the bindings of this part (possibly none, for an empty table). */
  readonly bindings?: readonly WireBinding[];
  /**
   * DISCOVER_ACK only (option EXISTING_LEASE): `true` when the lease existed before this
   * DISCOVER (someone with this HOST_IPV6, e.g. a running `dstm client`, holds it).
   */
  readonly existingLease?: boolean;
}
