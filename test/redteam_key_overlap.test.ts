/**
 * Red team on key rotation (lib/control/key_ring.ts, lib/server/reload.ts): the key a reload
 * replaced must be accepted for exactly `--key-overlap`, however long. One setTimeout cannot
 * wait more than 2^31 − 1 ms (~24.8 days): given `--key-overlap 30d` it fired after 1 ms, so
 * the old key was retired at once and every host (or the server, for a TEP) still signing
 * with it was refused at the moment the operator believed it had a month to move them.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { afterOverlap, KeyRing, MAX_TIMER_MS } from "../lib/control/key_ring.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { applyReload, type ReloadTarget } from "../lib/server/reload.ts";
import type { ServerConfig } from "../lib/server/server.ts";
import { type AuthKey, generateKeyFileText, parseKeyFile } from "../lib/wire/auth.ts";
import { capturedLog } from "./helpers/captured_log.ts";
import { startEngine } from "./helpers/engine.ts";

const DAY_MS = 86_400_000;

function key(id: number): AuthKey {
  const parsed = parseKeyFile(generateKeyFileText(id));
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.keys[0]!;
}

/**
 * Lets every timer due within `ms` run: a timer armed now with a shorter delay fires before
 * this one (timers fire in order of due time), so an overflowed (1 ms) overlap shows.
 */
const timersDue = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const timers: Set<ReturnType<typeof setTimeout>>[] = [];
afterEach(() => {
  for (const set of timers.splice(0)) for (const t of set) clearTimeout(t);
});

describe("a key overlap longer than a timer can wait", () => {
  test("TEP/client KeyRing: rotated with a 30-day overlap, the old key is still accepted", async () => {
    const oldKey = key(1);
    const ring = new KeyRing(oldKey);
    expect(ring.rotate(key(2), 30 * DAY_MS)).toBe(oldKey);
    await timersDue(50);
    expect([...ring.accepted.keys()].sort()).toEqual([1, 2]);
    ring.close();
  });

  test("server reload: a host key dropped with --key-overlap 30d is still accepted", async () => {
    const { engine } = await startEngine([{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }]);
    const oldKey = key(1);
    const newKey = key(2);
    const keys = new Map([[oldKey.id, oldKey]]);
    const { log, lines } = capturedLog();
    const metrics = new Metrics();
    metrics.counter("dstm_reloads_total", "Reloads, by result");
    const target: ReloadTarget = {
      engine,
      admission: undefined,
      keys,
      keyTimers: new Set(),
      teps: new Set(["2001:db8::1"]),
      log,
      metrics,
    };
    timers.push(target.keyTimers);
    const config = {
      pools: [{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }],
      leaseTime: 600,
      listen: { address: "::1", port: 4607 },
      keys: [oldKey],
    } as unknown as ServerConfig;
    const next = { ...config, keys: [newKey], keyOverlapSeconds: 30 * 86_400 } as ServerConfig;
    expect(applyReload(target, config, next, "test").ok).toBe(true);
    await timersDue(50);
    expect([...keys.keys()].sort()).toEqual([1, 2]);
    expect(lines().join("\n")).not.toContain("key-retired");
  });

  test("afterOverlap waits in steps of at most 2^31 − 1 ms, and retires once the sum is reached", () => {
    // A recording setTimeout: the delays asked for, fired by hand.
    const armed: { fn: () => void; ms: number }[] = [];
    const real = globalThis.setTimeout;
    globalThis.setTimeout = ((fn: () => void, ms: number) => {
      armed.push({ fn, ms });
      return { unref() {} } as unknown as ReturnType<typeof setTimeout>;
    }) as unknown as typeof setTimeout;
    let retired = 0;
    const set = new Set<ReturnType<typeof setTimeout>>();
    try {
      afterOverlap(60 * DAY_MS, set, () => retired++);
      for (let i = 0; i < 10 && retired === 0; i++) armed[i]!.fn();
    } finally {
      globalThis.setTimeout = real;
    }
    expect(armed.every((a) => a.ms >= 0 && a.ms <= MAX_TIMER_MS)).toBe(true);
    expect(armed.reduce((sum, a) => sum + a.ms, 0)).toBe(60 * DAY_MS);
    expect(armed.length).toBe(Math.ceil((60 * DAY_MS) / MAX_TIMER_MS));
    expect(retired).toBe(1);
    expect(set.size).toBe(0);
  });

  test("an overlap of 0 still retires the old key at once", async () => {
    const ring = new KeyRing(key(1));
    ring.rotate(key(2), 0);
    await timersDue(20);
    expect([...ring.accepted.keys()]).toEqual([2]);
    ring.close();
  });
});

