/**
 * Several engines on one shared store (the model of several `dstm server` processes on one
 * PostgreSQL database, test/server_postgres.test.ts runs the real thing): the store's
 * compare-and-set decides, an engine that loses a write takes the stored rows and decides
 * again, and each follows the others' changes.
 */
import { describe, expect, test } from "bun:test";
import { AllocationEngine, type PoolConfig } from "../lib/alloc/engine.ts";
import type { EngineResult } from "../lib/alloc/engine_types.ts";
import { type Lease, leaseKey } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { T0 } from "./helpers/engine.ts";

const TEP6 = "2001:db8::1";
const host = (n: number) => `2001:db8:1::${n.toString(16)}`;
const keyOf = (l: Lease) => leaseKey(l.ipv4, l.portSet.psid);

async function pair(pools: PoolConfig[], leaseTime = 600) {
  const store = new MemoryLeaseStore({ shared: true });
  const clock = { now: T0 };
  const make = async () => {
    const engine = new AllocationEngine({ pools, store, leaseTime, now: () => clock.now });
    await engine.start();
    return engine;
  };
  return { store, clock, a: await make(), b: await make() };
}

/** Lets the watchers deliver (setImmediate) a few times over. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe("two engines, one shared store", () => {
  test("concurrent allocations from both never give one slot to two hosts", async () => {
    const pools = [{ prefixes: ["198.18.0.0/24"], tep6: TEP6 }]; // 254 addresses
    const { store, a, b } = await pair(pools);
    const calls = [];
    for (let i = 0; i < 300; i++) calls.push((i % 2 ? b : a).discover(host(i)));
    const results = await Promise.all(calls);
    const granted = results.flatMap((r) => (r.ok ? [r.lease] : []));
    const refused = results.flatMap((r) => (r.ok ? [] : [r.reason]));
    // The pool is full; the rest are told so, none fails on the store.
    expect(granted.length).toBe(254);
    expect(new Set(refused)).toEqual(new Set(["pool-exhausted"]));
    // Every lease granted is the one stored under its key: nobody else holds its slot.
    const stored = new Map((await store.loadAll()).map((l) => [keyOf(l), l]));
    for (const lease of granted) expect(stored.get(keyOf(lease))?.host6).toBe(lease.host6);
    expect(new Set(granted.map(keyOf)).size).toBe(254);
    expect(a.conflicts() + b.conflicts()).toBeGreaterThan(0); // they did collide
    await settle();
    // Each engine now knows every lease, whoever granted it.
    for (const engine of [a, b]) expect(engine.leases({ state: "active" }).length).toBe(254);
  });

  test("sticky: a host freed on one server gets its address back from the other", async () => {
    const pools = [{ prefixes: ["198.18.0.0/28"], tep6: TEP6 }];
    const { a, b } = await pair(pools);
    const first = await a.discover(host(1));
    if (!first.ok) throw new Error(first.message);
    for (let i = 2; i < 6; i++) expect((await a.discover(host(i))).ok).toBe(true);
    expect((await a.release(host(1), first.lease.ipv4)).ok).toBe(true);
    await settle();
    const again = await b.discover(host(1));
    expect(again.ok && [again.lease.ipv4, again.outcome]).toEqual([first.lease.ipv4, "reused"]);
    // and a renewal through A of B's grant works: A has followed it
    await settle();
    const renewed = await a.request(host(1), first.lease.ipv4);
    expect(renewed.ok && renewed.outcome).toBe("renewed");
  });

  test("a lease two servers both find overdue is expired exactly once", async () => {
    const pools = [{ prefixes: ["198.18.0.0/24"], tep6: TEP6 }];
    const { store, clock, a, b } = await pair(pools, 60);
    for (let i = 0; i < 150; i++) expect((await (i % 2 ? a : b).discover(host(i))).ok).toBe(true);
    await settle();
    clock.now += 61_000;
    const expired: Lease[] = [];
    for (let round = 0; round < 20; round++) {
      const [x, y] = await Promise.all([a.sweep(), b.sweep()]);
      expired.push(...x, ...y);
      await settle();
      if (!a.reclaimPending && !b.reclaimPending && expired.length >= 150) break;
    }
    expect(expired.length).toBe(150);
    expect(new Set(expired.map((l) => l.host6)).size).toBe(150);
    expect((await store.loadAll()).every((l) => l.state === "expired")).toBe(true);
  });

  test("an expiry the other server did first fails no allocation in its batch; each counted once", async () => {
    const pools = [{ prefixes: ["198.18.0.0/22"], tep6: TEP6 }];
    const { store, clock, a, b } = await pair(pools, 60);
    for (let i = 0; i < 250; i++) expect((await (i % 2 ? a : b).discover(host(i))).ok).toBe(true);
    await settle();
    clock.now += 61_000;
    const before = a.conflicts(); // the grants above may have met B's (not yet heard of)
    const expired: Lease[] = [];
    const granted: Promise<EngineResult>[] = [];
    for (let round = 0; round < 20; round++) {
      // Both find the same leases due in the same turn; B's slice reaches the store first, A's
      // shares its batch with new hosts' allocations (only A allocates: no slot race).
      const sweeps = [b.sweep(), a.sweep()];
      for (let j = 0; j < 4; j++) granted.push(a.discover(host(1000 + round * 4 + j)));
      for (const x of await Promise.all(sweeps)) expired.push(...x);
      await settle();
      if (!a.reclaimPending && !b.reclaimPending && expired.length >= 250) break;
    }
    const results = await Promise.all(granted);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(a.conflicts() - before).toBe(0); // no allocation was decided again, none failed
    expect(a.expiriesLapsed()).toBeGreaterThan(0); // they did meet
    expect(expired.length).toBe(250);
    expect(new Set(expired.map((l) => l.host6)).size).toBe(250);
    const stored = await store.loadAll();
    expect(stored.filter((l) => l.state === "expired").length).toBe(250);
    expect(stored.filter((l) => l.state === "active").length).toBe(results.length);
    // A's memory took B's expiries as stored.
    await settle();
    for (const engine of [a, b]) expect(engine.leases({ state: "expired" }).length).toBe(250);
  });

  test("a host cannot hold leases through both servers at once", async () => {
    const pools = [{ prefixes: ["198.18.0.0/24"], tep6: TEP6 }];
    const { store, a, b } = await pair(pools);
    const [x, y] = await Promise.all([a.discover(host(7)), b.discover(host(7))]);
    expect(x.ok && y.ok).toBe(true);
    const active = (await store.loadAll()).filter((l) => l.state === "active");
    expect(active.length).toBe(1);
    // Both answers name the one stored lease.
    const stored = active[0]?.ipv4 as number;
    if (x.ok && y.ok) expect([x.lease.ipv4, y.lease.ipv4]).toEqual([stored, stored]);
  });

  test("a DISCOVER repeated while the host's first is decided again gets that one's answer", async () => {
    // One slot. A's first decision for host 2 loses the slot to B's host 1 and waits to decide
    // again (LeaseWriter.retry); the host's retransmission comes meanwhile and finds the pool
    // full; then B's host frees the slot. The first decision takes it: the retransmission must
    // not have told the host the pool is exhausted while the address goes to that host anyway
    // (seen in test/server_postgres.test.ts: 253 granted and the 254th address held for a host
    // that was refused). The retry waits are held here, so the order is fixed.
    const pools = [{ prefixes: ["198.18.0.1/32"], tep6: TEP6 }];
    const { a, b } = await pair(pools);
    const held: (() => void)[] = [];
    const realSetTimeout = globalThis.setTimeout;
    let first: Promise<EngineResult> | undefined;
    let again: Promise<EngineResult> | undefined;
    let onB: EngineResult | undefined;
    try {
      globalThis.setTimeout = ((fn: () => void) => {
        held.push(fn);
        return 0;
      }) as unknown as typeof setTimeout;
      const fromB = b.discover(host(1)); // B's batch reaches the store first
      first = a.discover(host(2));
      onB = await fromB;
      for (let i = 0; i < 50 && held.length === 0; i++) await settle();
      expect(held.length).toBe(1); // A's first decision lost the slot and waits
      expect(a.conflicts()).toBe(1);
      let againDone = false;
      again = a.discover(host(2)); // the retransmission
      again.then(() => {
        againDone = true;
      });
      await settle();
      if (!onB.ok) throw new Error(onB.message);
      expect((await b.release(host(1), onB.lease.ipv4)).ok).toBe(true);
      for (let i = 0; i < 50 && a.leases({ state: "active" }).length > 0; i++) await settle();
      expect(a.leases({ state: "active" }).length).toBe(0); // A heard of the release
      expect(againDone).toBe(false); // with the fix it waits for the first decision
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    for (const fn of held.splice(0)) fn();
    const [r1, r2] = await Promise.all([first, again]);
    expect(r1?.ok).toBe(true);
    expect(r2?.ok).toBe(true);
    if (r1?.ok && r2?.ok) expect(r2.lease.ipv4).toBe(r1.lease.ipv4);
  });
});
