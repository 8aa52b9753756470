/**
 * The SQLite store's writer Worker (lib/lease/sqlite_writer.ts) and the batch encoding it
 * reads (lib/lease/sqlite_batch.ts): a batch round-trips through the shared ring, also when the
 * ring wraps and with strings that are not ASCII; a batch too large for the ring still
 * commits; and a batch sent before the store heard that an earlier one failed is refused with
 * that failure, never committed (it was decided on top of the failed changes).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Lease, type LeaseOp, leaseOf, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import {
  BATCH_NUMS,
  BATCH_STATES,
  BatchArena,
  BatchNum,
  readBatch,
} from "../lib/lease/sqlite_batch.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-writer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function lease(n: number, host = n, identity?: string, pool = "pool"): Lease {
  return leaseOf(
    0xc0000200 + n,
    n % 2 ? { offset: 6, psidLength: 4, psid: n % 16 } : WHOLE_ADDRESS,
    `2001:db8::${(host + 1).toString(16)}`,
    0xc0000201,
    "2001:db8::1",
    pool,
    "active",
    1_700_000_000_000 + n,
    1_700_000_600_000 + n,
    identity,
  );
}

/** The leases of a batch as read back from the arena (what the Worker binds). */
function decoded(arena: BatchArena, start: number): { gen: number; rows: unknown[] } {
  const b = readBatch(arena.buffer, start, new TextDecoder());
  const rows: unknown[] = [];
  let s = 0;
  for (let i = 0; i < b.n; i++) {
    const r = i * BATCH_NUMS;
    const num = (c: number) => b.nums[r + c] as number;
    if (num(BatchNum.PUT) === 0) {
      rows.push({ key: num(BatchNum.KEY) });
      continue;
    }
    const take = (length: number) => {
      const from = s;
      s += length;
      return b.text.slice(from, s);
    };
    const host6 = take(num(BatchNum.HOST6_LEN));
    const tep6 = take(num(BatchNum.TEP6_LEN));
    const pool = take(num(BatchNum.POOL_LEN));
    const identity = num(BatchNum.IDENTITY_LEN) < 0 ? undefined : take(num(BatchNum.IDENTITY_LEN));
    rows.push(
      leaseOf(
        num(BatchNum.IPV4),
        num(BatchNum.PSID_LENGTH) === 0
          ? WHOLE_ADDRESS
          : {
              offset: num(BatchNum.OFFSET),
              psidLength: num(BatchNum.PSID_LENGTH),
              psid: num(BatchNum.PSID),
            },
        host6,
        num(BatchNum.TEP4),
        tep6,
        pool,
        BATCH_STATES[num(BatchNum.STATE)] as Lease["state"],
        num(BatchNum.GRANTED_AT),
        num(BatchNum.EXPIRES_AT),
        identity,
      ),
    );
  }
  return { gen: b.gen, rows };
}

function expected(ops: readonly LeaseOp[]): unknown[] {
  return ops.map((op) => (op.op === "delete" ? { key: op.key } : op.lease));
}

describe("BatchArena", () => {
  test("batches round-trip, in a ring that wraps, and one that does not fit is refused (-1)", () => {
    const arena = new BatchArena(4096);
    const live: { start: number; ops: LeaseOp[]; gen: number }[] = [];
    let wrapped = false;
    let last = -1;
    for (let i = 0; i < 200; i++) {
      const ops: LeaseOp[] = Array.from({ length: 1 + (i % 5) }, (_, j): LeaseOp => {
        const n = i * 5 + j;
        if (n % 7 === 3) return { op: "delete", key: n };
        // Identities and pool names with characters of 2, 3 and 4 bytes of UTF-8.
        return {
          op: "put",
          lease: lease(n, n, n % 3 === 0 ? `id:é${n}` : undefined, n % 4 ? "pool" : "pöol✓𝄞"),
        };
      });
      let start = arena.put(ops, i);
      while (start < 0) {
        // Full: the oldest answered first, as the Worker answers in order.
        const oldest = live.shift();
        if (oldest === undefined) throw new Error("an empty arena refused a small batch");
        expect(decoded(arena, oldest.start)).toEqual({
          gen: oldest.gen,
          rows: expected(oldest.ops),
        });
        arena.free();
        start = arena.put(ops, i);
      }
      if (start < last) wrapped = true;
      last = start;
      live.push({ start, ops, gen: i });
    }
    for (const b of live)
      expect(decoded(arena, b.start)).toEqual({ gen: b.gen, rows: expected(b.ops) });
    expect(wrapped).toBe(true);
    // Larger than the whole ring.
    const huge: LeaseOp[] = Array.from({ length: 100 }, (_, n) => ({ op: "put", lease: lease(n) }));
    expect(new BatchArena(4096).put(huge, 0)).toBe(-1);
  });
});

describe("the SQLite store's writer", () => {
  test("a batch larger than the arena still commits (sent as a copy)", async () => {
    const path = join(dir, "large.db");
    const store = SqliteLeaseStore.open(path, { newDb: true });
    try {
      const ops: LeaseOp[] = Array.from({ length: 20_000 }, (_, n) => ({
        op: "put",
        lease: lease(n, n, n % 5 === 0 ? `id:${n}` : undefined),
      }));
      await store.write(ops);
      const rows = await store.loadAll();
      expect(rows.length).toBe(20_000);
      expect(rows[5]).toEqual(lease(5, 5, "id:5"));
      expect(rows[7]).toEqual(lease(7));
    } finally {
      await store.close();
    }
  });

  test("a batch sent before the store heard that an earlier one failed is refused with that failure, not committed", async () => {
    const path = join(dir, "gen.db");
    const store = SqliteLeaseStore.open(path, { newDb: true });
    try {
      await store.write([{ op: "put", lease: lease(1) }]);
      // Host 1 would hold two active leases: the whole batch fails (the unique index).
      const failing = store.commit([{ op: "put", lease: lease(2, 1) }]);
      // Sent at once, before the Worker answered the first: decided on top of it.
      const after = store.commit([{ op: "put", lease: lease(3) }]);
      const [first, second] = await Promise.allSettled([failing, after]);
      expect(first?.status).toBe("rejected");
      expect(second?.status).toBe("rejected");
      const reason = (r: PromiseSettledResult<void> | undefined) =>
        String((r as PromiseRejectedResult).reason?.message);
      expect(reason(first)).toContain("two active leases");
      expect(reason(second)).toBe(reason(first));
      expect((await store.loadAll()).map((l) => l.ipv4)).toEqual([lease(1).ipv4]);
      // Sent after the store heard of it: written as usual.
      await store.write([{ op: "put", lease: lease(4) }]);
      expect((await store.loadAll()).map((l) => l.ipv4)).toEqual([lease(1).ipv4, lease(4).ipv4]);
    } finally {
      await store.close();
    }
  });
});
