/**
 * Worker entry of the SQLite store's WAL checkpointer (./wal_checkpointer.ts): its own
 * connection to the lease database; every `intervalMs` it looks whether the WAL has frames
 * it has not copied yet and only then runs a PASSIVE checkpoint, until the main thread raises
 * the stop flag. Nothing here writes a lease: a checkpoint only copies committed WAL frames
 * into the database file (https://sqlite.org/c3ref/wal_checkpoint_v2.html).
 *
 * The look is `PRAGMA data_version`, which changes when another connection has committed
 * (https://sqlite.org/pragma.html#pragma_data_version); in WAL mode it reads the WAL index
 * in shared memory, not the files. So an idle server does no disk work here: before, every
 * look was a checkpoint (10 a second at the default interval, each opening a read
 * transaction on the files). A checkpoint that left frames uncopied (a reader still needed
 * them) but made progress is tried again at the next look without a new commit.
 *
 * A checkpoint that fails for want of space (SQLITE_FULL) or a lock (SQLITE_BUSY) is counted
 * (FAULTS) and tried again at the next interval: a full disk freed later needs the
 * checkpointer to keep the WAL small (test/redteam_storage_checkpoint.test.ts). Any other
 * error ends the Worker (the store falls back to SQLite's own checkpoints).
 *
 * Shared words (Int32Array over the init's SharedArrayBuffer), see {@link CheckpointWords}.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { type CheckpointerInit, CheckpointWord } from "./wal_checkpoint_words.ts";

interface _Scope {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
}

const scope = globalThis as unknown as _Scope;

scope.onmessage = (event: MessageEvent) => {
  const init = event.data as CheckpointerInit;
  if (init?.kind !== "dstm-wal-checkpointer") return;
  scope.onmessage = null;
  const words = new Int32Array(init.words);
  let db: Database | undefined;
  try {
    db = new Database(init.path, { readwrite: true, create: false });
    // Never OFF: a checkpoint syncs the WAL before it copies frames and the database before
    // the WAL may be reset (https://sqlite.org/pragma.html#pragma_synchronous), as the
    // server's own connection does (./wal_sync.ts).
    db.run("PRAGMA synchronous = NORMAL");
    // PASSIVE never waits for the writer; a busy checkpoint is simply tried again next time.
    db.run("PRAGMA busy_timeout = 0");
    const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
    const dataVersion = db.prepare("PRAGMA data_version");
    scope.postMessage({ kind: "ready" });
    // `log` and `checkpointed` count from the WAL's last reset: copied frames are the growth.
    let lastLog = 0;
    let lastCheckpointed = 0;
    // The data_version the last successful checkpoint saw; undefined: none yet (the WAL may
    // hold frames from before this start, so the first look checkpoints).
    let checkpointedVersion: number | undefined;
    // Frames left uncopied by a checkpoint that made progress: look again without a commit.
    let pending = false;
    while (Atomics.load(words, CheckpointWord.STOP) === 0) {
      Atomics.wait(words, CheckpointWord.STOP, 0, init.intervalMs);
      if (Atomics.load(words, CheckpointWord.STOP) !== 0) break;
      const version = (dataVersion.get() as { data_version: number } | null)?.data_version;
      if (version === checkpointedVersion && !pending) {
        Atomics.add(words, CheckpointWord.LOOKS, 1);
        continue;
      }
      let row: { busy: number; log: number; checkpointed: number } | null;
      try {
        row = checkpoint.get() as typeof row;
      } catch (error) {
        if (!_retryable(error)) throw error;
        Atomics.add(words, CheckpointWord.FAULTS, 1);
        Atomics.add(words, CheckpointWord.LOOKS, 1);
        continue;
      }
      Atomics.add(words, CheckpointWord.RUNS, 1);
      checkpointedVersion = version;
      pending = false;
      if (row && row.checkpointed >= 0) {
        const reset = row.log < lastLog || row.checkpointed < lastCheckpointed;
        const copied = reset ? row.checkpointed : row.checkpointed - lastCheckpointed;
        if (copied > 0) Atomics.add(words, CheckpointWord.FRAMES, copied);
        pending = copied > 0 && row.checkpointed < row.log;
        lastLog = row.log;
        lastCheckpointed = row.checkpointed;
      }
      Atomics.add(words, CheckpointWord.LOOKS, 1);
    }
    dataVersion.finalize();
    checkpoint.finalize();
    db.close();
    db = undefined;
    scope.postMessage({ kind: "done" });
  } catch (error) {
    try {
      db?.close();
    } catch {}
    const message = error instanceof Error ? error.message : String(error);
    scope.postMessage({ kind: "error", message });
  }
};

/**
 * A checkpoint that failed without losing anything, to be tried again at the next interval:
 * SQLITE_FULL (the database file could not grow: ENOSPC; the write(2) failed, no dirty page
 * was dropped, and the WAL is not reset before a complete checkpoint) and SQLITE_BUSY. Not
 * an I/O error: after a failed fsync Linux may have dropped the pages, and a retried fsync
 * would report success for them (./wal_sync.ts); the Worker stops on it, as before.
 */
function _retryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (
    typeof code === "string" && (code.startsWith("SQLITE_FULL") || code.startsWith("SQLITE_BUSY"))
  );
}
