/**
 * The allocation engine with a ClientScope (lib/alloc/client_scope.ts): the 4o6 client's
 * identity as the lease's holder, and the pools of the client's link. Issue 11.
 */
import { describe, expect, test } from "bun:test";
import type { ClientScope } from "../lib/alloc/client_scope.ts";
import type { EngineResult } from "../lib/alloc/engine.ts";
import { leaseHolder } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { ok, startEngine } from "./helpers/engine.ts";

const TEP6 = "2001:db8::1";
const POOLS = [
  { prefixes: ["192.0.2.0/29"], tep6: TEP6 }, // .1–.6
  { prefixes: ["198.51.100.0/29"], tep6: TEP6 },
];
const A = "192.0.2.0/29";
const B = "198.51.100.0/29";
const H = "2001:db8:4::a";
const one = { identity: "id:01" };
const two = { identity: "id:02" };

describe("ClientScope: identity holds the lease", () => {
  test("two identities behind one host6 hold a lease each; the host itself a third; each renews and releases its own", async () => {
    const { engine } = await startEngine(POOLS);
    const l1 = ok(await engine.discover(H, one));
    const l2 = ok(await engine.discover(H, two));
    const l0 = ok(await engine.discover(H));
    expect(new Set([l1.ipv4, l2.ipv4, l0.ipv4]).size).toBe(3);
    expect([l1.identity, l2.identity, l0.identity]).toEqual(["id:01", "id:02", undefined]);
    expect(engine.lookupHost(H, two)?.ipv4).toBe(l2.ipv4);
    expect(engine.lookupHost(H)?.ipv4).toBe(l0.ipv4);
    // One holder cannot renew or release another's lease.
    expect((await engine.request(H, l1.ipv4, two)).ok).toBe(false);
    expect((await engine.release(H, l1.ipv4, two)).ok).toBe(false);
    expect((await engine.release(H, l1.ipv4)).ok).toBe(false);
    expect(ok(await engine.release(H, l1.ipv4, one)).state).toBe("released");
    expect(engine.lookupHost(H, two)?.ipv4).toBe(l2.ipv4);
    // Sticky per holder: identity one gets its address back.
    expect(ok(await engine.discover(H, one)).ipv4).toBe(l1.ipv4);
  });

  test("a REQUEST from another host6 moves the identity's lease there; a DISCOVER offers it unchanged", async () => {
    const { engine, clock } = await startEngine(POOLS);
    const l1 = ok(await engine.discover(H, one));
    clock.now += 10_000;
    const offered = ok(await engine.discover("2001:db8:4::b", { ...one, persist: false }));
    expect(offered).toMatchObject({ ipv4: l1.ipv4, host6: H, expiresAt: l1.expiresAt });
    const moved = ok(await engine.request("2001:db8:4::b", l1.ipv4, one));
    expect(moved).toMatchObject({ ipv4: l1.ipv4, host6: "2001:db8:4::b", identity: "id:01" });
    expect(engine.leases({ state: "active" }).length).toBe(1);
  });

  test("a decline takes the identity's address; the declined holder has no identity", async () => {
    const { engine } = await startEngine(POOLS);
    const l1 = ok(await engine.discover(H, one));
    const held = ok(await engine.decline(H, l1.ipv4, 60, one));
    expect(held.identity).toBeUndefined();
    expect(engine.lookupHost(H, one)).toBeUndefined();
  });
});

describe("ClientScope: pools of the client's link", () => {
  test("new leases, hints and sticky slots come only from the scope's pools; a REQUEST outside them is refused", async () => {
    const { engine } = await startEngine(POOLS);
    const onlyB = { pools: new Set([B]) };
    const b = ok(await engine.discover(H, { ...onlyB, hint: parseIPv4("192.0.2.3")! }));
    expect(b.pool).toBe(B);
    const r = await engine.request("2001:db8:4::c", parseIPv4("192.0.2.2")!, onlyB);
    expect(r).toMatchObject({ ok: false, reason: "no-such-lease" });
    // The host's lease in B, asked for on link A: ended, a lease of A instead (one in all).
    const a = ok(await engine.discover(H, { pools: new Set([A]) }));
    expect(a.pool).toBe(A);
    expect(engine.leases({ state: "active" }).map((l) => l.pool)).toEqual([A]);
    // Pool A full for link A: pool-exhausted, though B has room.
    for (let i = 0; i < 5; i++)
      ok(await engine.discover(`2001:db8:5::${i + 1}`, { pools: new Set([A]) }));
    expect(await engine.discover("2001:db8:5::99", { pools: new Set([A]) })).toMatchObject({
      ok: false,
      reason: "pool-exhausted",
    });
  });

  test("random discover / request / release with identities that move between host6s and links: one active lease per holder and per address, every lease in its scope's pools", async () => {
    let seed = 11;
    const rng = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;
    const store = new MemoryLeaseStore();
    const { engine, clock } = await startEngine(POOLS, { store, leaseTime: 60 });
    const hosts = ["2001:db8:4::a", "2001:db8:4::b", "2001:db8:4::c"];
    const identities = [undefined, "id:01", "id:02", "id:03", "hw:1:0200", "hw:1:0201"];
    const links = [undefined, new Set([A]), new Set([B])];
    const addresses = ["192.0.2.1", "192.0.2.4", "198.51.100.2", "198.51.100.5"].map(
      (a) => parseIPv4(a)!,
    );
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 300; round++) {
      const calls: Promise<void>[] = [];
      for (let i = 0; i < 1 + Math.floor(rng() * 10); i++) {
        const h = pick(hosts);
        const id = pick(identities);
        const pools = pick(links);
        const scope: ClientScope = { ...(id ? { identity: id } : {}), ...(pools ? { pools } : {}) };
        const held = engine.lookupHost(h, scope)?.ipv4;
        const target = held !== undefined && rng() < 0.6 ? held : pick(addresses);
        const r = rng();
        const run = async () => {
          let result: EngineResult;
          if (r < 0.45) result = await engine.discover(h, { ...scope, persist: rng() < 0.5 });
          else if (r < 0.75) result = await engine.request(h, target, scope);
          else result = await engine.release(h, target, scope);
          const key = result.ok ? result.outcome : result.reason;
          outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
          if (!result.ok) return;
          expect(leaseHolder(result.lease)).toBe(id ?? h);
          if (pools && result.lease.state === "active")
            expect(pools.has(result.lease.pool)).toBe(true);
        };
        calls.push(run());
      }
      await Promise.all(calls);
      const rows = engine.leases();
      const active = rows.filter((l) => l.state === "active");
      expect(new Set(active.map(leaseHolder)).size).toBe(active.length);
      expect(new Set(active.map((l) => formatIPv4(l.ipv4))).size).toBe(active.length);
      if (rng() < 0.1) await engine.sweep();
      clock.now += Math.floor(rng() * 15_000);
    }
    // A restart sees the identities: every committed lease with its holder (offers are not stored).
    await engine.close();
    const again = await startEngine(POOLS, { store, leaseTime: 60 });
    const stored = (await store.loadAll()).map((l) => `${formatIPv4(l.ipv4)} ${leaseHolder(l)}`);
    expect(again.engine.leases().map((l) => `${formatIPv4(l.ipv4)} ${leaseHolder(l)}`)).toEqual(
      stored,
    );
    expect(stored.some((text) => /id:|hw:/.test(text))).toBe(true);
    for (const outcome of ["allocated", "renewed", "released", "no-such-lease"])
      expect(outcomes.get(outcome) ?? 0).toBeGreaterThan(0);
  });
});
