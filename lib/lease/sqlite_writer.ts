/**
 * The SQLite store's writer, off the event loop (issue 12 item 5): a Worker with its own
 * connection (./sqlite_writer_worker.ts) commits the store's batches, so that the server's
 * event loop never runs a transaction (bun:sqlite is synchronous: ~4-9 µs of the main
 * thread per row, the one-active-lease index included, and the database-gone stat() calls).
 *
 * A batch crosses in a compact encoding written into a SharedArrayBuffer (./sqlite_batch.ts),
 * and a postMessage of its offset; the Worker answers a commit with a number (Bun's cheap
 * postMessage of a primitive) and a failure with an object. The Worker commits the batches in the
 * order they were sent and answers each, in that order, once committed; the store then
 * fsyncs the WAL (./wal_sync.ts) before its `write()` resolves, so an ACK still leaves only
 * after its lease is on disk.
 *
 * The group committer (./group_commit.ts) sends the next batch before the last one was
 * answered. A batch sent before the store heard that an earlier one failed was decided on top
 * of the failed changes: the Worker refuses it with the same failure (`gen`, ./sqlite_writer_words.ts),
 * so nothing decided on a rolled-back change reaches the database. Once the store's WAL sync
 * failed (sticky, ./wal_sync.ts) {@link SqliteWriter.halt} stops the Worker committing
 * anything more, also what was already sent.
 *
 * A Worker that cannot start, or stops, fails every write then and later with a fatal
 * {@link SqliteWriterError}: the server stops rather than answer `store-failed` forever.
 *
 * @module
 */
import { LeaseConflictError, type LeaseOp, LeaseStoreError, type ReservationOp } from "./lease.ts";
import { BatchArena, encodeBatch } from "./sqlite_batch.ts";
import { LeaseDatabaseGoneError } from "./sqlite_files.ts";
import {
  WRITER_WORDS,
  type WriterFailure,
  type WriterInit,
  WriterReady,
  type WriterReply,
  type WriterRequest,
  WriterWord,
} from "./sqlite_writer_words.ts";

// In a `bun build --compile` executable the Worker is an extra entry point (see compile.sh).
const WORKER_URL = import.meta.url.includes("$bunfs")
  ? "/$bunfs/root/lib/lease/sqlite_writer_worker.ts"
  : new URL("./sqlite_writer_worker.ts", import.meta.url).href;

/** The writer Worker could not start or stopped: nothing more can be written; the server stops. */
export class SqliteWriterError extends LeaseStoreError {
  /** The server stops on this error (lib/server/server.ts). */
  readonly fatal = true;
}

/** How long the store's open waits for the Worker's connection, ms (then it goes on: requests queue). */
const READY_WAIT_MS = 10_000;

interface _Waiter {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  /** A lease batch (its failure counts for `gen`). */
  readonly batch: boolean;
  /** In the arena (freed when answered). */
  readonly arena: boolean;
}

/** The store's side of its writer Worker. */
export class SqliteWriter {
  readonly #path: string;
  readonly #worker: Worker;
  readonly #words: Int32Array;
  /** Where batches are written for the Worker (./sqlite_batch.ts). */
  readonly #arena = new BatchArena();
  /** Requests sent and not yet answered, oldest first (the Worker answers in order). */
  #waiting: _Waiter[] = [];
  #head = 0;
  /** Failed lease batches the store has heard of (`gen` of the next batch). */
  #failures = 0;
  /** The Worker failed or stopped: every request rejects with it. */
  #failure: SqliteWriterError | undefined;
  #closing = false;

