/**
 * Reclamation that never stalls the server (issue 12, item 1): a crowd of overdue leases is
 * reclaimed in bounded slices, answers are made between slices, each lease is expired exactly
 * once, and freeing k slots costs O(k) free-list steps whatever order their expiries come in.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveServerConfig } from "../cli/server.ts";
import { RECLAIM_DEFAULTS } from "../lib/alloc/engine.ts";
import { Reclaimer } from "../lib/alloc/reclaimer.ts";
import { Logger } from "../lib/control/log.ts";
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { DstmServer } from "../lib/server/server.ts";
import { ok, startEngine, T0 } from "./helpers/engine.ts";
import { eventually, waitUntil } from "./helpers/wait.ts";

const TEP6 = "2001:db8::1";
const BASE = parseIPv4("198.18.0.0") as number;
const POOLS = [{ prefixes: ["198.18.0.0/20"], tep6: TEP6 }];
const host = (n: number) => `2001:db8:1::${n.toString(16)}`;
const newHost = (n: number) => `2001:db8:2::${n.toString(16)}`;

let tempDir: string | undefined;
const dir = () => (tempDir ??= mkdtempSync(join(tmpdir(), "dstm-reclaim-")));
afterAll(() => tempDir && rmSync(tempDir, { recursive: true, force: true }));

/**
 * `n` active leases on 198.18.0.1 … whose expiries (all before T0) come in an order unrelated
 * to their addresses (a fixed permutation), as after a downtime.
 */
function overdue(n: number): Lease[] {
  const rows: Lease[] = [];
  for (let i = 0; i < n; i++) {
    const expiresAt = T0 - 1_000 - ((i * 7919) % n) * 10;
    rows.push({
      ipv4: BASE + 1 + i,
      portSet: WHOLE_ADDRESS,
      host6: host(i),
      tep4: 0,
      tep6: TEP6,
      pool: "198.18.0.0/20",
      state: "active",
      grantedAt: expiresAt - 600_000,
      expiresAt,
    });
  }
  return rows;
}

async function filledStore(n: number): Promise<MemoryLeaseStore> {
  const store = new MemoryLeaseStore();
  await store.write(overdue(n).map((lease) => ({ op: "put" as const, lease })));
  return store;
}

describe("bounded reclamation", () => {
  test("defaults are Kea's: 100 leases or 250 ms per run", () => {
    expect(RECLAIM_DEFAULTS).toEqual({ maxLeases: 100, maxMs: 250 });
  });

  test("a sweep reclaims at most reclaimMaxLeases and says more are pending", async () => {
    const store = await filledStore(250);
    const { engine } = await startEngine(POOLS, { store, reclaimMaxLeases: 100 });
    const slices: number[] = [];
    const pending: boolean[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const expired = await engine.sweep();
      slices.push(expired.length);
      pending.push(engine.reclaimPending);
      for (const lease of expired) {
        expect(seen.has(lease.host6)).toBe(false); // expired exactly once
        seen.add(lease.host6);
      }
      if (!engine.reclaimPending) break;
    }
    expect(slices).toEqual([100, 100, 50]);
    expect(pending).toEqual([true, true, false]);
    expect(seen.size).toBe(250);
    expect(engine.leases({ state: "active" })).toEqual([]);
    expect((await store.loadAll()).filter((l) => l.state === "expired").length).toBe(250);
    expect(await engine.sweep()).toEqual([]);
    expect(engine.reclaimPending).toBe(false);
  });

  test("the default engine bounds a sweep at 100 leases", async () => {
    const { engine } = await startEngine(POOLS, { store: await filledStore(150) });
    expect((await engine.sweep()).length).toBe(100);
    expect(engine.reclaimPending).toBe(true);
  });

  test("0 turns the bounds off: one sweep reclaims everything due", async () => {
    const store = await filledStore(300);
    const { engine } = await startEngine(POOLS, { store, reclaimMaxLeases: 0, reclaimMaxMs: 0 });
    expect((await engine.sweep()).length).toBe(300);
    expect(engine.reclaimPending).toBe(false);
  });

  test("a bad bound is refused", async () => {
    const store = new MemoryLeaseStore();
    await expect(startEngine(POOLS, { store, reclaimMaxLeases: -1 })).rejects.toThrow(
      /reclamation limit -1 leases/,
    );
    await expect(startEngine(POOLS, { store, reclaimMaxMs: 2.5 })).rejects.toThrow(
      /reclamation limit 2.5 ms/,
    );
  });

  test("freeing k overdue slots walks the free list O(k) steps, not O(k²)", async () => {
    // Their expiries come off the heap in an order unrelated to their keys; inserting each
    // at its (time freed, key) place from the tail walked about k²/4 rows before the fix.
    const n = 2000;
    const { engine } = await startEngine(POOLS, {
      store: await filledStore(n),
      reclaimMaxLeases: 0,
      reclaimMaxMs: 0,
    });
    expect((await engine.sweep()).length).toBe(n);
    expect(engine.freeListSteps()).toBeLessThanOrEqual(n);
  });

  test("a lease renewed twice in one millisecond is expired once", async () => {
    const { engine, clock } = await startEngine(POOLS, { leaseTime: 60 });
    const lease = ok(await engine.discover(host(1)));
    ok(await engine.request(host(1), lease.ipv4));
    ok(await engine.request(host(1), lease.ipv4)); // same clock: same deadline, twice in the heap
    clock.now += 61_000;
    expect((await engine.sweep()).map((l) => l.host6)).toEqual([host(1)]);
  });

  test("freed slots are handed out again longest-free first, then in key order", async () => {
    // A /28 pool: 14 addresses, all leased and overdue, reclaimed in slices of 4 at three
    // different times; new hosts get them back in (time freed, address) order.
    const pools = [{ prefixes: ["198.18.0.0/28"], tep6: TEP6 }];
    const { engine, clock } = await startEngine(pools, {
      store: await filledStore(14),
      reclaimMaxLeases: 4,
    });
    const order: number[] = [];
    for (let i = 0; i < 10 && (i === 0 || engine.reclaimPending); i++) {
      const slice = await engine.sweep();
      order.push(...slice.map((l) => l.ipv4).sort((a, b) => a - b));
      clock.now += 1000;
    }
    expect(order.length).toBe(14);
    const handed: number[] = [];
    for (let i = 0; i < 14; i++) handed.push(ok(await engine.discover(newHost(i))).ipv4);
    expect(handed.map(formatIPv4)).toEqual(order.map(formatIPv4));
  });
});

