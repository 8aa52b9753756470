/**
 * The SQLite store's writer thread (lib/lease/sqlite_writer.ts): batches are committed by a
 * Worker with its own connection, in the order given, each promise settled only once its
 * transaction is committed; a Worker that cannot start leaves every write to the main thread
 * (the fallback), in the same order. Assertions on outcomes only, never on timing.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Lease,
  type LeaseOp,
  LeaseStoreError,
  leaseOf,
  WHOLE_ADDRESS,
} from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { SqliteWriterThread, type WriterJob } from "../lib/lease/sqlite_writer.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-writer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lease = (n: number, host = n): Lease =>
  leaseOf(
    0xc0000200 + n,
    WHOLE_ADDRESS,
    `2001:db8::${(host + 1).toString(16)}`,
    0xc0000201,
    "2001:db8::1",
    "pool",
    "active",
    1000 + n,
    3_601_000 + n,
    undefined,
  );
const put = (l: Lease): LeaseOp => ({ op: "put", lease: l });

/** What `promise` rejected with, or "ok" (not expect().rejects: see lease_conformance). */
const outcome = (promise: Promise<void>): Promise<unknown> =>
  promise.then(
    () => "ok",
    (error: unknown) => error,
  );

describe("SQLite writer thread", () => {
  test("writes given at once (not awaited one by one) all commit, in order; a failing one fails alone", async () => {
    const path = join(dir, "order.db");
    const store = SqliteLeaseStore.open(path);
    const results = await Promise.all([
      outcome(store.write([put(lease(1))])),
      outcome(store.write([put(lease(2))])),
      // Host of lease 1 again, still active there: refused, and nothing of it stored.
      outcome(store.write([put(lease(3, 1)), put(lease(4))])),
      outcome(store.write([put({ ...lease(1), state: "released" })])),
      outcome(store.write([put(lease(5, 1))])), // now allowed: lease 1 was released before
    ]);
    expect(results.slice(0, 2)).toEqual(["ok", "ok"]);
    expect(results[2]).toBeInstanceOf(LeaseStoreError);
    expect(results.slice(3)).toEqual(["ok", "ok"]);
    await store.close();
    // A fresh reader (another connection, after the writer closed) sees exactly the commits.
    const reader = SqliteLeaseStore.openReadOnly(path);
    expect(await reader.loadAll()).toEqual([
      { ...lease(1), state: "released" },
      lease(2),
      lease(5, 1),
    ]);
    await reader.close();
  });

  test("close waits for the writes given before it", async () => {
    const path = join(dir, "close.db");
    const store = SqliteLeaseStore.open(path);
    const writes = Array.from({ length: 20 }, (_, i) => store.write([put(lease(i))]));
    await store.close();
    expect(await Promise.all(writes.map(outcome))).toEqual(new Array(20).fill("ok"));
    const reader = SqliteLeaseStore.openReadOnly(path);
    expect((await reader.loadAll()).length).toBe(20);
    await reader.close();
  });

  test("a Worker that cannot start: every job goes to the fallback, in order, with its outcome", async () => {
    const seen: string[] = [];
    const fallback = (job: WriterJob) => {
      const first = job.kind === "write" ? job.ops[0] : undefined;
      const n = first?.op === "put" ? first.lease.ipv4 - 0xc0000200 : -1;
      seen.push(`${job.kind} ${n}`);
      if (n === 2) throw new LeaseStoreError("refused by the fallback");
    };
    const thread = new SqliteWriterThread(
      join(dir, "none.db"),
      undefined,
      undefined,
      fallback,
      join(dir, "no-such-worker.ts"),
    );
    const results = await Promise.all([
      outcome(thread.write([put(lease(1))])),
      outcome(thread.write([put(lease(2))])),
      outcome(thread.reservation({ op: "delete", host6: "2001:db8::9" })),
    ]);
    expect(seen).toEqual(["write 1", "write 2", "reservation -1"]);
    expect(results[0]).toBe("ok");
    expect(results[1]).toBeInstanceOf(LeaseStoreError);
    expect(results[2]).toBe("ok");
    expect(thread.threaded).toBe(false);
    await thread.close();
    expect(await outcome(thread.write([put(lease(3))]))).toBeInstanceOf(LeaseStoreError);
  });
});