  /** Starts the Worker on the database at `path` (already open in WAL mode, schema current). */
  constructor(init: Omit<WriterInit, "kind" | "words" | "arena">, workerUrl: string = WORKER_URL) {
    this.#path = init.path;
    const buffer = new SharedArrayBuffer(4 * WRITER_WORDS);
    this.#words = new Int32Array(buffer);
    const worker = new Worker(workerUrl, { name: "dstm-sqlite-writer" });
    this.#worker = worker;
    // Never what keeps a process alive: the store's close() stops it.
    worker.unref();
    worker.addEventListener("message", (event: MessageEvent) =>
      this.#answer(event.data as WriterReply | number),
    );
    worker.addEventListener("error", (event: Event) =>
      this.#fail((event as ErrorEvent).message || "the writer failed"),
    );
    worker.addEventListener("close", () => this.#fail("the writer stopped"));
    const message: WriterInit = {
      ...init,
      kind: "dstm-sqlite-writer",
      words: buffer,
      arena: this.#arena.buffer,
    };
    worker.postMessage(message);
    // The connection open before the store's open returns (WriterWord.READY); a Worker that
    // fails to open it answers every request with why.
    Atomics.wait(this.#words, WriterWord.READY, WriterReady.STARTING, READY_WAIT_MS);
  }

  /** Resolves once `ops` are committed (not yet fsynced); rejects with the store's error. */
  write(ops: readonly LeaseOp[]): Promise<void> {
    const refused = this.#refused();
    if (refused) return refused;
    const start = this.#arena.put(ops, this.#failures);
    if (start >= 0) return this.#post(start, true, true);
    // Larger than the arena has room for (a long sweep): a structured clone.
    const { n, nums, text } = encodeBatch(ops);
    return this.#post({ t: "batch", n, nums, text, gen: this.#failures }, true, false, [
      nums.buffer as ArrayBuffer,
    ]);
  }

  /** Resolves once the reservation change is committed (not yet fsynced). */
  reservation(op: ReservationOp): Promise<void> {
    return this.#send({ t: "reservation", op }, false);
  }

  /** The connection's usual `wal_autocheckpoint` is now `pages` (./wal_tight.ts). */
  setUsual(pages: number): void {
    if (this.#failure === undefined && !this.#closing)
      this.#worker.postMessage({ t: "usual", pages } satisfies WriterRequest);
  }

  /** The WAL sync failed (sticky): nothing more is committed, also of what was sent. */
  halt(): void {
    Atomics.store(this.#words, WriterWord.HALT, 1);
  }

  /**
   * Closes the Worker's connection once every request sent before has been answered (not the
   * database's last connection: the store's own closes after it), or after `timeoutMs`
   * (default 2,000 ms), terminating the Worker then.
   */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.#closing) return;
    const closed =
      this.#failure === undefined
        ? this.#send({ t: "close" }, false).then(
            () => true,
            () => true,
          )
        : Promise.resolve(false);
    this.#closing = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      closed,
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.#worker.terminate();
  }

  #send(request: WriterRequest, batch: boolean): Promise<void> {
    return this.#refused() ?? this.#post(request, batch, false);
  }

  /** A rejection when nothing can be sent (the Worker failed, or closing), else undefined. */
  #refused(): Promise<void> | undefined {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closing)
      return Promise.reject(new LeaseStoreError(`lease database ${this.#path} is closed`));
    return undefined;
  }

  #post(
    request: WriterRequest | number,
    batch: boolean,
    arena: boolean,
    transfer: ArrayBuffer[] = [],
  ): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiting.push({ resolve, reject, batch, arena });
    this.#worker.postMessage(request, transfer);
    return promise;
  }

  /** `reply`: the failed batches so far (a commit), or a {@link WriterReply}. */
  #answer(reply: WriterReply | number): void {
    const waiter = this.#waiting[this.#head];
    if (waiter === undefined) return;
    this.#waiting[this.#head++] = undefined as unknown as _Waiter;
    if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#head);
      this.#head = 0;
    }
    if (waiter.arena) this.#arena.free();
    const failures = typeof reply === "number" ? reply : reply.failures;
    if (failures > this.#failures) this.#failures = failures;
    if (typeof reply === "number" || reply.error === undefined) waiter.resolve();
    else waiter.reject(_error(reply.error));
  }

  #fail(message: string): void {
    if (this.#failure !== undefined) return;
    this.#failure = new SqliteWriterError(`lease database ${this.#path}: ${message}`);
    if (this.#closing) return;
    const waiting = this.#waiting.slice(this.#head);
    this.#waiting = [];
    this.#head = 0;
    for (const w of waiting) w.reject(this.#failure);
  }
}

/** The store's error of a failure the Worker sent (./sqlite_writer_worker.ts). */
function _error(f: WriterFailure): Error {
  if (f.gone) return new LeaseDatabaseGoneError(f.message);
  if (f.conflict) return new LeaseConflictError(f.message);
  if (f.code === undefined) return new LeaseStoreError(f.message);
  const cause = Object.assign(new Error(f.causeMessage ?? f.message), { code: f.code });
  return new LeaseStoreError(f.message, { cause });
}