describe("Reclaimer", () => {
  test("runs slice after slice, and a DISCOVER is answered between slices", async () => {
    const store = await filledStore(1000);
    const { engine } = await startEngine(POOLS, { store, reclaimMaxLeases: 100 });
    let reclaimed = 0;
    const sizes: number[] = [];
    const answeredAfter: number[] = [];
    let n = 0;
    const reclaimer = new Reclaimer({
      engine,
      onExpired: (leases) => {
        sizes.push(leases.length);
        reclaimed += leases.length;
      },
      between: async () => {
        // What the event loop does between two slices: answer a datagram.
        const lease = ok(await engine.discover(newHost(n++)));
        expect(lease.state).toBe("active");
        answeredAfter.push(reclaimed);
      },
    });
    expect(await reclaimer.run()).toBe(1000);
    expect(sizes).toEqual(Array(10).fill(100));
    // Nine answers went out while reclamation was going, the first after 100 leases.
    expect(answeredAfter).toEqual([100, 200, 300, 400, 500, 600, 700, 800, 900]);
    expect(engine.leases({ state: "active" }).length).toBe(9);
    expect(await reclaimer.run()).toBe(0);
  });

  test("a run started while one is going joins it; stop() ends it after the current slice", async () => {
    const store = await filledStore(500);
    const { engine } = await startEngine(POOLS, { store, reclaimMaxLeases: 50 });
    let slices = 0;
    let release: () => void = () => {};
    const reclaimer = new Reclaimer({
      engine,
      onExpired: () => {
        slices++;
      },
      between: () =>
        new Promise<void>((resolve) => {
          release = resolve;
        }),
    });
    const first = reclaimer.run();
    expect(reclaimer.run()).toBe(first);
    await waitUntil(() => slices > 0, { intervalMs: 1, what: "the first slice" });
    const stopped = reclaimer.stop();
    release();
    await stopped;
    expect(await first).toBe(50);
    expect(engine.leases({ state: "active" }).length).toBe(450);
  });
});

/** A pool of six addresses, every one held by a lease overdue since before T0. */
const SMALL = [{ prefixes: ["198.18.0.0/29"], tep6: TEP6 }];
async function fullOfOverdue(): Promise<MemoryLeaseStore> {
  const rows = overdue(6).map((l) => ({ ...l, pool: "198.18.0.0/29" }));
  const store = new MemoryLeaseStore();
  await store.write(rows.map((lease) => ({ op: "put" as const, lease })));
  return store;
}

