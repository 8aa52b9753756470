import { describe, expect, test } from "bun:test";
import type { Codec, Decoded, OptionCodec, RawOption } from "../lib/wire/codec.ts";
import {
  type Dhcp4Message,
  Dhcp4MessageType,
  type Dhcp4RawOption,
  decodeDhcp4,
  dhcp4EncodingLength,
  dhcp4OptionCodecs,
  encodeDhcp4,
} from "../lib/wire/dhcp4.ts";
import { type Dhcp6RawOption, dhcp6OptionCodecs } from "../lib/wire/dhcp4o6.ts";
import { dstmCodec } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import * as helper from "./helpers/codec.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { prng } from "./helpers/fuzz.ts";

/** A 2-byte big-endian number codec, with one fault planted by `fault`. */
function u16Codec(fault?: "length" | "spill" | "decode" | "offset"): helper.TestCodec<number> {
  return {
    encodingLength: () => (fault === "length" ? 3 : 2),
    encode(value, buf, offset = 0) {
      const out = buf ?? new Uint8Array(2);
      out[offset] = value >> 8;
      out[offset + 1] = value & 0xff;
      if (fault === "spill" && buf) out[offset + 2] = 0;
      return out.subarray(offset, offset + 2);
    },
    decode(buf, offset = 0): Decoded<number> {
      if (buf.length - offset < 2)
        return { ok: false, error: { code: "truncated", message: "2 bytes needed" } };
      const value = ((buf[offset]! << 8) | buf[offset + 1]!) + (fault === "decode" ? 1 : 0);
      return { ok: true, value, offset: offset + (fault === "offset" ? 1 : 2) };
    },
  };
}

describe("test/helpers/codec.ts", () => {
  test("checkRoundTrip() passes a sound codec and returns its bytes", () => {
    expect([...helper.checkRoundTrip(u16Codec(), 0x1234)]).toEqual([0x12, 0x34]);
    helper.checkRoundTrip(dstmCodec, { type: MessageType.DISCOVER, xid: 1, host6: "2001:db8::1" });
  });

  test("checkRoundTrip() fails a wrong length, a write past the value, a bad decode or offset", () => {
    for (const fault of ["length", "spill", "decode", "offset"] as const) {
      expect(() => helper.checkRoundTrip(u16Codec(fault), 0x1234), fault).toThrow();
    }
  });

  test("expectSaneDecode() counts outcomes and refuses an error code outside the list", () => {
    const outcomes = new Map<string, number>();
    helper.expectSaneDecode(u16Codec(), Uint8Array.of(1), new Set(["truncated"]), outcomes);
    helper.expectSaneDecode(u16Codec(), Uint8Array.of(1, 2), new Set(["truncated"]), outcomes);
    expect([...outcomes]).toEqual([
      ["truncated", 1],
      ["ok", 1],
    ]);
    expect(() =>
      helper.expectSaneDecode(u16Codec(), Uint8Array.of(1), new Set(), outcomes),
    ).toThrow("unknown code truncated");
    // a value that does not survive re-encoding
    expect(() =>
      helper.expectSaneDecode(u16Codec("decode"), Uint8Array.of(1, 2), new Set(), outcomes),
    ).toThrow();
  });

  test("expectDecodeError() wants that code, and fails on another code or a success", () => {
    helper.expectDecodeError(u16Codec(), Uint8Array.of(1), "truncated");
    expect(() => helper.expectDecodeError(u16Codec(), Uint8Array.of(1), "bad-offset")).toThrow();
    expect(() => helper.expectDecodeError(u16Codec(), Uint8Array.of(1, 2), "truncated")).toThrow();
  });

  test("the fuzz inputs are reproducible from the seed and follow the options", () => {
    const take = (seed: number) => [
      ...helper.randomBuffers(
        prng(seed),
        50,
        (i) => i % 7,
        (b, i) => void (i === 3 && b.fill(9)),
      ),
    ];
    expect(take(7)).toEqual(take(7));
    expect(take(7)[3]).toEqual(new Uint8Array(3).fill(9));
    const valid = [new Uint8Array(40), new Uint8Array(40).fill(1)];
    const mutated = [
      ...helper.mutatedBuffers(prng(1), 400, valid, {
        maxHits: 2,
        focus: { from: 0, to: 4, share: 1 },
      }),
    ];
    for (const [i, [bytes, which]] of mutated.entries()) {
      expect(which).toBe(i % 2);
      if (i % 4 === 3) expect(bytes.length).toBeLessThan(40);
      else expect(bytes.subarray(4)).toEqual(valid[which]!.subarray(4)); // hits stay in [0, 4)
    }
  });
});

describe("lib/wire/codec.ts is the one shape", () => {
  test("the DHCPv4 and DHCPv6 codecs and options fit Codec, OptionCodec and RawOption", () => {
    // Type-level: these assignments compile only while the shapes agree.
    const dhcp4: Codec<Dhcp4Message> = {
      encode: encodeDhcp4,
      decode: decodeDhcp4,
      encodingLength: dhcp4EncodingLength,
    };
    const leaseTime: OptionCodec<number> = dhcp4OptionCodecs.leaseTime;
    const elapsed: OptionCodec<number> = dhcp6OptionCodecs.elapsedTime;
    const raw: RawOption[] = [
      { code: 224, data: Uint8Array.of(1) } satisfies Dhcp4RawOption,
      { code: 65535, data: Uint8Array.of(2) } satisfies Dhcp6RawOption,
    ];
    helper.checkRoundTrip(dhcp4, dhcp4Message(Dhcp4MessageType.DISCOVER, { unknown: [raw[0]!] }), {
      passLength: true,
    });
    helper.checkRoundTrip(leaseTime, 3600, { passLength: true });
    helper.checkRoundTrip(elapsed, 65535, { passLength: true });
  });
});
