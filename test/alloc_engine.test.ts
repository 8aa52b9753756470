import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AllocationEngine,
  type EngineOptions,
  type EngineResult,
  type PoolConfig,
} from "../lib/alloc/engine.ts";
import { PoolConfigError } from "../lib/alloc/pool.ts";
import { holderHash } from "../lib/lease/holder_index.ts";
import {
  type Lease,
  type LeaseOp,
  type LeaseStore,
  leaseHolder,
  leaseKey,
  WHOLE_ADDRESS,
  type WriteOutcome,
} from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { portSetRanges } from "../lib/net/portset.ts";
import { ok, startEngine, T0 } from "./helpers/engine.ts";
import { prng } from "./helpers/fuzz.ts";
import { waitUntil } from "./helpers/wait.ts";

const ip = (text: string) => parseIPv4(text) as number;
const TEP6 = "2001:db8::1";
const host = (n: number) => `2001:db8:1::${n.toString(16)}`;

// Made on first use: with a test-name filter, a file whose tests all skip runs no afterAll.
let tempDir: string | undefined;
const dir = () => (tempDir ??= mkdtempSync(join(tmpdir(), "dstm-engine-")));
afterAll(() => tempDir && rmSync(tempDir, { recursive: true, force: true }));

/** A memory store whose writes can be made to fail, and to take a few event-loop turns. */
class FlakyStore implements LeaseStore {
  readonly kind = "flaky";
  readonly inner = new MemoryLeaseStore();
  fail = false;
  failRate = 0;
  slow = false;
  rng: () => number = Math.random;
  failures = 0;
  loadAll(): Promise<Lease[]> {
    return this.inner.loadAll();
  }
  async write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    if (this.slow) await new Promise((resolve) => setImmediate(resolve));
    if (this.fail || (this.failRate > 0 && this.rng() < this.failRate)) {
      this.failures++;
      throw new Error("injected write failure");
    }
    return await this.inner.write(ops);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Setup {
  engine: AllocationEngine;
  clock: { now: number };
  store: LeaseStore;
}

function setup(
  pools: PoolConfig[] = [{ prefixes: ["192.0.2.0/29"], tep6: TEP6 }],
  options: Partial<EngineOptions> = {},
): Promise<Setup> {
  return startEngine(pools, options);
}

/** The lease of an ok() result without the outcome. */
function plain({ outcome: _, ...lease }: Lease & { outcome: string }): Lease {
  return lease;
}

function reason(result: EngineResult): string {
  if (!result.ok) return result.reason;
  throw new Error(`expected a failure, got ${result.outcome} ${formatIPv4(result.lease.ipv4)}`);
}

describe("AllocationEngine: discover", () => {
  test("allocates the first usable address with the pool's TEP and the lease time", async () => {
    const { engine, store } = await setup([
      { prefixes: ["192.0.2.0/29"], tep6: "2001:DB8:0::1", tep4: ip("198.51.100.1") },
    ]);
    const result = await engine.discover(host(1));
    expect(result).toEqual({
      ok: true,
      outcome: "allocated",
      lease: {
        ipv4: ip("192.0.2.1"),
        portSet: WHOLE_ADDRESS,
        host6: host(1),
        tep4: ip("198.51.100.1"),
        tep6: "2001:db8::1",
        pool: "192.0.2.0/29",
        state: "active",
        grantedAt: T0,
        expiresAt: T0 + 600_000,
      },
    });
    expect(await store.loadAll()).toEqual([(result as { lease: Lease }).lease]);
    expect(engine.lookupHost(host(1))?.ipv4).toBe(ip("192.0.2.1"));
    expect(engine.stats()).toEqual([
      {
        pool: "192.0.2.0/29",
        size: 6,
        active: 1,
        free: 5,
        reserved: 0,
        blocked: 0,
        addresses: 6,
        share: 1,
      },
    ]);
  });

  test("a retransmitted DISCOVER gets the same lease, renewed", async () => {
    const { engine, clock } = await setup();
    const first = ok(await engine.discover(host(1)));
    clock.now += 5_000;
    const again = ok(await engine.discover(host(1)));
    expect(again.outcome).toBe("renewed");
    expect(again.ipv4).toBe(first.ipv4);
    expect(again.expiresAt).toBe(clock.now + 600_000);
    const burst = await Promise.all([1, 2, 3].map(() => engine.discover(host(2))));
    expect(new Set(burst.map((r) => ok(r).ipv4)).size).toBe(1);
    expect(engine.leases({ state: "active" })).toHaveLength(2);
  });

  test("two hosts racing for the last free address: one wins, the other gets pool-exhausted", async () => {
    const { engine } = await setup([{ prefixes: ["192.0.2.4/30"], tep6: TEP6 }]);
    ok(await engine.discover(host(1)));
    const [a, b] = await Promise.all([engine.discover(host(2)), engine.discover(host(3))]);
    const results = [a, b] as EngineResult[];
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map(reason)).toEqual(["pool-exhausted"]);
    const held = engine.leases({ state: "active" }).map((l) => l.ipv4);
    expect(held.sort()).toEqual([ip("192.0.2.5"), ip("192.0.2.6")]);
  });

  test("never-used addresses go first, then the one freed longest ago", async () => {
    const { engine, clock } = await setup();
    for (let n = 1; n <= 4; n++) ok(await engine.discover(host(n)));
    for (const n of [4, 2]) {
      clock.now += 1000;
      expect(ok(await engine.release(host(n), ip(`192.0.2.${n}`))).outcome).toBe("released");
    }
    const order = [];
    for (let n = 10; n < 14; n++) order.push(formatIPv4(ok(await engine.discover(host(n))).ipv4));
    expect(order).toEqual(["192.0.2.5", "192.0.2.6", "192.0.2.4", "192.0.2.2"]);
    expect(reason(await engine.discover(host(14)))).toBe("pool-exhausted");
  });

  test("the hint is honoured when free and in a pool, ignored otherwise", async () => {
    const { engine } = await setup();
    expect(ok(await engine.discover(host(1), { hint: ip("192.0.2.5") })).ipv4).toBe(
      ip("192.0.2.5"),
    );
    expect(ok(await engine.discover(host(2), { hint: ip("192.0.2.5") })).ipv4).toBe(
      ip("192.0.2.1"),
    );
    expect(ok(await engine.discover(host(3), { hint: ip("192.0.2.7") })).ipv4).toBe(
      ip("192.0.2.2"),
    ); // broadcast
    expect(ok(await engine.discover(host(4), { hint: ip("203.0.113.9") })).ipv4).toBe(
      ip("192.0.2.3"),
    );
    expect(ok(await engine.discover(host(5), { hint: -1 })).ipv4).toBe(ip("192.0.2.4"));
  });

  test("pools are tried in config order; never-used addresses of every pool before freed ones", async () => {
    const { engine } = await setup([
      { prefixes: ["192.0.2.0/31"], tep6: TEP6 },
      { name: "second", prefixes: ["198.51.100.0/31"], tep6: "2001:db8::2", tep4: 7 },
    ]);
    const a = ok(await engine.discover(host(1)));
    const b = ok(await engine.discover(host(2)));
    ok(await engine.release(host(1), a.ipv4));
    const c = ok(await engine.discover(host(3)));
    expect([a.ipv4, b.ipv4, c.ipv4].map(formatIPv4)).toEqual([
      "192.0.2.0",
      "192.0.2.1",
      "198.51.100.0",
    ]);
    expect(c.pool).toBe("second");
    expect(c.tep6).toBe("2001:db8::2");
    expect(c.tep4).toBe(7);
    expect(ok(await engine.discover(host(4))).ipv4).toBe(ip("198.51.100.1"));
    expect(ok(await engine.discover(host(5))).ipv4).toBe(a.ipv4); // the freed one, last
  });
});

