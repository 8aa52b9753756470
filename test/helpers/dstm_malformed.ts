/**
 * Malformed DSTM messages, one or more for every decode error code of lib/wire/dstm.ts, built
 * byte by byte (not with the encoder, which refuses to write them).
 */
import { parseIPv6 } from "../../lib/net/addr.ts";

const HOST6 = "2001:db8:1::25";
const TEP6 = "2001:db8::1";
const NONCE = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8];

/** [decode error code, message bytes]: one or more messages for every code the decoder has. */
export function malformedCases(): [string, Uint8Array][] {
  const msg = (
    type: number,
    options: number[][],
    header: Partial<Record<"version" | "flags" | "reserved" | "length", number>> = {},
  ) => {
    const body = options.flat();
    const out = new Uint8Array(12 + body.length);
    const view = new DataView(out.buffer);
    out[0] = header.version ?? 1;
    out[1] = type;
    view.setUint16(2, header.flags ?? 0);
    view.setUint32(4, 0xbad);
    view.setUint16(8, header.length ?? out.length);
    view.setUint16(10, header.reserved ?? 0);
    out.set(body, 12);
    return out;
  };
  const v6 = (text: string) => [...parseIPv6(text)!];
  const H6 = [2, 16, ...v6(HOST6)];
  const H4 = [1, 4, 192, 0, 2, 9];
  const T6 = [4, 16, ...v6(TEP6)];
  const SY = [9, 8, 0, 0, 0, 0, 0, 0, 0, 0];
  const MISSING = [0x81, 10, 0, 0, 0, 1, 0, 9, 0, 1, 0, 2];
  const GEN = [0x82, 8, 0, 0, 0, 0, 0, 0, 0, 7];
  const auth = (hi = 0) => [
    8,
    52,
    0,
    0,
    0,
    7,
    hi >> 24,
    (hi >> 16) & 255,
    (hi >> 8) & 255,
    hi & 255,
    0,
    0,
    0,
    1,
    ...NONCE,
    ...new Uint8Array(32),
  ];
  const B = (ip4: number[], ip6: number[], ps: number[]) => [11, 24, ...ip4, ...ip6, ...ps];
  return [
    ["truncated", Uint8Array.of(1, 1, 0, 0, 0, 0, 0, 1)],
    ["bad-version", msg(2, [H6], { version: 2 })],
    ["unknown-type", msg(13, [H6])],
    ["unknown-type", msg(0, [H6])],
    ["bad-flags", msg(1, [H6], { flags: 0x8000 })],
    ["bad-reserved", msg(1, [H6], { reserved: 1 })],
    ["bad-length", msg(1, [H6], { length: 11 })],
    ["too-long", msg(1, [H6], { length: 1233 })],
    ["truncated", msg(1, [H6], { length: 31 })],
    ["truncated-option", msg(1, [H6, [0x80]])],
    ["truncated-option", msg(1, [H6, [6, 4, 0, 0]])],
    ["unknown-option", msg(1, [H6, [0x20, 0]])],
    ["unknown-option", msg(1, [[0, 0], H6])],
    ["option-not-allowed", msg(1, [H6, [4, 16, ...v6(TEP6)]])],
    ["option-not-allowed", msg(12, [[10, 8, 0, 0, 0, 1, 0, 0, 0, 1], H4])],
    ["duplicate-option", msg(1, [H6, H6])],
    ["bad-option-length", msg(1, [H6, [1, 5, 192, 0, 2, 9, 0]])],
    ["bad-option-length", msg(7, [[7, 1, 0]])],
    ["auth-not-last", msg(1, [H6, auth(), [0x80, 0]])],
    ["bad-address", msg(1, [[2, 16, ...v6("::")]])],
    ["bad-address", msg(1, [[2, 16, ...v6("ff02::1")]])],
    ["bad-address", msg(3, [H6, [1, 4, 255, 255, 255, 255]])],
    [
      "bad-address",
      msg(12, [[10, 8, 0, 0, 0, 1, 0, 0, 0, 1], B([0, 0, 0, 0], v6(HOST6), [0, 0, 0, 0])]),
    ],
    ["bad-port-set", msg(8, [H4, H6, [5, 4, 10, 8, 0, 0]])],
    ["bad-port-set", msg(8, [H4, H6, [5, 4, 6, 2, 0x40, 1]])],
    ["bad-port-set", msg(8, [H4, H6, [5, 4, 6, 0, 0x40, 0]])],
    [
      "bad-port-set",
      msg(12, [[10, 8, 0, 0, 0, 1, 0, 0, 0, 1], B([198, 51, 100, 9], v6(HOST6), [16, 0, 0, 0])]),
    ],
    ["bad-lease-time", msg(1, [H6, [6, 4, 0, 0, 0, 0]])],
    ["bad-status", msg(7, [[7, 2, 0, 99]])],
    ["bad-status", msg(7, [[7, 2, 0, 0]])],
    ["bad-status", msg(6, [H4, H6, [7, 2, 0, 1]])],
    ["bad-text", msg(7, [[7, 4, 0, 1, 0xc3, 0x28]])],
    ["bad-text", msg(7, [[7, 5, 0, 1, 0xed, 0xa0, 0x80]])],
    ["bad-text", msg(7, [[7, 4, 0, 1, 0xe2, 0x82]])],
    ["bad-auth", msg(1, [H6, auth(0x200000)])],
    ["missing-option", msg(1, [H4])],
    ["missing-option", msg(11, [[4, 16, ...v6(TEP6)]])],
    ["bad-snapshot", msg(12, [[10, 8, 0, 0, 0, 1, 0, 2, 0, 2]])],
    ["bad-generation", msg(8, [H4, H6, [0x82, 8, 0, 0x20, 0, 0, 0, 0, 0, 0]])],
    ["bad-option-length", msg(9, [H4, H6, [0x82, 4, 0, 0, 0, 1]])],
    ["duplicate-option", msg(12, [[10, 8, 0, 0, 0, 1, 0, 0, 0, 1], GEN, GEN])],
    ["bad-option-length", msg(2, [[0x80, 1, 0]])],
    [
      "duplicate-option",
      msg(2, [
        [0x80, 0],
        [0x80, 0],
      ]),
    ],
    // SNAPSHOT_MISSING (0x81) in SYNC: 6 + 4n bytes, n ≥ 1, once.
    ["bad-option-length", msg(11, [T6, SY, [0x81, 6, 0, 0, 0, 1, 0, 9]])],
    ["bad-option-length", msg(11, [T6, SY, [0x81, 11, 0, 0, 0, 1, 0, 9, 0, 1, 0, 2, 0]])],
    ["duplicate-option", msg(11, [T6, SY, MISSING, MISSING])],
  ];
}
