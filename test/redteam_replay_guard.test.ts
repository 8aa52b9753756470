/**
 * Red team: filling a replay guard. A compromised host holds the host key, so every message it
 * sends verifies and is remembered; the server's guard holds at most `maxEntries` (262,144)
 * (key id, nonce) pairs and, when full, drops a bucket and refuses its timestamps from then on.
 *
 * Before the fix the guard dropped the *oldest* bucket. Messages stamped up to 30 s in the
 * future are fresh, so the attacker stamped its flood 29 s ahead: the buckets it filled lived
 * longest, and the guard dropped the bucket of "now" instead, refusing every honest host's
 * message as stale for as long as the flood lasted (262,144 signed messages per 30 s, about
 * 8,700 a second). Now the guard drops the bucket farthest from now: the attacker's own.
 */
import { describe, expect, test } from "bun:test";
import { ReplayGuard } from "../lib/wire/auth.ts";

const nonce = (i: number) => {
  const n = new Uint8Array(8);
  new DataView(n.buffer).setUint32(0, i);
  new DataView(n.buffer).setUint32(4, i ^ 0x5a5a5a5a);
  return n;
};

describe("a replay guard flooded with validly signed messages", () => {
  test("a flood stamped in the future does not make honest messages stamped now stale", () => {
    const guard = new ReplayGuard({ windowMs: 30_000, maxEntries: 1000 });
    const now = 1_000_000;
    // Honest hosts: a message a second over the last 20 s.
    for (let i = 0; i < 20; i++)
      expect(guard.check(1, nonce(i), now - 20_000 + i * 1000, now)).toBe("ok");
    // The attacker: 5,000 messages stamped 29 s ahead (fresh: within ±30 s).
    for (let i = 0; i < 5000; i++) {
      guard.check(1, nonce(100_000 + i), now + 29_000, now);
      expect(guard.size).toBeLessThanOrEqual(1000);
    }
    // An honest host now: accepted, and its replay refused.
    expect(guard.check(1, nonce(50), now, now)).toBe("ok");
    expect(guard.check(1, nonce(50), now, now)).toBe("replayed");
    // The honest messages already seen are still remembered: replays refused, never accepted.
    expect(guard.check(1, nonce(19), now - 1000, now)).toBe("replayed");
    // What the attacker sent and was dropped early: refused (stale), never accepted again.
    expect(guard.check(1, nonce(100_000), now + 29_000, now)).not.toBe("ok");
  });

  test("a flood stamped in the past neither: the past buckets are dropped, not now's", () => {
    const guard = new ReplayGuard({ windowMs: 30_000, maxEntries: 1000 });
    const now = 1_000_000;
    for (let i = 0; i < 5000; i++) guard.check(1, nonce(100_000 + i), now - 29_000, now);
    expect(guard.check(1, nonce(1), now, now)).toBe("ok");
    expect(guard.check(1, nonce(100_000), now - 29_000, now)).not.toBe("ok");
  });

  test("dropped buckets are forgotten once stale: later messages in their range are accepted", () => {
    const guard = new ReplayGuard({ windowMs: 8000, maxEntries: 10 });
    for (let i = 0; i < 30; i++) guard.check(1, nonce(i), 7000, 0);
    // 7 s later "now" is inside the dropped bucket; 9 s after that it is stale and forgotten.
    const later = 7000 + 8000 + 1000 + 1;
    expect(guard.check(1, nonce(99), later, later)).toBe("ok");
  });
});
