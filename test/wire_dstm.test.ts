import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import {
  DECODE_ERROR_CODES,
  type DecodeErrorCode,
  decodeMessage,
  dstmCodec,
  encodeMessage,
  encodingLength,
  messageTypeName,
  peekHeader,
  statusName,
} from "../lib/wire/dstm.ts";
import { DSTM_OPTIONS, DSTM_WRITE_ORDER } from "../lib/wire/dstm_options.ts";
import {
  DSTM_MAX_MESSAGE,
  type DstmMessage,
  MessageType,
  OptionCode,
  Status,
  type WireAuth,
} from "../lib/wire/dstm_types.ts";
import {
  checkRoundTrip,
  expectSaneDecode,
  mutatedBuffers,
  randomBuffers,
} from "./helpers/codec.ts";
import { prng } from "./helpers/fuzz.ts";

const H4 = 0xc0000281; // 192.0.2.129
const H6 = "2001:db8:1::25";
const T4 = 0xc0000201; // 192.0.2.1
const T6 = "2001:db8::1";

const AUTH: WireAuth = {
  keyId: 0xfffffffe,
  timestamp: 1_764_150_000_123,
  nonce: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
  mac: Uint8Array.from({ length: 32 }, (_, i) => 255 - i),
};

/** One message of every type with every option it allows, and some with only the required. */
const FIXTURES: Record<string, DstmMessage> = {
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

/** dns-packet's one encoder test: round trip, re-encode, length, and at an offset. */
function checkCodec(msg: DstmMessage): void {
  checkRoundTrip(dstmCodec, msg);
}

describe("codec round trip", () => {
  for (const [name, msg] of Object.entries(FIXTURES)) {
    test(`${name} round-trips, also at an offset`, () => checkCodec(msg));
    test(`${name} with AUTH round-trips, also at an offset`, () =>
      checkCodec({ ...msg, auth: AUTH }));
  }

  test("two messages back to back decode one after the other", () => {
    const a = encodeMessage(FIXTURES.RELEASE as DstmMessage);
    const b = encodeMessage({ ...(FIXTURES["NAK full"] as DstmMessage), auth: AUTH });
    const both = new Uint8Array(a.length + b.length);
    both.set(a);
    both.set(b, a.length);
    const first = decodeMessage(both);
    expect(first.ok && first.offset).toBe(a.length);
    const second = decodeMessage(both, a.length);
    expect(second.ok && second.offset).toBe(both.length);
    expect(second.ok && second.value).toEqual({
      ...(FIXTURES["NAK full"] as DstmMessage),
      auth: AUTH,
    });
  });

  test("AUTH timestamp up to 2^53-1 and key id 2^32-1 round-trip", () => {
    checkCodec({
      ...(FIXTURES.RELEASE as DstmMessage),
      auth: { ...AUTH, keyId: 0xffffffff, timestamp: Number.MAX_SAFE_INTEGER },
    });
  });

  test("decoded host6 is canonical RFC 5952 text", () => {
    const bytes = encodeMessage({
      type: MessageType.DISCOVER,
      xid: 1,
      host6: "2001:DB8:0:0:0:0:0:1",
    });
    const decoded = decodeMessage(bytes);
    expect(decoded.ok && decoded.value.host6).toBe("2001:db8::1");
  });

  test("empty STATUS text decodes without statusText", () => {
    const decoded = decodeMessage(
      encodeMessage({ type: MessageType.NAK, xid: 1, status: Status.MALFORMED, statusText: "" }),
    );
    expect(decoded.ok && decoded.value).toEqual({
      type: MessageType.NAK,
      xid: 1,
      status: Status.MALFORMED,
    });
  });

  test("options are written in code order with AUTH last", () => {
    const bytes = encodeMessage({
      ...(FIXTURES["DISCOVER_ACK shared address"] as DstmMessage),
      auth: AUTH,
    });
    const codes: number[] = [];
    for (let p = 12; p < bytes.length; p += 2 + (bytes[p + 1] ?? 0)) codes.push(bytes[p] ?? 0);
    expect(codes).toEqual([1, 2, 3, 4, 5, 6, 8]);
  });

  test("options in any order decode", () => {
    const bytes = raw(MessageType.RELEASE, [
      opt(OptionCode.HOST_IPV6, V6),
      opt(OptionCode.HOST_IPV4, V4),
    ]);
    expect(decodeMessage(bytes).ok).toBe(true);
  });
});

// --- raw message construction for malformed input ----------------------------------------

const V4 = [192, 0, 2, 129];
const V6 = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x25];
const V6B = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