describe("AllocationEngine: sticky re-allocation and expiry", () => {
  test("after release the host gets its address back while it is free", async () => {
    const { engine } = await setup();
    const first = ok(await engine.discover(host(1)));
    ok(await engine.release(host(1), first.ipv4));
    ok(await engine.discover(host(2))); // takes a never-used address, not host 1's
    const again = ok(await engine.discover(host(1)));
    expect(again.ipv4).toBe(first.ipv4);
    expect(again.outcome).toBe("reused");
  });

  test("sweep() expires due leases with the injected clock; the address is reusable", async () => {
    const { engine, clock, store } = await setup([{ prefixes: ["192.0.2.8/31"], tep6: TEP6 }], {
      leaseTime: 60,
    });
    const a = ok(await engine.discover(host(1)));
    clock.now += 30_000;
    const b = ok(await engine.discover(host(2)));
    expect(engine.nextExpiry()).toBe(a.expiresAt);
    expect(await engine.sweep()).toEqual([]);
    clock.now = a.expiresAt;
    const expired = await engine.sweep();
    expect(expired).toEqual([{ ...plain(a), state: "expired", expiresAt: clock.now }]);
    expect(engine.nextExpiry()).toBe(b.expiresAt);
    expect(engine.lookupHost(host(1))).toBeUndefined();
    expect((await store.loadAll()).find((l) => l.ipv4 === a.ipv4)?.state).toBe("expired");
    const c = ok(await engine.discover(host(3)));
    expect(c.ipv4).toBe(a.ipv4);
    expect(c.outcome).toBe("allocated");
  });

  test("after expiry the host gets its address back while it is free", async () => {
    const { engine, clock } = await setup(undefined, { leaseTime: 60 });
    const first = ok(await engine.discover(host(1)));
    clock.now += 61_000;
    expect((await engine.sweep()).map((l) => l.host6)).toEqual([host(1)]);
    ok(await engine.discover(host(2)));
    const again = ok(await engine.discover(host(1)));
    expect([again.ipv4, again.outcome]).toEqual([first.ipv4, "reused"]);
  });

  test("a renewed lease is not swept at its old expiry", async () => {
    const { engine, clock } = await setup(undefined, { leaseTime: 60 });
    const a = ok(await engine.discover(host(1)));
    clock.now += 50_000;
    ok(await engine.request(host(1), a.ipv4));
    clock.now = a.expiresAt + 1;
    expect(await engine.sweep()).toEqual([]);
    expect(engine.nextExpiry()).toBe(clock.now - 1 + 50_000);
  });

  test("stickiness survives a restart from the same store", async () => {
    const { engine, store } = await setup();
    const a = ok(await engine.discover(host(1)));
    const b = ok(await engine.discover(host(2)));
    ok(await engine.release(host(1), a.ipv4));
    await engine.close();
    const restarted = await setup(undefined, { store });
    expect(restarted.engine.leases()).toEqual(engine.leases());
    ok(await restarted.engine.discover(host(3)));
    expect(ok(await restarted.engine.discover(host(1))).ipv4).toBe(a.ipv4);
    expect(ok(await restarted.engine.discover(host(2)))).toMatchObject({
      ipv4: b.ipv4,
      outcome: "renewed",
    });
  });

  test("lease time: requested, clamped to [1 s, maxLeaseTime]", async () => {
    const { engine, clock } = await setup(undefined, { leaseTime: 600, maxLeaseTime: 3600 });
    const t = clock.now;
    expect(ok(await engine.discover(host(1))).expiresAt - t).toBe(600_000);
    expect(ok(await engine.discover(host(2), { leaseTime: 90 })).expiresAt - t).toBe(90_000);
    expect(ok(await engine.discover(host(3), { leaseTime: 99_999 })).expiresAt - t).toBe(3_600_000);
    expect(ok(await engine.discover(host(4), { leaseTime: 0 })).expiresAt - t).toBe(1_000);
    expect(
      ok(await engine.request(host(4), ip("192.0.2.4"), { leaseTime: 120 })).expiresAt - t,
    ).toBe(120_000);
  });
});

