import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import {
  decodeMessage,
  dstmCodec,
  encodeMessage,
  encodingLength,
  messageTypeName,
  peekHeader,
  statusName,
} from "../lib/wire/dstm.ts";
import { DSTM_EXTENSIONS, DSTM_OPTIONS, DSTM_WRITE_ORDER } from "../lib/wire/dstm_options.ts";
import { type DstmMessage, MessageType, OptionCode, Status } from "../lib/wire/dstm_types.ts";
import { checkRoundTrip } from "./helpers/codec.ts";
import * as fx from "./helpers/dstm_fixtures.ts";

/** dns-packet's one encoder test: round trip, re-encode, length, and at an offset. */
function checkCodec(msg: DstmMessage): void {
  checkRoundTrip(dstmCodec, msg);
}

describe("codec round trip", () => {
  for (const [name, msg] of Object.entries(fx.FIXTURES)) {
    test(`${name} round-trips, also at an offset`, () => checkCodec(msg));
    test(`${name} with AUTH round-trips, also at an offset`, () =>
      checkCodec({ ...msg, auth: fx.AUTH }));
  }

  test("two messages back to back decode one after the other", () => {
    const a = encodeMessage(fx.FIXTURES.RELEASE as DstmMessage);
    const b = encodeMessage({ ...(fx.FIXTURES["NAK full"] as DstmMessage), auth: fx.AUTH });
    const both = new Uint8Array(a.length + b.length);
    both.set(a);
    both.set(b, a.length);
    const first = decodeMessage(both);
    expect(first.ok && first.offset).toBe(a.length);
    const second = decodeMessage(both, a.length);
    expect(second.ok && second.offset).toBe(both.length);
    expect(second.ok && second.value).toEqual({
      ...(fx.FIXTURES["NAK full"] as DstmMessage),
      auth: fx.AUTH,
    });
  });

  test("AUTH timestamp up to 2^53-1 and key id 2^32-1 round-trip", () => {
    checkCodec({
      ...(fx.FIXTURES.RELEASE as DstmMessage),
      auth: { ...fx.AUTH, keyId: 0xffffffff, timestamp: Number.MAX_SAFE_INTEGER },
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
      ...(fx.FIXTURES["DISCOVER_ACK shared address"] as DstmMessage),
      auth: fx.AUTH,
    });
    const codes: number[] = [];
    for (let p = 12; p < bytes.length; p += 2 + (bytes[p + 1] ?? 0)) codes.push(bytes[p] ?? 0);
    expect(codes).toEqual([1, 2, 3, 4, 5, 6, 8]);
  });

  test("options in any order decode", () => {
    const bytes = fx.raw(MessageType.RELEASE, [
      fx.opt(OptionCode.HOST_IPV6, fx.V6),
      fx.opt(OptionCode.HOST_IPV4, fx.V4),
    ]);
    expect(decodeMessage(bytes).ok).toBe(true);
  });
});

describe("encodeMessage() refuses what cannot be decoded", () => {
  const base = fx.FIXTURES["DISCOVER_ACK shared address"] as DstmMessage;
  const cases: [string, DstmMessage][] = [
    ["unknown type", { ...base, type: 9 as MessageType }],
    ["xid above 32 bits", { ...base, xid: 2 ** 32 }],
    ["missing TEP_IPV6", { ...base, tep6: undefined }],
    ["TEP_IPV6 in DISCOVER", { type: MessageType.DISCOVER, xid: 1, host6: fx.H6, tep6: fx.T6 }],
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
      { type: MessageType.RELEASE_ACK, xid: 1, host4: fx.H4, host6: fx.H6, statusText: "x" },
    ],
    [
      "254-byte status text",
      { type: MessageType.NAK, xid: 1, status: Status.MALFORMED, statusText: "x".repeat(254) },
    ],
    [
      "lone surrogate in status text",
      { type: MessageType.NAK, xid: 1, status: Status.MALFORMED, statusText: "\ud800" },
    ],
    ["7-byte nonce", { ...base, auth: { ...fx.AUTH, nonce: new Uint8Array(7) } }],
    ["negative timestamp", { ...base, auth: { ...fx.AUTH, timestamp: -1 } }],
    [
      "EXISTING_LEASE in REQUEST_ACK",
      { ...base, type: MessageType.REQUEST_ACK, existingLease: true },
    ],
  ];
  for (const [name, msg] of cases) {
    test(`throws RangeError on ${name}`, () => {
      expect(() => encodeMessage(msg)).toThrow(RangeError);
    });
  }

  test("throws RangeError when the buffer is too small", () => {
    const msg = fx.FIXTURES.RELEASE as DstmMessage;
    const length = encodingLength(msg);
    expect(() => encodeMessage(msg, new Uint8Array(length - 1))).toThrow(RangeError);
    expect(() => encodeMessage(msg, new Uint8Array(length + 4), 5)).toThrow(RangeError);
    expect(encodeMessage(msg, new Uint8Array(length + 4), 4).length).toBe(length);
  });
});

describe("peekHeader()", () => {
  test("reads version, type and xid of a message it cannot decode", () => {
    const bytes = fx.patch(fx.RELEASE, 0, 9, 200, 0, 0, 0xde, 0xad, 0xbe, 0xef);
    expect(peekHeader(bytes)).toEqual({ version: 9, type: 200, xid: 0xdeadbeef });
  });

  test("returns null for fewer than 8 bytes", () => {
    expect(peekHeader(fx.RELEASE.subarray(0, 7))).toBeNull();
  });
});

test("messageTypeName() and statusName() name known values and show unknown ones", () => {
  expect(messageTypeName(MessageType.REQUEST_ACK)).toBe("REQUEST_ACK");
  expect(messageTypeName(0)).toBe("type 0");
  expect(statusName(Status.TEP_UNAVAILABLE)).toBe("TEP_UNAVAILABLE");
  expect(statusName(99)).toBe("status 99");
});

describe("the option table (dstm_options.ts)", () => {
  test("has one entry per OptionCode, named after it, and writes the extensions and then AUTH last", () => {
    for (const [name, code] of Object.entries(OptionCode)) {
      const spec = code >= 0x80 ? DSTM_EXTENSIONS.get(code) : DSTM_OPTIONS[code];
      expect(spec?.name).toBe(name);
      expect(spec?.code).toBe(code);
    }
    expect(DSTM_OPTIONS.filter(Boolean).length + DSTM_EXTENSIONS.size).toBe(
      Object.keys(OptionCode).length,
    );
    expect(DSTM_WRITE_ORDER.map((s) => s.code)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 0x80, 0x81, 0x82, 8,
    ]);
    expect(DSTM_OPTIONS.filter((s) => s?.repeatable).map((s) => s?.name)).toEqual(["BINDING"]);
  });
});

// --- the worked example in docs/protocol.md -----------------------------------------------

describe("docs/protocol.md worked example", () => {
  const discover: DstmMessage = {
    type: MessageType.DISCOVER,
    xid: 0x1a2b3c4d,
    host6: fx.H6,
    leaseTime: 3600,
  };
  const ack: DstmMessage = {
    type: MessageType.DISCOVER_ACK,
    xid: 0x1a2b3c4d,
    host4: fx.H4,
    host6: fx.H6,
    tep4: fx.T4,
    tep6: fx.T6,
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
