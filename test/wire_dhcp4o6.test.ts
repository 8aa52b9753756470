import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { parseIPv4 } from "../lib/net/addr.ts";
import {
  type Dhcp4Message,
  Dhcp4MessageType,
  type Dhcp4Options,
  encodeDhcp4,
} from "../lib/wire/dhcp4.ts";
import {
  ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
  DHCP4O6_FLAG_UNICAST,
  DHCP6_CLIENT_PORT,
  DHCP6_DECODE_ERROR_CODES,
  DHCP6_SERVER_PORT,
  type Dhcp4o6Message,
  type Dhcp6DecodeErrorCode,
  type Dhcp6Message,
  Dhcp6MessageType,
  type Dhcp6OptionCodec,
  decodeDhcp4o6,
  decodeDhcp6,
  dhcp4o6EncodingLength,
  dhcp6EncodingLength,
  dhcp6MessageTypeName,
  dhcp6OptionCodecs,
  encodeDhcp4o6,
  encodeDhcp6,
  peekDhcp6MessageType,
} from "../lib/wire/dhcp4o6.ts";
import {
  checkRoundTrip,
  expectDecodeError,
  expectSaneDecode,
  mutatedBuffers,
  randomBuffers,
  type TestCodec,
} from "./helpers/codec.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { prng } from "./helpers/fuzz.ts";

const ip = (text: string) => parseIPv4(text) as number;
const MAC = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
const CLIENT_ID = Uint8Array.from([1, ...MAC]);
/** DUID-LL (type 3, hardware type 1) of the client and of the server. */
const DUID_C = Uint8Array.from([0, 3, 0, 1, ...MAC]);
const DUID_S = Uint8Array.from([0, 3, 0, 1, 0x02, 0x00, 0x5e, 0x00, 0x00, 0x02]);
const SERVER4 = ip("192.0.2.1");
const LEASED = ip("192.0.2.10");
const XID = 0x3903f326;

function dhcp4(type: Dhcp4MessageType, options: Partial<Dhcp4Options>, header = {}): Dhcp4Message {
  return dhcp4Message(type, options, { xid: XID, chaddr: Uint8Array.from(MAC), ...header });
}

const PRL = [1, 3, 6, 51, 54, 58, 59, 159];
const DISCOVER = dhcp4(Dhcp4MessageType.DISCOVER, {
  parameterRequestList: PRL,
  clientId: CLIENT_ID,
});
const LEASE: Partial<Dhcp4Options> = {
  subnetMask: ip("255.255.255.0"),
  routers: [SERVER4],
  dnsServers: [ip("192.0.2.53")],
  leaseTime: 3600,
  serverId: SERVER4,
  renewalTime: 1800,
  rebindingTime: 3150,
  clientId: CLIENT_ID,
  portParams: { offset: 6, psidLength: 6, psid: 17 },
};
const OFFER = dhcp4(Dhcp4MessageType.OFFER, LEASE, { yiaddr: LEASED });
const RENEW = dhcp4(Dhcp4MessageType.REQUEST, { clientId: CLIENT_ID }, { ciaddr: LEASED });