describe("AllocationEngine: request and release", () => {
  test("request renews the host's own lease", async () => {
    const { engine, clock } = await setup();
    const a = ok(await engine.discover(host(1)));
    clock.now += 10_000;
    const renewed = ok(await engine.request(host(1), a.ipv4));
    expect(renewed).toMatchObject({ outcome: "renewed", ipv4: a.ipv4, grantedAt: clock.now });
  });

  test("request grants a free address (never used, released or expired) like INIT-REBOOT", async () => {
    const { engine } = await setup();
    expect(ok(await engine.request(host(1), ip("192.0.2.6")))).toMatchObject({
      outcome: "reused",
      ipv4: ip("192.0.2.6"),
    });
    ok(await engine.release(host(1), ip("192.0.2.6")));
    expect(ok(await engine.request(host(2), ip("192.0.2.6"))).host6).toBe(host(2));
  });

  test("request for an address another host holds: address-in-use", async () => {
    const { engine } = await setup();
    const a = ok(await engine.discover(host(1)));
    expect(reason(await engine.request(host(2), a.ipv4))).toBe("address-in-use");
    expect(engine.lookupHost(host(2))).toBeUndefined();
  });

  test("request outside the pools, or while holding another lease: no-such-lease", async () => {
    const { engine } = await setup();
    expect(reason(await engine.request(host(1), ip("203.0.113.5")))).toBe("no-such-lease");
    expect(reason(await engine.request(host(1), ip("192.0.2.0")))).toBe("no-such-lease"); // network
    expect(reason(await engine.request(host(1), 2 ** 33))).toBe("no-such-lease");
    const a = ok(await engine.discover(host(1)));
    expect(reason(await engine.request(host(1), ip("192.0.2.5")))).toBe("no-such-lease");
    expect(engine.leases()).toEqual([plain(a)]);
  });

  test("release frees only the host's own active lease", async () => {
    const { engine, clock } = await setup();
    const a = ok(await engine.discover(host(1)));
    expect(reason(await engine.release(host(2), a.ipv4))).toBe("no-such-lease");
    expect(reason(await engine.release(host(1), ip("192.0.2.5")))).toBe("no-such-lease");
    expect(engine.lookupHost(host(1))?.ipv4).toBe(a.ipv4);
    clock.now += 7;
    const released = ok(await engine.release(host(1), a.ipv4));
    expect(released).toMatchObject({
      state: "released",
      expiresAt: clock.now,
      grantedAt: a.grantedAt,
    });
    expect(reason(await engine.release(host(1), a.ipv4))).toBe("no-such-lease");
    expect(engine.stats()[0]).toMatchObject({ active: 0, free: 6 });
  });
});