describe("a full pool with overdue leases (reclaim on allocation, as Kea reuses them)", () => {
  /** An engine whose reclaimNow runs a Reclaimer slice; `told`: the expiries it reported. */
  async function wired(store: MemoryLeaseStore, maxLeases = 100) {
    const told: Lease[] = [];
    let asked = 0;
    let reclaimer: Reclaimer | undefined;
    const { engine, clock } = await startEngine(SMALL, {
      store,
      reclaimMaxLeases: maxLeases,
      reclaimNow: () => {
        asked++;
        return reclaimer ? reclaimer.sliceNow() : Promise.resolve(0);
      },
    });
    reclaimer = new Reclaimer({ engine, onExpired: (leases) => told.push(...leases) });
    return { engine, clock, told, asked: () => asked, reclaimer };
  }

  test("without reclaimNow the DISCOVER is refused until a sweep (the old behaviour)", async () => {
    const { engine } = await startEngine(SMALL, { store: await fullOfOverdue() });
    const refused = await engine.discover(newHost(1));
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.reason).toBe("pool-exhausted");
  });

  test("a DISCOVER gets an address at once; the expiries are told like the sweeper's", async () => {
    const { engine, told, asked, reclaimer } = await wired(await fullOfOverdue(), 2);
    const lease = ok(await engine.discover(newHost(1)));
    expect(lease.state).toBe("active");
    expect(lease.host6).toBe(newHost(1));
    expect(asked()).toBe(1);
    // The new lease is on a slot an expiry told before it freed.
    expect(told.length).toBeGreaterThanOrEqual(2);
    expect(told.every((l) => l.state === "expired")).toBe(true);
    expect(told.map((l) => l.ipv4)).toContain(lease.ipv4);
    // The run it started reclaims the rest in slices; each overdue lease expired once.
    await reclaimer.run();
    expect(told.length).toBe(6);
    expect(new Set(told.map((l) => l.host6)).size).toBe(6);
    // Nothing held twice: the one active lease is the new one.
    const active = engine.leases({ state: "active" });
    expect(active.map((l) => l.host6)).toEqual([newHost(1)]);
  });

  test("six new hosts at once, slices of one: all get addresses; each old lease expired once", async () => {
    const { engine, told } = await wired(await fullOfOverdue(), 1);
    const got = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => engine.discover(newHost(n))));
    const leases = got.map(ok);
    expect(new Set(leases.map((l) => l.ipv4)).size).toBe(6);
    expect(new Set(told.map((l) => l.host6)).size).toBe(told.length);
    expect(told.length).toBe(6);
    // A seventh finds nothing overdue and is refused at once.
    const refused = await engine.discover(newHost(7));
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.reason).toBe("pool-exhausted");
  });

  test("a full pool of leases still running is refused without reclaiming", async () => {
    const { engine, asked, told } = await wired(new MemoryLeaseStore());
    for (let n = 1; n <= 6; n++) ok(await engine.discover(newHost(n)));
    const refused = await engine.discover(newHost(7));
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.reason).toBe("pool-exhausted");
    expect(asked()).toBe(0);
    expect(told.length).toBe(0);
  });

  test("sliceNow: the next slice's count; 0 once stopped or when the run is skipped", async () => {
    const { engine } = await startEngine(POOLS, {
      store: await filledStore(30),
      reclaimMaxLeases: 10,
    });
    const reclaimer = new Reclaimer({ engine, onExpired: () => {} });
    expect(await reclaimer.sliceNow()).toBe(10);
    // The run it started goes on to the end; a later ask finds nothing due.
    await reclaimer.run();
    expect(engine.leases({ state: "expired" }).length).toBe(30);
    expect(await reclaimer.sliceNow()).toBe(0);
    await reclaimer.stop();
    expect(await reclaimer.sliceNow()).toBe(0);
    const { engine: other } = await startEngine(POOLS, { store: await filledStore(5) });
    const skipped = new Reclaimer({ engine: other, onExpired: () => {}, beforeRun: () => false });
    expect(await skipped.sliceNow()).toBe(0);
    expect(other.leases({ state: "active" }).length).toBe(5);
  });
});