function opt(code: number, value: number[]): number[] {
  return [code, value.length, ...value];
}

/** A message with a correct header (length included) and the given option bytes. */
function raw(type: number, options: number[][]): Uint8Array {
  const body = options.flat();
  const length = 12 + body.length;
  return Uint8Array.from([1, type, 0, 0, 0, 0, 0, 42, length >> 8, length & 255, 0, 0, ...body]);
}

function patch(bytes: Uint8Array, at: number, ...values: number[]): Uint8Array {
  const copy = bytes.slice();
  copy.set(values, at);
  return copy;
}

const RELEASE = raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6)]);
const ACK_OPTIONS = [opt(1, V4), opt(2, V6), opt(4, V6B), opt(6, [0, 0, 14, 16])];
const ackWith = (extra: number[][]) => raw(MessageType.DISCOVER_ACK, [...ACK_OPTIONS, ...extra]);
const nak = (code: number, text: number[] = []) =>
  raw(MessageType.NAK, [opt(7, [code >> 8, code & 255, ...text])]);
/** keyId 1, timestamp 0x019abcdef012 ms, then nonce and MAC bytes. */
const AUTH_VALUE = [
  0,
  0,
  0,
  1,
  0,
  0,
  1,
  0x9a,
  0xbc,
  0xde,
  0xf0,
  0x12,
  ...Array.from({ length: 40 }, (_, i) => i),
];