describe("AllocationEngine: store failures", () => {
  test("a failed write rolls memory back exactly and answers store-failed", async () => {
    const store = new FlakyStore();
    const { engine, clock } = await setup(undefined, { store, leaseTime: 60 });
    const a = ok(await engine.discover(host(1)));
    const before = { leases: engine.leases(), stats: engine.stats(), next: engine.nextExpiry() };
    store.fail = true;
    clock.now += 1_000; // so that host 1's DISCOVER extends its lease: a write
    const failures = await Promise.all([
      engine.discover(host(2)),
      engine.discover(host(1)), // renewal
      engine.request(host(3), ip("192.0.2.6")),
    ]);
    // The renewal that could not be stored is answered with the lease the store holds,
    // unextended (lib/alloc/lease_writer.ts #stored); the others fail.
    expect([failures[0], failures[2]].map((r) => reason(r as EngineResult))).toEqual([
      "store-failed",
      "store-failed",
    ]);
    expect(failures[1]).toEqual({ ok: true, lease: plain(a), outcome: "renewed" });
    expect(reason(await engine.release(host(1), a.ipv4))).toBe("store-failed");
    clock.now += 61_000;
    expect(await engine.sweep()).toEqual([]);
    expect({ leases: engine.leases(), stats: engine.stats(), next: engine.nextExpiry() }).toEqual(
      before,
    );
    expect(engine.leases()).toEqual(await store.loadAll());
    store.fail = false;
    expect((await engine.sweep()).map((l) => l.ipv4)).toEqual([a.ipv4]);
    // the never-used cursor was put back: host 2 gets .2, the first never-used address
    expect(ok(await engine.discover(host(2))).ipv4).toBe(ip("192.0.2.2"));
    expect(ok(await engine.discover(host(1))).ipv4).toBe(a.ipv4); // sticky, history restored
    expect(engine.leases()).toEqual(await store.loadAll());
  });

  test("changes decided on top of a failed write are undone too", async () => {
    const store = new FlakyStore();
    store.slow = true;
    const errors: unknown[] = [];
    const { engine } = await setup(undefined, { store, onStoreError: (e) => errors.push(e) });
    store.fail = true;
    const first = engine.discover(host(1)); // write in flight, will fail
    await new Promise((resolve) => setImmediate(resolve));
    const second = engine.release(host(1), ip("192.0.2.1")); // gathers behind it
    const third = engine.discover(host(2));
    await waitUntil(() => store.failures === 1, { intervalMs: 1, what: "the first write to fail" });
    store.fail = false;
    expect([await first, await second, await third].map(reason)).toEqual([
      "store-failed",
      "store-failed",
      "store-failed",
    ]);
    expect(errors).toHaveLength(1);
    expect(engine.leases()).toEqual([]);
    expect(await store.loadAll()).toEqual([]);
    expect(ok(await engine.discover(host(2))).ipv4).toBe(ip("192.0.2.1"));
    expect(engine.leases()).toEqual(await store.loadAll());
  });
});

