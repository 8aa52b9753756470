/**
 * `--db DIR` (the state directory instead of the database file in it), refused plainly by
 * `dstm server` and `dstm lease ls`, where SQLite would say "unable to open database file" or
 * "disk I/O error".
 *
 * @module
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "./errors.ts";

/** Throws {@link UsageError} when `file` is a directory; anything else is left to the opener. */
export function refuseDatabaseDirectory(file: string, flag = "--db"): void {
  let isDirectory = false;
  try {
    isDirectory = statSync(file, { throwIfNoEntry: false })?.isDirectory() === true;
  } catch {
    // ENOTDIR, EACCES…: opening the database says what is wrong.
  }
  if (isDirectory)
    throw new UsageError(
      `${flag}: ${file} is a directory; give the database file, e.g. ${flag} ${join(file, "leases.db")}`,
    );
}
