/**
 * The SQLite store's WAL checkpoints, off the event loop (issue 12 item 5, the tail latency).
 *
 * In WAL mode SQLite copies the WAL back into the database file (a checkpoint) when a COMMIT
 * leaves the WAL above 1,000 pages (https://sqlite.org/wal.html#automatic_checkpoint), on the
 * committing connection: with bun:sqlite, on the server's event loop. That checkpoint reads
 * and writes hundreds of pages and fsyncs the database, so every few hundred commits one
 * took milliseconds (in a plain bun:sqlite loop of 60-row commits, p99 5.4 ms and max 19 ms
 * against 2.1 and 8 ms without it), and each request in flight waited behind it.
 *
 * Here a Worker with its own connection (./wal_checkpoint_worker.ts) looks every
 * {@link WalCheckpointerOptions.intervalMs} whether a commit came since its last checkpoint
 * (`PRAGMA data_version`, read from the WAL index in shared memory) and only then runs a
 * PASSIVE checkpoint: it copies what no reader needs and never waits for (or blocks) the
 * writer (https://sqlite.org/c3ref/wal_checkpoint_v2.html). An idle server runs none (it ran
 * 10 a second before, each a read transaction on the files).
 * The server's connection raises its automatic checkpoint to {@link WAL_PAGES}. The WAL starts
 * over from its beginning only after a checkpoint that copied every frame, and under a steady
 * load commits keep arriving while the Worker copies, so its checkpoints are seldom complete:
 * alone, it let the WAL grow to 222 MB for a 17 MB database (a newcomer's 120,000
 * allocations). Past WAL_PAGES the server's own connection checkpoints after a commit; it
 * finds most frames copied by the Worker, copies the rest, completes, and the next commit
 * starts the WAL over: bounded near WAL_PAGES, with a short checkpoint on the event loop once
 * per WAL_PAGES pages instead of a long one per 1,000.
 * Durability does not change: SQLite's checkpoint protocol is the same whichever connection
 * runs it (the WAL synced before frames are copied, the database synced before the WAL may
 * be reset; the Worker's connection runs `synchronous=NORMAL` as the server's does, never
 * OFF), and the writer restarts the WAL from its start only after a complete checkpoint.
 *
 * When the Worker cannot start or fails, {@link WalCheckpointerOptions.onFailure} is called
 * once: the store turns the automatic checkpoint back on, so the WAL stays bounded. A
 * checkpoint that fails for want of space (a full disk: SQLITE_FULL) is not a failure of
 * the Worker: it is counted (`faults`) and tried again at the next interval, so the WAL
 * shrinks again as soon as space is freed.
 *
 * @module
 */
import { CHECKPOINT_WORDS, type CheckpointerInit, CheckpointWord } from "./wal_checkpoint_words.ts";

// In a `bun build --compile` executable the Worker is an extra entry point (see compile.sh).
const WORKER_URL = import.meta.url.includes("$bunfs")
  ? "/$bunfs/root/lib/lease/wal_checkpoint_worker.ts"
  : new URL("./wal_checkpoint_worker.ts", import.meta.url).href;

/**
 * Default time between two looks for new WAL frames (and a checkpoint when there are), ms. The environment variable DSTM_WAL_CHECKPOINT_MS
 * (an integer of 10 to 60,000) overrides it, for tests and diagnosis: a test that must see
 * commits not yet copied when the disk fills (test/redteam_storage_checkpoint.test.ts).
 */
export const CHECKPOINT_INTERVAL_MS = 100;

function _envIntervalMs(): number | undefined {
  const text = process.env.DSTM_WAL_CHECKPOINT_MS;
  const ms = text === undefined ? Number.NaN : Number(text);
  return Number.isInteger(ms) && ms >= 10 && ms <= 60_000 ? ms : undefined;
}

/**
 * WAL pages past which the server's own connection checkpoints (`wal_autocheckpoint`): 16 MiB
 * of 4 KiB pages. SQLite's default is 1,000.
 */
export const WAL_PAGES = 4096;

