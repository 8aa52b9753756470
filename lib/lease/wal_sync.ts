/**
 * The fsync of the SQLite store's WAL, off the event loop (issue 12 item 5).
 *
 * bun:sqlite is synchronous: with `synchronous=FULL` every COMMIT fsyncs the WAL on the
 * calling thread, so the server's event loop stood still for each fsync (0.3 ms on an idle
 * disk, tens of ms on a busy one) and every request in flight — DISCOVERs whose OFFERs need
 * no disk at all — queued behind it. The store now commits with `synchronous=NORMAL` and
 * makes each commit durable itself: {@link WalSync.sync} runs `fdatasync(2)` on the WAL on
 * the runtime's thread pool and resolves once it returned; the store's `write()` resolves
 * only then, so an ACK still leaves only after its lease is on disk.
 *
 * Why that is as durable as FULL (https://sqlite.org/pragma.html#pragma_synchronous,
 * https://sqlite.org/wal.html): a WAL commit appends its frames (and, on the first commit
 * after a reset, the WAL header) to the `-wal` file with write(2); FULL only adds an fsync of
 * that file. fsync works on the inode, whichever descriptor asks, so ours covers every frame
 * written before it was called. In WAL mode NORMAL still syncs the WAL before each checkpoint
 * copies it into the database and the database before the WAL is reset, so a checkpoint
 * never loses committed frames. A commit whose sync has not returned is not acknowledged;
 * after a crash SQLite's recovery keeps the frames whose checksums chain, which include every
 * acknowledged one.
 *
 * What that rests on, checked against SQLite 3.54 as bun:sqlite embeds it (review of the
 * change, with the tests that show each point):
 * - *The right inode.* The descriptor is opened with the store, on the WAL SQLite opened
 *   ({@link WalSync.open} compares (dev, ino)), and kept: SQLite never replaces the WAL of an
 *   open connection. A WAL reset after a complete checkpoint rewrites the file from its
 *   start with new salts, `wal_checkpoint(TRUNCATE)` and `journal_size_limit` truncate it in
 *   place; only the last connection's close deletes it, and the server's connection holds
 *   the database's shared lock until its own close, so no `sqlite3` or `lease ls --db`
 *   closing deletes it (https://sqlite.org/wal.html#the_wal_file). An operator's deleting or
 *   replacing it is caught before the next write (./sqlite_files.ts). Tested:
 *   test/server_crash_load.test.ts (TRUNCATE checkpoints under load, /proc/PID/fd).
 * - *Overwritten frames.* Frames of a committed transaction are overwritten only after a
 *   reset, which needs a complete checkpoint, after which NORMAL has synced the database;
 *   a transaction rewrites in place only its own, uncommitted frames.
 * - *The directory entry.* fdatasync does not make a new file's name durable. SQLite opens
 *   the WAL with its DIRSYNC flag and, under NORMAL too (the WAL-header sync honours the
 *   checkpoint sync flags: wal.c's sqlite3WalFrames, SQLite check-in 9799241f7d "Enhance the WAL
 *   header sync so that it honors the various synchronous pragmas"), syncs the header of the
 *   first commit into an empty WAL, then the directory, before the frames: the store must
 *   never run with `synchronous=OFF`. Tested: test/server_wal_fsync_order.test.ts (strace).
 * - *Size.* fdatasync(2) also writes the metadata needed to read the data back: the WAL's
 *   length as it grows.
 * - *Order.* Each ACKed lease's commit frames, then a WAL sync begun after them, then the
 *   ACK: test/server_wal_fsync_order.test.ts reads it from a real server's system calls.
 * - *Close.* A sync still running when the store closes ends on the WAL SQLite's close
 *   checkpointed (syncing the database) and deleted: nothing is lost either way.
 *
 * Concurrent callers share syncs: a call while one is running waits for the next one, which
 * starts when the running one returns and covers everything written before it started (group
 * commit for the fsync, as lib/lease/group_commit.ts is for the transaction).
 *
 * A failed fsync is fatal ({@link WalSyncError}): after an fsync error Linux may have dropped
 * the dirty pages, so what the store holds on disk is unknown, and the server must stop
 * rather than acknowledge on top of it (PostgreSQL panics for the same reason). The failure
 * is sticky: every later {@link WalSync.sync} — also of a caller already waiting for the next
 * sync — rejects with it, without another fsync. A second fsync would not say what the first
 * lost: Linux reports a writeback error once per open file (errseq, "fsyncgate",
 * https://lwn.net/Articles/752063/), marks the failed pages clean, and the next fsync
 * returns 0 although frames of a later commit sharing such a page never reached the disk.
 *
 * @module
 */
import { closeSync, fdatasync, fstatSync, openSync } from "node:fs";
import { LeaseStoreError } from "./lease.ts";

