/**
 * IsoTime (lib/control/log.ts): the cached ISO 8601 text of log timestamps and lease expiries
 * must be exactly what `Date#toISOString` writes, for any order of times (the cache keeps one
 * second), at the edges of seconds and of the range it formats itself, and outside it.
 */
import { describe, expect, test } from "bun:test";
import { IsoTime, Logger } from "../lib/control/log.ts";

const iso = (ms: number) => new Date(ms).toISOString();

describe("IsoTime", () => {
  test("writes what toISOString writes, second edges and milliseconds of one, two and three digits", () => {
    const t = new IsoTime();
    const base = Date.UTC(2026, 10, 30, 15, 30, 51, 0);
    for (const ms of [
      0,
      1,
      9,
      10,
      99,
      100,
      999,
      1000,
      1001,
      base,
      base + 7,
      base + 42,
      base + 999,
    ]) {
      expect(t.format(ms)).toBe(iso(ms));
    }
  });

  test("the same time again (leases of one millisecond), then others and back, stays exact", () => {
    const t = new IsoTime();
    const ms = Date.UTC(2026, 11, 1, 7, 0, 0, 5);
    for (const at of [ms, ms, ms + 1, ms, ms, -1, -1, ms, 0.5, 0.5, ms + 1000, ms]) {
      expect([at, t.format(at)]).toEqual([at, iso(at)]);
    }
  });

  test("times out of order (the cached second changes back and forth) stay exact", () => {
    const t = new IsoTime();
    const now = Date.UTC(2026, 10, 30, 23, 59, 59, 998);
    // Across a second, a minute, an hour, a day, a month and a year boundary, back and forth.
    const year = Date.UTC(2026, 11, 31, 23, 59, 59, 999);
    const times = [now, now + 1, now + 2, now + 3_600_000, now, year, year + 1, year - 1000, 1];
    for (const ms of times) expect(t.format(ms)).toBe(iso(ms));
    // A pseudo-random walk of 20,000 times within a few seconds.
    let ms = now;
    let seed = 12345;
    for (let i = 0; i < 20_000; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      ms += (seed % 2001) - 1000;
      expect(t.format(ms)).toBe(iso(ms));
    }
  });

  test("outside 1970-9999 or not whole milliseconds: what Date writes", () => {
    const t = new IsoTime();
    const edge = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
    for (const ms of [-1, -1000, -86_400_001, edge, edge + 1, edge + 1001, 1.5]) {
      expect(t.format(ms)).toBe(iso(ms));
    }
    expect(() => t.format(Number.NaN)).toThrow(RangeError);
  });

  test("a lease line's expires and the line's own time are both exact in one logger", () => {
    const lines: string[] = [];
    let now = Date.UTC(2026, 10, 30, 8, 0, 0, 5);
    const log = new Logger({
      sink: (text) => lines.push(...text.trimEnd().split("\n")),
      now: () => now,
    });
    const expires = new IsoTime();
    const at = [now + 3_600_000, now + 3_600_090, now + 3_601_000];
    for (const e of at) {
      log.info("allocate", { ipv4: "198.18.0.1", expires: expires.format(e) });
      now += 999;
    }
    log.flush();
    expect(lines).toEqual([
      `${iso(Date.UTC(2026, 10, 30, 8, 0, 0, 5))} allocate ipv4=198.18.0.1 expires=${iso(at[0]!)}`,
      `${iso(Date.UTC(2026, 10, 30, 8, 0, 1, 4))} allocate ipv4=198.18.0.1 expires=${iso(at[1]!)}`,
      `${iso(Date.UTC(2026, 10, 30, 8, 0, 2, 3))} allocate ipv4=198.18.0.1 expires=${iso(at[2]!)}`,
    ]);
  });
});
