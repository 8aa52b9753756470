/**
 * What the SQLite store's writer Worker (./sqlite_writer_worker.ts) and the store's side of it
 * (./sqlite_writer.ts) exchange: the init message, the messages each way, and the words of a
 * SharedArrayBuffer.
 *
 * @module
 */
import type { ReservationOp } from "./lease.ts";
import type { FileId } from "./sqlite_files.ts";

/** Indexes of the Int32Array over {@link WriterInit.words}. */
export const WriterWord = {
  /**
   * Raised (1) by the store once its WAL sync failed (./wal_sync.ts, sticky): the Worker
   * commits nothing more, also of the batches already sent to it.
   */
  HALT: 0,
  /**
   * Set by the Worker once its connection is open ({@link WriterReady}); the store's open
   * waits for it (Atomics.wait), so that the connection's descriptors are taken at open, not
   * at the first write (which could then fail for want of one under load).
   */
  READY: 1,
} as const;

/** Values of {@link WriterWord.READY}. */
export const WriterReady = { STARTING: 0, OPEN: 1, FAILED: 2 } as const;

/** Words in the shared buffer. */
export const WRITER_WORDS = 2;

/** The message that starts the Worker. */
export interface WriterInit {
  readonly kind: "dstm-sqlite-writer";
  /** The lease database (the store's own connection has it open in WAL mode, schema current). */
  readonly path: string;
  /** (dev, ino) of the database file, its WAL and its `-shm` as the store opened them. */
  readonly identity: FileId | undefined;
  readonly walIdentity: FileId | undefined;
  readonly shmIdentity: FileId | undefined;
  /** The connection's `wal_autocheckpoint` (pages). */
  readonly walPages: number;
  /** {@link WRITER_WORDS} Int32 words, see {@link WriterWord}. */
  readonly words: SharedArrayBuffer;
  /** The store's BatchArena (./sqlite_batch.ts): a number sent is a batch's offset in it. */
  readonly arena: SharedArrayBuffer;
}

/**
 * Store → Worker, besides a number (the offset of a batch in the arena, with its `gen`,
 * ./sqlite_batch.ts). Every message but `usual` is answered by one {@link WriterReply} (a
 * number for a commit: the `failures`), in order.
 */
export type WriterRequest =
  | {
      /** A batch of lease ops (./sqlite_batch.ts) too large for the arena. */
      readonly t: "batch";
      readonly n: number;
      readonly nums: Float64Array;
      readonly text: string;
      /**
       * The failed lease batches the store had heard of when it sent this one: a batch sent
       * before the store heard of a failure was decided on top of the failed changes and is
       * refused with that failure, not committed.
       */
      readonly gen: number;
    }
  | { readonly t: "reservation"; readonly op: ReservationOp }
  /** The usual `wal_autocheckpoint` changed (the checkpointer failed: SQLite's 1,000 pages). */
  | { readonly t: "usual"; readonly pages: number }
  /** Finalize and close the connection, then answer. */
  | { readonly t: "close" };

/** A failure, as the Worker sends it (an Error does not cross postMessage with its class). */
export interface WriterFailure {
  readonly message: string;
  /** LeaseDatabaseGoneError: the server stops on it. */
  readonly gone: boolean;
  /** LeaseConflictError (a reservation on a slot another host holds). */
  readonly conflict: boolean;
  /** SQLite's result code (SQLITE_FULL…) of the cause, for the failure's reason (./store_fault.ts). */
  readonly code?: string;
  readonly causeMessage?: string;
}

/** Worker → store: the answer to the next request, in the order they were sent. */
export interface WriterReply {
  /** Failed lease batches so far (see `gen`). */
  readonly failures: number;
  readonly error?: WriterFailure;
}
