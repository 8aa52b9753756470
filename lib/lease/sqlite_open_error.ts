/**
 * Why an SQLite lease database could not be opened, in words that say what to do
 * (./sqlite.ts): busy or in use, not a lease database, a missing or unwritable directory, a
 * full (ENOSPC) or read-only (EROFS) file system.
 *
 * @module
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { LeaseStoreError } from "./lease.ts";
import { firstLine } from "./sqlite_write.ts";

function _code(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
}

/** Turns an SQLite error at open time into a message that says what to do. */
export function openError(path: string, error: unknown, readOnly: boolean): Error {
  if (error instanceof LeaseStoreError) return error;
  const code = _code(error);
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return new LeaseStoreError(
      readOnly
        ? `lease database ${path} is busy (a server is recovering or checkpointing it); try again`
        : `lease database ${path} is in use by another dstm server; stop it or give this one another --db`,
    );
  }
  if (code.startsWith("SQLITE_NOTADB") || code.startsWith("SQLITE_CORRUPT")) {
    return new LeaseStoreError(
      `${path} is not a dstm lease database (${firstLine(error)}); move it away or give another --db`,
    );
  }
  if (code.startsWith("SQLITE_FULL")) {
    return new LeaseStoreError(
      `cannot open lease database ${path}: the file system holding it is full (ENOSPC: ${firstLine(error)}); free space there and start again`,
    );
  }
  const dir = dirname(path);
  if (!readOnly && _readOnlyFs(existsSync(path) ? path : dir)) {
    return new LeaseStoreError(
      `cannot write lease database ${path}: the file system holding it is mounted read-only (EROFS); remount it read-write (check the kernel log: a file system turns read-only after disk errors) or give another --db`,
    );
  }
  if (!readOnly && (code.startsWith("SQLITE_CANTOPEN") || code.startsWith("SQLITE_READONLY"))) {
    if (_missing(dir)) {
      return new LeaseStoreError(
        `cannot create lease database ${path}: directory ${dir} does not exist; create it or give another --db`,
      );
    }
    if (!_writable(dir) || (existsSync(path) && !_writable(path))) {
      return new LeaseStoreError(
        `cannot write lease database ${path}: ${existsSync(path) ? "the file or " : ""}directory ${dir} is not writable by this user; fix the permissions or give another --db`,
      );
    }
  }
  return new LeaseStoreError(`cannot open lease database ${path}: ${firstLine(error)}`);
}

/** True when `path` is not an existing directory (a permission error is not "missing"). */
function _missing(path: string): boolean {
  try {
    return !statSync(path).isDirectory();
  } catch (error) {
    return (error as { code?: string }).code !== "EACCES";
  }
}

/** True when writing `path` is refused because its file system is read-only (EROFS). */
function _readOnlyFs(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return false;
  } catch (error) {
    return (error as { code?: string }).code === "EROFS";
  }
}

function _writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
