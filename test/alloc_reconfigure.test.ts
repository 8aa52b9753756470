/**
 * AllocationEngine.reconfigure (issue 13 item 1, reload): new pools without dropping a lease,
 * also while writes are in flight and when a write fails afterwards.
 */
import { describe, expect, test } from "bun:test";
import type { PoolConfig } from "../lib/alloc/engine.ts";
import type { Lease, LeaseOp, LeaseStore, WriteOutcome } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { ok, startEngine } from "./helpers/engine.ts";

const TEP6 = "2001:db8::1";
const host = (i: number) => `2001:db8:1::${i.toString(16)}`;
const pools = (...prefixes: string[]): PoolConfig[] =>
  prefixes.map((p) => ({ prefixes: [p], tep6: TEP6 }));

/** A memory store whose writes take an event-loop turn and can be made to fail. */
class SlowStore implements LeaseStore {
  readonly kind = "slow";
  readonly inner = new MemoryLeaseStore();
  fail = false;
  loadAll(): Promise<Lease[]> {
    return this.inner.loadAll();
  }
  async write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.fail) throw new Error("injected write failure");
    return await this.inner.write(ops);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const active = (leases: readonly Lease[]) =>
  leases
    .filter((l) => l.state === "active")
    .map((l) => `${formatIPv4(l.ipv4)}=${l.host6}`)
    .sort();

describe("AllocationEngine.reconfigure", () => {
  test("writes in flight across a reconfigure stay; a failure after it rolls back to the store", async () => {
    const store = new SlowStore();
    const { engine } = await startEngine(pools("192.0.2.0/29"), { store });
    for (let i = 1; i <= 3; i++) ok(await engine.discover(host(i)));
    const inFlight = [4, 5].map((i) => engine.discover(host(i))); // decided, not yet durable
    expect(
      engine.reconfigure({ pools: pools("192.0.2.0/28", "198.51.100.0/30"), leaseTime: 600 }),
    ).toBe(0);
    const results = await Promise.all(inFlight);
    expect(results.every((r) => r.ok)).toBe(true);
    expect(active(engine.leases())).toEqual(active(await store.loadAll()));
    expect(active(engine.leases())).toHaveLength(5);
    // a failed write after the reconfigure undoes only what was not durable
    store.fail = true;
    const failed = await engine.discover(host(6));
    expect(failed.ok).toBe(false);
    store.fail = false;
    expect(active(engine.leases())).toEqual(active(await store.loadAll()));
    const stats = engine.stats();
    expect(stats.map((p) => [p.pool, p.active])).toEqual([
      ["192.0.2.0/28", 5],
      ["198.51.100.0/30", 0],
    ]);
  });

  test("random allocations and releases through random reconfigures: no lease lost, no address twice", async () => {
    const store = new SlowStore();
    const configs = [
      pools("192.0.2.0/29"),
      pools("192.0.2.0/28"),
      pools("192.0.2.0/29", "198.51.100.0/29"),
      pools("198.51.100.0/29"), // the first pool removed: its leases orphaned
      pools("192.0.2.0/28", "198.51.100.0/28"),
    ];
    const { engine } = await startEngine(configs[0]!, { store });
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 40; round++) {
      const pending = [];
      for (let k = 0; k < 6; k++) {
        const h = host(1 + rand(30));
        const held = engine.lookupHost(h);
        pending.push(held && rand(3) === 0 ? engine.release(h, held.ipv4) : engine.discover(h));
      }
      const before = active(engine.leases());
      const config = configs[rand(configs.length)]!;
      engine.reconfigure({ pools: config, leaseTime: 600 });
      expect(active(engine.leases())).toEqual(before); // the reconfigure itself drops nothing
      await Promise.all(pending);
      const now = engine.leases().filter((l) => l.state === "active");
      expect(new Set(now.map((l) => l.ipv4)).size).toBe(now.length);
      expect(new Set(now.map((l) => l.host6)).size).toBe(now.length);
      expect(active(now)).toEqual(active(await store.loadAll()));
      // a new lease is always inside the pools now configured, never an orphan's address
      const fresh = await engine.discover(host(100 + round));
      if (fresh.ok && fresh.outcome === "allocated") {
        const inPools = config.some((p) => {
          const [base, bits] = p.prefixes[0]!.split("/");
          const mask = bits === "32" ? 0xffffffff : (0xffffffff << (32 - Number(bits))) >>> 0;
          return (fresh.lease.ipv4 & mask) >>> 0 === parseIPv4(base!);
        });
        expect(inPools).toBe(true);
      }
    }
  });

  test("a DISCOVER ending a lease whose slot left the pools tells onEnded, once durable", async () => {
    const ended: string[] = [];
    const { engine } = await startEngine(pools("192.0.2.0/30"), {
      onEnded: (lease) => ended.push(`${formatIPv4(lease.ipv4)}=${lease.host6} ${lease.state}`),
    });
    const first = ok(await engine.discover(host(1)));
    expect(engine.reconfigure({ pools: pools("198.51.100.0/29"), leaseTime: 600 })).toBe(1);
    const moved = ok(await engine.discover(host(1)));
    expect(formatIPv4(moved.ipv4)).toBe("198.51.100.1");
    expect(ended).toEqual([`${formatIPv4(first.ipv4)}=${host(1)} expired`]);
    // Two addresses for three moved hosts: the third's old lease ends all the same, and is told.
    ok(await engine.discover(host(2)));
    ok(await engine.discover(host(3)));
    engine.reconfigure({ pools: pools("203.0.113.0/30"), leaseTime: 600 });
    ok(await engine.discover(host(1)));
    ok(await engine.discover(host(2)));
    const refused = await engine.discover(host(3));
    expect(refused.ok).toBe(false);
    expect(ended).toHaveLength(4);
    expect(ended[3]).toBe(`198.51.100.3=${host(3)} expired`);
    // Nothing else is told: a renewal, a release.
    ok(await engine.discover(host(1)));
    expect(ended).toHaveLength(4);
  });

  test("invalid pools are refused and change nothing", async () => {
    const { engine } = await startEngine(pools("192.0.2.0/29"));
    ok(await engine.discover(host(1)));
    expect(() =>
      engine.reconfigure({ pools: pools("192.0.2.0/28", "192.0.2.8/29"), leaseTime: 600 }),
    ).toThrow(/overlap/);
    expect(() => engine.reconfigure({ pools: [], leaseTime: 600 })).toThrow(/no pool/);
    expect(engine.stats().map((p) => p.pool)).toEqual(["192.0.2.0/29"]);
    expect(ok(await engine.discover(host(2))).ipv4).toBe(parseIPv4("192.0.2.2")!);
  });
});
