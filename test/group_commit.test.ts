import { describe, expect, test } from "bun:test";
import { GroupCommitter } from "../lib/lease/group_commit.ts";
import {
  type Lease,
  type LeaseOp,
  type LeaseStore,
  WHOLE_ADDRESS,
  type WriteOutcome,
} from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { waitUntil } from "./helpers/wait.ts";

function lease(n: number): Lease {
  return {
    ipv4: 0xc0000200 + n,
    portSet: WHOLE_ADDRESS,
    host6: `2001:db8::${(n + 1).toString(16)}`,
    tep4: 0,
    tep6: "2001:db8::1",
    pool: "192.0.2.0/24",
    state: "active",
    grantedAt: 0,
    expiresAt: 1000,
  };
}
const put = (n: number): LeaseOp => ({ op: "put", lease: lease(n) });

/** A store that records each write and can be told to fail, or to hold writes until let go. */
class RecordingStore implements LeaseStore {
  readonly kind = "recording";
  readonly writes: LeaseOp[][] = [];
  readonly inner = new MemoryLeaseStore();
  failNext = 0;
  /** While set, a write waits for it (see hold()). */
  gate: Promise<void> | undefined;
  /** Makes writes wait until the returned function is called. */
  hold(): () => void {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.gate = promise;
    return () => {
      this.gate = undefined;
      resolve();
    };
  }
  loadAll(): Promise<Lease[]> {
    return this.inner.loadAll();
  }
  async write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    this.writes.push([...ops]);
    if (this.gate) await this.gate;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("disk on fire");
    }
    return await this.inner.write(ops);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe("GroupCommitter", () => {
  test("ops submitted in one tick go into one write, in order", async () => {
    const store = new RecordingStore();
    const committer = new GroupCommitter(store);
    await Promise.all([
      committer.submit([put(1)]),
      committer.submit([put(2), put(3)]),
      committer.submit([put(4)]),
    ]);
    expect(store.writes).toHaveLength(1);
    expect(store.writes[0]?.map((op) => (op.op === "put" ? op.lease.ipv4 & 255 : -1))).toEqual([
      1, 2, 3, 4,
    ]);
    expect(committer.stats).toEqual({ batches: 1, ops: 4 });
    expect(await store.loadAll()).toHaveLength(4);
  });

  test("submit resolves only after the write committed", async () => {
    const store = new RecordingStore();
    const letGo = store.hold();
    const committer = new GroupCommitter(store);
    let done = false;
    const pending = committer.submit([put(1)]).then(() => {
      done = true;
    });
    await waitUntil(() => store.writes.length === 1, { what: "the write to start" });
    expect(done).toBe(false); // the write is held: it has not committed
    letGo();
    await pending;
    expect(await store.loadAll()).toHaveLength(1);
  });

  test("ops arriving while a write is in flight gather into the next write", async () => {
    const store = new RecordingStore();
    const letGo = store.hold();
    const committer = new GroupCommitter(store);
    const first = committer.submit([put(1)]);
    await waitUntil(() => store.writes.length === 1, { what: "the first write in flight" });
    const rest = [committer.submit([put(2)]), committer.submit([put(3)])];
    await new Promise((resolve) => setImmediate(resolve)); // a later tick, still in flight
    const late = committer.submit([put(4)]);
    expect(store.writes).toHaveLength(1);
    letGo();
    await Promise.all([first, ...rest, late]);
    expect(store.writes.map((w) => w.length)).toEqual([1, 3]);
  });

  test("a failed write rejects every submitter of that batch and only them", async () => {
    const store = new RecordingStore();
    store.failNext = 1;
    const committer = new GroupCommitter(store);
    const batch1 = [committer.submit([put(1)]), committer.submit([put(2)])];
    const results = await Promise.allSettled(batch1);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect((results[0] as PromiseRejectedResult).reason.message).toBe("disk on fire");
    await committer.submit([put(3)]); // the next batch works
    expect((await store.loadAll()).map((l) => l.ipv4 & 255)).toEqual([3]);
  });

  test("a store rejecting the batch for a contract violation fails just that batch", async () => {
    const store = new RecordingStore();
    const committer = new GroupCommitter(store);
    const twoActive: LeaseOp = { op: "put", lease: { ...lease(9), host6: lease(1).host6 } };
    const results = await Promise.allSettled([
      committer.submit([put(1)]),
      committer.submit([twoActive]),
    ]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(await store.loadAll()).toEqual([]);
    await committer.submit([put(1)]);
    expect(await store.loadAll()).toEqual([lease(1)]);
  });

  test("a store that throws synchronously rejects the batch", async () => {
    const store = new RecordingStore();
    store.write = () => {
      throw new Error("sync boom");
    };
    const committer = new GroupCommitter(store);
    await expect(committer.submit([put(1)])).rejects.toThrow("sync boom");
  });

  test("flush() writes at once and waits for everything submitted", async () => {
    const store = new RecordingStore();
    const committer = new GroupCommitter(store);
    let letGo = store.hold();
    const a = committer.submit([put(1)]);
    const flushed = committer.flush();
    await waitUntil(() => store.writes.length === 1, { what: "the flushed write" });
    letGo();
    await flushed;
    expect(store.writes).toHaveLength(1);
    const b = committer.submit([put(2)]);
    store.failNext = 1;
    letGo = store.hold();
    const flushedAgain = committer.flush();
    await waitUntil(() => store.writes.length === 2, { what: "the second write" });
    letGo();
    await flushedAgain; // resolves even though the write failed
    await a;
    await expect(b).rejects.toThrow("disk on fire");
    await committer.flush(); // nothing pending
    expect(committer.stats.batches).toBe(2);
  });

  test("abortPending() drops the gathering batch and rejects its submitters", async () => {
    const store = new RecordingStore();
    const letGo = store.hold();
    const committer = new GroupCommitter(store);
    const inFlight = committer.submit([put(1)]);
    await waitUntil(() => store.writes.length === 1, { what: "the first write in flight" });
    const dropped = committer.submit([put(2), put(3)]);
    expect(committer.abortPending(new Error("aborted"))).toBe(2);
    await expect(dropped).rejects.toThrow("aborted");
    letGo();
    await inFlight;
    await committer.flush();
    expect(store.writes.map((w) => w.length)).toEqual([1]);
  });

  test("1,000 concurrent submitters cost one write", async () => {
    const store = new RecordingStore();
    const committer = new GroupCommitter(store);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => committer.submit([put(i % 250)])));
    expect(committer.stats).toEqual({ batches: 1, ops: 1000 });
  });
});