export interface WalCheckpointerOptions {
  /** Time between two looks for new WAL frames (each may checkpoint), ms. Default {@link CHECKPOINT_INTERVAL_MS}. */
  readonly intervalMs?: number;
  /** Called once, on the event loop, when the Worker could not start or failed. */
  readonly onFailure?: (message: string) => void;
  /** The Worker module (a test passes one that fails). Default ./wal_checkpoint_worker.ts. */
  readonly workerUrl?: string;
}

/** Counts of the checkpointer, for tests and the store's callers. */
export interface WalCheckpointStats {
  /** PASSIVE checkpoints run. */
  readonly runs: number;
  /**
   * Times the Worker looked whether the WAL had new frames, checkpointing or not: an idle
   * store's `looks` grow while its `runs` stay. Absent where no Worker runs.
   */
  readonly looks?: number;
  /** WAL frames copied into the database file. */
  readonly frames: number;
  /** Checkpoints that failed for want of space or a lock (a full disk), tried again later. */
  readonly faults?: number;
  /** Why the Worker stopped on its own, if it did. */
  readonly failure?: string;
}

/** One Worker checkpointing one database. Start with {@link WalCheckpointer.start}. */
export class WalCheckpointer {
  readonly #worker: Worker;
  readonly #words: Int32Array;
  readonly #finished: Promise<void>;
  #failure: string | undefined;
  #stopping = false;

  private constructor(path: string, opts: WalCheckpointerOptions) {
    const buffer = new SharedArrayBuffer(4 * CHECKPOINT_WORDS);
    this.#words = new Int32Array(buffer);
    const worker = new Worker(opts.workerUrl ?? WORKER_URL, { name: "dstm-wal-checkpoint" });
    this.#worker = worker;
    // Never what keeps a process alive: the store's close() stops it.
    worker.unref();
    const fail = (message: string) => {
      if (this.#failure !== undefined || this.#stopping) return;
      this.#failure = message;
      opts.onFailure?.(message);
    };
    this.#finished = new Promise<void>((resolve) => {
      worker.addEventListener("message", (event: MessageEvent) => {
        const m = event.data as { kind?: string; message?: string };
        if (m?.kind === "error") fail(m.message ?? "the checkpointer failed");
        if (m?.kind === "done" || m?.kind === "error") resolve();
      });
      worker.addEventListener("error", (event: Event) => {
        fail((event as ErrorEvent).message ?? "the checkpointer could not start");
        resolve();
      });
      worker.addEventListener("close", () => {
        fail("the checkpointer exited");
        resolve();
      });
    });
    const init: CheckpointerInit = {
      kind: "dstm-wal-checkpointer",
      path,
      intervalMs: opts.intervalMs ?? _envIntervalMs() ?? CHECKPOINT_INTERVAL_MS,
      words: buffer,
    };
    worker.postMessage(init);
  }

  /** Starts checkpointing the WAL of the database at `path` (already open in WAL mode). */
  static start(path: string, opts: WalCheckpointerOptions = {}): WalCheckpointer {
    return new WalCheckpointer(path, opts);
  }

  /** What it did so far. */
  get stats(): WalCheckpointStats {
    const runs = Atomics.load(this.#words, CheckpointWord.RUNS);
    const frames = Atomics.load(this.#words, CheckpointWord.FRAMES);
    const faults = Atomics.load(this.#words, CheckpointWord.FAULTS);
    const looks = Atomics.load(this.#words, CheckpointWord.LOOKS);
    const stats = faults === 0 ? { runs, frames, looks } : { runs, frames, faults, looks };
    return this.#failure === undefined ? stats : { ...stats, failure: this.#failure };
  }

  /**
   * Stops the Worker and resolves once its connection is closed (so that the server's close
   * is the last connection's, which checkpoints and deletes the WAL), or after `timeoutMs`
   * (default 2,000 ms: a checkpoint in progress finishes first), terminating it then.
   */
  async stop(timeoutMs = 2000): Promise<void> {
    this.#stopping = true;
    Atomics.store(this.#words, CheckpointWord.STOP, 1);
    Atomics.notify(this.#words, CheckpointWord.STOP);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const inTime = await Promise.race([
      this.#finished.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!inTime) this.#worker.terminate();
  }
}