const MALFORMED: [string, Uint8Array, DecodeErrorCode][] = [
  ["empty buffer", new Uint8Array(0), "truncated"],
  ["short header", RELEASE.subarray(0, 11), "truncated"],
  ["version 2", patch(RELEASE, 0, 2), "bad-version"],
  ["version 0", patch(RELEASE, 0, 0), "bad-version"],
  ["type 0", patch(RELEASE, 1, 0), "unknown-type"],
  ["type 13", patch(RELEASE, 1, 13), "unknown-type"],
  ["nonzero flags", patch(RELEASE, 3, 1), "bad-flags"],
  ["nonzero reserved", patch(RELEASE, 10, 0x80), "bad-reserved"],
  ["length below 12", patch(RELEASE, 8, 0, 11), "bad-length"],
  ["length beyond the buffer", patch(RELEASE, 8, 0, RELEASE.length + 1), "truncated"],
  [
    "length above 1232",
    patch(new Uint8Array(1300), 0, 1, 5, 0, 0, 0, 0, 0, 1, 0x04, 0xd1),
    "too-long",
  ],
  [
    "option header cut",
    raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6), [0x81]]),
    "truncated-option",
  ],
  ["option value past the message end", patch(RELEASE, 13, 30), "truncated-option"],
  ["declared length cuts an option value", patch(RELEASE, 8, 0, 30), "truncated-option"],
  [
    "HOST_IPV4 length 3",
    raw(MessageType.RELEASE, [opt(1, [1, 2, 3]), opt(2, V6)]),
    "bad-option-length",
  ],
  [
    "HOST_IPV6 length 17",
    raw(MessageType.RELEASE, [opt(1, V4), opt(2, [...V6, 0])]),
    "bad-option-length",
  ],
  ["TEP_IPV4 length 5", ackWith([opt(3, [...V4, 0])]), "bad-option-length"],
  [
    "TEP_IPV6 length 4",
    raw(MessageType.DISCOVER_ACK, [opt(1, V4), opt(2, V6), opt(4, V4), opt(6, [0, 0, 1, 0])]),
    "bad-option-length",
  ],
  ["PORT_SET length 3", ackWith([opt(5, [0, 0, 0])]), "bad-option-length"],
  [
    "LEASE_TIME length 8",
    raw(MessageType.DISCOVER, [opt(2, V6), opt(6, [0, 0, 0, 0, 0, 0, 0, 1])]),
    "bad-option-length",
  ],
  ["STATUS length 1", raw(MessageType.NAK, [opt(7, [1])]), "bad-option-length"],
  [
    "AUTH length 51",
    raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6), opt(8, AUTH_VALUE.slice(1))]),
    "bad-option-length",
  ],
  [
    "duplicate HOST_IPV4",
    raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6), opt(1, V4)]),
    "duplicate-option",
  ],
  [
    "unknown critical option 12",
    raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6), opt(12, [])]),
    "unknown-option",
  ],
  [
    "option code 0",
    raw(MessageType.RELEASE, [opt(0, []), opt(1, V4), opt(2, V6)]),
    "unknown-option",
  ],
  [
    "option code 0x7f",
    raw(MessageType.RELEASE, [opt(0x7f, [1]), opt(1, V4), opt(2, V6)]),
    "unknown-option",
  ],
  ["DISCOVER without HOST_IPV6", raw(MessageType.DISCOVER, [opt(1, V4)]), "missing-option"],
  [
    "SNAPSHOT part 3 of 3",
    raw(MessageType.SNAPSHOT, [opt(10, [0, 0, 0, 1, 0, 3, 0, 3])]),
    "bad-snapshot",
  ],
  [
    "BINDING in a DISCOVER",
    raw(MessageType.DISCOVER, [opt(2, V6), opt(11, [...V4, ...V6, 0, 0, 0, 0])]),
    "option-not-allowed",
  ],
  [
    "BINDING with a multicast host",
    raw(MessageType.SNAPSHOT, [
      opt(10, [0, 0, 0, 1, 0, 0, 0, 1]),
      opt(11, [...V4, 0xff, 2, ...V6.slice(2), 0, 0, 0, 0]),
    ]),
    "bad-address",
  ],
  ["SYNC without SYNC_STATE", raw(MessageType.SYNC, [opt(4, V6)]), "missing-option"],
  [
    "DISCOVER_ACK without TEP_IPV6",
    raw(MessageType.DISCOVER_ACK, [opt(1, V4), opt(2, V6), opt(6, [0, 0, 1, 0])]),
    "missing-option",
  ],
  [
    "REQUEST_ACK without LEASE_TIME",
    raw(MessageType.REQUEST_ACK, [opt(1, V4), opt(2, V6), opt(4, V6B)]),
    "missing-option",
  ],
  ["REQUEST without HOST_IPV4", raw(MessageType.REQUEST, [opt(2, V6)]), "missing-option"],
  ["RELEASE without HOST_IPV6", raw(MessageType.RELEASE, [opt(1, V4)]), "missing-option"],
  ["RELEASE_ACK without HOST_IPV4", raw(MessageType.RELEASE_ACK, [opt(2, V6)]), "missing-option"],
  ["NAK without STATUS", raw(MessageType.NAK, [opt(2, V6)]), "missing-option"],
  [
    "PORT_SET in RELEASE",
    raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6), opt(5, [0, 0, 0, 0])]),
    "option-not-allowed",
  ],
  [
    "TEP_IPV6 in DISCOVER",
    raw(MessageType.DISCOVER, [opt(2, V6), opt(4, V6B)]),
    "option-not-allowed",
  ],
  ["STATUS in DISCOVER_ACK", ackWith([opt(7, [0, 0])]), "option-not-allowed"],
  [
    "LEASE_TIME in NAK",
    raw(MessageType.NAK, [opt(7, [0, 1]), opt(6, [0, 0, 0, 1])]),
    "option-not-allowed",
  ],
  ["PORT_SET offset 16", ackWith([opt(5, [16, 0, 0, 0])]), "bad-port-set"],
  ["PORT_SET psidLength 17", ackWith([opt(5, [0, 17, 0, 0])]), "bad-port-set"],
  ["PORT_SET offset + psidLength 17", ackWith([opt(5, [6, 11, 0, 0])]), "bad-port-set"],
  ["PORT_SET bits below the PSID set", ackWith([opt(5, [6, 4, 0x30, 0x01])]), "bad-port-set"],
  ["PORT_SET psidLength 0 with a PSID", ackWith([opt(5, [0, 0, 0x80, 0])]), "bad-port-set"],
  ["STATUS code 9 (unknown)", nak(9), "bad-status"],
  ["STATUS SUCCESS in NAK", nak(Status.SUCCESS), "bad-status"],
  [
    "RELEASE_ACK with a failure STATUS",
    raw(MessageType.RELEASE_ACK, [opt(1, V4), opt(2, V6), opt(7, [0, 2])]),
    "bad-status",
  ],
  ["STATUS text with a bare continuation byte", nak(1, [0x61, 0x80]), "bad-text"],
  ["STATUS text with an overlong encoding", nak(1, [0xc0, 0xaf]), "bad-text"],
  ["STATUS text with a surrogate", nak(1, [0xed, 0xa0, 0x80]), "bad-text"],
  ["STATUS text cut mid-character", nak(1, [0xe2, 0x82]), "bad-text"],
  [
    "option after AUTH",
    raw(MessageType.RELEASE, [opt(1, V4), opt(8, AUTH_VALUE), opt(2, V6)]),
    "auth-not-last",
  ],
  [
    "unknown option after AUTH",
    raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6), opt(8, AUTH_VALUE), opt(0x90, [])]),
    "auth-not-last",
  ],
  [
    "AUTH timestamp beyond 2^53",
    raw(MessageType.RELEASE, [
      opt(1, V4),
      opt(2, V6),
      opt(8, [0, 0, 0, 1, 0, 0x20, ...AUTH_VALUE.slice(6)]),
    ]),
    "bad-auth",
  ],
  [
    "multicast HOST_IPV6",
    raw(MessageType.DISCOVER, [opt(2, [0xff, 2, ...V6.slice(2)])]),
    "bad-address",
  ],
  ["unspecified HOST_IPV6", raw(MessageType.DISCOVER, [opt(2, Array(16).fill(0))]), "bad-address"],
  [
    "multicast TEP_IPV6",
    raw(MessageType.DISCOVER_ACK, [
      opt(1, V4),
      opt(2, V6),
      opt(4, [0xff, ...V6B.slice(1)]),
      opt(6, [0, 0, 0, 1]),
    ]),
    "bad-address",
  ],
  [
    "HOST_IPV4 0.0.0.0",
    raw(MessageType.RELEASE, [opt(1, [0, 0, 0, 0]), opt(2, V6)]),
    "bad-address",
  ],
  [
    "HOST_IPV4 255.255.255.255",
    raw(MessageType.RELEASE, [opt(1, [255, 255, 255, 255]), opt(2, V6)]),
    "bad-address",
  ],
  ["TEP_IPV4 0.0.0.0", ackWith([opt(3, [0, 0, 0, 0])]), "bad-address"],
  [
    "zero LEASE_TIME",
    raw(MessageType.DISCOVER, [opt(2, V6), opt(6, [0, 0, 0, 0])]),
    "bad-lease-time",
  ],
  ["negative offset", RELEASE, "bad-offset"],
];

