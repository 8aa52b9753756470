/**
 * Red team (rt20) of the SQLite holder guard (lib/lease/sqlite_holders.ts) under the real
 * writer: two allocation engines run the same random decisions, one on the memory store (the
 * reference), one on an SQLite file. DISCOVERs (some offers only), REQUESTs, RELEASEs, sweeps
 * with the clock moving, several decisions at once (one group-commit batch), 4o6 identities
 * (`id:`/`hw:`, several behind one IPv6 address, one following its client to another
 * address), hosts whose holder hashes collide, a shared pool (4 hosts per address), and
 * restarts of the SQLite engine on its file (a new store, with the load). Every answer must
 * be the same, the stored active rows the same, and no holder or slot twice in the file.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine, type EngineResult } from "../lib/alloc/engine.ts";
import type { LeaseStore } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import {
  activeOf,
  doubleHolders,
  HOST_PAIRS,
  IDENTITY_PAIRS,
  random,
  storedActive,
} from "./helpers/rt20_guard_fuzz.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-rt20-engines-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 1_700_000_000_000;
const POOLS = [
  { prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1", share: 4 },
  { prefixes: ["203.0.113.0/30"], tep6: "2001:db8::1" },
];

/** (host6, identity): hosts (colliding pairs among them) and 4o6 clients. */
const CLIENTS: [string, string | undefined][] = [
  ...HOST_PAIRS.flat().map((h) => [h, undefined] as [string, undefined]),
  ...IDENTITY_PAIRS.map(([, host]) => [host, undefined] as [string, undefined]),
  ...IDENTITY_PAIRS.map(([id]) => ["2001:db8::40", id] as [string, string]),
  ...IDENTITY_PAIRS.map(([id]) => ["2001:db8::41", id] as [string, string]),
  ["2001:db8::40", "hw:1:020000000040"],
  ["2001:db8::40", undefined],
  ...Array.from(
    { length: 12 },
    (_, i) => [`2001:db8:5::${i + 1}`, undefined] as [string, undefined],
  ),
];

function engineOn(store: LeaseStore, clock: { now: number }): AllocationEngine {
  return new AllocationEngine({
    pools: POOLS,
    store,
    leaseTime: 600,
    now: () => clock.now,
    maxLeasesPerPrefix: 0,
  });
}

const said = (r: EngineResult) => (r.ok ? `ok ${r.lease.ipv4}/${r.lease.portSet.psid}` : r.reason);

async function run(seed: number, steps: number) {
  const next = random(seed);
  const path = join(dir, `engines-${seed}.db`);
  const clock = { now: T0 };
  const memory = new MemoryLeaseStore();
  let sqlite = SqliteLeaseStore.open(path);
  let reference = engineOn(memory, clock);
  let tested = engineOn(sqlite, clock);
  await reference.start();
  await tested.start();
  /** client index → the address it was last given. */
  const held = new Map<number, number>();
  const stats = { answers: 0, refused: 0, restarts: 0, swept: 0 };
  for (let step = 0; step < steps; step++) {
    const r = next();
    if (r < 0.03) {
      await tested.close();
      await sqlite.close();
      sqlite = SqliteLeaseStore.open(path);
      tested = engineOn(sqlite, clock);
      await tested.start();
      // The reference restarts too (offers, kept in memory only, are gone in both).
      await reference.close();
      reference = engineOn(memory, clock);
      await reference.start();
      stats.restarts++;
      continue;
    }
    if (r < 0.1) {
      clock.now += Math.floor(next() * 400_000);
      const [a, b] = await Promise.all([reference.sweep(), tested.sweep()]);
      expect(b.map((l) => l.ipv4)).toEqual(a.map((l) => l.ipv4));
      stats.swept += a.length;
      continue;
    }
    // 1–6 decisions at once: one group-commit batch.
    const calls: ((e: AllocationEngine) => Promise<EngineResult>)[] = [];
    const who: number[] = [];
    for (let n = 1 + Math.floor(next() * 6); n > 0; n--) {
      const c = Math.floor(next() * CLIENTS.length);
      const [host6, identity] = CLIENTS[c] as [string, string | undefined];
      const scope = identity === undefined ? undefined : { identity };
      const ipv4 = held.get(c);
      const q = next();
      who.push(c);
      if (ipv4 !== undefined && q < 0.25) calls.push((e) => e.release(host6, ipv4, scope));
      else if (ipv4 !== undefined && q < 0.55) calls.push((e) => e.request(host6, ipv4, scope));
      else {
        const persist = next() < 0.2 ? false : undefined;
        calls.push((e) => e.discover(host6, { ...scope, persist }));
      }
    }
    const want = await Promise.all(calls.map((call) => call(reference)));
    if (process.env.RT20_TRACE)
      console.log(
        step,
        who.map((c) => CLIENTS[c]),
        calls.map(String),
      );
    const got = await Promise.all(calls.map((call) => call(tested)));
    if (got.map(said).join() !== want.map(said).join()) {
      throw new Error(
        `seed ${seed} step ${step}: sqlite ${got.map(said).join(", ")}; memory ${want.map(said).join(", ")}`,
      );
    }
    for (const [i, res] of want.entries()) {
      stats.answers++;
      if (res.ok) held.set(who[i] as number, res.lease.ipv4);
      else stats.refused++;
    }
    if (step % 25 === 0) {
      const db = new Database(path, { readonly: true });
      try {
        expect(doubleHolders(db)).toEqual([]);
        expect(storedActive(db)).toEqual(activeOf(await memory.loadAll()));
      } finally {
        db.close();
      }
    }
  }
  await tested.close();
  await sqlite.close();
  await reference.close();
  const db = new Database(path, { readonly: true });
  expect(doubleHolders(db)).toEqual([]);
  expect(storedActive(db)).toEqual(activeOf(await memory.loadAll()));
  db.close();
  return stats;
}

describe("rt20: engine on SQLite vs engine on memory", () => {
  for (const seed of [11, 12, 13]) {
    test(`same answers and rows: identities, collisions, shared pool, restarts (seed ${seed})`, async () => {
      const stats = await run(seed, Number(process.env.RT20_STEPS ?? 800));
      console.log(`seed ${seed}`, stats);
      expect(stats.restarts).toBeGreaterThan(5);
      expect(stats.swept).toBeGreaterThan(10);
    }, 120_000);
  }
});