/** An fsync of the WAL failed: the server stops (what reached the disk is unknown). */
export class WalSyncError extends LeaseStoreError {
  /** The server stops on this error (lib/server/server.ts). */
  readonly fatal = true;
}

/** fdatasync(2) with a callback, as node:fs has it (a test passes a fake). */
export type DataSync = (fd: number, done: (error: Error | null) => void) => void;

/** Syncs one WAL file on the thread pool, sharing syncs between concurrent callers. */
export class WalSync {
  readonly #walPath: string;
  readonly #dbPath: string;
  readonly #datasync: DataSync;
  #fd = -1;
  /** The sync running now, if any (still set between its return and the next one's start). */
  #running: Promise<void> | undefined;
  /** The sync that starts when the running one returns; its callers wait on it. */
  #next: Promise<void> | undefined;
  /** The first failure (open or fsync): every later sync rejects with it. */
  #failure: WalSyncError | undefined;
  #syncs = 0;
  #closed = false;

  /**
   * `dbPath`: the database, for messages; its WAL is `dbPath + "-wal"`. `datasync`: the
   * fdatasync(2) to call (a test passes a fake).
   */
  constructor(dbPath: string, datasync: DataSync = fdatasync) {
    this.#dbPath = dbPath;
    this.#datasync = datasync;
    this.#walPath = `${dbPath}-wal`;
  }

  /** fdatasync calls made so far. */
  get syncs(): number {
    return this.#syncs;
  }

  /** The failure every sync now rejects with (sticky, see the module doc); undefined while none. */
  get failure(): WalSyncError | undefined {
    return this.#failure;
  }

  /**
   * Resolves once everything written to the WAL before the call is on disk. Rejects with a
   * {@link WalSyncError} when the WAL cannot be opened or the fsync fails — this one or any
   * earlier one (sticky) — or when the syncer was closed.
   */
  sync(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(this.#error("the lease store is closed"));
    if (this.#running === undefined) return this.#start();
    // The running sync may have started before the caller's write: wait for a fresh one.
    this.#next ??= this.#running.then(
      () => this.#promote(),
      () => this.#promote(),
    );
    return this.#next;
  }

  /** Closes the descriptor; later calls reject. A sync in flight (and the one queued) still settles. */
  close(): void {
    this.#closed = true;
    if (this.#running === undefined) this.#closeFd();
  }

  #promote(): Promise<void> {
    this.#next = undefined;
    this.#running = undefined;
    return this.#start();
  }

  /** Starts an fsync (sets #running), or rejects at once (sticky failure, WAL not opened). */
  #start(): Promise<void> {
    if (this.#failure) {
      this.#closeIfDone();
      return Promise.reject(this.#failure);
    }
    let fd: number;
    try {
      fd = this.#open();
    } catch (error) {
      this.#failure = this.#error(`cannot open ${this.#walPath}: ${_message(error)}`);
      return Promise.reject(this.#failure);
    }
    this.#syncs++;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#running = promise;
    this.#datasync(fd, (error) => {
      if (error)
        this.#failure ??= this.#error(`fsync of ${this.#walPath} failed: ${error.message}`);
      if (this.#next === undefined) this.#running = undefined;
      this.#closeIfDone();
      if (error) reject(this.#failure);
      else resolve();
    });
    return promise;
  }

  /** After close(): the descriptor goes once no sync runs or waits. */
  #closeIfDone(): void {
    if (this.#closed && this.#running === undefined && this.#next === undefined) this.#closeFd();
  }

  #closeFd(): void {
    if (this.#fd < 0) return;
    closeSync(this.#fd);
    this.#fd = -1;
  }

  /**
   * Opens the WAL now (the store calls it at open, right after SQLite opened it): the
   * descriptor is then ready before the first commit, which cannot fail for want of a
   * descriptor (EMFILE under load) after its frames are written. With `expected` (the WAL's
   * (dev, ino) as the store saw it), throws a {@link WalSyncError} when the file opened is
   * another one. Later syncs keep this descriptor: SQLite never replaces the WAL of an open
   * connection (it restarts and truncates it in place); an operator's replacing it is
   * caught by the store's file checks before each write (./sqlite_write.ts).
   */
  open(expected?: { readonly dev: number; readonly ino: number }): void {
    if (this.#fd >= 0) return;
    const fd = openSync(this.#walPath, "r");
    const now = fstatSync(fd);
    if (expected && (now.dev !== expected.dev || now.ino !== expected.ino)) {
      closeSync(fd);
      throw this.#error(`${this.#walPath} was replaced while the store opened it`);
    }
    this.#fd = fd;
  }

  #open(): number {
    this.open();
    return this.#fd;
  }

  #error(what: string): WalSyncError {
    return new WalSyncError(`lease database ${this.#dbPath}: ${what}`);
  }
}

function _message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
