/**
 * The SQLite store's WAL checkpoints on a Worker of their own (lib/lease/wal_checkpointer.ts):
 * the database file is filled from the WAL while the store is open and its own connection
 * never checkpoints; a Worker that cannot start hands checkpoints back to the store's
 * connection (SQLite's default, every 1,000 pages); close() leaves no WAL behind and every
 * lease readable. That the server's event-loop thread writes no page of the database file
 * under load is read from a real server's system calls in test/server_wal_fsync_order.test.ts.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LeaseOp, leaseOf, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { waitUntil } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-walckpt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `count` puts of fresh leases from `first` on, one host each. */
function puts(first: number, count: number): LeaseOp[] {
  return Array.from({ length: count }, (_, i) => {
    const n = first + i;
    return {
      op: "put" as const,
      lease: leaseOf(
        0xc6120000 + n,
        WHOLE_ADDRESS,
        `2001:db8:c4::${n.toString(16)}`,
        0xc0000201,
        "2001:db8::1",
        "pool",
        "active",
        1_000,
        3_601_000,
        undefined,
      ),
    };
  });
}

/** Writes `batches` batches of `size` leases, numbered from `first`. */
async function fill(store: SqliteLeaseStore, first: number, batches: number, size: number) {
  for (let b = 0; b < batches; b++) await store.write(puts(first + b * size, size));
}

const bytes = (path: string) => (existsSync(path) ? statSync(path).size : 0);

test("the Worker copies the WAL into the database file while the store is open; close leaves no WAL and every lease", async () => {
  const path = join(dir, "worker.db");
  const store = SqliteLeaseStore.open(path, { checkpoint: { intervalMs: 20 } });
  const empty = bytes(path);
  // 40 commits of 25 leases: far below the 1,000 WAL pages at which SQLite's own automatic
  // checkpoint would run, so only the Worker can have filled the database file.
  await fill(store, 0, 40, 25);
  await waitUntil(() => store.checkpoints.frames > 0 && bytes(path) > empty, {
    what: "a checkpoint by the Worker",
  });
  expect(store.checkpoints.failure).toBeUndefined();
  // Writes go on while it runs.
  await fill(store, 1_000, 10, 25);
  await store.close();
  expect(existsSync(`${path}-wal`)).toBe(false);
  const again = SqliteLeaseStore.openReadOnly(path);
  try {
    expect((await again.loadAll()).length).toBe(1_250);
  } finally {
    await again.close();
  }
});

test("an idle store runs no checkpoint: the Worker keeps looking, the checkpoint count stays flat until the next commit", async () => {
  const path = join(dir, "idle.db");
  const store = SqliteLeaseStore.open(path, { checkpoint: { intervalMs: 10 } });
  const looks = () => store.checkpoints.looks ?? 0;
  const lookedMore = async (n: number, what: string) => {
    const from = looks();
    await waitUntil(() => looks() >= from + n, { what });
  };
  try {
    await fill(store, 0, 4, 25);
    await waitUntil(() => store.checkpoints.frames > 0, { what: "the first checkpoint" });
    // Two looks after the last commit: whatever it left has been checkpointed.
    await lookedMore(2, "two looks after the commits");
    const runs = store.checkpoints.runs;
    expect(runs).toBeGreaterThan(0);
    // Idle: 30 looks, not one checkpoint (before: one per look, 10 a second by default).
    await lookedMore(30, "30 looks while idle");
    expect(store.checkpoints.runs).toBe(runs);
    // A commit: the next look checkpoints it.
    const frames = store.checkpoints.frames;
    await fill(store, 1_000, 1, 25);
    await waitUntil(() => store.checkpoints.frames > frames, { what: "the new frames copied" });
    expect(store.checkpoints.runs).toBeGreaterThan(runs);
    expect(store.checkpoints.failure).toBeUndefined();
  } finally {
    await store.close();
  }
});

test("a checkpointer that cannot start: the failure is kept and the store's own connection checkpoints again", async () => {
  const path = join(dir, "fallback.db");
  const workerUrl = new URL("./helpers/throwing_worker.ts", import.meta.url).href;
  const said: string[] = [];
  const store = SqliteLeaseStore.open(path, {
    checkpoint: { workerUrl },
    onCheckpointFailure: (message) => said.push(message),
  });
  try {
    await waitUntil(() => store.checkpoints.failure !== undefined, {
      what: "the Worker's failure",
    });
    expect(said).toEqual([store.checkpoints.failure as string]);
    const empty = bytes(path);
    // Past 1,000 WAL pages (about 1,660 frames: 500 commits of 40 fresh leases), SQLite's
    // automatic checkpoint, back on, copies them.
    await fill(store, 0, 500, 40);
    expect(bytes(path)).toBeGreaterThan(empty);
    expect(store.checkpoints.frames).toBe(0);
  } finally {
    await store.close();
  }
  expect(existsSync(`${path}-wal`)).toBe(false);
});

test("below WAL_PAGES the store's own connection never checkpoints: with the Worker idle the database file stays empty (the tests above can fail)", async () => {
  // The same load as the fallback test (fewer WAL pages than WAL_PAGES), the Worker's first
  // checkpoint a minute away: nothing reaches the database file until close.
  const { Database } = await import("bun:sqlite");
  const path = join(dir, "bare.db");
  const store = SqliteLeaseStore.open(path, { checkpoint: { intervalMs: 60_000 } });
  try {
    const empty = bytes(path);
    await fill(store, 0, 500, 40);
    expect(bytes(path)).toBe(empty);
    expect(store.checkpoints.runs).toBe(0);
  } finally {
    await store.close();
  }
  const db = new Database(path, { readonly: true });
  try {
    expect((db.query("SELECT count(*) AS n FROM leases").get() as { n: number }).n).toBe(20_000);
  } finally {
    db.close();
  }
});

test("past walPages the store's own connection checkpoints: the WAL stays bounded while commits never pause", async () => {
  // The Worker idle (its first run a minute away), so only the bound can keep the WAL small;
  // without it (the Worker alone) the same load leaves every frame in the WAL.
  const path = join(dir, "bounded.db");
  const walPages = 200;
  const store = SqliteLeaseStore.open(path, { checkpoint: { intervalMs: 60_000, walPages } });
  let largest = 0;
  try {
    for (let b = 0; b < 250; b++) {
      await store.write(puts(b * 40, 40));
      largest = Math.max(largest, bytes(`${path}-wal`));
    }
    expect(store.checkpoints.runs).toBe(0);
    expect(bytes(path)).toBeGreaterThan(4096);
  } finally {
    await store.close();
  }
  // WAL header 32 bytes, each frame 24 + 4,096; one commit of 40 leases writes a few dozen.
  const frames = Math.floor((largest - 32) / (24 + 4096));
  expect(frames).toBeGreaterThan(walPages / 2);
  expect(frames).toBeLessThan(walPages + 100);
});