describe("reloads during a key overlap", () => {
  /** A reload target over a fresh engine whose host keys start as `keys`; setTimeout recorded. */
  async function target(keys: AuthKey[]) {
    const { engine } = await startEngine([{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }]);
    const { log, lines } = capturedLog();
    const metrics = new Metrics();
    metrics.counter("dstm_reloads_total", "Reloads, by result");
    const map = new Map(keys.map((k) => [k.id, k]));
    const t: ReloadTarget = {
      engine,
      admission: undefined,
      keys: map,
      keyTimers: new Set(),
      teps: new Set(["2001:db8::1"]),
      log,
      metrics,
    };
    timers.push(t.keyTimers);
    const config = (k: AuthKey[]) =>
      ({
        pools: [{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }],
        leaseTime: 600,
        listen: { address: "::1", port: 4607 },
        keys: k,
        keyOverlapSeconds: 3600,
      }) as unknown as ServerConfig;
    return { t, map, lines, config };
  }

  test("a second reload within the overlap does not restart the dropped key's overlap", async () => {
    // Before: every reload found the retiring key still in the map, "dropped" it again and
    // armed a new full overlap, so a server reloaded more often than --key-overlap (config
    // management, a cron SIGHUP) accepted the old key for ever.
    const armed: { fn: () => void; ms: number }[] = [];
    const real = globalThis.setTimeout;
    const oldKey = key(1);
    const newKey = key(2);
    const s = await target([oldKey]);
    globalThis.setTimeout = ((fn: () => void, ms: number) => {
      armed.push({ fn, ms });
      return { unref() {} } as unknown as ReturnType<typeof setTimeout>;
    }) as unknown as typeof setTimeout;
    try {
      expect(applyReload(s.t, s.config([oldKey]), s.config([newKey]), "test").ok).toBe(true);
      expect(applyReload(s.t, s.config([newKey]), s.config([newKey]), "test").ok).toBe(true);
      expect(applyReload(s.t, s.config([newKey]), s.config([newKey]), "test").ok).toBe(true);
    } finally {
      globalThis.setTimeout = real;
    }
    expect(armed.map((a) => a.ms)).toEqual([3_600_000]); // one overlap, from the first reload
    expect(s.lines().filter((l) => l.includes("key-overlap"))).toHaveLength(1);
    armed[0]!.fn(); // the hour has passed
    expect([...s.map.keys()]).toEqual([2]);
  });

  for (const [how, back] of [
    ["read again (a new object)", (k: AuthKey) => ({ ...k })],
    ["the same object", (k: AuthKey) => k],
  ] as const)
    test(`a key put back in the file during its overlap is kept after the overlap (${how})`, async () => {
      const oldKey = key(1);
      const newKey = key(2);
      const s = await target([oldKey]);
      const armed: (() => void)[] = [];
      const real = globalThis.setTimeout;
      globalThis.setTimeout = ((fn: () => void) => {
        armed.push(fn);
        return { unref() {} } as unknown as ReturnType<typeof setTimeout>;
      }) as unknown as typeof setTimeout;
      try {
        applyReload(s.t, s.config([oldKey]), s.config([newKey]), "test");
        applyReload(s.t, s.config([newKey]), s.config([newKey, back(oldKey)]), "test");
      } finally {
        globalThis.setTimeout = real;
      }
      for (const fn of armed) fn();
      expect([...s.map.keys()].sort()).toEqual([1, 2]);
    });
});

describe("the server's TEP key file read again (KeyRing.replace)", () => {
  test("a 30-day overlap keeps the dropped key accepted (no 1 ms timer overflow)", async () => {
    const oldKey = key(1);
    const ring = new KeyRing(oldKey);
    expect(ring.replace([key(2)], 30 * DAY_MS).map((k) => k.id)).toEqual([1]);
    await timersDue(50);
    expect([...ring.accepted.keys()].sort()).toEqual([1, 2]);
    ring.close();
  });

  test("a reload during the overlap neither reports the key again nor extends its overlap", async () => {
    const oldKey = key(1);
    const newKey = key(2);
    const ring = new KeyRing(oldKey);
    const retired: number[] = [];
    const onRetired = (keys: readonly AuthKey[]) => retired.push(...keys.map((k) => k.id));
    expect(ring.replace([newKey], 300, onRetired).map((k) => k.id)).toEqual([1]);
    await timersDue(150);
    // The same file read again half-way through: nothing new overlaps.
    expect(ring.replace([newKey], 300, onRetired)).toEqual([]);
    await timersDue(250); // past the first overlap's end (300 ms), before a renewed one's (450)
    expect([...ring.accepted.keys()]).toEqual([2]);
    expect(retired).toEqual([1]);
    ring.close();
  });
});