/** A store that commits on the calling thread (LeaseStore.commit) and is made durable when the test says. */
class PipelinedStore extends RecordingStore {
  readonly commits: LeaseOp[][] = [];
  readonly durable: { resolve: () => void; reject: (e: Error) => void }[] = [];
  throwNext = false;
  commit(ops: readonly LeaseOp[]): Promise<void> {
    if (this.throwNext) {
      this.throwNext = false;
      throw new Error("constraint failed");
    }
    this.commits.push([...ops]);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.durable.push({ resolve, reject });
    return promise;
  }
}

describe("GroupCommitter, pipelined store (LeaseStore.commit)", () => {
  test("the next batch commits while the first is made durable; each settles once durable, in order", async () => {
    const store = new PipelinedStore();
    const committer = new GroupCommitter(store);
    const order: string[] = [];
    const a = committer.submit([put(1)]).then(() => order.push("a"));
    await waitUntil(() => store.commits.length === 1, { what: "batch a committed" });
    const b = committer.submit([put(2)]).then(() => order.push("b"));
    await waitUntil(() => store.commits.length === 2, {
      what: "batch b committed before a is durable",
    });
    expect(store.writes).toHaveLength(0);
    // b's fsync returns first: b still settles after a, and neither before its own durability.
    store.durable[1]!.resolve();
    await Bun.sleep(5);
    expect(order).toEqual([]);
    store.durable[0]!.resolve();
    await Promise.all([a, b]);
    expect(order).toEqual(["a", "b"]);
  });

  test(`at most ${2} committed batches wait for durability; the next commits when one settles`, async () => {
    const store = new PipelinedStore();
    const committer = new GroupCommitter(store);
    const a = committer.submit([put(1)]);
    await waitUntil(() => store.commits.length === 1, { what: "a committed" });
    const b = committer.submit([put(2)]);
    await waitUntil(() => store.commits.length === 2, { what: "b committed" });
    const c = committer.submit([put(3)]);
    await Bun.sleep(5);
    expect(store.commits).toHaveLength(2);
    store.durable[0]!.resolve();
    await a;
    await waitUntil(() => store.commits.length === 3, { what: "c committed once a settled" });
    store.durable[1]!.resolve();
    store.durable[2]!.resolve();
    await Promise.all([b, c]);
    await committer.flush();
    expect(committer.stats).toEqual({ batches: 3, ops: 3 });
  });

  test("a commit that throws is rejected only after the batch committed before it settled", async () => {
    const store = new PipelinedStore();
    const committer = new GroupCommitter(store);
    const order: string[] = [];
    const a = committer.submit([put(1)]).then(() => order.push("a durable"));
    await waitUntil(() => store.commits.length === 1, { what: "a committed" });
    store.throwNext = true;
    const b = committer.submit([put(2)]).then(
      () => order.push("b resolved"),
      (e: Error) => order.push(`b rejected: ${e.message}`),
    );
    await Bun.sleep(5);
    expect(order).toEqual([]);
    // Nothing more is committed until the failure has been settled.
    const c = committer.submit([put(3)]);
    await Bun.sleep(5);
    expect(store.commits).toHaveLength(1);
    store.durable[0]!.resolve();
    await Promise.all([a, b]);
    expect(order).toEqual(["a durable", "b rejected: constraint failed"]);
    await waitUntil(() => store.commits.length === 2, { what: "c committed after the failure" });
    store.durable[1]!.resolve();
    await c;
  });

  test("a failed durability rejects that batch's submitters; later batches settle after it", async () => {
    const store = new PipelinedStore();
    const committer = new GroupCommitter(store);
    const order: string[] = [];
    const a = committer.submit([put(1)]).catch((e: Error) => order.push(`a: ${e.message}`));
    await waitUntil(() => store.commits.length === 1, { what: "a committed" });
    const b = committer.submit([put(2)]).catch((e: Error) => order.push(`b: ${e.message}`));
    await waitUntil(() => store.commits.length === 2, { what: "b committed" });
    store.durable[1]!.reject(new Error("fsync failed"));
    store.durable[0]!.reject(new Error("fsync failed"));
    await Promise.all([a, b]);
    expect(order).toEqual(["a: fsync failed", "b: fsync failed"]);
  });
});

