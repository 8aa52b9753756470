/**
 * The allocation engine against hosts that misbehave: offers that must not touch committed
 * leases (RFC 2131 §4.3.1), one prefix taking the pool, and wall-clock steps.
 */
import { describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { hostPrefixKey } from "../lib/alloc/host_prefix.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { ok, startEngine, T0 } from "./helpers/engine.ts";

const TEP6 = "2001:db8::1";
const POOL = { prefixes: ["192.0.2.0/24"], tep6: TEP6 };

describe("a DISCOVER never shortens a committed lease", () => {
  test("an offer (persist: false) to a bound host returns its lease with the same expiry, and writes nothing", async () => {
    const { engine, clock, store } = await startEngine([POOL], { leaseTime: 3600 });
    const bound = ok(await engine.discover("2001:db8:1::1"));
    const rows = await store.loadAll();
    clock.now += 10_000;
    const offered = ok(await engine.discover("2001:db8:1::1", { leaseTime: 60, persist: false }));
    expect([offered.ipv4, offered.expiresAt]).toEqual([bound.ipv4, bound.expiresAt]);
    expect(engine.lookupHost("2001:db8:1::1")?.expiresAt).toBe(bound.expiresAt);
    expect(engine.isOffer(engine.lookupHost("2001:db8:1::1"))).toBe(false);
    expect(await store.loadAll()).toEqual(rows);
    // The lease is not swept at the offer's 60 s.
    clock.now += 61_000;
    expect(await engine.sweep()).toEqual([]);
    expect(engine.lookupHost("2001:db8:1::1")?.state).toBe("active");
  });

  test("a native DISCOVER asking for 1 s keeps the longer lease; one asking for more extends it", async () => {
    const { engine, clock } = await startEngine([POOL], { leaseTime: 600, maxLeaseTime: 3600 });
    const bound = ok(await engine.discover("2001:db8:1::1"));
    clock.now += 5_000;
    const short = ok(await engine.discover("2001:db8:1::1", { leaseTime: 1 }));
    expect(short.expiresAt).toBe(bound.expiresAt);
    const longer = ok(await engine.discover("2001:db8:1::1", { leaseTime: 3600 }));
    expect(longer.expiresAt).toBe(clock.now + 3_600_000);
  });

  test("an offer not taken yet is offered again, still in memory only", async () => {
    const { engine, clock, store } = await startEngine([POOL]);
    const first = ok(await engine.discover("2001:db8:1::1", { leaseTime: 60, persist: false }));
    clock.now += 30_000;
    const again = ok(await engine.discover("2001:db8:1::1", { leaseTime: 60, persist: false }));
    expect(again.ipv4).toBe(first.ipv4);
    expect(again.expiresAt).toBe(clock.now + 60_000);
    expect(engine.isOffer(engine.lookupHost("2001:db8:1::1"))).toBe(true);
    expect(await store.loadAll()).toEqual([]);
  });

  test("withdrawOffer frees an offer never committed, and leaves a committed lease alone", async () => {
    const { engine } = await startEngine([POOL]);
    ok(await engine.discover("2001:db8:1::1", { persist: false }));
    expect(ok(await engine.withdrawOffer("2001:db8:1::1")).state).toBe("released");
    expect(engine.lookupHost("2001:db8:1::1")).toBeUndefined();
    const offer = ok(await engine.discover("2001:db8:1::2", { persist: false }));
    ok(await engine.request("2001:db8:1::2", offer.ipv4)); // committed
    const refused = await engine.withdrawOffer("2001:db8:1::2");
    expect(refused.ok ? "ok" : refused.reason).toBe("no-such-lease");
    expect(engine.lookupHost("2001:db8:1::2")?.state).toBe("active");
  });
});

describe("leases per host prefix", () => {
  test("hostPrefixKey masks to the prefix length", () => {
    expect(hostPrefixKey("2001:db8:1:2:aaaa::1", 64)).toBe("2001:db8:1:2::/64");
    expect(hostPrefixKey("2001:db8:1:2ff::1", 56)).toBe("2001:db8:1:200::/56");
    expect(hostPrefixKey("2001:db8::1", 128)).toBe("2001:db8::1/128");
    // RFC 5952 text: a zero group is folded into "::", as everywhere else.
    expect(hostPrefixKey("2001:db8:1::a", 64)).toBe("2001:db8:1::/64");
    expect(hostPrefixKey("2001:db8:1:0:1::a", 63)).toBe("2001:db8:1::/63");
    expect(hostPrefixKey("2001:db8:1:2:3:4:5:6", 0)).toBe("::/0");
  });

  test("300 addresses of one /64 get 16 leases; another /64 still gets one", async () => {
    const { engine } = await startEngine([POOL], { maxLeasesPerPrefix: 16 });
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        engine.discover(`2001:db8:bad::${(i + 1).toString(16)}`),
      ),
    );
    const reasons = results.map((r) => (r.ok ? "ok" : r.reason));
    expect(reasons.filter((r) => r === "ok").length).toBe(16);
    expect(reasons.filter((r) => r === "prefix-limit").length).toBe(284);
    expect(ok(await engine.discover("2001:db8:600d::1")).state).toBe("active");
    // INIT-REBOOT is capped too; renewals never are.
    const refused = await engine.request("2001:db8:bad::fff", 0xc00002f0);
    expect(refused.ok ? "ok" : refused.reason).toBe("prefix-limit");
    const held = engine.lookupHost("2001:db8:bad::1")!;
    expect(ok(await engine.request("2001:db8:bad::1", held.ipv4)).outcome).toBe("renewed");
    // A release makes room for one more.
    ok(await engine.release("2001:db8:bad::1", held.ipv4));
    expect(ok(await engine.discover("2001:db8:bad::ffff")).state).toBe("active");
    const next = await engine.discover("2001:db8:bad::fffe");
    expect(next.ok ? "ok" : next.reason).toBe("prefix-limit");
  });

  test("the count is rebuilt from the store at start", async () => {
    const store = new MemoryLeaseStore();
    const a = await startEngine([POOL], { store, maxLeasesPerPrefix: 2 });
    ok(await a.engine.discover("2001:db8:bad::1"));
    ok(await a.engine.discover("2001:db8:bad::2"));
    await a.engine.close();
    const b = await startEngine([POOL], { store, maxLeasesPerPrefix: 2 });
    const refused = await b.engine.discover("2001:db8:bad::3");
    expect(refused.ok ? "ok" : refused.reason).toBe("prefix-limit");
  });
});

