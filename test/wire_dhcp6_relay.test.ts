/**
 * RFC 8415 relay framing (lib/wire/dhcp6_relay.ts): RELAY-FORW / RELAY-REPL byte layout,
 * round trips, nesting, and every decode error.
 */
import { describe, expect, test } from "bun:test";
import {
  DHCP6_MAX_RELAY_DEPTH,
  type Dhcp6RelayMessage,
  decodeDhcp6Relay,
  dhcp6RelayEncodingLength,
  encodeDhcp6Relay,
  unwrapRelays,
  wrapRelayReply,
} from "../lib/wire/dhcp6_relay.ts";

const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ""), "hex"));
const INNER = hex("14000000 0057 0000"); // a DHCPV4-QUERY header + empty option 87 (not decoded here)

const FORW: Dhcp6RelayMessage = {
  type: 12,
  hopCount: 0,
  linkAddress: "2001:db8:6::1",
  peerAddress: "fe80::200:5eff:fe10:22",
  interfaceId: new TextEncoder().encode("ge-0/0/7"),
  unknown: [{ code: 37, data: hex("00000de9 6162") }],
  relayMessage: INNER,
};

describe("RELAY-FORW / RELAY-REPL", () => {
  test("the exact bytes: header, interface-id, other options, relay message last", () => {
    expect(Buffer.from(encodeDhcp6Relay(FORW)).toString("hex")).toBe(
      [
        "0c00", // RELAY-FORW, hop-count 0
        "20010db8000600000000000000000001", // link-address
        "fe8000000000000002005efffe100022", // peer-address
        "00120008",
        "67652d302f302f37", // OPTION_INTERFACE_ID "ge-0/0/7"
        "00250006",
        "00000de96162", // OPTION_REMOTE_ID, kept raw
        "00090008",
        "1400000000570000", // OPTION_RELAY_MSG
      ].join(""),
    );
    expect(dhcp6RelayEncodingLength(FORW)).toBe(34 + 12 + 10 + 12);
  });

  test("round trip, also at an offset of a larger buffer", () => {
    const bytes = encodeDhcp6Relay(FORW);
    const r = decodeDhcp6Relay(bytes);
    expect(r.ok && r.value).toEqual(FORW);
    const big = new Uint8Array(bytes.length + 9);
    encodeDhcp6Relay({ ...FORW, type: 13 }, big, 5);
    const at = decodeDhcp6Relay(big, 5, bytes.length);
    expect(at.ok && at.value.type).toBe(13);
    expect(at.ok && at.offset).toBe(5 + bytes.length);
  });

  test("nested relays unwrap outermost first; the reply chain echoes each envelope (RFC 8415 §19.3)", () => {
    const outer: Dhcp6RelayMessage = {
      type: 12,
      hopCount: 1,
      linkAddress: "::",
      peerAddress: "2001:db8:6::1",
      relayMessage: encodeDhcp6Relay(FORW),
    };
    const opened = unwrapRelays(encodeDhcp6Relay(outer));
    if (!opened.ok) throw new Error(opened.error.message);
    expect(opened.value.relays.map((r) => r.hopCount)).toEqual([1, 0]);
    expect(opened.value.relays.at(-1)!.peerAddress).toBe("fe80::200:5eff:fe10:22");
    expect(opened.value.inner).toEqual(INNER);
    const answer = hex("15000000 0057 0000");
    const reply = wrapRelayReply(opened.value.relays, answer);
    const back = unwrapRelays(reply, 13);
    if (!back.ok) throw new Error(back.error.message);
    expect(back.value.inner).toEqual(answer);
    expect(back.value.relays).toEqual([
      {
        type: 13,
        hopCount: 1,
        linkAddress: "::",
        peerAddress: "2001:db8:6::1",
        relayMessage: back.value.relays[0]!.relayMessage,
      },
      {
        type: 13,
        hopCount: 0,
        linkAddress: "2001:db8:6::1",
        peerAddress: "fe80::200:5eff:fe10:22",
        // interface-id echoed; the remote-id (37) is the relay's own, not echoed
        interfaceId: FORW.interfaceId,
        relayMessage: answer,
      },
    ]);
    // Not relayed: the answer itself.
    expect(wrapRelayReply([], answer)).toBe(answer);
  });

  test("decode errors", () => {
    const good = encodeDhcp6Relay(FORW);
    const code = (b: Uint8Array) => {
      const r = decodeDhcp6Relay(b);
      return r.ok ? "ok" : r.error.code;
    };
    expect(code(good.subarray(0, 33))).toBe("truncated");
    expect(code(Uint8Array.of(20, ...good.subarray(1)))).toBe("bad-msg-type");
    expect(code(good.subarray(0, good.length - 1))).toBe("truncated-option");
    expect(code(good.subarray(0, 36))).toBe("truncated-option");
    expect(code(encodeDhcp6Relay({ ...FORW, relayMessage: INNER }).subarray(0, 34 + 12 + 10))).toBe(
      "missing-option",
    );
    const twice = Uint8Array.of(...good, 0, 9, 0, 1, 0);
    expect(code(twice)).toBe("duplicate-option");
    const twoIds = Uint8Array.of(...good, 0, 18, 0, 1, 0);
    expect(code(twoIds)).toBe("duplicate-option");
    expect(decodeDhcp6Relay(good, -1).ok).toBe(false);
    expect(decodeDhcp6Relay(good, 0, good.length + 1).ok).toBe(false);
  });

  test("more than DHCP6_MAX_RELAY_DEPTH nested RELAY-FORWs is too-deep, not a stack overflow", () => {
    let msg: Uint8Array = INNER;
    for (let i = 0; i <= DHCP6_MAX_RELAY_DEPTH; i++)
      msg = encodeDhcp6Relay({ ...FORW, hopCount: i % 256, relayMessage: msg });
    const r = unwrapRelays(msg);
    expect(r.ok ? "ok" : r.error.code).toBe("too-deep");
  });

  test("encode refuses what it could not decode back", () => {
    expect(() => encodeDhcp6Relay({ ...FORW, hopCount: 256 })).toThrow(RangeError);
    expect(() => encodeDhcp6Relay({ ...FORW, linkAddress: "nope" })).toThrow(RangeError);
    expect(() => encodeDhcp6Relay({ ...FORW, relayMessage: new Uint8Array(70_000) })).toThrow(
      RangeError,
    );
    expect(() => encodeDhcp6Relay(FORW, new Uint8Array(10))).toThrow(RangeError);
  });
});