describe("AllocationEngine: configuration and lifecycle", () => {
  const store = new MemoryLeaseStore();
  const build = (pools: PoolConfig[]) => () =>
    new AllocationEngine({ pools, store, leaseTime: 60 });

  test("overlapping pools are refused", () => {
    expect(
      build([
        { prefixes: ["192.0.2.0/24"], tep6: TEP6 },
        { prefixes: ["192.0.2.128/25"], tep6: TEP6 },
      ]),
    ).toThrow(
      new PoolConfigError(
        "pools 192.0.2.0/24 and 192.0.2.128/25 overlap; give each address to one pool",
      ),
    );
  });

  test("bad pools, TEPs and names are refused", () => {
    expect(build([{ prefixes: ["192.0.2.1/24"], tep6: TEP6 }])).toThrow(PoolConfigError);
    expect(build([{ prefixes: ["192.0.2.0/24"], tep6: "192.0.2.1" }])).toThrow(
      "is not an IPv6 address",
    );
    expect(build([{ prefixes: ["192.0.2.0/24"], tep6: TEP6, tep4: -1 }])).toThrow(
      "is not an IPv4 address",
    );
    expect(build([])).toThrow("no pool configured");
    expect(
      build([
        { name: "x", prefixes: ["192.0.2.0/24"], tep6: TEP6 },
        { name: "x", prefixes: ["198.51.100.0/24"], tep6: TEP6 },
      ]),
    ).toThrow("two pools are named x");
  });

  test("rows outside every pool are kept but not served", async () => {
    const memory = new MemoryLeaseStore();
    const old = await setup([{ prefixes: ["203.0.113.0/30"], tep6: TEP6 }], { store: memory });
    const stale = ok(await old.engine.discover(host(1)));
    await old.engine.close();
    const { engine } = await setup(undefined, { store: memory });
    expect(engine.orphans()).toBe(1);
    expect(engine.leases()).toHaveLength(1);
    expect(reason(await engine.request(host(1), stale.ipv4))).toBe("no-such-lease");
    const fresh = ok(await engine.discover(host(1)));
    expect(fresh).toMatchObject({ ipv4: ip("192.0.2.1"), outcome: "allocated" });
    const rows = await memory.loadAll();
    expect(rows.find((l) => l.ipv4 === stale.ipv4)?.state).toBe("expired");
    expect(engine.leases()).toEqual(rows);
  });

  test("after close() calls answer store-failed and pending writes are flushed", async () => {
    const { engine, store } = await setup();
    const pending = engine.discover(host(1));
    await engine.close();
    expect(await store.loadAll()).toHaveLength(1);
    expect(ok(await pending).ipv4).toBe(ip("192.0.2.1"));
    expect(reason(await engine.discover(host(2)))).toBe("store-failed");
  });

  test("calls before start() reject", async () => {
    const engine = new AllocationEngine({
      pools: [{ prefixes: ["192.0.2.0/24"], tep6: TEP6 }],
      store,
      leaseTime: 60,
    });
    await expect(engine.discover(host(1))).rejects.toThrow("start()");
  });
});

describe("AllocationEngine: the holder's hash goes with each put", () => {
  test("an unshared store gets LeaseOp.holderHash, the holder's keyed hash (the SQLite guard's)", async () => {
    const ops: LeaseOp[] = [];
    const inner = new MemoryLeaseStore();
    const store: LeaseStore = {
      kind: "recording",
      loadAll: () => inner.loadAll(),
      write: (batch) => {
        ops.push(...batch);
        return inner.write(batch);
      },
      close: () => inner.close(),
    };
    const engine = new AllocationEngine({
      pools: [{ prefixes: ["192.0.2.0/29"], tep6: TEP6 }],
      store,
      leaseTime: 60,
    });
    await engine.start();
    const granted = await Promise.all([1, 2, 3].map((n) => engine.discover(host(n))));
    const held = granted.map((r) => (r.ok ? r.lease : undefined));
    await engine.release(host(2), held[1]!.ipv4);
    await engine.request(host(3), held[2]!.ipv4);
    const puts = ops.filter((op) => op.op === "put");
    expect(puts.map((op) => op.lease.state)).toEqual([
      "active",
      "active",
      "active",
      "released",
      "active",
    ]);
    for (const op of puts) expect(op.holderHash).toBe(holderHash(leaseHolder(op.lease)));
    await engine.close();
  });
});

