/**
 * A short WAL while the disk is (nearly) full (lib/lease/sqlite.ts).
 *
 * The WAL starts over from its beginning only after a checkpoint that copied every frame.
 * Under a load that never pauses the checkpointer's PASSIVE checkpoints (./wal_checkpointer.ts)
 * are never complete, so the WAL grows until the store's own connection checkpoints past
 * WAL_PAGES (16 MiB). When the operator frees less than that after the disk filled up, the
 * WAL grows into the freed space and fills the disk again, and then nothing can be
 * checkpointed any more (the database file cannot grow to take the frames): every write is
 * refused again, although the database needed a few KiB (test/redteam_storage_checkpoint).
 *
 * So once a commit has failed for want of space (SQLITE_FULL), the store's connection
 * checkpoints after any commit that leaves more than {@link TIGHT_WAL_PAGES} pages in the WAL
 * (`wal_autocheckpoint`, https://sqlite.org/pragma.html#pragma_wal_autocheckpoint): the
 * writer's own checkpoint, right after its commit, copies every frame, and the next commit
 * starts the WAL over, so it stays within about that many pages while space is short. The
 * cost is a short checkpoint on the event loop every few dozen commits. Once the file
 * system has {@link ROOMY_BYTES} free again (statfs, looked at most once a second after a
 * commit), the store's usual setting is back. Durability is SQLite's checkpoint protocol,
 * whichever connection runs it (./wal_checkpointer.ts).
 *
 * @module
 */
import type { Database } from "bun:sqlite";
import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import { storeFaultOf } from "./store_fault.ts";

/** WAL pages past which the store's connection checkpoints while space is short. */
export const TIGHT_WAL_PAGES = 64;

/** Free bytes on the file system past which the usual WAL size is back (32 MiB). */
export const ROOMY_BYTES = 32 * 1024 * 1024;

/** Least ms between two looks at the free space. */
const LOOK_EVERY_MS = 1000;

/** Switches the store's automatic checkpoint to {@link TIGHT_WAL_PAGES} and back. */
export class WalTightener {
  readonly #db: Database;
  readonly #dir: string;
  readonly #now: () => number;
  /** The store's usual `wal_autocheckpoint` (pages). */
  #usual: number;
  #tight = false;
  #lookedAt = Number.NEGATIVE_INFINITY;

  /** `path`: the database; `usual`: its usual `wal_autocheckpoint` (pages). */
  constructor(
    db: Database,
    path: string,
    usual: number,
    now: () => number = () => performance.now(),
  ) {
    this.#db = db;
    this.#dir = dirname(path);
    this.#usual = usual;
    this.#now = now;
  }

  /** True while the WAL is kept short. */
  get tight(): boolean {
    return this.#tight;
  }

  /** The usual setting changed (the checkpointer failed: SQLite's 1,000 pages); applied unless tight. */
  setUsual(pages: number): void {
    this.#usual = pages;
    if (!this.#tight) this.#db.run(`PRAGMA wal_autocheckpoint = ${pages}`);
  }

  /**
   * A write failed with `error`: when for want of space (./store_fault.ts `disk-full`:
   * SQLITE_FULL, or the WAL index that could not grow), the WAL is kept short from now on.
   */
  afterFailure(error: unknown): void {
    if (this.#tight || storeFaultOf(error) !== "disk-full") return;
    try {
      this.#db.run(`PRAGMA wal_autocheckpoint = ${TIGHT_WAL_PAGES}`);
      this.#tight = true;
      this.#lookedAt = this.#now();
    } catch {
      // a pragma that fails changes nothing: the next failure tries again
    }
  }

  /** A write committed: while tight, at most once a second, back to usual when there is room. */
  afterCommit(): void {
    if (!this.#tight) return;
    const now = this.#now();
    if (now - this.#lookedAt < LOOK_EVERY_MS) return;
    this.#lookedAt = now;
    try {
      const fs = statfsSync(this.#dir);
      if (fs.bavail * fs.bsize < ROOMY_BYTES) return;
      this.#db.run(`PRAGMA wal_autocheckpoint = ${this.#usual}`);
      this.#tight = false;
    } catch {
      // statfs or the pragma failed: stay tight, look again later
    }
  }
}
