/**
 * Red team of formatIPv6's scratch array (lib/net/addr.ts: the text written as ASCII into a
 * module-level array and decoded through one of 40 views of it): every RFC 5952 §4 shape —
 * each of the 256 patterns of zero groups (so ::, ::1, single zero groups, runs first, last,
 * in the middle, two runs of equal length) with group values of 1 to 4 hex digits, at odd
 * offsets of larger arrays — against ip-address's correctForm, parsed back to the same bytes;
 * IPv4-mapped and -compatible forms written in hex (§5 only recommends the dotted form);
 * strings returned earlier unchanged by later calls (no view of the scratch array escapes);
 * and Workers formatting at the same time as the main thread (each has its own array).
 */
import { describe, expect, test } from "bun:test";
import { Address6 } from "ip-address";
import { formatIPv6, parseIPv6 } from "../lib/net/addr.ts";
import { prng } from "./helpers/fuzz.ts";

const VALUES = [1, 0xa, 0x10, 0xab, 0x100, 0xabc, 0x1000, 0xabcd, 0xffff];

function shapes(random: () => number, per: number): { bytes: Uint8Array; at: number }[] {
  const out: { bytes: Uint8Array; at: number }[] = [];
  for (let mask = 0; mask < 256; mask++) {
    for (let r = 0; r < per; r++) {
      const at = r % 7;
      const bytes = new Uint8Array(at + 16 + 5).fill(0xee);
      for (let g = 0; g < 8; g++) {
        const v = mask & (1 << g) ? VALUES[(random() * VALUES.length) | 0]! : 0;
        bytes[at + 2 * g] = v >> 8;
        bytes[at + 2 * g + 1] = v & 255;
      }
      out.push({ bytes, at });
    }
  }
  return out;
}

const reference = (bytes: Uint8Array, at: number) => {
  const groups: string[] = [];
  for (let g = 0; g < 8; g++)
    groups.push(
      (((bytes[at + 2 * g] as number) << 8) | (bytes[at + 2 * g + 1] as number)).toString(16),
    );
  return new Address6(groups.join(":")).correctForm();
};

describe("atk21: formatIPv6", () => {
  test("every zero-group pattern at odd offsets is ip-address's canonical form and parses back", () => {
    const all = shapes(prng(5952), 12);
    const texts = all.map(({ bytes, at }) => formatIPv6(bytes, at));
    for (const [i, { bytes, at }] of all.entries()) {
      expect(texts[i]).toBe(reference(bytes, at));
      expect(parseIPv6(texts[i]!)).toEqual(bytes.slice(at, at + 16));
    }
    // Strings returned earlier are not changed by the calls after them.
    const again = all.map(({ bytes, at }) => formatIPv6(bytes, at));
    expect(texts).toEqual(again);
    expect(formatIPv6(new Uint8Array(16))).toBe("::");
    expect(formatIPv6(parseIPv6("::1")!)).toBe("::1");
    expect(formatIPv6(parseIPv6("::ffff:192.0.2.1")!)).toBe("::ffff:c000:201");
    expect(formatIPv6(parseIPv6("::192.0.2.1")!)).toBe("::c000:201");
    expect(formatIPv6(parseIPv6("1:0:0:2:0:0:3:4")!)).toBe("1::2:0:0:3:4");
    expect(formatIPv6(parseIPv6("1:0:2:3:4:5:6:7")!)).toBe("1:0:2:3:4:5:6:7");
    expect(formatIPv6(parseIPv6("1:2:3:4:5:6:7:0")!)).toBe("1:2:3:4:5:6:7:0");
    expect(formatIPv6(parseIPv6("0:0:1:0:0:0:1:0")!)).toBe("0:0:1::1:0");
  });

  test("Workers formatting at the same time as the main thread give the same texts", async () => {
    const source = `
      import { formatIPv6 } from ${JSON.stringify(new URL("../lib/net/addr.ts", import.meta.url).href)};
      self.onmessage = (e) => {
        const { flat, count } = e.data;
        const out = [];
        for (let round = 0; round < 20; round++)
          for (let i = 0; i < count; i++) out[i] = formatIPv6(flat, 16 * i);
        postMessage(out);
      };`;
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    const count = 4096;
    const flat = new Uint8Array(16 * count);
    const random = prng(77);
    for (let i = 0; i < flat.length; i++) flat[i] = random() < 0.4 ? 0 : (random() * 256) | 0;
    const expected = Array.from({ length: count }, (_, i) => reference(flat, 16 * i));
    const workers = [new Worker(url), new Worker(url)];
    try {
      const results = workers.map(
        (w) =>
          new Promise<string[]>((resolve, reject) => {
            w.onmessage = (e) => resolve(e.data as string[]);
            w.onerror = (e) => reject(new Error(String(e.message)));
            w.postMessage({ flat, count });
          }),
      );
      const mine: string[] = [];
      for (let round = 0; round < 20; round++)
        for (let i = 0; i < count; i++) mine[i] = formatIPv6(flat, 16 * i);
      expect(mine).toEqual(expected);
      for (const r of await Promise.all(results)) expect(r).toEqual(expected);
    } finally {
      for (const w of workers) w.terminate();
      URL.revokeObjectURL(url);
    }
  });
});