describe("AllocationEngine: with SQLite", () => {
  test("an engine rebuilt from the same database has exactly the same leases", async () => {
    const path = join(dir(), "restart.db");
    const clock = { now: T0 };
    const options = (store: LeaseStore): EngineOptions => ({
      pools: [
        { prefixes: ["192.0.2.0/26"], tep6: TEP6 },
        { prefixes: ["198.51.100.0/28"], tep6: TEP6 },
      ],
      store,
      leaseTime: 60,
      now: () => clock.now,
    });
    const store = SqliteLeaseStore.open(path);
    const engine = new AllocationEngine(options(store));
    await engine.start();
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: 40 }, (_, i) => engine.discover(host(round * 7 + i))));
      const active = engine.leases({ state: "active" });
      await Promise.all(active.slice(0, 10).map((l) => engine.release(l.host6, l.ipv4)));
      clock.now += 20_000;
      await engine.sweep();
    }
    const before = engine.leases();
    await engine.close();
    await store.close();
    const reopened = SqliteLeaseStore.open(path);
    const again = new AllocationEngine(options(reopened));
    await again.start();
    expect(again.leases()).toEqual(before);
    expect(again.leases({ state: "active" }).length).toBeGreaterThan(0);
    expect(again.stats()).toEqual(engine.stats());
    expect(again.nextExpiry()).toBe(engine.nextExpiry());
    await again.close();
    await reopened.close();
  });
});

/** Pools of the randomized test: whole addresses, shared ones, and shared ones whose layout changes at restarts. */
const RANDOM_LAYOUTS: Record<string, PoolConfig[][]> = {
  whole: [
    [
      { prefixes: ["192.0.2.0/29"], exclude: ["192.0.2.3"], tep6: TEP6 }, // 5 usable
      { prefixes: ["198.51.100.6/31"], tep6: TEP6 }, // 2 usable
    ],
  ],
  shared: [
    [
      { prefixes: ["192.0.2.0/30"], share: 4, tep6: TEP6 }, // 2 addresses × 4 PSIDs
      { prefixes: ["198.51.100.6/31"], share: 2, psidOffset: 0, tep6: TEP6 }, // PSID 0 holds 0–1023: 2 × 1
      { prefixes: ["192.0.2.7/32"], tep6: TEP6 }, // 1 whole address
    ],
  ],
  // a restart switches between these: old active leases of the other layout must block
  "share changing at restarts": [
    [
      { prefixes: ["192.0.2.0/30"], share: 4, tep6: TEP6 },
      { prefixes: ["198.51.100.6/31"], share: 2, psidOffset: 0, tep6: TEP6 },
    ],
    [
      { prefixes: ["192.0.2.0/30"], share: 2, tep6: TEP6 },
      {
        prefixes: ["198.51.100.6/31"],
        share: 4,
        psidOffset: 0,
        allowWellKnownPorts: true,
        tep6: TEP6,
      },
    ],
    [
      { prefixes: ["192.0.2.0/30"], tep6: TEP6 },
      { prefixes: ["198.51.100.6/31"], share: 2, psidOffset: 6, tep6: TEP6 },
    ],
  ],
};

