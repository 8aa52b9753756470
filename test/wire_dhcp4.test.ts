import { describe, expect, test } from "bun:test";
import { parseIPv4 } from "../lib/net/addr.ts";
import { type PortSetValue, portSetRanges } from "../lib/net/portset.ts";
import {
  DHCP4_DECODE_ERROR_CODES,
  DHCP4_FLAG_BROADCAST,
  DHCP4_INFINITE_LEASE,
  DHCP4_MAGIC_COOKIE,
  type Dhcp4DecodeErrorCode,
  type Dhcp4Message,
  Dhcp4MessageType,
  Dhcp4Op,
  type Dhcp4OptionCodec,
  type Dhcp4Options,
  decodeDhcp4,
  dhcp4EncodingLength,
  dhcp4MessageTypeName,
  dhcp4OptionCodecs,
  encodeDhcp4,
} from "../lib/wire/dhcp4.ts";
import {
  checkRoundTrip,
  expectDecodeError,
  expectSaneDecode,
  mutatedBuffers,
  randomBuffers,
} from "./helpers/codec.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { prng } from "./helpers/fuzz.ts";

const ip = (text: string) => parseIPv4(text) as number;
const MAC = Uint8Array.from([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
const CLIENT_ID = Uint8Array.from([1, ...MAC]);
const SERVER = ip("192.0.2.1");
const LEASED = ip("192.0.2.10");
const PORTS: PortSetValue = { offset: 6, psidLength: 6, psid: 17 };

/** A message with every header field zero except those given (test/helpers/dhcp4.ts). */
const message = dhcp4Message;

const LEASE_OPTIONS: Partial<Dhcp4Options> = {
  subnetMask: ip("255.255.255.0"),
  routers: [SERVER],
  dnsServers: [ip("192.0.2.53"), ip("198.51.100.53")],
  leaseTime: 3600,
  serverId: SERVER,
  renewalTime: 1800,
  rebindingTime: 3150,
  clientId: CLIENT_ID,
  portParams: PORTS,
};

/** One message of every kind, and some with every field and option a codec must carry. */
const FIXTURES: Record<string, Dhcp4Message> = {
  DISCOVER: message(Dhcp4MessageType.DISCOVER, {
    clientId: CLIENT_ID,
    parameterRequestList: [1, 3, 6, 51, 54, 58, 59, 159],
    hostname: "node-a",
  }),
  OFFER: message(Dhcp4MessageType.OFFER, LEASE_OPTIONS, { yiaddr: LEASED, siaddr: SERVER }),
  "REQUEST selecting": message(Dhcp4MessageType.REQUEST, {
    requestedIp: LEASED,
    serverId: SERVER,
    clientId: CLIENT_ID,
    parameterRequestList: [1, 3, 6, 159],
  }),
  "REQUEST renewing": message(
    Dhcp4MessageType.REQUEST,
    { clientId: CLIENT_ID },
    { ciaddr: LEASED },
  ),
  DECLINE: message(Dhcp4MessageType.DECLINE, {
    requestedIp: LEASED,
    serverId: SERVER,
    message: "address in use",
  }),
  ACK: message(
    Dhcp4MessageType.ACK,
    { ...LEASE_OPTIONS, leaseTime: DHCP4_INFINITE_LEASE },
    { yiaddr: LEASED, ciaddr: LEASED },
  ),
  NAK: message(Dhcp4MessageType.NAK, { serverId: SERVER, message: "lease expired" }),
  RELEASE: message(
    Dhcp4MessageType.RELEASE,
    { serverId: SERVER, clientId: CLIENT_ID },
    { ciaddr: LEASED },
  ),
  INFORM: message(Dhcp4MessageType.INFORM, { parameterRequestList: [6] }, { ciaddr: LEASED }),
  "every header field": message(
    Dhcp4MessageType.DISCOVER,
    { unknown: [{ code: 60, data: new TextEncoder().encode("dstm") }] },
    {
      htype: 6,
      hops: 3,
      xid: 0xffffffff,
      secs: 65535,
      flags: DHCP4_FLAG_BROADCAST | 1,
      ciaddr: 1,
      yiaddr: 0xffffffff,
      siaddr: ip("10.0.0.1"),
      giaddr: ip("10.0.0.254"),
      chaddr: Uint8Array.from({ length: 16 }, (_, i) => 255 - i),
      sname: "s".repeat(64),
      file: `/boot/${"\u00e9".repeat(122)}`,
    },
  ),
  "hlen 0, no options but the type": message(
    Dhcp4MessageType.DISCOVER,
    {},
    { chaddr: new Uint8Array(0) },
  ),
  "long options split across instances": message(Dhcp4MessageType.DISCOVER, {
    clientId: Uint8Array.from({ length: 300 }, (_, i) => i & 255),
    hostname: "h".repeat(255),
    message: Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join(""),
    parameterRequestList: Array.from({ length: 256 }, (_, i) => i),
    unknown: [
      { code: 80, data: new Uint8Array(0) },
      { code: 224, data: new Uint8Array(600).fill(7) },
      { code: 43, data: Uint8Array.from([1, 2, 3]) },
    ],
  }),
  "routers and DNS lists over 255 bytes": message(
    Dhcp4MessageType.ACK,
    {
      routers: Array.from({ length: 70 }, (_, i) => 0x0a000001 + i),
      dnsServers: Array.from({ length: 64 }, (_, i) => 0xc0000200 + i),
      subnetMask: 0,
    },
    { yiaddr: LEASED },
  ),
  "port params PSID-len 0": message(Dhcp4MessageType.OFFER, {
    portParams: { offset: 0, psidLength: 0, psid: 0 },
  }),
  "port params PSID-len 16": message(Dhcp4MessageType.ACK, {
    portParams: { offset: 0, psidLength: 16, psid: 0xffff },
    subnetMask: 0xffffffff,
  }),
};

const DHCP4_CODEC = {
  encode: encodeDhcp4,
  decode: decodeDhcp4,
  encodingLength: dhcp4EncodingLength,
};

/** dns-packet's one encoder test (test/helpers/codec.ts), and the DHCPv4 length rule. */
function checkCodec(msg: Dhcp4Message): void {
  checkRoundTrip(DHCP4_CODEC, msg, { passLength: true });
  // Without a length the message runs to the end of the buffer; bytes after the end option
  // are padding and are not read.
  const big = new Uint8Array(37 + dhcp4EncodingLength(msg) + 23).fill(0xa5);
  encodeDhcp4(msg, big, 37);
  const rest = decodeDhcp4(big, 37);
  expect(rest.ok && rest.value).toEqual(msg);
}

/** The same for one option codec (value bytes only). */
function checkOptionCodec<T>(codec: Dhcp4OptionCodec<T>, value: T): void {
  checkRoundTrip(codec, value, { passLength: true, before: 5, after: 5 });
}

describe("DHCPv4 codec round trip", () => {
  for (const [name, msg] of Object.entries(FIXTURES)) {
    test(`${name} round-trips, also at an offset`, () => checkCodec(msg));
  }

  test("every message type is in a fixture", () => {
    const types = new Set(Object.values(FIXTURES).map((m) => m.options.messageType));
    expect([...types].sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test("the header fields sit at the RFC 2131 offsets", () => {
    const bytes = encodeDhcp4(FIXTURES["every header field"] as Dhcp4Message);
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect([bytes[0], bytes[1], bytes[2], bytes[3]]).toEqual([1, 6, 16, 3]);
    expect(view.getUint32(4)).toBe(0xffffffff);
    expect(view.getUint16(8)).toBe(65535);
    expect(view.getUint16(10)).toBe(0x8001);
    expect(view.getUint32(12)).toBe(1);
    expect(view.getUint32(16)).toBe(0xffffffff);
    expect(view.getUint32(20)).toBe(0x0a000001);
    expect(view.getUint32(24)).toBe(0x0a0000fe);
    expect(bytes[28]).toBe(255);
    expect(bytes[43]).toBe(240);
    expect(bytes[44]).toBe(0x73); // "s", 64 of them without a terminating NUL
    expect(bytes[107]).toBe(0x73);
    expect(bytes[108]).toBe(0x2f); // "/boot/…"
    expect(bytes[235]).toBe(0xe9);
    expect(view.getUint32(236)).toBe(DHCP4_MAGIC_COOKIE);
    expect([...bytes.subarray(240, 243)]).toEqual([53, 1, 1]);
    expect(bytes[bytes.length - 1]).toBe(255);
  });

  test("options are written message type first, then by code, unknown last", () => {
    const bytes = encodeDhcp4(FIXTURES.OFFER as Dhcp4Message);
    const codes: number[] = [];
    for (let p = 240; bytes[p] !== 255; p += 2 + bytes[p + 1]!) codes.push(bytes[p]!);
    expect(codes).toEqual([53, 1, 3, 6, 51, 54, 58, 59, 61, 159]);
  });

  test("a 600-byte option is written as 255 + 255 + 90 (RFC 3396)", () => {
    const msg = message(Dhcp4MessageType.DISCOVER, {
      unknown: [{ code: 224, data: new Uint8Array(600) }],
    });
    const bytes = encodeDhcp4(msg);
    expect([bytes[243], bytes[244]]).toEqual([224, 255]);
    expect([bytes[243 + 257], bytes[244 + 257]]).toEqual([224, 255]);
    expect([bytes[243 + 514], bytes[244 + 514]]).toEqual([224, 90]);
    expect(bytes.length).toBe(240 + 3 + 606 + 1);
  });

  test("dhcp4MessageTypeName() names the eight types", () => {
    expect(dhcp4MessageTypeName(Dhcp4MessageType.OFFER)).toBe("OFFER");
    expect(dhcp4MessageTypeName(8)).toBe("INFORM");
    expect(dhcp4MessageTypeName(9)).toBe("type 9");
  });
});

describe("option codecs", () => {
  const values: { [K in keyof typeof dhcp4OptionCodecs]: unknown } = {
    messageType: Dhcp4MessageType.REQUEST,
    subnetMask: ip("255.255.252.0"),
    routers: [SERVER, LEASED],
    dnsServers: [SERVER],
    hostname: "node-a",
    requestedIp: LEASED,
    leaseTime: DHCP4_INFINITE_LEASE,
    serverId: SERVER,
    parameterRequestList: [1, 3, 159],
    message: "no more leases",
    renewalTime: 0,
    rebindingTime: 7,
    clientId: CLIENT_ID,
    portParams: PORTS,
  };
  for (const [key, codec] of Object.entries(dhcp4OptionCodecs)) {
    test(`${key} (option ${codec.code}) round-trips, also at an offset`, () =>
      checkOptionCodec(codec as Dhcp4OptionCodec<unknown>, values[key as keyof typeof values]));
  }

  test("option decode reports a bad length with the option's own error code", () => {
    const r = dhcp4OptionCodecs.leaseTime.decode(Uint8Array.from([0, 0, 1]));
    expect(r.ok ? "ok" : r.error.code).toBe("bad-option-length");
    const s = dhcp4OptionCodecs.portParams.decode(Uint8Array.from([16, 0, 0, 0]));
    expect(s.ok ? "ok" : s.error.code).toBe("bad-port-params");
    const o = dhcp4OptionCodecs.serverId.decode(new Uint8Array(4), 2, 4);
    expect(o.ok ? "ok" : o.error.code).toBe("bad-offset");
  });
});

describe("RFC 7618 OPTION_V4_PORTPARAMS (159)", () => {
  const VECTORS: [string, PortSetValue, number[]][] = [
    ["MAP default offset 6, PSID-len 6, PSID 17", PORTS, [0x06, 0x06, 0x44, 0x00]],
    [
      "lw4o6 offset 0, PSID-len 8, PSID 0x34",
      { offset: 0, psidLength: 8, psid: 0x34 },
      [0, 8, 0x34, 0],
    ],
    [
      "offset 4, PSID-len 12, PSID 0xabc",
      { offset: 4, psidLength: 12, psid: 0xabc },
      [4, 12, 0xab, 0xc0],
    ],
    ["PSID-len 16, PSID 0xffff", { offset: 0, psidLength: 16, psid: 0xffff }, [0, 16, 0xff, 0xff]],
    ["PSID-len 1, PSID 1", { offset: 0, psidLength: 1, psid: 1 }, [0, 1, 0x80, 0]],
    ["no sharing (PSID-len 0)", { offset: 0, psidLength: 0, psid: 0 }, [0, 0, 0, 0]],
    ["offset 15, PSID-len 1", { offset: 15, psidLength: 1, psid: 1 }, [15, 1, 0x80, 0]],
  ];
  for (const [name, value, wire] of VECTORS) {
    test(`${name} ↔ ${wire.map((b) => b.toString(16).padStart(2, "0")).join(" ")}`, () => {
      expect([...dhcp4OptionCodecs.portParams.encode(value)]).toEqual(wire);
      const r = dhcp4OptionCodecs.portParams.decode(Uint8Array.from(wire));
      expect(r.ok && r.value).toEqual(value);
    });
  }

  test("6/6/17 owns ports 1296–1311, 2320–2335, … as RFC 7597 §5.1 computes them", () => {
    const ranges = portSetRanges(PORTS);
    expect(ranges.slice(0, 2)).toEqual([
      [1296, 1311],
      [2320, 2335],
    ]);
    expect(ranges.length).toBe(63);
  });

  test("inside an OFFER the option is 9f 04 06 06 44 00", () => {
    const bytes = encodeDhcp4(FIXTURES.OFFER as Dhcp4Message);
    const hex = Array.from(bytes.subarray(240), (b) => b.toString(16).padStart(2, "0")).join("");
    expect(hex).toContain("9f0406064400ff");
  });

  test("with PSID-len 0 the PSID field is ignored (RFC 7598 §4.5)", () => {
    const r = dhcp4OptionCodecs.portParams.decode(Uint8Array.from([0, 0, 0x12, 0x34]));
    expect(r.ok && r.value).toEqual({ offset: 0, psidLength: 0, psid: 0 });
  });

  test("encode refuses what RFC 7618 does not allow", () => {
    for (const bad of [
      { offset: 16, psidLength: 0, psid: 0 },
      { offset: 6, psidLength: 11, psid: 0 },
      { offset: 0, psidLength: 4, psid: 16 },
      { offset: 0, psidLength: 0, psid: 1 },
      { offset: 1.5, psidLength: 4, psid: 1 },
    ]) {
      expect(() => dhcp4OptionCodecs.portParams.encode(bad)).toThrow(RangeError);
    }
  });
});

// --- raw message construction for malformed input ----------------------------------------

/** A 240-byte BOOTREQUEST header with cookie, hlen 6, and the given option bytes after it. */
function raw(options: number[], op = 1): Uint8Array {
  const bytes = new Uint8Array(240 + options.length);
  bytes.set([op, 1, 6, 0, 0x39, 0x03, 0xf3, 0x26]);
  bytes.set(MAC, 28);
  bytes.set([99, 130, 83, 99], 236);
  bytes.set(options, 240);
  return bytes;
}

function opt(code: number, value: number[]): number[] {
  return [code, value.length, ...value];
}

function patch(bytes: Uint8Array, at: number, ...values: number[]): Uint8Array {
  const copy = bytes.slice();
  copy.set(values, at);
  return copy;
}

const DISCOVER_OPT = opt(53, [1]);
const END = [255];
const VALID = raw([...DISCOVER_OPT, ...END]);
const withOpt = (...options: number[][]) => raw([...DISCOVER_OPT, ...options.flat(), ...END]);
const reply = (...options: number[][]) => raw([...opt(53, [2]), ...options.flat(), ...END], 2);
/** A message whose option 52 says `which` and whose file/sname areas hold `area` bytes. */
function overloaded(which: number, fileBytes: number[], snameBytes: number[] = []): Uint8Array {
  const bytes = raw([...DISCOVER_OPT, ...opt(52, [which]), ...END]);
  bytes.set(fileBytes, 108);
  bytes.set(snameBytes, 44);
  return bytes;
}

const MALFORMED: [string, Uint8Array, Dhcp4DecodeErrorCode][] = [
  ["negative offset", VALID, "bad-offset"],
  ["empty buffer", new Uint8Array(0), "truncated"],
  ["239 bytes", VALID.subarray(0, 239), "truncated"],
  ["header without the cookie", VALID.subarray(0, 236), "truncated"],
  ["op 0", patch(VALID, 0, 0), "bad-op"],
  ["op 3", patch(VALID, 0, 3), "bad-op"],
  ["hlen 17", patch(VALID, 2, 17), "bad-hlen"],
  ["hlen 255", patch(VALID, 2, 255), "bad-hlen"],
  ["cookie 0", patch(VALID, 236, 0, 0, 0, 0), "bad-cookie"],
  ["cookie byte-swapped", patch(VALID, 236, 99, 83, 130, 99), "bad-cookie"],
  ["option code as the last byte", raw([...DISCOVER_OPT, 12]), "truncated-option"],
  ["option value past the end", raw([...DISCOVER_OPT, 12, 5, 0x61]), "truncated-option"],
  ["option cut off in the overloaded file", overloaded(1, [12, 200]), "truncated-option"],
  [
    "option cut off in the overloaded sname",
    overloaded(2, [], [...Array(62).fill(0), 12, 9]),
    "truncated-option",
  ],
  ["message type length 2", raw([...opt(53, [1, 1]), ...END]), "bad-option-length"],
  ["message type twice (RFC 3396 concatenation)", withOpt(DISCOVER_OPT), "bad-option-length"],
  ["requested IP length 3", withOpt(opt(50, [192, 0, 2])), "bad-option-length"],
  ["server id split 2 + 3", withOpt(opt(54, [192, 0]), opt(54, [2, 1, 0])), "bad-option-length"],
  ["lease time length 5", withOpt(opt(51, [0, 0, 0, 0, 1])), "bad-option-length"],
  ["T1 length 0", withOpt(opt(58, [])), "bad-option-length"],
  ["routers length 6", withOpt(opt(3, [192, 0, 2, 1, 0, 0])), "bad-option-length"],
  ["DNS servers length 0", withOpt(opt(6, [])), "bad-option-length"],
  ["client id length 1", withOpt(opt(61, [1])), "bad-option-length"],
  ["hostname length 0", withOpt(opt(12, [])), "bad-option-length"],
  ["message length 0", withOpt(opt(56, [])), "bad-option-length"],
  ["parameter request list length 0", withOpt(opt(55, [])), "bad-option-length"],
  ["subnet mask length 3", reply(opt(1, [255, 255, 255])), "bad-option-length"],
  ["port params length 3", reply(opt(159, [6, 6, 0x44])), "bad-option-length"],
  ["port params length 5", reply(opt(159, [6, 6, 0x44, 0, 0])), "bad-option-length"],
  ["overload length 2", withOpt(opt(52, [1, 1])), "bad-overload"],
  ["overload 0", withOpt(opt(52, [0])), "bad-overload"],
  ["overload of length 0 before a pad", withOpt(opt(52, []), [0]), "bad-overload"],
  ["overload 4", withOpt(opt(52, [4])), "bad-overload"],
  ["no message type (BOOTP)", raw([...opt(1, [255, 0, 0, 0]), ...END]), "missing-message-type"],
  ["no options at all", raw([]), "missing-message-type"],
  [
    "message type only after the end option",
    raw([...END, ...DISCOVER_OPT]),
    "missing-message-type",
  ],
  ["message type 0", raw([...opt(53, [0]), ...END]), "bad-message-type"],
  ["message type 9 (FORCERENEW)", raw([...opt(53, [9]), ...END]), "bad-message-type"],
  ["DISCOVER as BOOTREPLY", patch(VALID, 0, 2), "op-mismatch"],
  ["OFFER as BOOTREQUEST", patch(reply(), 0, 1), "op-mismatch"],
  ["subnet mask 255.0.255.0", reply(opt(1, [255, 0, 255, 0])), "bad-subnet-mask"],
  ["subnet mask 0.0.0.255", reply(opt(1, [0, 0, 0, 255])), "bad-subnet-mask"],
  ["port params offset 16", reply(opt(159, [16, 0, 0, 0])), "bad-port-params"],
  ["port params PSID-len 17", reply(opt(159, [0, 17, 0, 0])), "bad-port-params"],
  ["port params offset + PSID-len 17", reply(opt(159, [6, 11, 0, 0])), "bad-port-params"],
  [
    "port params bits right of the PSID set",
    reply(opt(159, [6, 6, 0x44, 0x01])),
    "bad-port-params",
  ],
];

describe("decodeDhcp4() rejects malformed input", () => {
  for (const [name, bytes, code] of MALFORMED) {
    test(`${name} → ${code}`, () =>
      expectDecodeError(DHCP4_CODEC, bytes, code, name === "negative offset" ? -1 : 0));
  }

  test("covers every error code", () => {
    expect(MALFORMED.length).toBeGreaterThanOrEqual(15);
    expect(new Set(MALFORMED.map(([, , code]) => code))).toEqual(new Set(DHCP4_DECODE_ERROR_CODES));
  });

  test("a length beyond the buffer is truncated; a fractional length is bad-offset", () => {
    const r = decodeDhcp4(VALID, 0, VALID.length + 1);
    expect(r.ok ? "ok" : r.error.code).toBe("truncated");
    const s = decodeDhcp4(VALID, 0, 240.5);
    expect(s.ok ? "ok" : s.error.code).toBe("bad-offset");
    const t = decodeDhcp4(VALID, VALID.length + 5);
    expect(t.ok ? "ok" : t.error.code).toBe("truncated");
  });
});

describe("decodeDhcp4() accepts what it should", () => {
  const decode = (bytes: Uint8Array) => {
    const r = decodeDhcp4(bytes);
    if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
    return r.value;
  };

  test("an option split in two is one value (RFC 3396)", () => {
    const v = decode(withOpt(opt(54, [192, 0]), opt(1, [255, 0, 0, 0]), opt(54, [2, 1])));
    expect(v.options.serverId).toBe(SERVER);
  });

  test("overload 1: options continue in file, concatenated after the options field", () => {
    const bytes = raw([...DISCOVER_OPT, ...opt(61, [1, 2]), ...opt(52, [1]), ...END]);
    bytes.set([...opt(61, [3, 4]), ...opt(12, [0x68]), 255], 108);
    bytes.set([0x73, 0x72, 0x76], 44);
    const v = decode(bytes);
    expect(v.options.clientId).toEqual(Uint8Array.from([1, 2, 3, 4]));
    expect(v.options.hostname).toBe("h");
    expect(v.file).toBeUndefined();
    expect(v.sname).toBe("srv");
  });

  test("overload 3: file first, then sname; neither is a name any more", () => {
    const v = decode(overloaded(3, [...opt(12, [0x61]), 255], [...opt(12, [0x62])]));
    expect(v.options.hostname).toBe("ab");
    expect(v.sname).toBeUndefined();
    expect(v.file).toBeUndefined();
    expect(decodeDhcp4(encodeDhcp4(v)).ok).toBe(true);
  });

  test("option 52 inside the file area is ignored", () => {
    const v = decode(overloaded(1, [...opt(52, [3]), ...opt(12, [0x78])], [0x41]));
    expect(v.options.hostname).toBe("x");
    expect(v.sname).toBe("A");
  });

  test("pad options anywhere, no end option, bytes after the end option", () => {
    expect(decode(raw([0, 0, ...DISCOVER_OPT, 0])).options.messageType).toBe(1);
    const v = decode(raw([...DISCOVER_OPT, ...END, 12, 40, 1, 2]));
    expect(v.options).toEqual({ messageType: 1 });
  });

  test("unknown options keep their bytes, order of first appearance, repeats concatenated", () => {
    const v = decode(withOpt(opt(200, [1]), opt(60, [0x61]), opt(200, [2, 3]), opt(80, [])));
    expect(v.options.unknown).toEqual([
      { code: 200, data: Uint8Array.from([1, 2, 3]) },
      { code: 60, data: Uint8Array.from([0x61]) },
      { code: 80, data: new Uint8Array(0) },
    ]);
  });

  test("chaddr bytes past hlen and sname bytes past the NUL are not part of the value", () => {
    const bytes = patch(VALID, 34, 0xaa, 0xbb);
    bytes.set([0x61, 0, 0x62], 44);
    const v = decode(bytes);
    expect(v.chaddr).toEqual(MAC);
    expect(v.sname).toBe("a");
  });

  test("decoded byte values are copies: reusing the buffer does not change them", () => {
    const bytes = encodeDhcp4(FIXTURES.DISCOVER as Dhcp4Message);
    const v = decode(bytes);
    bytes.fill(0);
    expect(v.chaddr).toEqual(MAC);
    expect(v.options.clientId).toEqual(CLIENT_ID);
  });
});

describe("encodeDhcp4() refuses what cannot be decoded", () => {
  const base = FIXTURES.DISCOVER as Dhcp4Message;
  const withOptions = (o: Partial<Dhcp4Options>) => ({
    ...base,
    options: { ...base.options, ...o },
  });
  const cases: [string, Dhcp4Message][] = [
    ["op 3", { ...base, op: 3 as Dhcp4Op }],
    ["DISCOVER as BOOTREPLY", { ...base, op: Dhcp4Op.BOOTREPLY }],
    ["xid above 32 bits", { ...base, xid: 2 ** 32 }],
    ["negative secs", { ...base, secs: -1 }],
    ["flags above 16 bits", { ...base, flags: 0x10000 }],
    ["htype 256", { ...base, htype: 256 }],
    ["fractional ciaddr", { ...base, ciaddr: 1.5 }],
    ["17-byte chaddr", { ...base, chaddr: new Uint8Array(17) }],
    ["65-character sname", { ...base, sname: "x".repeat(65) }],
    ["sname with a NUL", { ...base, sname: "a\u0000b" }],
    ["file with a character above U+00FF", { ...base, file: "€" }],
    ["message type 9", withOptions({ messageType: 9 as Dhcp4MessageType })],
    ["message type missing", { ...base, options: {} as Dhcp4Options }],
    ["non-contiguous subnet mask", withOptions({ subnetMask: ip("255.0.255.0") })],
    ["empty routers", withOptions({ routers: [] })],
    ["1-byte client id", withOptions({ clientId: Uint8Array.from([1]) })],
    ["empty hostname", withOptions({ hostname: "" })],
    ["hostname with a character above U+00FF", withOptions({ hostname: "hôte€" })],
    ["parameter code 256", withOptions({ parameterRequestList: [256] })],
    ["lease time 2^32", withOptions({ leaseTime: 2 ** 32 })],
    ["port params 6/11/0", withOptions({ portParams: { offset: 6, psidLength: 11, psid: 0 } })],
    [
      "unknown option with a typed code",
      withOptions({ unknown: [{ code: 53, data: Uint8Array.of(1) }] }),
    ],
    ["unknown option 52", withOptions({ unknown: [{ code: 52, data: Uint8Array.of(1) }] })],
    ["unknown option 0", withOptions({ unknown: [{ code: 0, data: new Uint8Array(0) }] })],
    ["unknown option 255", withOptions({ unknown: [{ code: 255, data: new Uint8Array(0) }] })],
    [
      "the same unknown option twice",
      withOptions({
        unknown: [
          { code: 200, data: Uint8Array.of(1) },
          { code: 200, data: Uint8Array.of(2) },
        ],
      }),
    ],
  ];
  for (const [name, msg] of cases) {
    test(`throws RangeError on ${name}`, () => {
      expect(() => encodeDhcp4(msg)).toThrow(RangeError);
    });
  }

  test("throws RangeError when the buffer is too small", () => {
    const length = dhcp4EncodingLength(base);
    expect(() => encodeDhcp4(base, new Uint8Array(length - 1))).toThrow(RangeError);
    expect(() => encodeDhcp4(base, new Uint8Array(length + 4), 5)).toThrow(RangeError);
    expect(encodeDhcp4(base, new Uint8Array(length + 4), 4).length).toBe(length);
  });

  test("writes zeros over whatever the buffer held in the header", () => {
    const big = new Uint8Array(400).fill(0xff);
    const bytes = encodeDhcp4(base, big, 0);
    expect(bytes).toEqual(encodeDhcp4(base));
  });
});

// --- fuzz ----------------------------------------------------------------------------------

const KNOWN_CODES = new Set<string>(DHCP4_DECODE_ERROR_CODES);

describe("fuzz", () => {
  test("20,000 random buffers never make decodeDhcp4 throw", () => {
    const random = prng(0xd4c9);
    const outcomes = new Map<string, number>();
    const typed = [1, 3, 6, 12, 50, 51, 53, 54, 55, 56, 58, 59, 61, 159];
    const buffers = randomBuffers(
      random,
      20_000,
      (i) => (i % 2 === 0 ? 240 + Math.floor(random() * 200) : Math.floor(random() * 420)),
      (bytes, i) => {
        if (i % 2 !== 0) return;
        // half get a plausible header and well-formed typed options, so that the option
        // values, not only the option framing, meet random bytes
        const type = 1 + Math.floor(random() * 9);
        bytes.set([type === 2 || type === 5 || type === 6 ? 2 : 1, 1, Math.floor(random() * 18)]);
        bytes.set([99, 130, 83, 99], 236);
        if (bytes.length >= 243) bytes.set([53, 1, type], 240);
        let p = 243;
        while (p + 2 < bytes.length) {
          const len = Math.min(Math.floor(random() * 9), bytes.length - p - 2);
          bytes[p] = typed[Math.floor(random() * typed.length)]!;
          bytes[p + 1] = len;
          p += 2 + len;
        }
        if (p < bytes.length && random() < 0.8) bytes[p] = 255;
      },
    );
    for (const bytes of buffers) expectSaneDecode(DHCP4_CODEC, bytes, KNOWN_CODES, outcomes);
    expect(outcomes.get("ok")).toBeGreaterThan(0);
    expect(outcomes.size).toBeGreaterThan(8);
  });

  test("20,000 mutations and truncations of valid messages never make decodeDhcp4 throw", () => {
    const valid = Object.values(FIXTURES).map((m) => encodeDhcp4(m));
    valid.push(overloaded(3, [...opt(12, [0x61]), 255], [...opt(61, [1, 2])]));
    const outcomes = new Map<string, number>();
    // aim half the mutations at the options, where the structure is
    const mutations = mutatedBuffers(prng(0xbeef), 20_000, valid, {
      maxHits: 3,
      focus: { from: 236, share: 0.5 },
    });
    for (const [bytes] of mutations) expectSaneDecode(DHCP4_CODEC, bytes, KNOWN_CODES, outcomes);
    expect(outcomes.get("ok")).toBeGreaterThan(0);
    expect(outcomes.size).toBeGreaterThan(9);
  });
});
