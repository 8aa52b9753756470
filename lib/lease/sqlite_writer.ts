/**
 * The SQLite lease store's writer thread: a Worker (./sqlite_writer_worker.ts) with its own
 * connection to the database, which applies each batch in one transaction and fsyncs it
 * (`synchronous=FULL`) while the main thread goes on receiving and deciding requests. A
 * batch's promise resolves only once the Worker reports it committed, so an answer still
 * leaves only after its lease is on disk; batches are applied in the order they were given.
 *
 * Why: bun:sqlite is synchronous. Written on the main thread, a batch's statements and its
 * fsync (and now and then a WAL checkpoint inside a commit) stop the event loop, and every
 * request that arrives meanwhile waits in the socket buffer.
 *
 * When the Worker cannot start (a build without its entry point, an open that fails), every
 * request goes to `fallback` instead: the same write on the main thread, as before.
 *
 * @module
 */
import type { LeaseOp, ReservationOp } from "./lease.ts";
import { LeaseStoreError } from "./lease.ts";
import type { FileId } from "./sqlite_files.ts";
import { encodeOps, failureError, type StoreFailure } from "./sqlite_write.ts";
import type { WriterOpen, WriterRequest } from "./sqlite_writer_worker.ts";

// In a `bun build --compile` executable the Worker is an extra entry point (see compile.sh).
const WORKER_URL = import.meta.url.includes("$bunfs")
  ? "/$bunfs/root/lib/lease/sqlite_writer_worker.ts"
  : new URL("./sqlite_writer_worker.ts", import.meta.url).href;

/** A write the Worker was asked for (or will be, once open). */
export type WriterJob =
  | { readonly kind: "write"; readonly ops: readonly LeaseOp[] }
  | { readonly kind: "reservation"; readonly op: ReservationOp };

interface _Pending {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Where a job goes when there is no Worker: the main thread's own write (throws on failure). */
export type WriteFallback = (job: WriterJob) => void;

export class SqliteWriterThread {
  readonly #path: string;
  readonly #fallback: WriteFallback;
  #worker: Worker | undefined;
  #state: "starting" | "open" | "failed" | "closed" = "starting";
  /** Jobs given before the Worker's open answered, in order. */
  #queued: { job: WriterJob; pending: _Pending }[] = [];
  readonly #pending = new Map<number, _Pending>();
  #nextId = 1;
  #closed: Promise<void> | undefined;

  /**
   * Starts the Worker on `path`; `identity`/`walIdentity` as the store opened them.
   * `workerUrl`: the Worker's module (tests give one that cannot start).
   */
  constructor(
    path: string,
    identity: FileId | undefined,
    walIdentity: FileId | undefined,
    fallback: WriteFallback,
    workerUrl: string = WORKER_URL,
  ) {
    this.#path = path;
    this.#fallback = fallback;
    try {
      const worker = new Worker(workerUrl, { name: "dstm-sqlite-writer" });
      worker.addEventListener("message", (event: MessageEvent) =>
        this.#answer(event.data as { id: number; failure?: StoreFailure }),
      );
      worker.addEventListener("error", (event: Event) =>
        this.#lost((event as ErrorEvent).message ?? "error"),
      );
      worker.addEventListener("close", () => this.#lost("exited"));
      const open: WriterOpen = { kind: "open", path, identity, walIdentity };
      worker.postMessage(open);
      this.#worker = worker;
    } catch {
      this.#state = "failed";
    }
  }

  /** True while writes go to the Worker (false: the Worker could not start, the main thread writes). */
  get threaded(): boolean {
    return this.#state === "open" || this.#state === "starting";
  }

  /** Applies `ops` in one transaction; resolves once it is committed (fsynced). */
  write(ops: readonly LeaseOp[]): Promise<void> {
    return this.#submit({ kind: "write", ops });
  }

  /** Applies one reservation change in its own transaction, after the writes given before. */
  reservation(op: ReservationOp): Promise<void> {
    return this.#submit({ kind: "reservation", op });
  }

  /** Waits for the jobs given so far, closes the Worker's connection, ends the Worker. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    const worker = this.#worker;
    if (this.#state === "starting") {
      await new Promise<void>((resolve) =>
        this.#queued.push({ job: _NOOP, pending: _settle(resolve) }),
      );
    }
    if (worker && this.#state === "open") {
      await new Promise<void>((resolve) => {
        const id = this.#nextId++;
        this.#pending.set(id, _settle(resolve));
        this.#ref(worker);
        worker.postMessage({ id, kind: "close" } satisfies WriterRequest);
      });
    }
    this.#state = "closed";
    worker?.terminate();
  }

  #submit(job: WriterJob): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const pending = { resolve, reject };
    if (this.#state === "open") this.#post(job, pending);
    else if (this.#state === "starting") this.#queued.push({ job, pending });
    else if (this.#state === "failed") this.#inline(job, pending);
    else reject(new LeaseStoreError(`lease database ${this.#path} is closed`));
    return promise;
  }

  #post(job: WriterJob, pending: _Pending): void {
    const worker = this.#worker as Worker;
    const id = this.#nextId++;
    this.#pending.set(id, pending);
    this.#ref(worker);
    const message: WriterRequest =
      job.kind === "write"
        ? { id, kind: "write", ops: encodeOps(job.ops) }
        : { id, kind: "reservation", op: job.op };
    worker.postMessage(message);
  }

  #inline(job: WriterJob, pending: _Pending): void {
    if (job === _NOOP) {
      pending.resolve();
      return;
    }
    try {
      this.#fallback(job);
      pending.resolve();
    } catch (error) {
      pending.reject(error);
    }
  }

  #answer(message: { id: number; failure?: StoreFailure }): void {
    if (message.id === 0) {
      // The open: from now on, jobs go to the Worker, or (it failed) to the main thread.
      this.#state = message.failure ? "failed" : "open";
      const queued = this.#queued;
      this.#queued = [];
      for (const { job, pending } of queued) {
        if (job === _NOOP) pending.resolve();
        else if (this.#state === "open") this.#post(job, pending);
        else this.#inline(job, pending);
      }
      if (message.failure) this.#worker?.terminate();
      else this.#unrefWhenIdle();
      return;
    }
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.failure) pending.reject(failureError(message.failure));
    else pending.resolve();
    this.#unrefWhenIdle();
  }

  /** The Worker died: what it was given fails, what comes next is written on the main thread. */
  #lost(why: string): void {
    if (this.#state === "closed") return;
    const error = new LeaseStoreError(
      `lease database ${this.#path}: the writer thread stopped (${why}); the batch may not be durable`,
    );
    const wasStarting = this.#state === "starting";
    this.#state = "failed";
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    if (wasStarting) {
      const queued = this.#queued;
      this.#queued = [];
      for (const { job, pending } of queued) this.#inline(job, pending);
    }
  }

  /** A Worker with jobs keeps the process alive; an idle one does not. */
  #ref(worker: Worker): void {
    if (this.#pending.size === 1) worker.ref();
  }

  #unrefWhenIdle(): void {
    if (this.#pending.size === 0) this.#worker?.unref();
  }
}

/** Marks the end of the jobs queued before the open (close waits for it). */
const _NOOP: WriterJob = { kind: "write", ops: [] };

function _settle(resolve: () => void): _Pending {
  return { resolve, reject: () => resolve() };
}