describe("AllocationEngine: randomized concurrent operations", () => {
  for (const [seed, failRate, layout] of [
    [1, 0, "whole"],
    [2, 0.15, "whole"],
    [3, 0, "shared"],
    [4, 0.15, "shared"],
    [5, 0.1, "share changing at restarts"],
  ] as const) {
    test(`5,000 random discover/request/release/sweep ops keep every invariant (${layout} pools, seed ${seed}, ${failRate * 100}% failed writes)`, async () => {
      const rng = prng(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;
      const store = new FlakyStore();
      store.rng = rng;
      store.failRate = failRate;
      const clock = { now: T0 };
      const layouts = RANDOM_LAYOUTS[layout] as PoolConfig[][];
      let restarts = 0;
      let blockedSeen = 0; // batches after which an old layout's lease blocked an address
      const make = async () => {
        const engine = new AllocationEngine({
          pools: layouts[restarts % layouts.length] as PoolConfig[],
          store,
          leaseTime: 60,
          maxLeaseTime: 120,
          now: () => clock.now,
        });
        await engine.start();
        return engine;
      };
      let engine = await make();
      const hosts = Array.from({ length: 12 }, (_, i) => host(i + 1));
      const addresses = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.6",
        "192.0.2.7",
        "198.51.100.6",
        "198.51.100.7",
        "203.0.113.1",
      ].map(ip);
      let ops = 0;
      let okCount = 0;
      let storeFailed = 0;
      const outcomes = new Map<string, number>();
      while (ops < 5000) {
        const batch = 1 + Math.floor(rng() * 24);
        const calls: Promise<unknown>[] = [];
        for (let i = 0; i < batch; i++, ops++) {
          const h = pick(hosts);
          const r = rng();
          const held = engine.lookupHost(h)?.ipv4;
          const run = async (): Promise<unknown> => {
            if (rng() < 0.3) await new Promise((resolve) => setImmediate(resolve)); // land in a later batch
            const target = held !== undefined && rng() < 0.6 ? held : pick(addresses);
            if (r < 0.4) {
              const hint = rng() < 0.3 ? pick(addresses) : undefined;
              const leaseTime = rng() < 0.2 ? 200 : undefined;
              return check("discover", h, await engine.discover(h, { hint, leaseTime }));
            }
            if (r < 0.65) return check("request", h, await engine.request(h, target));
            if (r < 0.9) return check("release", h, await engine.release(h, target));
            return engine.sweep();
          };
          calls.push(run());
        }
        store.slow = rng() < 0.5;
        await Promise.all(calls); // every call resolves only once its write has settled
        assertInvariants(engine.leases(), await store.loadAll());
        if (engine.stats().some((p) => p.free < p.size - p.active)) blockedSeen++;
        // the incrementally kept index equals one rebuilt from the rows
        const copy = new MemoryLeaseStore();
        await copy.write(engine.leases().map((lease) => ({ op: "put", lease })));
        const rebuilt = new AllocationEngine({
          pools: layouts[restarts % layouts.length] as PoolConfig[],
          store: copy,
          leaseTime: 60,
          now: () => clock.now,
        });
        await rebuilt.start();
        expect([rebuilt.stats(), rebuilt.orphans(), rebuilt.nextExpiry()]).toEqual([
          engine.stats(),
          engine.orphans(),
          engine.nextExpiry(),
        ]);
        if (rng() < 0.05) {
          // restart: a new engine over the same store sees exactly the same table
          const before = engine.leases();
          await engine.close();
          restarts++;
          engine = await make();
          expect(engine.leases()).toEqual(before);
        }
        clock.now += Math.floor(rng() * 20_000);
      }
      expect(okCount).toBeGreaterThan(1000);
      if (layouts.length > 1) expect(blockedSeen).toBeGreaterThan(10);
      if (failRate > 0) expect(storeFailed).toBeGreaterThan(50);
      else expect(storeFailed).toBe(0);
      for (const outcome of [
        "allocated",
        "renewed",
        "reused",
        "released",
        "pool-exhausted",
        "no-such-lease",
        "address-in-use",
      ]) {
        expect(outcomes.get(outcome) ?? 0).toBeGreaterThan(0);
      }

      function check(kind: string, h: string, result: EngineResult): EngineResult {
        const key = result.ok ? result.outcome : result.reason;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
        if (result.ok) {
          okCount++;
          expect(result.lease.host6).toBe(h);
          expect(result.lease.state).toBe(kind === "release" ? "released" : "active");
        } else if (result.reason === "store-failed") storeFailed++;
        return result;
      }
    });
  }

  function assertInvariants(leases: Lease[], stored: Lease[]): void {
    expect(leases).toEqual(stored); // nothing lost, nothing duplicated
    const active = leases.filter((l) => l.state === "active");
    const keys = leases.map((l) => leaseKey(l.ipv4, l.portSet.psid));
    expect(new Set(keys).size).toBe(leases.length); // one row per (address, PSID)
    expect(new Set(active.map((l) => l.host6)).size).toBe(active.length); // one lease per host
    // no port of an address held by two hosts, whatever the layouts
    const ranges = new Map<number, [number, number][]>();
    for (const lease of active) {
      ranges.set(lease.ipv4, [...(ranges.get(lease.ipv4) ?? []), ...portSetRanges(lease.portSet)]);
    }
    for (const [ipv4, list] of ranges) {
      list.sort((x, y) => x[0] - y[0]);
      for (let i = 1; i < list.length; i++) {
        const [before, after] = [list[i - 1] as [number, number], list[i] as [number, number]];
        if (after[0] <= before[1])
          throw new Error(`${formatIPv4(ipv4)}: ports ${before} and ${after} overlap`);
      }
    }
  }
});