describe("GroupCommitter.watchedThrough (a shared store's snapshot cut)", () => {
  /** A shared store whose watch point the test sets, its writes held as RecordingStore's. */
  class WatchedStore extends RecordingStore {
    readonly shared = true;
    watched: number | undefined = 10;
    watchedThrough(): number | undefined {
      return this.watched;
    }
  }

  test("is the watch's point, but not above it as it was when a write still on its way went out", async () => {
    const store = new WatchedStore();
    const committer = new GroupCommitter(store);
    expect(committer.watchedThrough()).toBe(10);
    const release = store.hold();
    const writing = committer.submit([put(1)]);
    await waitUntil(() => store.writes.length === 1, { what: "the write handed to the store" });
    store.watched = 15; // the watch read past the write (its row, another server's)
    expect(committer.watchedThrough()).toBe(10);
    release();
    await writing;
    // One turn of the event loop after it settled (its submitters have taken it in).
    await waitUntil(() => committer.watchedThrough() === 15, { what: "the floor dropped" });
  });

  test("a write that went out before the watch's first read: no cut until it is in", async () => {
    const store = new WatchedStore();
    store.watched = undefined;
    const committer = new GroupCommitter(store);
    const release = store.hold();
    const writing = committer.submit([put(1)]);
    await waitUntil(() => store.writes.length === 1, { what: "the write handed to the store" });
    store.watched = 3;
    expect(committer.watchedThrough()).toBeUndefined();
    release();
    await writing;
    await waitUntil(() => committer.watchedThrough() === 3, { what: "the floor dropped" });
  });
});