const ENVELOPES: Record<string, Dhcp4o6Message> = {
  "DHCPV4-QUERY with DISCOVER": { type: 20, flags: 0, dhcp4: DISCOVER },
  "DHCPV4-RESPONSE with OFFER": { type: 21, flags: 0, dhcp4: OFFER },
  "DHCPV4-QUERY with REQUEST selecting": {
    type: 20,
    flags: 0,
    dhcp4: dhcp4(Dhcp4MessageType.REQUEST, {
      requestedIp: LEASED,
      serverId: SERVER4,
      clientId: CLIENT_ID,
      parameterRequestList: PRL,
    }),
  },
  "DHCPV4-RESPONSE with ACK, flags echoed as Kea does": {
    type: 21,
    flags: DHCP4O6_FLAG_UNICAST,
    dhcp4: dhcp4(Dhcp4MessageType.ACK, LEASE, { yiaddr: LEASED }),
  },
  "DHCPV4-QUERY renewing (U flag)": { type: 20, flags: DHCP4O6_FLAG_UNICAST, dhcp4: RENEW },
  "DHCPV4-QUERY rebinding": { type: 20, flags: 0, dhcp4: RENEW },
  "DHCPV4-QUERY RELEASE with DHCPv6 ids and an unknown option": {
    type: 20,
    flags: DHCP4O6_FLAG_UNICAST,
    clientId: DUID_C,
    serverId: DUID_S,
    unknown: [
      { code: 8, data: Uint8Array.of(0, 0) },
      { code: 0xffff, data: new Uint8Array(0) },
      { code: 8, data: Uint8Array.of(0, 1) },
    ],
    dhcp4: dhcp4(
      Dhcp4MessageType.RELEASE,
      { serverId: SERVER4, clientId: CLIENT_ID },
      { ciaddr: LEASED },
    ),
  },
  "DHCPV4-RESPONSE with NAK and a 4o6 server list": {
    type: 21,
    flags: 0,
    dhcp4o6Servers: ["2001:db8::1", "fe80::2"],
    dhcp4: dhcp4(Dhcp4MessageType.NAK, { serverId: SERVER4, message: "wrong network" }),
  },
  "DHCPV4-QUERY with reserved flag bits and an empty server list": {
    type: 20,
    flags: 0x7fffff,
    dhcp4o6Servers: [],
    dhcp4: dhcp4(Dhcp4MessageType.INFORM, { parameterRequestList: [6] }, { ciaddr: LEASED }),
  },
  "DHCPV4-QUERY with DECLINE": {
    type: 20,
    flags: 0,
    dhcp4: dhcp4(Dhcp4MessageType.DECLINE, { requestedIp: LEASED, serverId: SERVER4 }),
  },
};

const DHCP6: Record<string, Dhcp6Message> = {
  "INFORMATION-REQUEST asking for option 88": {
    type: 11,
    xid: 0x5a17e0,
    clientId: DUID_C,
    oro: [88],
    elapsedTime: 0,
  },
  "INFORMATION-REQUEST bare": { type: 11, xid: 0 },
  "REPLY with two 4o6 servers": {
    type: 7,
    xid: 0x5a17e0,
    clientId: DUID_C,
    serverId: DUID_S,
    dhcp4o6Servers: ["2001:db8::1", "2001:db8::2"],
    unknown: [{ code: 13, data: Uint8Array.of(0, 0, 0x6f, 0x6b) }],
  },
  "REPLY with option 88 of length 0": {
    type: 7,
    xid: 0xffffff,
    serverId: DUID_S,
    dhcp4o6Servers: [],
  },
  SOLICIT: { type: 1, xid: 1, clientId: DUID_C, oro: [88, 23, 24], elapsedTime: 65535 },
  ADVERTISE: {
    type: 2,
    xid: 1,
    clientId: DUID_C,
    serverId: DUID_S,
    dhcp4o6Servers: ["2001:db8::1"],
  },
  REQUEST: { type: 3, xid: 2, clientId: DUID_C, serverId: DUID_S, oro: [] },
  "REPLY carrying an option 87 (raw in plain DHCPv6)": {
    type: 7,
    xid: 3,
    serverId: Uint8Array.from({ length: 130 }, (_, i) => i),
    unknown: [{ code: 87, data: Uint8Array.of(1, 2, 3) }],
  },
};

const ENVELOPE_CODEC: TestCodec<Dhcp4o6Message> = {
  encode: encodeDhcp4o6,
  decode: decodeDhcp4o6,
  encodingLength: dhcp4o6EncodingLength,
};
const DHCP6_CODEC: TestCodec<Dhcp6Message> = {
  encode: encodeDhcp6,
  decode: decodeDhcp6,
  encodingLength: dhcp6EncodingLength,
};

/** dns-packet's one encoder test (test/helpers/codec.ts), the length passed to decode. */
function checkCodec<T>(codec: TestCodec<T>, value: T): void {
  checkRoundTrip(codec, value, { passLength: true, before: 41, after: 19 });
}

