/**
 * Red team (atk17) on reclaim on allocation (lib/alloc/reclaimer.ts sliceNow, allocator.ts
 * whenExhausted): a pool full of overdue leases and a flood of DISCOVERs from many new hosts
 * at once, some of them sent twice (retransmissions), slices of 3. Held: as many hosts as
 * there were overdue leases get an address, no address twice, no host twice, every overdue
 * lease told expired exactly once, the rest refused pool-exhausted (none left waiting), and
 * a host's duplicate DISCOVER gets the same address as its first; memory and SQLite stores.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Reclaimer } from "../lib/alloc/reclaimer.ts";
import { type Lease, type LeaseStore, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";

import { parseIPv4 } from "../lib/net/addr.ts";
import { startEngine, T0 } from "./helpers/engine.ts";

const TEP6 = "2001:db8::1";
const POOL = "198.18.0.0/26"; // 62 usable addresses
const BASE = parseIPv4("198.18.0.0") as number;

const tempDir = mkdtempSync(join(tmpdir(), "atk17-reclaim-"));
afterAll(() => rmSync(tempDir, { recursive: true, force: true }));
const stores: [string, () => LeaseStore][] = [
  ["memory", () => new MemoryLeaseStore()],
  ["SQLite", () => SqliteLeaseStore.open(join(tempDir, "leases.db"))],
];

describe.each(stores)("a flood of DISCOVERs on a pool full of overdue leases (%s)", (_, open) => {
  test("200 new hosts (40 of them twice) at once, slices of 3: 62 served once each", async () => {
    const store = open();
    const rows: Lease[] = [];
    for (let i = 0; i < 62; i++) {
      const expiresAt = T0 - 1_000 - ((i * 37) % 62) * 10;
      rows.push({
        ipv4: BASE + 1 + i,
        portSet: WHOLE_ADDRESS,
        host6: `2001:db8:1::${(i + 1).toString(16)}`,
        tep4: 0,
        tep6: TEP6,
        pool: POOL,
        state: "active",
        grantedAt: expiresAt - 600_000,
        expiresAt,
      });
    }
    await store.write(rows.map((lease) => ({ op: "put" as const, lease })));
    const told: Lease[] = [];
    let reclaimer: Reclaimer | undefined;
    const { engine } = await startEngine([{ prefixes: [POOL], tep6: TEP6 }], {
      store,
      reclaimMaxLeases: 3,
      reclaimNow: () => (reclaimer ? reclaimer.sliceNow() : Promise.resolve(0)),
    });
    reclaimer = new Reclaimer({ engine, onExpired: (l) => told.push(...l) });
    const hosts = Array.from({ length: 200 }, (_, i) => `2001:db8:2::${(i + 1).toString(16)}`);
    const asks = [...hosts, ...hosts.slice(0, 40)];
    const results = await Promise.all(asks.map((h) => engine.discover(h)));
    const byHost = new Map<string, number[]>();
    for (let i = 0; i < asks.length; i++) {
      const r = results[i]!;
      if (r.ok) byHost.set(asks[i]!, [...(byHost.get(asks[i]!) ?? []), r.lease.ipv4]);
      else expect(r.reason).toBe("pool-exhausted");
    }
    // A host asked twice has one address, whichever answer it takes.
    for (const [, got] of byHost) expect(new Set(got).size).toBe(1);
    const addresses = [...byHost.values()].map((g) => g[0]!);
    expect(addresses.length).toBe(62);
    expect(new Set(addresses).size).toBe(62);
    expect(told.length).toBe(62);
    expect(new Set(told.map((l) => l.ipv4)).size).toBe(62);
    const active = engine.leases({ state: "active" });
    expect(active.length).toBe(62);
    expect(new Set(active.map((l) => l.host6)).size).toBe(62);
    expect(active.every((l) => l.host6.startsWith("2001:db8:2::"))).toBe(true);
    await reclaimer.stop();
    await store.close();
  });
});
