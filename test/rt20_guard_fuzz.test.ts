/**
 * Red team (rt20) of the SQLite store's in-memory holder guard (lib/lease/sqlite_holders.ts,
 * commit a05cc11): random batches against the memory store (the LeaseStore reference) with
 * PSID-shared addresses, identities, holders whose hashes collide (host/host and
 * identity/host), deletes, reservations (their triggers abort a batch the guard accepted),
 * puts with and without the writer's hash of their holder (LeaseOp.holderHash) and a poison
 * row that makes SQLite fail a batch after the guard accepted it. After every
 * batch: same verdict as the memory store, same active rows, no holder with two active rows
 * stored, and the guard's table no smaller than the stored active rows.
 */
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { holderHash } from "../lib/lease/holder_index.ts";
import {
  type LeaseOp,
  type LeaseState,
  leaseHolder,
  type ReservationOp,
} from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteHolderGuard } from "../lib/lease/sqlite_holders.ts";
import { guardReservations, RESERVATIONS_SCHEMA } from "../lib/lease/sqlite_reservations.ts";
import { create } from "../lib/lease/sqlite_schema.ts";
import { SqliteBatchWriter } from "../lib/lease/sqlite_write.ts";
import {
  activeOf,
  doubleHolders,
  HOST_PAIRS,
  IDENTITY_PAIRS,
  leaseAt,
  random,
  SLOTS,
  slotKey,
  slotPortSet,
  storedActive,
} from "./helpers/rt20_guard_fuzz.ts";

/** (host6, identity) of every holder in play. */
const HOLDERS: [string, string | undefined][] = [
  ...HOST_PAIRS.flat().map((h) => [h, undefined] as [string, undefined]),
  ...IDENTITY_PAIRS.map(([id, host]) => [host, id] as [string, string]),
  ...IDENTITY_PAIRS.map(([, host]) => [host, undefined] as [string, undefined]),
  ["2001:db8::a", undefined],
  ["2001:db8::a", "hw:1:020000000001"],
];
const STATES: LeaseState[] = ["active", "active", "active", "released", "expired"];

function writerOnMemory() {
  const db = new Database(":memory:");
  create(db);
  db.run(RESERVATIONS_SCHEMA);
  guardReservations(db);
  // A row of pool 'poison' fails in SQLite after the guard accepted its batch.
  db.run(`CREATE TEMP TRIGGER poison_i BEFORE INSERT ON leases WHEN NEW.pool = 'poison'
    BEGIN SELECT RAISE(ABORT, 'poison'); END`);
  db.run(`CREATE TEMP TRIGGER poison_u BEFORE UPDATE ON leases WHEN NEW.pool = 'poison'
    BEGIN SELECT RAISE(ABORT, 'poison'); END`);
  const guard = new SqliteHolderGuard(db, ":memory:");
  const writer = new SqliteBatchWriter(db, ":memory:", undefined, undefined, guard);
  return { db, guard, writer };
}

async function run(seed: number, rounds: number) {
  const next = random(seed);
  const { db, guard, writer } = writerOnMemory();
  const memory = new MemoryLeaseStore();
  const stats = { refused: 0, poisoned: 0, reserved: 0, maxStale: 0 };
  for (let round = 0; round < rounds; round++) {
    if (next() < 0.04) {
      const [host6] = HOLDERS[Math.floor(next() * HOLDERS.length)] as [string, unknown];
      const slot = Math.floor(next() * SLOTS);
      const { ipv4, portSet } = slotPortSet(slot);
      const op: ReservationOp =
        next() < 0.5
          ? { op: "put", reservation: { host6, ipv4, psid: portSet.psid, createdAt: 1 } }
          : { op: "delete", host6 };
      const want = await memory.writeReservation(op).then(
        () => "ok",
        (e) => (e as Error).name,
      );
      let got = "ok";
      try {
        writer.reservation(op);
      } catch (e) {
        got = (e as Error).name;
      }
      if (got !== want)
        throw new Error(`seed ${seed} round ${round}: reservation ${got} vs ${want}`);
      if (got === "ok") stats.reserved++;
      continue;
    }
    const ops: LeaseOp[] = [];
    let poison = false;
    for (let n = 1 + Math.floor(next() * (next() < 0.8 ? 4 : 20)); n > 0; n--) {
      const slot = Math.floor(next() * SLOTS);
      if (next() < 0.05) {
        ops.push({ op: "delete", key: slotKey(slot) });
        continue;
      }
      const [host6, identity] = HOLDERS[Math.floor(next() * HOLDERS.length)] as [
        string,
        string | undefined,
      ];
      const bad = next() < 0.01;
      poison ||= bad;
      const state = STATES[Math.floor(next() * STATES.length)] as LeaseState;
      const lease = leaseAt(slot, host6, state, identity, bad ? "poison" : "pool");
      // Every other round the puts carry the holder's hash, as the engine's do (LeaseOp.holderHash).
      if (round % 2 === 0) ops.push({ op: "put", lease });
      else ops.push({ op: "put", lease, holderHash: holderHash(leaseHolder(lease)) });
    }
    // The memory store knows nothing of the poison: a poisoned batch is one it must not apply.
    let want = "refused";
    if (!poison) {
      want = await memory.write(ops).then(
        () => "written",
        () => "refused",
      );
    }
    let got = "written";
    try {
      writer.write(ops);
    } catch {
      got = "refused";
    }
    if (poison && got === "refused") stats.poisoned++;
    if (got !== want) throw new Error(`seed ${seed} round ${round}: sqlite ${got}, memory ${want}`);
    if (got === "refused") stats.refused++;
    const stored = storedActive(db);
    expect(doubleHolders(db)).toEqual([]);
    expect(stored).toEqual(activeOf(await memory.loadAll()));
    // The table holds an entry per active row (and maybe stale ones): never fewer.
    expect(guard.size).toBeGreaterThanOrEqual(stored.size);
    stats.maxStale = Math.max(stats.maxStale, guard.size - stored.size);
  }
  return stats;
}

