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