describe("decodeMessage() rejects malformed input", () => {
  for (const [name, bytes, code] of MALFORMED) {
    test(`${name} → ${code}`, () => {
      const result = decodeMessage(bytes, name === "negative offset" ? -1 : 0);
      expect(result.ok ? "ok" : result.error.code).toBe(code);
      if (!result.ok) {
        expect(result.error.message.length).toBeGreaterThan(0);
        expect(result.error.message).not.toContain("\n");
      }
    });
  }

  test("covers every one of the (at least 20) error codes", () => {
    expect(DECODE_ERROR_CODES.length).toBeGreaterThanOrEqual(20);
    expect(new Set(MALFORMED.map(([, , code]) => code))).toEqual(new Set(DECODE_ERROR_CODES));
  });

  test("an offset past the end is truncated", () => {
    const result = decodeMessage(RELEASE, RELEASE.length + 5);
    expect(result.ok ? "ok" : result.error.code).toBe("truncated");
  });

  test("error messages name the option", () => {
    const result = decodeMessage(
      raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6), opt(5, [0, 0, 0, 0])]),
    );
    expect(result.ok ? "" : result.error.message).toBe("PORT_SET is not allowed in RELEASE");
  });
});

describe("decodeMessage() accepts what it should", () => {
  test("unknown non-critical options (0x80–0xFF) are skipped", () => {
    const bytes = raw(MessageType.RELEASE, [
      opt(0x80, [1, 2, 3]),
      opt(1, V4),
      opt(0xff, []),
      opt(2, V6),
      opt(0xc3, V6),
    ]);
    const result = decodeMessage(bytes);
    expect(result.ok && result.value).toEqual({
      type: MessageType.RELEASE,
      xid: 42,
      host4: H4,
      host6: H6,
    });
  });

  test("the same unknown non-critical option twice is fine", () => {
    const bytes = raw(MessageType.RELEASE, [opt(0x99, []), opt(0x99, []), opt(1, V4), opt(2, V6)]);
    expect(decodeMessage(bytes).ok).toBe(true);
  });

  test("bytes past the declared length are not read", () => {
    const junk = new Uint8Array(RELEASE.length + 10).fill(0xff);
    junk.set(RELEASE);
    const result = decodeMessage(junk);
    expect(result.ok && result.offset).toBe(RELEASE.length);
  });

  test("a message of exactly 1232 bytes is accepted", () => {
    const filler = Array.from({ length: 1232 - 12 - 24 }, () => 0);
    // pad with unknown non-critical options of 255 bytes (257 with their header) and one remainder
    const options: number[][] = [opt(1, V4), opt(2, V6)];
    let left = filler.length;
    while (left > 0) {
      const len = Math.min(255, left - 2);
      options.push(opt(0x80, Array(len).fill(0)));
      left -= len + 2;
    }
    const bytes = raw(MessageType.RELEASE, options);
    expect(bytes.length).toBe(DSTM_MAX_MESSAGE);
    expect(decodeMessage(bytes).ok).toBe(true);
  });
});