describe("rt20: holder guard vs the memory store", () => {
  for (const seed of [1, 2, 3, 0x5eed, 0xdead]) {
    test(`random batches, PSID keys, collisions, reservations, poison (seed ${seed})`, async () => {
      const stats = await run(seed, Number(process.env.RT20_ROUNDS ?? 3000));
      console.log(`seed ${seed}`, stats);
      expect(stats.refused).toBeGreaterThan(50);
      expect(stats.poisoned).toBeGreaterThan(5);
      expect(stats.reserved).toBeGreaterThan(10);
    });
  }
});

describe("rt20: holder guard when SQLite runs out of room (SQLITE_FULL) after the guard accepted", () => {
  test("batches failing with SQLITE_FULL leave the guard as the stored rows; the rule holds after", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { leaseOf } = await import("../lib/lease/lease.ts");
    const dir = mkdtempSync(join(tmpdir(), "dstm-rt20-full-"));
    try {
      const db = new Database(join(dir, "full.db"), { create: true });
      db.run("PRAGMA journal_mode = WAL");
      create(db);
      const guard = new SqliteHolderGuard(db, "full.db");
      const writer = new SqliteBatchWriter(db, "full.db", undefined, undefined, guard);
      const memory = new MemoryLeaseStore();
      const next = random(0xf011);
      const SLOTS_FULL = 4000;
      const hosts = [
        ...HOST_PAIRS.flat(),
        ...Array.from({ length: 1500 }, (_, i) => `2001:db8:f:${i.toString(16)}::1`),
      ];
      const at = (slot: number, host6: string, state: LeaseState) =>
        leaseOf(
          0xc6336400 + slot,
          { offset: 0, psidLength: 0, psid: 0 },
          host6,
          0,
          "2001:db8::1",
          "p",
          state,
          1,
          2,
          undefined,
        );
      const stats = { full: 0, refused: 0, written: 0 };
      let pages = 0;
      for (let round = 0; round < 3000; round++) {
        // Now and then the database may not grow: its current size is its limit.
        if (round % 200 === 0) {
          pages = (db.query("PRAGMA page_count").get() as { page_count: number }).page_count;
          db.run(`PRAGMA max_page_count = ${round % 400 === 0 ? pages : 1_000_000}`);
        }
        const ops: LeaseOp[] = [];
        for (let n = 1 + Math.floor(next() * 8); n > 0; n--) {
          const slot = Math.floor(next() * SLOTS_FULL);
          const host = hosts[Math.floor(next() * hosts.length)] as string;
          const state = (["active", "active", "released", "expired"] as const)[
            Math.floor(next() * 4)
          ] as LeaseState;
          ops.push({ op: "put", lease: at(slot, host, state) });
        }
        let got = "written";
        try {
          writer.write(ops);
        } catch (error) {
          got = (error as { code?: string }).code === "SQLITE_FULL" ? "full" : "refused";
        }
        if (got === "full") {
          stats.full++;
          continue; // nothing of it stored: the reference does not see it either
        }
        const want = await memory.write(ops).then(
          () => "written",
          () => "refused",
        );
        if (got !== want) throw new Error(`round ${round}: sqlite ${got}, memory ${want}`);
        stats[got as "written" | "refused"]++;
        if (round % 100 === 0) expect(storedActive(db)).toEqual(activeOf(await memory.loadAll()));
      }
      const stored = storedActive(db);
      expect(doubleHolders(db)).toEqual([]);
      expect(stored).toEqual(activeOf(await memory.loadAll()));
      expect(guard.size).toBeGreaterThanOrEqual(stored.size);
      console.log("SQLITE_FULL", stats, "guard", guard.size, "active", stored.size);
      expect(stats.full).toBeGreaterThan(20);
      expect(stats.refused).toBeGreaterThan(20);
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
