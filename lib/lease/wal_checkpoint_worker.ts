/**
 * Worker entry of the SQLite store's WAL checkpointer (./wal_checkpointer.ts): its own
 * connection to the lease database, a PASSIVE checkpoint every `intervalMs`, until the main
 * thread raises the stop flag. Nothing here writes a lease: a checkpoint only copies
 * committed WAL frames into the database file (https://sqlite.org/c3ref/wal_checkpoint_v2.html).
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
    scope.postMessage({ kind: "ready" });
    // `log` and `checkpointed` count from the WAL's last reset: copied frames are the growth.
    let lastLog = 0;
    let lastCheckpointed = 0;
    while (Atomics.load(words, CheckpointWord.STOP) === 0) {
      Atomics.wait(words, CheckpointWord.STOP, 0, init.intervalMs);
      if (Atomics.load(words, CheckpointWord.STOP) !== 0) break;
      const row = checkpoint.get() as { busy: number; log: number; checkpointed: number } | null;
      Atomics.add(words, CheckpointWord.RUNS, 1);
      if (row && row.checkpointed >= 0) {
        const reset = row.log < lastLog || row.checkpointed < lastCheckpointed;
        const copied = reset ? row.checkpointed : row.checkpointed - lastCheckpointed;
        if (copied > 0) Atomics.add(words, CheckpointWord.FRAMES, copied);
        lastLog = row.log;
        lastCheckpointed = row.checkpointed;
      }
    }
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
