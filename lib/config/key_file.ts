/**
 * Key files (`--key`, `--tep-key`): read, permission-checked and parsed (lib/wire/auth.ts).
 *
 * @module
 */
import { readFileSync, statSync } from "node:fs";
import { type AuthKey, parseKeyFile } from "../wire/auth.ts";
import { UsageError } from "./errors.ts";

/** Bytes: far above any key file `dstm keygen` writes (one line per key). */
const MAX_KEY_FILE_BYTES = 1 << 20;

/**
 * Reads a key file; throws UsageError naming the file on any problem. Like ssh with a private
 * key, it refuses a file that its group or others may read or write (mode & 0o077): a shared
 * HMAC key anyone on the host can read authenticates anyone. A file that is no key file at all
 * (`--key /etc/passwd`) is refused as such first, never with advice to chmod it.
 */
export function readKeys(path: string): AuthKey[] {
  let text: string;
  let mode: number;
  try {
    const stat = statSync(path);
    mode = stat.mode & 0o777;
    if (stat.isDirectory())
      throw new UsageError(`key file ${path} is a directory; make one with dstm keygen FILE`);
    // A device or pipe others may open is refused unread (--key /dev/zero).
    if (!stat.isFile() && (mode & 0o077) !== 0) throw looseMode(path, mode);
    if (stat.isFile() && stat.size > MAX_KEY_FILE_BYTES)
      throw new UsageError(
        `key file ${path}: ${stat.size} bytes, not a key file; make one with dstm keygen FILE`,
      );
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? `no such file (create it with dstm keygen ${path})`
        : code === "EACCES"
          ? "permission denied (run as its owner, or chown it to the user dstm runs as)"
          : (code ?? (error as Error).message);
    throw new UsageError(`cannot read key file ${path}: ${why}`);
  }
  const parsed = parseKeyFile(text);
  if (!parsed.ok)
    throw new UsageError(
      `key file ${path}: ${parsed.message}; is it a key file? (make one with dstm keygen FILE)`,
    );
  if ((mode & 0o077) !== 0) throw looseMode(path, mode);
  return parsed.keys;
}

function looseMode(path: string, mode: number): UsageError {
  return new UsageError(
    `key file ${path} is accessible by others (mode 0${mode.toString(8)}); run chmod 600 ${path}`,
  );
}
