/**
 * What the WAL checkpointer's Worker (./wal_checkpoint_worker.ts) and the store's side of it
 * (./wal_checkpointer.ts) share: the init message and the words of a SharedArrayBuffer.
 *
 * @module
 */

/** Indexes of the Int32Array over {@link CheckpointerInit.words}. */
export const CheckpointWord = {
  /** Raised (1) by the store to stop the Worker; Atomics.notify wakes it at once. */
  STOP: 0,
  /** PASSIVE checkpoints run so far. */
  RUNS: 1,
  /** WAL frames copied into the database file so far (the sum of each run's `checkpointed`). */
  FRAMES: 2,
  /** Checkpoints that failed for want of space or a lock (SQLITE_FULL, SQLITE_BUSY), tried again. */
  FAULTS: 3,
  /**
   * Times the Worker woke and looked whether the WAL had new frames (a checkpoint or not):
   * with RUNS, what shows that an idle store runs no checkpoint.
   */
  LOOKS: 4,
} as const;

/** Words in the shared buffer. */
export const CHECKPOINT_WORDS = 5;

/** The message that starts the Worker. */
export interface CheckpointerInit {
  readonly kind: "dstm-wal-checkpointer";
  /** The lease database (the server's own connection has it open in WAL mode). */
  readonly path: string;
  /** Time between checkpoints, ms. */
  readonly intervalMs: number;
  /** {@link CHECKPOINT_WORDS} Int32 words, see {@link CheckpointWord}. */
  readonly words: SharedArrayBuffer;
}