describe("DHCPv4-over-DHCPv6 envelope round trip", () => {
  for (const [name, msg] of Object.entries(ENVELOPES)) {
    test(`${name} round-trips, also at an offset`, () => checkCodec(ENVELOPE_CODEC, msg));
  }

  test("every DHCPv4 message type travels in an envelope", () => {
    const types = new Set(Object.values(ENVELOPES).map((m) => m.dhcp4.options.messageType));
    expect([...types].sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test("options are written client id, server id, DHCPv4 message, 4o6 servers, unknown", () => {
    const msg = { ...ENVELOPES["DHCPV4-QUERY RELEASE with DHCPv6 ids and an unknown option"]! };
    const bytes = encodeDhcp4o6({ ...msg, dhcp4o6Servers: ["2001:db8::1"] });
    const codes: number[] = [];
    for (let p = 4; p < bytes.length; p += 4 + ((bytes[p + 2]! << 8) | bytes[p + 3]!)) {
      codes.push((bytes[p]! << 8) | bytes[p + 1]!);
    }
    expect(codes).toEqual([1, 2, 87, 88, 8, 0xffff, 8]);
  });
});

describe("DHCPv6 round trip", () => {
  for (const [name, msg] of Object.entries(DHCP6)) {
    test(`${name} round-trips, also at an offset`, () => checkCodec(DHCP6_CODEC, msg));
  }

  test("every supported message type is in a fixture", () => {
    expect([...new Set(Object.values(DHCP6).map((m) => m.type))].sort((a, b) => a - b)).toEqual([
      1, 2, 3, 7, 11,
    ]);
  });

  test("option codecs round-trip, also at an offset", () => {
    const values: { [K in keyof typeof dhcp6OptionCodecs]: unknown } = {
      clientId: DUID_C,
      serverId: DUID_S,
      oro: [88, 23],
      elapsedTime: 1234,
      dhcp4o6Servers: ["2001:db8::1", "ff02::1:2"],
    };
    for (const [key, c] of Object.entries(dhcp6OptionCodecs)) {
      const codec = c as Dhcp6OptionCodec<unknown>;
      const value = values[key as keyof typeof values];
      checkCodec(codec, value);
    }
  });

  test("option 88 decodes to canonical text", () => {
    const r = dhcp6OptionCodecs.dhcp4o6Servers.decode(
      Uint8Array.from([0x20, 1, 0x0d, 0xb8, ...Array(11).fill(0), 1]),
    );
    expect(r.ok && r.value).toEqual(["2001:db8::1"]);
  });
});

test("constants: ports 546/547, ff02::1:2, U flag 0x800000", () => {
  expect([DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT]).toEqual([546, 547]);
  expect(ALL_DHCP_RELAY_AGENTS_AND_SERVERS).toBe("ff02::1:2");
  expect(DHCP4O6_FLAG_UNICAST).toBe(0x800000);
  expect([Dhcp6MessageType.DHCPV4_QUERY, Dhcp6MessageType.DHCPV4_RESPONSE]).toEqual([20, 21]);
  expect(dhcp6MessageTypeName(20)).toBe("DHCPV4-QUERY");
  expect(dhcp6MessageTypeName(12)).toBe("type 12");
  expect(peekDhcp6MessageType(Uint8Array.of(21, 0, 0, 0))).toBe(21);
  expect(peekDhcp6MessageType(new Uint8Array(0))).toBeNull();
});

// --- a real-looking exchange, byte by byte -------------------------------------------------

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const zeros = (n: number) => "00".repeat(n);
/** op htype hlen hops | xid | secs flags | ciaddr yiaddr siaddr giaddr | chaddr | sname file | cookie */
const bootp = (op: string, ciaddr: string, yiaddr: string) =>
  `${op}010600` +
  "3903f326" +
  "00000000" +
  `${ciaddr}${yiaddr}${zeros(8)}` +
  `02005e100001${zeros(10)}` +
  zeros(64 + 128) +
  "63825363";

describe("hex fixture: DISCOVER in DHCPV4-QUERY, OFFER in DHCPV4-RESPONSE", () => {
  const query = encodeDhcp4o6({ type: 20, flags: 0, dhcp4: DISCOVER });
  const response = encodeDhcp4o6({ type: 21, flags: 0, dhcp4: OFFER });

  test("the query's header fields, by hand", () => {
    expect(query.length).toBe(4 + 4 + 263);
    expect(hex(query.subarray(0, 4))).toBe("14000000"); // DHCPV4-QUERY, flags 0, no xid
    expect(hex(query.subarray(4, 8))).toBe("00570107"); // OPTION_DHCPV4_MSG, 263 bytes
    const m = query.subarray(8);
    expect([m[0], m[1], m[2], m[3]]).toEqual([1, 1, 6, 0]); // BOOTREQUEST, Ethernet, hlen 6
    expect(hex(m.subarray(4, 8))).toBe("3903f326");
    expect(hex(m.subarray(10, 12))).toBe("0000"); // broadcast bit clear
    expect(hex(m.subarray(28, 44))).toBe(`02005e100001${zeros(10)}`);
    expect(hex(m.subarray(236, 240))).toBe("63825363");
    expect(hex(m.subarray(240))).toBe(
      "350101" + // message type DISCOVER
        "370801030633363a3b9f" + // parameter request list 1 3 6 51 54 58 59 159
        "3d0701" +
        "02005e100001" + // client id: type 1 + chaddr
        "ff",
    );
  });

  test("the whole query, hand-assembled", () => {
    const options = "350101" + "370801030633363a3b9f" + "3d070102005e100001" + "ff";
    expect(hex(query)).toBe(`1400000000570107${bootp("01", zeros(4), zeros(4))}${options}`);
  });

  test("the whole response, hand-assembled", () => {
    const options =
      "350102" + // OFFER
      "0104ffffff00" + // subnet mask 255.255.255.0
      "0304c0000201" + // router 192.0.2.1
      "0604c0000235" + // DNS 192.0.2.53
      "330400000e10" + // lease 3600 s
      "3604c0000201" + // server id 192.0.2.1: the IPv4 address of Kea's 4o6 interface
      "3a0400000708" + // T1 1800 s
      "3b0400000c4e" + // T2 3150 s
      "3d0701" +
      "02005e100001" + // client id echoed (RFC 6842)
      "9f0406064400" + // OPTION_V4_PORTPARAMS offset 6, PSID-len 6, PSID 17
      "ff";
    expect(response.length).toBe(8 + 301);
    expect(hex(response)).toBe(
      `15000000${"0057012d"}${bootp("02", zeros(4), "c000020a")}${options}`,
    );
  });

  test("a renewing REQUEST sets the U flag and ciaddr, and no server id", () => {
    const bytes = encodeDhcp4o6({ type: 20, flags: DHCP4O6_FLAG_UNICAST, dhcp4: RENEW });
    expect(hex(bytes.subarray(0, 4))).toBe("14800000");
    expect(hex(bytes.subarray(8 + 12, 8 + 16))).toBe("c000020a");
    expect(hex(bytes.subarray(8 + 240))).toBe("350103" + "3d070102005e100001" + "ff");
  });

  test("INFORMATION-REQUEST with ORO 88 and the REPLY carrying option 88", () => {
    const ask = encodeDhcp6(DHCP6["INFORMATION-REQUEST asking for option 88"]!);
    expect(hex(ask)).toBe(
      "0b5a17e0" + // INFORMATION-REQUEST, xid
        "0001000a" +
        "0003000102005e100001" + // OPTION_CLIENTID, DUID-LL
        "000600020058" + // OPTION_ORO: 88
        "000800020000", // OPTION_ELAPSED_TIME 0
    );
    const reply = Uint8Array.from(
      Buffer.from(
        "075a17e0" +
          "0001000a0003000102005e100001" +
          "0002000a0003000102005e000002" +
          "00580010" +
          "20010db8000000000000000000000001",
        "hex",
      ),
    );
    const r = decodeDhcp6(reply);
    expect(r.ok && r.value.dhcp4o6Servers).toEqual(["2001:db8::1"]);
    expect(r.ok && r.value.xid).toBe(0x5a17e0);
  });

  test("decoding the fixtures gives the messages back", () => {
    expect(decodeDhcp4o6(query)).toEqual({
      ok: true,
      value: { type: 20, flags: 0, dhcp4: DISCOVER },
      offset: query.length,
    });
    const r = decodeDhcp4o6(response);
    expect(r.ok && r.value.dhcp4.options.portParams).toEqual({
      offset: 6,
      psidLength: 6,
      psid: 17,
    });
  });

  test("docs/dhcp4o6.md shows the bytes the codec produces", () => {
    const doc = readFileSync(new URL("../docs/dhcp4o6.md", import.meta.url), "utf8");
    const block = doc.slice(doc.indexOf("<!-- example:discover-query -->")).split("```")[1] ?? "";
    const dumped = block
      .split("\n")
      .map((line) => line.replace(/#.*/, "").replace(/\s+/g, ""))
      .join("");
    expect(dumped).toBe(hex(query));
  });
});

// --- malformed input -----------------------------------------------------------------------

function opt6(code: number, value: number[] | Uint8Array): number[] {
  return [code >> 8, code & 255, value.length >> 8, value.length & 255, ...value];
}

function envelope(type: number, ...options: number[][]): Uint8Array {
  return Uint8Array.from([type, 0, 0, 0, ...options.flat()]);
}

function dhcp6(type: number, ...options: number[][]): Uint8Array {
  return Uint8Array.from([type, 0x5a, 0x17, 0xe0, ...options.flat()]);
}

const DISCOVER_BYTES = [...encodeDhcp4(DISCOVER)];
const OFFER_BYTES = [...encodeDhcp4(OFFER)];
const MSG = opt6(87, DISCOVER_BYTES);
const CID = opt6(1, DUID_C);
const SID = opt6(2, DUID_S);
const QUERY = envelope(20, MSG);
const badCookie = [...DISCOVER_BYTES];
badCookie[236] = 0;

type Case = [string, Uint8Array, Dhcp6DecodeErrorCode];
const MALFORMED_ENVELOPE: Case[] = [
  ["negative offset", QUERY, "bad-offset"],
  ["empty buffer", new Uint8Array(0), "truncated"],
  ["3-byte header", QUERY.subarray(0, 3), "truncated"],
  ["type 19", envelope(19, MSG), "bad-msg-type"],
  ["type 22", envelope(22, MSG), "bad-msg-type"],
  ["SOLICIT given to the envelope decoder", envelope(1, MSG), "bad-msg-type"],
  ["option header cut", Uint8Array.from([...QUERY, 0, 88, 0]), "truncated-option"],
  ["option value cut", QUERY.subarray(0, QUERY.length - 1), "truncated-option"],
  ["option length beyond the end", envelope(20, MSG, [0, 88, 0, 16, 1]), "truncated-option"],
  ["no DHCPv4 message", envelope(20, CID), "missing-option"],
  ["no options at all", envelope(21), "missing-option"],
  ["two DHCPv4 messages", envelope(20, MSG, MSG), "duplicate-option"],
  [
    "two server lists",
    envelope(21, opt6(88, []), opt6(87, OFFER_BYTES), opt6(88, [])),
    "duplicate-option",
  ],
  ["two client ids", envelope(20, CID, MSG, CID), "duplicate-option"],
  ["server list of 15 bytes", envelope(20, MSG, opt6(88, Array(15).fill(1))), "bad-option-length"],
  ["server list of 17 bytes", envelope(20, MSG, opt6(88, Array(17).fill(1))), "bad-option-length"],
  ["client id of 2 bytes", envelope(20, opt6(1, [0, 3]), MSG), "bad-option-length"],
  ["server id of 131 bytes", envelope(20, opt6(2, Array(131).fill(1)), MSG), "bad-option-length"],
  ["DHCPv4 message with a bad cookie", envelope(20, opt6(87, badCookie)), "bad-dhcpv4-msg"],
  [
    "DHCPv4 message of 100 bytes",
    envelope(20, opt6(87, DISCOVER_BYTES.slice(0, 100))),
    "bad-dhcpv4-msg",
  ],
  ["empty DHCPv4 message", envelope(20, opt6(87, [])), "bad-dhcpv4-msg"],
  ["DHCPV4-QUERY carrying an OFFER", envelope(20, opt6(87, OFFER_BYTES)), "bad-direction"],
  ["DHCPV4-RESPONSE carrying a DISCOVER", envelope(21, MSG), "bad-direction"],
];

const MALFORMED_DHCP6: Case[] = [
  ["negative offset", dhcp6(11), "bad-offset"],
  ["3 bytes", Uint8Array.of(11, 0, 0), "truncated"],
  ["DHCPV4-QUERY given to the DHCPv6 decoder", dhcp6(20, MSG), "bad-msg-type"],
  ["RELAY-FORW (12)", dhcp6(12), "bad-msg-type"],
  ["RENEW (5), not supported", dhcp6(5, CID, SID), "bad-msg-type"],
  ["type 0", dhcp6(0), "bad-msg-type"],
  ["option header cut", Uint8Array.from([...dhcp6(11), 0, 6]), "truncated-option"],
  ["ORO value cut", Uint8Array.from([...dhcp6(11), 0, 6, 0, 4, 0, 88]), "truncated-option"],
  ["ORO of odd length", dhcp6(11, opt6(6, [0, 88, 0])), "bad-option-length"],
  ["elapsed time of 3 bytes", dhcp6(11, opt6(8, [0, 0, 0])), "bad-option-length"],
  ["elapsed time of 0 bytes", dhcp6(11, opt6(8, [])), "bad-option-length"],
  [
    "server list of 8 bytes in a REPLY",
    dhcp6(7, SID, opt6(88, Array(8).fill(0))),
    "bad-option-length",
  ],
  ["server id of 2 bytes", dhcp6(7, opt6(2, [0, 1])), "bad-option-length"],
  ["two ORO options", dhcp6(11, opt6(6, [0, 88]), opt6(6, [0, 23])), "duplicate-option"],
  ["two server lists", dhcp6(7, SID, opt6(88, []), opt6(88, [])), "duplicate-option"],
  ["SOLICIT without client id", dhcp6(1, opt6(6, [0, 88])), "missing-option"],
  ["ADVERTISE without server id", dhcp6(2, CID), "missing-option"],
  ["ADVERTISE without client id", dhcp6(2, SID), "missing-option"],
  ["REQUEST without server id", dhcp6(3, CID), "missing-option"],
  ["REPLY without server id", dhcp6(7, CID, opt6(88, [])), "missing-option"],
  ["SOLICIT with a server id", dhcp6(1, CID, SID), "option-not-allowed"],
];

describe("decodeDhcp4o6() rejects malformed input", () => {
  for (const [name, bytes, code] of MALFORMED_ENVELOPE) {
    test(`${name} → ${code}`, () =>
      expectDecodeError(ENVELOPE_CODEC, bytes, code, name === "negative offset" ? -1 : 0));
  }

  test("bad-dhcpv4-msg carries the DHCPv4 error", () => {
    const r = decodeDhcp4o6(envelope(20, opt6(87, badCookie)));
    expect(r.ok ? undefined : r.error.dhcp4?.code).toBe("bad-cookie");
    expect(r.ok ? "" : r.error.message).toStartWith("OPTION_DHCPV4_MSG: bad-cookie: ");
  });
});

describe("decodeDhcp6() rejects malformed input", () => {
  for (const [name, bytes, code] of MALFORMED_DHCP6) {
    test(`${name} → ${code}`, () =>
      expectDecodeError(DHCP6_CODEC, bytes, code, name === "negative offset" ? -1 : 0));
  }

  test("together the two lists cover every error code", () => {
    expect(MALFORMED_ENVELOPE.length).toBeGreaterThanOrEqual(15);
    expect(MALFORMED_DHCP6.length).toBeGreaterThanOrEqual(15);
    const seen = new Set([...MALFORMED_ENVELOPE, ...MALFORMED_DHCP6].map(([, , code]) => code));
    expect(seen).toEqual(new Set(DHCP6_DECODE_ERROR_CODES));
  });
});

describe("decoders accept what they should", () => {
  test("a REPLY's unknown options are kept in order, repeats included", () => {
    const bytes = dhcp6(7, opt6(13, [0, 0]), SID, opt6(13, [0, 1]), opt6(87, [9]));
    const r = decodeDhcp6(bytes);
    expect(r.ok && r.value.unknown).toEqual([
      { code: 13, data: Uint8Array.of(0, 0) },
      { code: 13, data: Uint8Array.of(0, 1) },
      { code: 87, data: Uint8Array.of(9) },
    ]);
  });

  test("option 88 of length 0 is an empty list: use ff02::1:2", () => {
    const r = decodeDhcp6(dhcp6(7, SID, opt6(88, [])));
    expect(r.ok && r.value.dhcp4o6Servers).toEqual([]);
  });

  test("the DHCPv4 message may come after other options and padding after END", () => {
    const padded = [...DISCOVER_BYTES, 0, 0, 0];
    const r = decodeDhcp4o6(envelope(20, opt6(0x1234, [1]), opt6(87, padded)));
    expect(r.ok && r.value.dhcp4).toEqual(DISCOVER);
    expect(r.ok && r.value.unknown).toEqual([{ code: 0x1234, data: Uint8Array.of(1) }]);
  });

  test("response flags are returned as sent (Kea echoes the query's)", () => {
    const bytes = envelope(21, opt6(87, OFFER_BYTES));
    bytes[1] = 0x80;
    const r = decodeDhcp4o6(bytes);
    expect(r.ok && r.value.flags).toBe(DHCP4O6_FLAG_UNICAST);
  });
});

describe("encoders refuse what cannot be decoded", () => {
  const q = ENVELOPES["DHCPV4-QUERY with DISCOVER"]!;
  const envelopeCases: [string, Dhcp4o6Message][] = [
    ["type 1", { ...q, type: 1 as 20 }],
    ["flags 2^24", { ...q, flags: 0x1000000 }],
    ["negative flags", { ...q, flags: -1 }],
    ["a query carrying an OFFER", { ...q, dhcp4: OFFER }],
    ["a response carrying a DISCOVER", { ...q, type: 21 }],
    ["an invalid DHCPv4 message", { ...q, dhcp4: { ...DISCOVER, xid: -1 } }],
    ["a server address that does not parse", { ...q, dhcp4o6Servers: ["2001:db8::g"] }],
    ["a server address in IPv4 form", { ...q, dhcp4o6Servers: ["192.0.2.1"] }],
    ["a 2-byte client id", { ...q, clientId: Uint8Array.of(0, 3) }],
    ["a 131-byte server id", { ...q, serverId: new Uint8Array(131) }],
    ["an unknown option 87", { ...q, unknown: [{ code: 87, data: new Uint8Array(0) }] }],
    ["an unknown option 88", { ...q, unknown: [{ code: 88, data: new Uint8Array(0) }] }],
    ["an unknown option 1", { ...q, unknown: [{ code: 1, data: DUID_C }] }],
    ["an unknown code 65536", { ...q, unknown: [{ code: 65536, data: new Uint8Array(0) }] }],
    [
      "a DHCPv4 message over 65535 bytes",
      {
        ...q,
        dhcp4: dhcp4(Dhcp4MessageType.DISCOVER, {
          unknown: [{ code: 224, data: new Uint8Array(66000) }],
        }),
      },
    ],
  ];
  for (const [name, msg] of envelopeCases) {
    test(`encodeDhcp4o6() throws RangeError on ${name}`, () => {
      expect(() => encodeDhcp4o6(msg)).toThrow(RangeError);
    });
  }

  const ask = DHCP6["INFORMATION-REQUEST asking for option 88"]!;
  const dhcp6Cases: [string, Dhcp6Message][] = [
    ["type 20", { ...ask, type: 20 as 11 }],
    ["type 12", { ...ask, type: 12 as 11 }],
    ["xid 2^24", { ...ask, xid: 0x1000000 }],
    ["ORO code 65536", { ...ask, oro: [65536] }],
    ["elapsed time 65536", { ...ask, elapsedTime: 65536 }],
    ["SOLICIT without client id", { type: 1, xid: 1 }],
    ["SOLICIT with a server id", { type: 1, xid: 1, clientId: DUID_C, serverId: DUID_S }],
    ["REPLY without server id", { type: 7, xid: 1 }],
    ["an unknown option 6", { ...ask, unknown: [{ code: 6, data: Uint8Array.of(0, 88) }] }],
    [
      "unknown data over 65535 bytes",
      { ...ask, unknown: [{ code: 99, data: new Uint8Array(65536) }] },
    ],
  ];
  for (const [name, msg] of dhcp6Cases) {
    test(`encodeDhcp6() throws RangeError on ${name}`, () => {
      expect(() => encodeDhcp6(msg)).toThrow(RangeError);
    });
  }

  test("a refused DHCPv4 message leaves the buffer untouched", () => {
    const buf = new Uint8Array(400).fill(0xa5);
    expect(() => encodeDhcp4o6({ ...q, dhcp4: { ...DISCOVER, secs: 70000 } }, buf)).toThrow(
      RangeError,
    );
    expect(buf.every((b) => b === 0xa5)).toBe(true);
  });

  test("an offset past the end is truncated", () => {
    const r = decodeDhcp4o6(QUERY, QUERY.length + 1);
    expect(r.ok ? "ok" : r.error.code).toBe("truncated");
  });

  test("throws RangeError when the buffer is too small", () => {
    const length = dhcp4o6EncodingLength(q);
    expect(() => encodeDhcp4o6(q, new Uint8Array(length - 1))).toThrow(RangeError);
    expect(() => encodeDhcp4o6(q, new Uint8Array(length + 2), 3)).toThrow(RangeError);
    expect(() => encodeDhcp6(ask, new Uint8Array(dhcp6EncodingLength(ask) - 1))).toThrow(
      RangeError,
    );
  });
});

// --- fuzz ----------------------------------------------------------------------------------

const KNOWN_CODES = new Set<string>(DHCP6_DECODE_ERROR_CODES);

describe("fuzz", () => {
  test("20,000 random buffers never make either decoder throw", () => {
    const random = prng(0x4064);
    const outcomes4o6 = new Map<string, number>();
    const outcomes6 = new Map<string, number>();
    const codes = [1, 2, 6, 8, 13, 87, 88];
    const buffers = randomBuffers(
      random,
      20_000,
      () => Math.floor(random() * 160),
      (bytes, i) => {
        if (i % 2 !== 0 || bytes.length < 4) return;
        // half get a plausible type and well-framed options
        bytes[0] = [1, 2, 3, 7, 11, 20, 21][Math.floor(random() * 7)]!;
        for (let p = 4; p + 4 <= bytes.length; ) {
          const len = Math.min(Math.floor(random() * 40), bytes.length - p - 4);
          const code = codes[Math.floor(random() * codes.length)]!;
          bytes.set([0, code, 0, len], p);
          p += 4 + len;
        }
      },
    );
    for (const bytes of buffers) {
      expectSaneDecode(ENVELOPE_CODEC, bytes, KNOWN_CODES, outcomes4o6);
      expectSaneDecode(DHCP6_CODEC, bytes, KNOWN_CODES, outcomes6);
    }
    expect(outcomes6.get("ok")).toBeGreaterThan(0);
    expect(outcomes4o6.size).toBeGreaterThan(6);
    expect(outcomes6.size).toBeGreaterThan(6);
  });

  test("20,000 mutations and truncations of valid messages never make either decoder throw", () => {
    const valid = [
      ...Object.values(ENVELOPES).map((m) => encodeDhcp4o6(m)),
      ...Object.values(DHCP6).map((m) => encodeDhcp6(m)),
    ];
    const outcomes = new Map<string, number>();
    // a third of the mutations hit the headers (envelope and DHCPv4), where types are
    const mutations = mutatedBuffers(prng(0x7341), 20_000, valid, {
      maxHits: 3,
      focus: { from: 0, to: 12, share: 0.3 },
    });
    for (const [bytes, which] of mutations) {
      const codec = which < Object.keys(ENVELOPES).length ? ENVELOPE_CODEC : DHCP6_CODEC;
      expectSaneDecode(codec as TestCodec<unknown>, bytes, KNOWN_CODES, outcomes);
    }
    expect(outcomes.get("ok")).toBeGreaterThan(0);
    expect(outcomes.size).toBeGreaterThan(8);
  });
});