describe("encodeMessage() refuses what cannot be decoded", () => {
  const base = FIXTURES["DISCOVER_ACK shared address"] as DstmMessage;
  const cases: [string, DstmMessage][] = [
    ["unknown type", { ...base, type: 9 as MessageType }],
    ["xid above 32 bits", { ...base, xid: 2 ** 32 }],
    ["missing TEP_IPV6", { ...base, tep6: undefined }],
    ["TEP_IPV6 in DISCOVER", { type: MessageType.DISCOVER, xid: 1, host6: H6, tep6: T6 }],
    ["host6 that does not parse", { ...base, host6: "2001:db8::g" }],
    ["multicast host6", { ...base, host6: "ff02::1" }],
    ["host4 0.0.0.0", { ...base, host4: 0 }],
    ["host4 above 32 bits", { ...base, host4: 2 ** 32 }],
    ["psid too large", { ...base, portSet: { offset: 6, psidLength: 4, psid: 16 } }],
    ["offset + psidLength > 16", { ...base, portSet: { offset: 8, psidLength: 9, psid: 0 } }],
    ["lease time 0", { ...base, leaseTime: 0 }],
    ["NAK with SUCCESS", { type: MessageType.NAK, xid: 1, status: Status.SUCCESS }],
    ["unknown status", { type: MessageType.NAK, xid: 1, status: 42 as Status }],
    [
      "statusText without status",
      { type: MessageType.RELEASE_ACK, xid: 1, host4: H4, host6: H6, statusText: "x" },
    ],
    [
      "254-byte status text",
      { type: MessageType.NAK, xid: 1, status: Status.MALFORMED, statusText: "x".repeat(254) },
    ],
    [
      "lone surrogate in status text",
      { type: MessageType.NAK, xid: 1, status: Status.MALFORMED, statusText: "\ud800" },
    ],
    ["7-byte nonce", { ...base, auth: { ...AUTH, nonce: new Uint8Array(7) } }],
    ["negative timestamp", { ...base, auth: { ...AUTH, timestamp: -1 } }],
  ];
  for (const [name, msg] of cases) {
    test(`throws RangeError on ${name}`, () => {
      expect(() => encodeMessage(msg)).toThrow(RangeError);
    });
  }

  test("throws RangeError when the buffer is too small", () => {
    const msg = FIXTURES.RELEASE as DstmMessage;
    const length = encodingLength(msg);
    expect(() => encodeMessage(msg, new Uint8Array(length - 1))).toThrow(RangeError);
    expect(() => encodeMessage(msg, new Uint8Array(length + 4), 5)).toThrow(RangeError);
    expect(encodeMessage(msg, new Uint8Array(length + 4), 4).length).toBe(length);
  });
});