describe("expiry runs on the monotonic clock", () => {
  async function twoClocks(leaseTime: number) {
    const clocks = { wall: T0, mono: 5_000 };
    const steps: number[] = [];
    const store = new MemoryLeaseStore();
    const engine = new AllocationEngine({
      pools: [POOL],
      store,
      leaseTime,
      now: () => clocks.wall,
      monotonic: () => clocks.mono,
      onClockStep: (ms) => steps.push(ms),
    });
    await engine.start();
    return { engine, clocks, steps, store };
  }

  test("the wall clock stepping 2 h forward expires nothing early and is reported once", async () => {
    const { engine, clocks, steps } = await twoClocks(60);
    const lease = ok(await engine.discover("2001:db8:1::1"));
    expect(await engine.sweep()).toEqual([]);
    clocks.wall += 2 * 3600_000;
    clocks.mono += 1_000;
    clocks.wall += 1_000;
    expect(await engine.sweep()).toEqual([]);
    expect(steps).toEqual([2 * 3600_000]);
    expect(engine.remainingMs(engine.lookupHost("2001:db8:1::1")!)).toBe(59_000);
    clocks.mono += 58_000;
    clocks.wall += 58_000;
    expect(await engine.sweep()).toEqual([]);
    clocks.mono += 1_000;
    clocks.wall += 1_000;
    const expired = await engine.sweep();
    expect(expired.map((l) => l.ipv4)).toEqual([lease.ipv4]);
    expect(steps.length).toBe(1);
  });

  test("the wall clock stepping back keeps nothing late", async () => {
    const { engine, clocks, steps } = await twoClocks(60);
    ok(await engine.discover("2001:db8:1::1"));
    await engine.sweep();
    clocks.wall += 60_000 - 3600_000; // a minute passes, and the clock is set back 1 h
    clocks.mono += 60_000;
    expect((await engine.sweep()).length).toBe(1);
    expect(steps).toEqual([-3600_000]);
  });

  test("leases loaded at start expire when their stored wall-clock time has passed", async () => {
    const first = await twoClocks(60);
    ok(await first.engine.discover("2001:db8:1::1"));
    await first.engine.close();
    const clocks = { wall: T0 + 30_000, mono: 999 };
    const engine = new AllocationEngine({
      pools: [POOL],
      store: first.store,
      leaseTime: 60,
      now: () => clocks.wall,
      monotonic: () => clocks.mono,
    });
    await engine.start();
    clocks.mono += 29_999;
    expect(await engine.sweep()).toEqual([]);
    clocks.mono += 1;
    expect((await engine.sweep()).length).toBe(1);
  });
});
