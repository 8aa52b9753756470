/**
 * The server's answer to a granted request, written straight into its bytes: DISCOVER_ACK,
 * REQUEST_ACK and RELEASE_ACK without AUTH or STATUS (docs/protocol.md, "Messages").
 *
 * {@link encodeAck} writes exactly the bytes `encodeMessage` (./dstm.ts) writes for the same
 * message — header, then HOST_IPV4, HOST_IPV6, TEP_IPV4, TEP_IPV6, PORT_SET, LEASE_TIME in
 * code order, EXISTING_LEASE last — and checks the same rules (RangeError), but takes the
 * IPv6 addresses as bytes and walks no option table: the server answers every lease with
 * one, and parsing two addresses back from their text and sizing each option through the
 * table cost more than the rest of the answer (issue 12). A signed answer (AUTH) still goes
 * through `encodeMessage` (./auth.ts).
 *
 * {@link findOption} finds an option's value in a message already decoded, so that the
 * answer can copy the request's HOST_IPV6 bytes instead of parsing its text.
 *
 * @module
 */
import { readU16, writeU16, writeU32 } from "../net/bytes.ts";
import { checkPortSet } from "./dstm_fields.ts";
import { DSTM_HEADER_LENGTH, DSTM_VERSION, MessageType, OptionCode } from "./dstm_types.ts";

/** The PORT_SET of an answer (RFC 7597 §5.1 offset, PSID length, PSID); none for a whole address. */
export interface AckPortSet {
  readonly offset: number;
  readonly psidLength: number;
  readonly psid: number;
}

/**
 * Where the value of the first option `code` starts in the message at `start` (its header
 * and options already checked by `decodeMessage`), or -1 when it has none.
 */
export function findOption(buf: Uint8Array, start: number, code: number): number {
  const end = start + readU16(buf, start + 8);
  let p = start + DSTM_HEADER_LENGTH;
  while (p + 2 <= end) {
    if (buf[p] === code) return p + 2;
    p += 2 + (buf[p + 1] ?? 0);
  }
  return -1;
}

/**
 * Encodes a DISCOVER_ACK / REQUEST_ACK (`type`) with the lease, or a RELEASE_ACK (then only
 * `host4` and HOST_IPV6 are written and `tep6` must be null). IPv6 addresses are the 16
 * bytes at `host6At` of `host6` and at `tep6At` of `tep6`; `tep4` 0 and `portSet` undefined
 * leave those options out; `leaseTime` in seconds (1..2^32-1); `existingLease` only in a
 * DISCOVER_ACK. Returns a new buffer of the message. Throws `RangeError` where
 * `encodeMessage` would: a value out of range, a non-unicast address, a missing option.
 */
export function encodeAck(
  type: MessageType,
  xid: number,
  host4: number,
  host6: Uint8Array,
  host6At: number,
  tep6: Uint8Array | null,
  tep6At: number,
  tep4: number,
  portSet: AckPortSet | undefined,
  leaseTime: number,
  existingLease: boolean,
): Uint8Array {
  const release = type === MessageType.RELEASE_ACK;
  if (!release && type !== MessageType.DISCOVER_ACK && type !== MessageType.REQUEST_ACK) {
    throw new RangeError(`message type ${type} is not an ACK`);
  }
  if (!_isUint32(xid)) _fail(`xid ${xid} is not a 32-bit unsigned integer`);
  if (!_isHost4(host4)) _fail(`host4 ${host4} is not a usable IPv4 address`);
  if (!_isUnicast(host6, host6At)) _fail("host6 is not a unicast IPv6 address");
  let length = DSTM_HEADER_LENGTH + 6 + 18;
  if (release) {
    if (tep6 !== null || tep4 !== 0 || portSet !== undefined) _fail("RELEASE_ACK carries no lease");
    if (existingLease) _fail("EXISTING_LEASE is not allowed in RELEASE_ACK");
  } else {
    if (tep6 === null || !_isUnicast(tep6, tep6At)) _fail("tep6 is not a unicast IPv6 address");
    if (tep4 !== 0 && !_isHost4(tep4)) _fail(`tep4 ${tep4} is not a usable IPv4 address`);
    if (!_isUint32(leaseTime) || leaseTime === 0) _fail(`leaseTime ${leaseTime} is not 1..2^32-1`);
    if (portSet !== undefined) checkPortSet(portSet); // RangeError as encodeMessage's
    if (existingLease && type !== MessageType.DISCOVER_ACK) _fail("EXISTING_LEASE not allowed");
    length += 18 + 6 + (tep4 === 0 ? 0 : 6) + (portSet === undefined ? 0 : 6);
    if (existingLease) length += 2;
  }
  const out = new Uint8Array(length);
  out[0] = DSTM_VERSION;
  out[1] = type;
  writeU32(out, 4, xid);
  writeU16(out, 8, length);
  let p = _putU32(out, DSTM_HEADER_LENGTH, OptionCode.HOST_IPV4, host4);
  p = _put16(out, p, OptionCode.HOST_IPV6, host6, host6At);
  if (release) return out;
  if (tep4 !== 0) p = _putU32(out, p, OptionCode.TEP_IPV4, tep4);
  p = _put16(out, p, OptionCode.TEP_IPV6, tep6!, tep6At);
  if (portSet !== undefined) {
    const k = portSet.psidLength;
    out[p] = OptionCode.PORT_SET;
    out[p + 1] = 4;
    out[p + 2] = portSet.offset;
    out[p + 3] = k;
    p = writeU16(out, p + 4, k === 0 ? 0 : portSet.psid << (16 - k));
  }
  p = _putU32(out, p, OptionCode.LEASE_TIME, leaseTime);
  if (existingLease) out[p] = OptionCode.EXISTING_LEASE; // length 0: the next byte stays 0
  return out;
}

function _putU32(out: Uint8Array, at: number, code: number, value: number): number {
  out[at] = code;
  out[at + 1] = 4;
  return writeU32(out, at + 2, value);
}

function _put16(out: Uint8Array, at: number, code: number, src: Uint8Array, from: number): number {
  out[at] = code;
  out[at + 1] = 16;
  for (let i = 0; i < 16; i++) out[at + 2 + i] = src[from + i]!;
  return at + 18;
}

/** Throws the RangeError of a broken rule (its message built only then, not per answer). */
function _fail(message: string): never {
  throw new RangeError(message);
}

function _isUint32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

function _isHost4(n: number): boolean {
  return _isUint32(n) && n !== 0 && n !== 0xffffffff;
}

/** 16 bytes at `at`: not multicast (ff00::/8), not the unspecified address. */
function _isUnicast(bytes: Uint8Array, at: number): boolean {
  if (at < 0 || at + 16 > bytes.length || bytes[at] === 0xff) return false;
  for (let i = at; i < at + 16; i++) if (bytes[i] !== 0) return true;
  return false;
}
