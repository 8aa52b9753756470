/**
 * Worker entry of the SQLite store's writer (./sqlite_writer.ts): its own connection to the
 * lease database, on which it commits the store's batches (./sqlite_write.ts) in the order
 * they arrive and answers each once committed (the store then fsyncs the WAL, ./wal_sync.ts).
 * The server's event loop never runs a transaction.
 *
 * Also here, since they act on this connection: the database-gone checks before each write
 * (./sqlite_write.ts SqliteFileCheck), the short WAL after a full disk (./wal_tight.ts), and
 * the checkpoint of this connection past `walPages` (./wal_checkpointer.ts).
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { LeaseConflictError, LeaseStoreError } from "./lease.ts";
import { type EncodedBatch, readBatch } from "./sqlite_batch.ts";
import { LeaseDatabaseGoneError } from "./sqlite_files.ts";
import { firstLine, runError, SqliteBatchWriter, SqliteFileCheck } from "./sqlite_write.ts";
import {
  type WriterFailure,
  type WriterInit,
  WriterReady,
  type WriterReply,
  type WriterRequest,
  WriterWord,
} from "./sqlite_writer_words.ts";
import { WalTightener } from "./wal_tight.ts";

interface _Scope {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
}

const scope = globalThis as unknown as _Scope;

scope.onmessage = (event: MessageEvent) => {
  const init = event.data as WriterInit;
  if (init?.kind !== "dstm-sqlite-writer") return;
  const words = new Int32Array(init.words);
  let db: Database | undefined;
  let writer: SqliteBatchWriter | undefined;
  let tight: WalTightener | undefined;
  /** Why nothing can be written (the connection could not open), sent for every request. */
  let broken: WriterFailure | undefined;
  let failures = 0;
  let lastFailure: WriterFailure | undefined;
  try {
    db = new Database(init.path, { readwrite: true, create: false });
    // Readers (sqlite3, lease ls --db) may briefly hold a lock while they open the WAL index.
    db.run("PRAGMA busy_timeout = 250");
    // Never OFF: NORMAL syncs the WAL header and the directory (./wal_sync.ts).
    db.run("PRAGMA synchronous = NORMAL");
    db.run(`PRAGMA wal_autocheckpoint = ${init.walPages}`);
    const files = new SqliteFileCheck(init.path, init.identity, init.walIdentity, init.shmIdentity);
    writer = new SqliteBatchWriter(db, init.path, files);
    tight = new WalTightener(db, init.path, init.walPages);
  } catch (error) {
    broken = _failure(
      new LeaseStoreError(
        `lease database ${init.path}: the writer cannot open it: ${firstLine(error)}`,
      ),
    );
  }
  Atomics.store(words, WriterWord.READY, broken ? WriterReady.FAILED : WriterReady.OPEN);
  Atomics.notify(words, WriterWord.READY);
  const reply = (message: WriterReply) => scope.postMessage(message);
  const decoder = new TextDecoder();
  scope.onmessage = (e: MessageEvent) => {
    const m: WriterRequest =
      typeof e.data === "number"
        ? { ...readBatch(init.arena, e.data, decoder), t: "batch" }
        : (e.data as WriterRequest);
    if (m.t === "usual") {
      tight?.setUsual(m.pages);
      return;
    }
    if (m.t === "close") {
      try {
        writer?.finalize();
        db?.close();
        reply({ failures });
      } catch (error) {
        reply({ failures, error: _failure(runError(init.path, error)) });
      }
      db = undefined;
      writer = undefined;
      return;
    }
    if (broken !== undefined || writer === undefined) {
      reply({ failures, error: broken ?? _failure(_closed(init.path)) });
      return;
    }
    if (Atomics.load(words, WriterWord.HALT) !== 0) {
      reply({ failures, error: _failure(_halted(init.path)) });
      return;
    }
    if (m.t === "batch" && m.gen < failures) {
      reply({ failures, error: lastFailure });
      return;
    }
    try {
      if (m.t === "batch") writer.write(m as EncodedBatch);
      else writer.reservation(m.op);
    } catch (error) {
      tight?.afterFailure(error);
      const failure = _failure(runError(init.path, error));
      if (m.t === "batch") {
        failures++;
        lastFailure = failure;
      }
      reply({ failures, error: failure });
      return;
    }
    tight?.afterCommit();
    scope.postMessage(failures); // a commit: Bun's cheap postMessage of a primitive
  };
};

function _failure(error: Error): WriterFailure {
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined;
  const code = typeof cause?.code === "string" ? cause.code : undefined;
  return {
    message: error.message,
    gone: error instanceof LeaseDatabaseGoneError,
    conflict: error instanceof LeaseConflictError,
    ...(code === undefined ? {} : { code, causeMessage: firstLine(cause) }),
  };
}

function _closed(path: string): LeaseStoreError {
  return new LeaseStoreError(`lease database ${path} is closed`);
}

function _halted(path: string): LeaseStoreError {
  return new LeaseStoreError(`lease database ${path}: not written after a failed WAL sync`);
}
