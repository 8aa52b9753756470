/**
 * DSTM messages for the codec tests: one of every message type with every option it allows,
 * and some with only the required ones; and raw bytes for messages the encoder would refuse
 * to write (test/wire_dstm*.test.ts).
 */
import { type DstmMessage, MessageType, Status, type WireAuth } from "../../lib/wire/dstm_types.ts";

export const H4 = 0xc0000281; // 192.0.2.129
export const H6 = "2001:db8:1::25";
export const T4 = 0xc0000201; // 192.0.2.1
export const T6 = "2001:db8::1";

export const AUTH: WireAuth = {
  keyId: 0xfffffffe,
  timestamp: 1_764_150_000_123,
  nonce: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
  mac: Uint8Array.from({ length: 32 }, (_, i) => 255 - i),
};

/** One message of every type with every option it allows, and some with only the required. */
export const FIXTURES: Record<string, DstmMessage> = {
  "DISCOVER minimal": { type: MessageType.DISCOVER, xid: 1, host6: H6 },
  "DISCOVER with hint and lease time": {
    type: MessageType.DISCOVER,
    xid: 0xffffffff,
    host4: H4,
    host6: H6,
    leaseTime: 3600,
  },
  "DISCOVER_ACK whole address": {
    type: MessageType.DISCOVER_ACK,
    xid: 2,
    host4: H4,
    host6: H6,
    tep6: T6,
    leaseTime: 600,
  },
  "DISCOVER_ACK of an existing lease": {
    type: MessageType.DISCOVER_ACK,
    xid: 4,
    host4: H4,
    host6: H6,
    tep6: T6,
    leaseTime: 1234,
    existingLease: true,
  },
  "DISCOVER_ACK shared address": {
    type: MessageType.DISCOVER_ACK,
    xid: 3,
    host4: H4,
    host6: H6,
    tep4: T4,
    tep6: T6,
    portSet: { offset: 6, psidLength: 6, psid: 63 },
    leaseTime: 0xffffffff,
  },
  "REQUEST minimal": { type: MessageType.REQUEST, xid: 4, host4: H4, host6: H6 },
  "REQUEST with lease time": {
    type: MessageType.REQUEST,
    xid: 5,
    host4: H4,
    host6: "64:ff9b::c000:201",
    leaseTime: 1,
  },
  "REQUEST_ACK full": {
    type: MessageType.REQUEST_ACK,
    xid: 6,
    host4: 0x01000000,
    host6: H6,
    tep4: 0xfffffffe,
    tep6: "fe80::1",
    portSet: { offset: 0, psidLength: 16, psid: 65535 },
    leaseTime: 7200,
  },
  "REQUEST_ACK psidLength 0": {
    type: MessageType.REQUEST_ACK,
    xid: 7,
    host4: H4,
    host6: H6,
    tep6: T6,
    portSet: { offset: 15, psidLength: 0, psid: 0 },
    leaseTime: 60,
  },
  RELEASE: { type: MessageType.RELEASE, xid: 8, host4: H4, host6: H6 },
  "RELEASE_ACK minimal": { type: MessageType.RELEASE_ACK, xid: 9, host4: H4, host6: H6 },
  "RELEASE_ACK with SUCCESS": {
    type: MessageType.RELEASE_ACK,
    xid: 10,
    host4: H4,
    host6: H6,
    status: Status.SUCCESS,
    statusText: "released",
  },
  "NAK minimal": { type: MessageType.NAK, xid: 11, status: Status.POOL_EXHAUSTED },
  "NAK full": {
    type: MessageType.NAK,
    xid: 12,
    host4: H4,
    host6: H6,
    status: Status.SERVER_ERROR,
    statusText: "database unavailable — réessayez 🙂",
  },
  "NAK with 253-byte text": {
    type: MessageType.NAK,
    xid: 13,
    status: Status.MALFORMED,
    statusText: `${"é".repeat(125)}abc`,
  },
  BIND: {
    type: MessageType.BIND,
    xid: 20,
    host4: H4,
    host6: H6,
    portSet: { offset: 6, psidLength: 6, psid: 17 },
    leaseTime: 3600,
  },
  UNBIND: { type: MessageType.UNBIND, xid: 21, host4: H4, host6: H6 },
  BIND_ACK: { type: MessageType.BIND_ACK, xid: 22, host4: H4 },
  SYNC: {
    type: MessageType.SYNC,
    xid: 23,
    tep6: T6,
    tep4: H4,
    syncCount: 65536,
    syncDigest: 0xdeadbeef,
  },
  "SYNC asking for missing parts": {
    type: MessageType.SYNC,
    xid: 26,
    tep6: T6,
    syncCount: 0,
    syncDigest: 0,
    snapshotMissing: { id: 0xfffffffe, parts: 22728, ranges: [{ first: 0, last: 22727 }] },
  },
  "SYNC asking for 62 ranges of missing parts": {
    type: MessageType.SYNC,
    xid: 27,
    tep6: T6,
    syncCount: 3,
    syncDigest: 7,
    snapshotMissing: {
      id: 9,
      parts: 65535,
      ranges: Array.from({ length: 62 }, (_, i) => ({ first: 3 * i, last: 3 * i + 1 })),
    },
  },
  "SNAPSHOT empty": { type: MessageType.SNAPSHOT, xid: 24, snapshot: { id: 7, part: 0, parts: 1 } },
  "SNAPSHOT full": {
    type: MessageType.SNAPSHOT,
    xid: 25,
    snapshot: { id: 0xffffffff, part: 2, parts: 3 },
    bindings: Array.from({ length: 44 }, (_, i) => ({
      host4: 0xc6336400 + i + 1,
      host6: `2001:db8:5::${(i + 1).toString(16)}`,
      portSet:
        i % 2
          ? { offset: 0, psidLength: 0, psid: 0 }
          : { offset: 6, psidLength: 2, psid: i % 4 === 0 ? 1 : 3 },
    })),
  },
  "NAK text starting with a BOM": {
    type: MessageType.NAK,
    xid: 14,
    status: Status.NOT_AUTHORISED,
    statusText: "\ufeffbom",
  },
};

// --- raw message construction ------------------------------------------------------------

/** HOST_IPV4 192.0.2.129, HOST_IPV6 2001:db8:1::25 and 2001:db8::1 as option value bytes. */
export const V4 = [192, 0, 2, 129];
export const V6 = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x25];
export const V6B = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/** An option: code, length, value. */
export function opt(code: number, value: number[]): number[] {
  return [code, value.length, ...value];
}

/** A message with a correct header (length included) and the given option bytes. */
export function raw(type: number, options: number[][]): Uint8Array {
  const body = options.flat();
  const length = 12 + body.length;
  return Uint8Array.from([1, type, 0, 0, 0, 0, 0, 42, length >> 8, length & 255, 0, 0, ...body]);
}

/** A copy of `bytes` with `values` written at `at`. */
export function patch(bytes: Uint8Array, at: number, ...values: number[]): Uint8Array {
  const copy = bytes.slice();
  copy.set(values, at);
  return copy;
}

/** A valid RELEASE built byte by byte. */
export const RELEASE = raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6)]);
