/**
 * The SQLite store's write path sends runs of puts as multi-row upserts
 * (lib/lease/sqlite_write.ts, UPSERT_ROWS at a time): checked against the memory store (the
 * reference model of the LeaseStore contract) on random batches that cross the chunk size,
 * put one key several times in a batch, move a host's active lease from one key to another,
 * mix deletes in, and break the one-active-lease-per-holder rule now and then (the whole batch
 * must then be refused and leave nothing behind).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Lease,
  type LeaseOp,
  type LeaseState,
  LeaseStoreError,
  leaseKey,
  leaseOf,
  WHOLE_ADDRESS,
} from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { UPSERT_ROWS } from "../lib/lease/sqlite_write.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-batches-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small deterministic PRNG (mulberry32), so that a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYS = 32;
const STATES: LeaseState[] = ["active", "released", "expired"];

function row(next: () => number, stamp: number): Lease {
  const slot = Math.floor(next() * KEYS);
  // Mostly one host per address; now and then another one (a holder with two actives: refused).
  const host = next() < 0.93 ? slot : Math.floor(next() * KEYS);
  return leaseOf(
    0xc0000200 + slot,
    WHOLE_ADDRESS,
    `2001:db8::${(host + 1).toString(16)}`,
    0xc0000201,
    "2001:db8::1",
    "pool",
    STATES[Math.floor(next() * 3)] as LeaseState,
    stamp,
    stamp + 3_600_000,
    next() < 0.2 ? `id:${host}` : undefined,
  );
}

function batch(next: () => number, stamp: number): LeaseOp[] {
  // Lengths around the chunk size and its multiples.
  const length = 1 + Math.floor(next() * (UPSERT_ROWS * 3 + 5));
  const ops: LeaseOp[] = [];
  for (let i = 0; i < length; i++) {
    if (next() < 0.1) {
      ops.push({ op: "delete", key: leaseKey(0xc0000200 + Math.floor(next() * KEYS), 0) });
    } else {
      ops.push({ op: "put", lease: row(next, stamp + i) });
    }
  }
  return ops;
}

async function outcome(promise: Promise<unknown>): Promise<"ok" | "refused"> {
  try {
    await promise;
    return "ok";
  } catch (error) {
    expect(error).toBeInstanceOf(LeaseStoreError);
    return "refused";
  }
}

describe("SQLite multi-row upserts", () => {
  test("random batches end as in the memory store, refusals included", async () => {
    for (const seed of [1, 2, 3]) {
      const next = random(seed);
      const sqlite = SqliteLeaseStore.open(join(dir, `seed-${seed}.db`));
      const memory = new MemoryLeaseStore();
      const seen = { ok: 0, refused: 0, chunked: 0 };
      try {
        for (let i = 0; i < 150; i++) {
          const ops = batch(next, 1_000_000 + i * 100);
          const expected = await outcome(memory.write(ops));
          expect({ seed, i, result: await outcome(sqlite.write(ops)) }).toEqual({
            seed,
            i,
            result: expected,
          });
          expect(await sqlite.loadAll()).toEqual(await memory.loadAll());
          seen[expected]++;
          if (ops.length > UPSERT_ROWS) seen.chunked++;
        }
      } finally {
        await sqlite.close();
      }
      // The run covered both outcomes and batches longer than one statement.
      expect(seen.ok).toBeGreaterThan(10);
      expect(seen.refused).toBeGreaterThan(10);
      expect(seen.chunked).toBeGreaterThan(10);
    }
  });

  test("one batch puts a key twice (the later row stays) and moves a host within one statement", async () => {
    const store = SqliteLeaseStore.open(join(dir, "twice.db"));
    try {
      const at = (ipv4: number, state: LeaseState, t: number) =>
        leaseOf(
          ipv4,
          WHOLE_ADDRESS,
          "2001:db8::a",
          1,
          "2001:db8::1",
          "pool",
          state,
          t,
          t + 1,
          undefined,
        );
      await store.write([{ op: "put", lease: at(0xc0000201, "active", 1) }]);
      const ops: LeaseOp[] = [
        { op: "put", lease: at(0xc0000202, "expired", 2) },
        { op: "put", lease: at(0xc0000201, "released", 3) }, // frees the host's active lease…
        { op: "put", lease: at(0xc0000203, "active", 4) }, // …so it may take another
        { op: "put", lease: at(0xc0000202, "released", 5) }, // same key again: this row stays
      ];
      await store.write(ops);
      expect(await store.loadAll()).toEqual([
        at(0xc0000201, "released", 3),
        at(0xc0000202, "released", 5),
        at(0xc0000203, "active", 4),
      ]);
    } finally {
      await store.close();
    }
  });
});
