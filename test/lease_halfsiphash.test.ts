/**
 * HalfSipHash-2-4 (lib/lease/halfsiphash.ts) against the reference's test vectors (32-bit
 * result: `vectors_hsip32` of https://github.com/veorq/SipHash vectors.h, key 00 01 … 07,
 * message i the bytes 00 01 … i−1), the text form against the bytes form, and holderHash
 * keyed: the same text hashes alike within a process, and FNV-1a's colliding pair does not
 * collide any more.
 */
import { expect, test } from "bun:test";
import { halfSipHash24, halfSipHashText } from "../lib/lease/halfsiphash.ts";
import { holderHash } from "../lib/lease/holder_index.ts";

/** vectors_hsip32: the 4 result bytes of each message, as hex, little-endian. */
const VECTORS = [
  "a9359f5b",
  "27475ab8",
  "fa62a603",
  "8afee704",
  "2a6e4689",
  "c5fab669",
  "5863fc23",
  "8bcf63c5",
  "d0b8848f",
  "f806e779",
  "94b07934",
  "08083050",
  "57f0872f",
  "77e663ff",
  "d6fff87c",
  "74fe2b97",
  "d9b5ac84",
  "c474645b",
  "465b8d9b",
  "7befe387",
  "e34d1045",
  "613f62b3",
  "70f367fe",
  "e6adb8bd",
  "27400c63",
  "26787875",
  "4f567b5f",
  "3ab0e669",
  "b0644000",
  "ff670fb4",
  "509e338b",
  "5d589f1a",
  "fee72112",
  "33753259",
  "6a434f8c",
  "fe28b729",
  "e75cc6ec",
  "697e8d54",
  "63688b0f",
  "650b62b4",
  "b6bc1840",
  "5d074505",
  "2442fd2e",
  "7bb7863a",
  "7705d548",
  "d75208b1",
  "b6d499c8",
  "0892202e",
  "69e12ce3",
  "8db580e5",
  "369764c6",
  "016e0204",
  "3b85f3d4",
  "fedb66be",
  "1e692a3a",
  "c68984c0",
  "a5c5b940",
  "9be9e88c",
  "7dbc8140",
  "7c078ec5",
  "d4e76c73",
  "428fcbb9",
  "bd83997a",
  "59ea4a74",
];
const K0 = 0x03020100;
const K1 = 0x07060504;
const littleEndian = (hex: string) =>
  Number.parseInt(hex.match(/../g)?.reverse().join("") ?? "", 16);

test("HalfSipHash-2-4, 32-bit result: the reference's 64 test vectors", () => {
  const message = Uint8Array.from({ length: 64 }, (_, i) => i);
  const got = VECTORS.map((_, i) => halfSipHash24(K0, K1, message, i));
  expect(got).toEqual(VECTORS.map(littleEndian));
});

test("the text form hashes the ISO 8859-1 bytes of the text; a wider code unit takes the other key", () => {
  for (const text of [
    "",
    "a",
    "2001:db8::1",
    "id:0102030405060708090a",
    "hw:1:02005e0000aa",
    "\u00ff\u0080x",
  ]) {
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    expect(halfSipHashText(K0, K1, text)).toBe(halfSipHash24(K0, K1, bytes));
  }
  // "\u0161" is one unit above 255: hashed as its two bytes 61 01 under the inverted key, so
  // unlike "a\u0001" (the same bytes, one byte a unit).
  const wide = halfSipHashText(K0, K1, "\u0161");
  expect(wide).toBe(halfSipHash24(~K0, K1, Uint8Array.of(0x61, 0x01)));
  expect(wide).not.toBe(halfSipHashText(K0, K1, "a\u0001"));
});

test("holderHash is keyed: stable within the process, FNV-1a's colliding pair apart", () => {
  const [a, b] = ["2001:db8:4:b29a::1", "2001:db8:8:a4d9::1"];
  expect(holderHash(a)).toBe(holderHash(`${a}`));
  expect(holderHash(a)).not.toBe(holderHash(b));
  // Spread: 100,000 addresses in host order fill 2^16 buckets about evenly.
  const buckets = new Uint32Array(1 << 16);
  for (let i = 0; i < 100_000; i++) {
    const bucket = holderHash(
      `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`,
    );
    buckets[bucket & 0xffff] = (buckets[bucket & 0xffff] as number) + 1;
  }
  expect(Math.max(...buckets)).toBeLessThan(16);
});
