/**
 * A lease is on disk before its ACK leaves (issue 10, mutant 1: SQLite opened with
 * `synchronous=OFF` survived the whole suite).
 *
 * Checks, none needing strace: the live connection of an open store reports
 * `synchronous=NORMAL` (1) in WAL mode, and every write resolves only after an fsync of the
 * WAL that the store made after the commit (lib/lease/wal_sync.ts: NORMAL plus that fsync is
 * FULL's guarantee, https://sqlite.org/pragma.html#pragma_synchronous, with the fsync off the
 * event loop); a spy store wrapped around the SQLite store records that the handler's
 * answer comes only after the store's write has resolved.
 */

import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import {
  type Lease,
  type LeaseOp,
  type LeaseStore,
  WHOLE_ADDRESS,
  type WriteOutcome,
} from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { DstmHandler } from "../lib/server/handler.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), "dstm-durability-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "leases.db");
}

/**
 * Opens a store while recording the bun:sqlite connections it uses (a spy on the Database
 * methods that run SQL: run, exec, query, prepare).
 */
function openCapturing(path: string): { store: SqliteLeaseStore; connections: Database[] } {
  const connections: Database[] = [];
  const proto = Database.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const saved = (["run", "exec", "query", "prepare"] as const).map((name) => {
    const original = proto[name]!;
    proto[name] = function (this: Database, ...args: unknown[]) {
      if (!connections.includes(this)) connections.push(this);
      return original.apply(this, args);
    };
    return [name, original] as const;
  });
  try {
    const store = SqliteLeaseStore.open(path);
    cleanup.push(() => store.close());
    return { store, connections };
  } finally {
    for (const [name, original] of saved) proto[name] = original;
  }
}

/** A LeaseStore that records when each write starts and when the real commit has returned. */
class SpyStore implements LeaseStore {
  readonly kind = "spy";
  readonly events: string[] = [];
  constructor(readonly inner: LeaseStore) {}
  loadAll(): Promise<Lease[]> {
    return this.inner.loadAll();
  }
  async write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    this.events.push(`write ${ops.length}`);
    // Yield a macrotask first: a caller that did not wait for the commit would answer now.
    await new Promise((resolve) => setImmediate(resolve));
    const outcome = await this.inner.write(ops);
    this.events.push("committed");
    return outcome;
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe("lease durability before the ACK", () => {
  test("the server's SQLite connection runs with synchronous=NORMAL in WAL mode, every write waits for its own WAL fsync", async () => {
    const path = tempDb();
    const { connections } = openCapturing(path);
    // One connection to the lease database (the other holds the lock file, lib/lease/sqlite_lock.ts).
    const onDb = connections.filter((c) => c.filename === path);
    expect(onDb.length).toBe(1);
    const db = onDb[0]!;
    const sync = db.query("PRAGMA synchronous").get() as { synchronous: number };
    expect(sync.synchronous).toBe(1); // NORMAL: the store fsyncs the WAL itself
    const mode = db.query("PRAGMA journal_mode").get() as { journal_mode: string };
    expect(mode.journal_mode).toBe("wal");
    const { store } = openCapturing(tempDb());
    const lease = (ipv4: number): Lease =>
      ({
        ipv4,
        portSet: WHOLE_ADDRESS,
        host6: `2001:db8:a::${ipv4 & 0xff}`,
        tep4: 0xc0000201,
        tep6: "2001:db8::1",
        pool: "p",
        state: "active",
        grantedAt: 1,
        expiresAt: 2,
      }) as Lease;
    for (let i = 1; i <= 3; i++) {
      const before = store.syncs;
      let settled = false;
      const write = store.write([{ op: "put", lease: lease(0xc0000200 + i) }]).then(() => {
        settled = true;
      });
      // The commit has returned (synchronously) but its fsync runs on the thread pool.
      expect(settled).toBe(false);
      await write;
      expect(store.syncs).toBe(before + 1);
    }
    // Three writes at once share fsyncs: the first starts one, the other two wait for the next.
    const before = store.syncs;
    await Promise.all(
      [4, 5, 6].map((i) => store.write([{ op: "put", lease: lease(0xc0000200 + i) }])),
    );
    expect(store.syncs).toBe(before + 2);
  });

  test("DISCOVER_ACK and REQUEST_ACK are made only after the SQLite commit returned", async () => {
    const { store } = openCapturing(tempDb());
    const spy = new SpyStore(store);
    const engine = new AllocationEngine({
      pools: [{ prefixes: ["192.0.2.0/29"], tep6: "2001:db8::1" }],
      store: spy,
      leaseTime: 600,
    });
    await engine.start();
    cleanup.push(() => engine.close());
    const handler = new DstmHandler({
      engine,
      sourceCheck: false,
      log: new Logger({ sink: () => {} }),
      metrics: new Metrics(),
    });
    const ask = async (type: MessageType, host4?: number) => {
      const raw = encodeMessage({ type, xid: 7, host6: "2001:db8:a::1", host4 });
      const answer = await handler.handle(raw, "2001:db8:a::1", 4607);
      spy.events.push("answer");
      const decoded = decodeMessage(answer!);
      if (!decoded.ok) throw new Error(decoded.error.message);
      return decoded.value;
    };
    const ack = await ask(MessageType.DISCOVER);
    expect(ack.type).toBe(MessageType.DISCOVER_ACK);
    expect(spy.events).toEqual(["write 1", "committed", "answer"]);
    const renewed = await ask(MessageType.REQUEST, ack.host4);
    expect(renewed.type).toBe(MessageType.REQUEST_ACK);
    expect(spy.events).toEqual([
      "write 1",
      "committed",
      "answer",
      "write 1",
      "committed",
      "answer",
    ]);
    // What was acknowledged is in the file: a second connection (after close) reads it back.
    await engine.close();
    await store.close();
    const reopened = SqliteLeaseStore.openReadOnly(store.path);
    const rows = await reopened.loadAll();
    await reopened.close();
    expect(rows.map((r) => [r.ipv4, r.host6, r.state])).toEqual([
      [ack.host4!, "2001:db8:a::1", "active"],
    ]);
  });
});