describe("server", () => {
  test("a restart with 1,000 overdue leases reclaims each once, in slices, and still answers", async () => {
    const path = join(dir(), "overdue.db");
    const rows = overdue(1000).map((l) => ({ ...l, expiresAt: Date.now() - 60_000 - l.ipv4 }));
    const seed = SqliteLeaseStore.open(path);
    await seed.write(rows.map((lease) => ({ op: "put" as const, lease })));
    await seed.close();
    const logLines: string[] = [];
    const server = await DstmServer.start({
      pools: POOLS,
      leaseTime: 600,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      db: path,
      reclaim: { maxLeases: 10 },
      sweepIntervalMs: 20,
      log: new Logger({ sink: (text) => logLines.push(...text.trimEnd().split("\n")) }),
    });
    try {
      const answer = await server.engine.discover(newHost(1));
      expect(answer.ok).toBe(true);
      await eventually(() => server.metrics.get("dstm_leases_expired_total") >= 1000, {
        timeoutMs: 12_000,
        intervalMs: 20,
      });
      expect(server.metrics.get("dstm_leases_expired_total")).toBe(1000);
    } finally {
      await server.stop(); // flushes the log
    }
    const expired = logLines.flatMap((l) => / expire ipv4=(\S+)/.exec(l)?.[1] ?? []);
    expect(expired.length).toBe(1000);
    expect(new Set(expired).size).toBe(1000);
    const run = logLines.map((l) => / reclaim leases=1000 slices=(\d+)/.exec(l)).find((m) => m);
    expect(Number(run?.[1])).toBeGreaterThanOrEqual(100); // at most 10 leases per slice
    const store = SqliteLeaseStore.open(path);
    const after = await store.loadAll();
    await store.close();
    expect(after.filter((l) => l.state === "expired").length).toBe(1000);
    expect(after.filter((l) => l.state === "active").length).toBe(1);
  });
});

describe("server: a full pool of overdue leases before the first tick", () => {
  test("a new host gets an address at once; the expiry is counted and logged", async () => {
    const path = join(dir(), "full-overdue.db");
    const rows = overdue(6).map((l) => ({
      ...l,
      pool: "198.18.0.0/29",
      expiresAt: Date.now() - 60_000 - l.ipv4,
    }));
    const seed = SqliteLeaseStore.open(path);
    await seed.write(rows.map((lease) => ({ op: "put" as const, lease })));
    await seed.close();
    const logLines: string[] = [];
    const server = await DstmServer.start({
      pools: SMALL,
      leaseTime: 600,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      db: path,
      sweepIntervalMs: 3_600_000, // the sweeper's tick never comes in this test
      log: new Logger({ sink: (text) => logLines.push(...text.trimEnd().split("\n")) }),
    });
    let got: Lease | undefined;
    try {
      const answer = await server.engine.discover(newHost(1));
      expect(answer.ok).toBe(true);
      if (answer.ok) got = answer.lease;
      expect(server.metrics.get("dstm_leases_expired_total")).toBeGreaterThanOrEqual(1);
    } finally {
      await server.stop(); // flushes the log
    }
    const expired = logLines.flatMap((l) => / expire ipv4=(\S+)/.exec(l)?.[1] ?? []);
    expect(expired).toContain(formatIPv4((got as Lease).ipv4));
    const store = SqliteLeaseStore.open(path);
    const after = await store.loadAll();
    await store.close();
    const active = after.filter((l) => l.state === "active" && l.ipv4 === (got as Lease).ipv4);
    expect(active.map((l) => l.host6)).toEqual([newHost(1)]);
  });
});

describe("settings", () => {
  test("--reclaim-max-leases / --reclaim-max-ms and their TOML keys; flags win", () => {
    const file = join(dir(), "reclaim.toml");
    writeFileSync(
      file,
      [
        'pool = "192.0.2.0/28"',
        'tep = "2001:db8::1"',
        'db = "memory"',
        "reclaim-max-leases = 500",
        "reclaim-max-ms = 50",
      ].join("\n"),
    );
    const fromFile = resolveServerConfig({ config: file, control: false }, () => {});
    expect(fromFile.reclaim).toEqual({ maxLeases: 500, maxMs: 50 });
    const flags = resolveServerConfig(
      { config: file, control: false, reclaimMaxLeases: "0", reclaimMaxMs: "10" },
      () => {},
    );
    expect(flags.reclaim).toEqual({ maxLeases: 0, maxMs: 10 });
    const none = resolveServerConfig(
      { pool: ["192.0.2.0/28"], tep: "2001:db8::1", db: "memory", control: false },
      () => {},
    );
    expect(none.reclaim).toEqual({ maxLeases: undefined, maxMs: undefined });
    expect(() =>
      resolveServerConfig({ config: file, control: false, reclaimMaxMs: "-1" }, () => {}),
    ).toThrow(/--reclaim-max-ms: "-1" is not a whole number/);
  });
});
