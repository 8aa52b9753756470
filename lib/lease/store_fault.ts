/**
 * Why a lease store write failed, in the operator's words: the `reason` label of
 * `dstm_store_write_failures_total` and `dstm_store_refused_total` (docs/metrics.md) and of
 * the server's `store-failed` warning, with the errno the kernel gave and what to do.
 *
 * SQLite reports a full file system (write(2) → ENOSPC, or EDQUOT over a quota) as
 * SQLITE_FULL "database or disk is full" (https://sqlite.org/rescode.html#full) — or, when it
 * is the WAL index that cannot grow, SQLITE_IOERR_SHMSIZE —, a file it may
 * not write as SQLITE_READONLY, and other failed reads and writes (EIO, EROFS on a file
 * system the kernel turned read-only under it) as SQLITE_IOERR_*; the store adds its own
 * fatal ones (./sqlite_files.ts, ./wal_sync.ts). A refused write changed nothing: the
 * transaction was rolled back, the requests got no lease, and a later write may succeed once
 * the cause is gone (space freed) — only `gone` and `sync-failed` stop the server.
 *
 * @module
 */
import { WalSyncError } from "./wal_sync.ts";

/** The cause of a failed store write (the `reason` label). */
export type StoreFault =
  | "disk-full"
  | "read-only"
  | "io-error"
  | "busy"
  | "gone"
  | "sync-failed"
  | "other";

/**
 * The {@link StoreFault} of `error` (a store's rejection), from the SQLite result code or
 * errno on it or on its `cause` chain, else from the error's class or message.
 */
export function storeFaultOf(error: unknown): StoreFault {
  let e: unknown = error;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if ((e as { fatal?: unknown }).fatal === true) {
      return e instanceof WalSyncError ? "sync-failed" : "gone";
    }
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") {
      const fault = _byCode(code);
      if (fault !== undefined) return fault;
    }
    e = (e as { cause?: unknown }).cause;
  }
  const text = error instanceof Error ? error.message : String(error);
  if (/database or disk is full|no space left on device/i.test(text)) return "disk-full";
  if (/read-only file system|attempt to write a readonly database/i.test(text)) return "read-only";
  if (/disk I\/O error/i.test(text)) return "io-error";
  return "other";
}

function _byCode(code: string): StoreFault | undefined {
  // SHMSIZE: the WAL index (-shm) could not grow, SQLite's one write that meets ENOSPC as an
  // I/O error (os_unix.c unixShmMap writes a byte per page to allocate them, not to fault).
  if (code.startsWith("SQLITE_FULL") || code === "SQLITE_IOERR_SHMSIZE") return "disk-full";
  if (code === "ENOSPC" || code === "EDQUOT") return "disk-full";
  if (code.startsWith("SQLITE_READONLY") || code === "EROFS") return "read-only";
  if (code.startsWith("SQLITE_IOERR") || code === "EIO") return "io-error";
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return "busy";
  return undefined;
}

/** What the operator reads next to a fault: the kernel's word for it and what to do. */
export const STORE_FAULT_HINTS: Readonly<Record<StoreFault, string>> = {
  "disk-full":
    "ENOSPC: the file system holding the lease database is full; new leases, renewals and releases are refused (nothing is acknowledged that is not stored) until space is freed, then they resume by themselves",
  "read-only":
    "EROFS: the lease database cannot be written (file system read-only, or file permissions); changes are refused until it is writable again",
  "io-error":
    "EIO: the disk failed a read or write of the lease database; changes are refused; check the kernel log (dmesg)",
  busy: "another process holds a lock on the lease database (an open sqlite3 transaction?); changes are refused until it lets go",
  gone: "the lease database was deleted or replaced under the server; it stops",
  "sync-failed":
    "fsync of the lease database failed (EIO): what reached the disk is unknown; the server stops",
  other: "the lease database refused the change; see detail",
};
