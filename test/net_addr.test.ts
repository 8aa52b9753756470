import { describe, expect, test } from "bun:test";
import { Address6 } from "ip-address";
import { canonicalIPv6, formatIPv6, parseIPv6, parseIPv6Into } from "../lib/net/addr.ts";

/** What parseIPv6 returned before it parsed the common forms by hand: ip-address alone. */
function reference(text: string): Uint8Array | null {
  if (text.includes("/") || text.includes("%") || !text.includes(":")) return null;
  try {
    const bytes = new Address6(text).toByteArray();
    if (bytes.length > 16) return null;
    const out = new Uint8Array(16);
    out.set(bytes, 16 - bytes.length);
    return out;
  } catch {
    return null;
  }
}

describe("parseIPv6()", () => {
  test("reads the RFC 4291 §2.2 forms", () => {
    expect(canonicalIPv6("2001:0DB8:0000:0000:0008:0800:200C:417A")).toBe(
      "2001:db8::8:800:200c:417a",
    );
    expect(canonicalIPv6("::")).toBe("::");
    expect(canonicalIPv6("::1")).toBe("::1");
    expect(canonicalIPv6("1::")).toBe("1::");
    expect(canonicalIPv6("1:2:3:4:5:6:7::")).toBe("1:2:3:4:5:6:7:0");
    expect(canonicalIPv6("::ffff:192.0.2.1")).toBe("::ffff:c000:201");
    expect(canonicalIPv6("1:2:3:4:5:6:192.0.2.1")).toBe("1:2:3:4:5:6:c000:201");
  });

  test("rejects what is not an address", () => {
    for (const bad of [
      "",
      ":",
      ":1",
      "1:",
      ":::",
      "1::2::3",
      "12345::",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7:8::",
      "1:2:3:4:5:6:7",
      "::192.0.2",
      "::192.0.2.256",
      "1:2:3:4:5:6:7:192.0.2.1",
      "2001:db8::g",
      "2001:db8::1/64",
      "fe80::1%eth0",
      "192.0.2.1",
    ])
      expect([bad, parseIPv6(bad)]).toEqual([bad, null]);
  });

  test("agrees with ip-address on 140,000 random strings and spellings", () => {
    let seed = 7;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const alphabet = "0123456789abcdefABCDEF:.:::";
    const inputs: string[] = [];
    for (let t = 0; t < 100_000; t++) {
      let s = "";
      for (let i = 1 + random(40); i > 0; i--) s += alphabet[random(alphabet.length)];
      inputs.push(s);
    }
    for (let t = 0; t < 10_000; t++) {
      const b = new Uint8Array(16).map(() => (random(4) === 0 ? random(256) : 0));
      const text = formatIPv6(b);
      const groups = [...Array(8)].map((_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16));
      inputs.push(text, text.toUpperCase(), groups.map((g) => g.padStart(4, "0")).join(":"));
      inputs.push(`${groups.slice(0, 3).join(":")}::${b[12]}.${b[13]}.${b[14]}.${b[15]}`);
    }
    let differ = 0;
    for (const text of inputs) {
      const ours = parseIPv6(text);
      const theirs = reference(text);
      const same =
        ours === null || theirs === null ? ours === theirs : ours.every((x, i) => x === theirs[i]);
      if (!same && differ++ < 5) console.log("differs:", JSON.stringify(text));
    }
    expect(differ).toBe(0);
  });
});

describe("parseIPv6Into() and formatIPv6()", () => {
  /** Deterministic pseudo-random 0 ≤ n < bound. */
  let seed = 11;
  const random = (bound: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % bound;
  };
  /** 16 bytes, zero with probability 1 − 1/`sparse` each (runs of zero groups of every length). */
  const bytes = (sparse: number) =>
    new Uint8Array(16).map(() => (random(sparse) === 0 ? random(256) : 0));

  test("parseIPv6Into writes what parseIPv6 returns, and leaves `out` alone on failure", () => {
    const out = new Uint8Array(16);
    for (let t = 0; t < 20_000; t++) {
      const b = bytes(1 + (t % 5));
      const spellings = [
        formatIPv6(b),
        formatIPv6(b).toUpperCase(),
        `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`,
      ];
      for (const text of spellings) {
        expect(parseIPv6Into(text, out)).toBe(true);
        expect([text, [...out]]).toEqual([text, [...parseIPv6(text)!]]);
      }
    }
    out.fill(0xaa);
    for (const bad of [
      "",
      "::g",
      "1:2:3:4:5:6:7:8:9",
      "2001:db8::1/64",
      "fe80::1%eth0",
      "192.0.2.1",
      "1:2:3:4:5:6:7:192.0.2.1",
    ]) {
      expect([bad, parseIPv6Into(bad, out)]).toEqual([bad, false]);
      expect(out.every((x) => x === 0xaa)).toBe(true);
    }
  });

  test("formatIPv6 writes RFC 5952 text as ip-address does, at any offset", () => {
    let differ = 0;
    for (let t = 0; t < 20_000; t++) {
      const b = bytes(1 + (t % 5));
      const theirs = Address6.fromUnsignedByteArray([...b]).correctForm();
      const padded = new Uint8Array(20);
      padded.set(b, 3);
      for (const ours of [formatIPv6(b), formatIPv6(padded, 3)])
        if (ours !== theirs && differ++ < 5) console.log("differs:", ours, theirs);
    }
    expect(differ).toBe(0);
  });
});
