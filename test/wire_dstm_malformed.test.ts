/** decodeMessage() on input it must refuse, input it must accept, and random input (fuzz). */
import { describe, expect, test } from "bun:test";
import {
  DECODE_ERROR_CODES,
  type DecodeErrorCode,
  decodeMessage,
  dstmCodec,
  encodeMessage,
} from "../lib/wire/dstm.ts";
import { DSTM_MAX_MESSAGE, MessageType, Status } from "../lib/wire/dstm_types.ts";
import {
  expectDecodeError,
  expectSaneDecode,
  mutatedBuffers,
  randomBuffers,
} from "./helpers/codec.ts";
import {
  AUTH,
  FIXTURES,
  H4,
  H6,
  opt,
  patch,
  RELEASE,
  raw,
  V4,
  V6,
  V6B,
} from "./helpers/dstm_fixtures.ts";
import { prng } from "./helpers/fuzz.ts";

// --- raw message construction for malformed input ----------------------------------------

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
    "GENERATION of 2^53 in a BIND",
    raw(MessageType.BIND, [opt(1, V4), opt(2, V6), opt(0x82, [0, 0x20, 0, 0, 0, 0, 0, 0])]),
    "bad-generation",
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
  ["EXISTING_LEASE with a value", ackWith([opt(0x80, [1])]), "bad-option-length"],
  ["EXISTING_LEASE twice", ackWith([opt(0x80, []), opt(0x80, [])]), "duplicate-option"],
  ["negative offset", RELEASE, "bad-offset"],
];

describe("decodeMessage() rejects malformed input", () => {
  for (const [name, bytes, code] of MALFORMED) {
    test(`${name} → ${code}`, () =>
      expectDecodeError(dstmCodec, bytes, code, name === "negative offset" ? -1 : 0));
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

  test("EXISTING_LEASE (0x80, empty) in DISCOVER_ACK says the lease existed; elsewhere it is skipped", () => {
    const plain = decodeMessage(ackWith([]));
    expect(plain.ok && plain.value.existingLease).toBeUndefined();
    const existing = decodeMessage(ackWith([opt(0x80, [])]));
    expect(existing.ok && existing.value.existingLease).toBe(true);
    if (!existing.ok) throw new Error(existing.error.message);
    const encoded = encodeMessage(existing.value);
    expect([...encoded.subarray(encoded.length - 2)]).toEqual([0x80, 0]);
    const release = decodeMessage(
      raw(MessageType.RELEASE, [opt(1, V4), opt(2, V6), opt(0x80, [])]),
    );
    expect(release.ok && release.value.existingLease).toBeUndefined();
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

const KNOWN_CODES = new Set<string>(DECODE_ERROR_CODES);

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