describe("peekHeader()", () => {
  test("reads version, type and xid of a message it cannot decode", () => {
    const bytes = patch(RELEASE, 0, 9, 200, 0, 0, 0xde, 0xad, 0xbe, 0xef);
    expect(peekHeader(bytes)).toEqual({ version: 9, type: 200, xid: 0xdeadbeef });
  });

  test("returns null for fewer than 8 bytes", () => {
    expect(peekHeader(RELEASE.subarray(0, 7))).toBeNull();
  });
});

test("messageTypeName() and statusName() name known values and show unknown ones", () => {
  expect(messageTypeName(MessageType.REQUEST_ACK)).toBe("REQUEST_ACK");
  expect(messageTypeName(0)).toBe("type 0");
  expect(statusName(Status.TEP_UNAVAILABLE)).toBe("TEP_UNAVAILABLE");
  expect(statusName(99)).toBe("status 99");
});

// --- fuzz ----------------------------------------------------------------------------------

const KNOWN_CODES = new Set<string>(DECODE_ERROR_CODES);

describe("the option table (dstm_options.ts)", () => {
  test("has one entry per OptionCode, named after it, and writes AUTH last", () => {
    for (const [name, code] of Object.entries(OptionCode)) {
      expect(DSTM_OPTIONS[code]?.name).toBe(name);
      expect(DSTM_OPTIONS[code]?.code).toBe(code);
    }
    expect(DSTM_OPTIONS.filter(Boolean).length).toBe(Object.keys(OptionCode).length);
    expect(DSTM_WRITE_ORDER.map((s) => s.code)).toEqual([1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 8]);
    expect(DSTM_OPTIONS.filter((s) => s?.repeatable).map((s) => s?.name)).toEqual(["BINDING"]);
  });
});

describe("fuzz", () => {
  test("20,000 random buffers never make decodeMessage throw", () => {
    const random = prng(0x5eed);
    const outcomes = new Map<string, number>();
    const buffers = randomBuffers(
      random,
      20_000,
      () => Math.floor(random() * 120),
      (bytes, i) => {
        if (i % 2 !== 0 || bytes.length < 12) return;
        // half get a plausible header, so the option parser is exercised too
        bytes.set([1, 1 + Math.floor(random() * 7), 0, 0], 0);
        bytes.set([bytes.length >> 8, bytes.length & 255, 0, 0], 8);
      },
    );
    for (const bytes of buffers) expectSaneDecode(dstmCodec, bytes, KNOWN_CODES, outcomes);
    expect(outcomes.size).toBeGreaterThan(8);
  });

  test("20,000 mutations and truncations of valid messages never make decodeMessage throw", () => {
    const valid = Object.values(FIXTURES).flatMap((m) => [
      encodeMessage(m),
      encodeMessage({ ...m, auth: AUTH }),
    ]);
    const outcomes = new Map<string, number>();
    for (const [bytes] of mutatedBuffers(prng(0xf00d), 20_000, valid)) {
      expectSaneDecode(dstmCodec, bytes, KNOWN_CODES, outcomes);
    }
    expect(outcomes.get("ok")).toBeGreaterThan(0);
    expect(outcomes.size).toBeGreaterThan(12);
  });
});

// --- the worked example in docs/protocol.md -----------------------------------------------

describe("docs/protocol.md worked example", () => {
  const discover: DstmMessage = {
    type: MessageType.DISCOVER,
    xid: 0x1a2b3c4d,
    host6: H6,
    leaseTime: 3600,
  };
  const ack: DstmMessage = {
    type: MessageType.DISCOVER_ACK,
    xid: 0x1a2b3c4d,
    host4: H4,
    host6: H6,
    tep4: T4,
    tep6: T6,
    portSet: { offset: 6, psidLength: 2, psid: 1 },
    leaseTime: 3600,
  };
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const doc = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8");
  /** The hex dump lines of the fenced block after `marker`, joined. */
  const dumped = (marker: string) => {
    const block = doc.slice(doc.indexOf(marker)).split("```")[1] ?? "";
    return block
      .split("\n")
      .map((line) => line.replace(/#.*/, "").replace(/\s+/g, ""))
      .join("");
  };

  test("the DISCOVER bytes are what the codec produces", () => {
    expect(dumped("<!-- example:discover -->")).toBe(hex(encodeMessage(discover)));
  });

  test("the DISCOVER_ACK bytes are what the codec produces", () => {
    expect(dumped("<!-- example:discover-ack -->")).toBe(hex(encodeMessage(ack)));
  });
});
