/**
 * Key files (`--key`, `--tep-key`): read, permission-checked and parsed (lib/wire/auth.ts).
 *
 * @module
 */
import { readFileSync, statSync } from "node:fs";
import { type AuthKey, parseKeyFile } from "../wire/auth.ts";
import { UsageError } from "./errors.ts";

/**
 * Reads a key file; throws UsageError naming the file on any problem. Like ssh with a private
 * key, it refuses a file that its group or others may read or write (mode & 0o077): a shared
 * HMAC key anyone on the host can read authenticates anyone.
 */
export function readKeys(path: string): AuthKey[] {
  let text: string;
  try {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0)
      throw new UsageError(
        `key file ${path} is accessible by others (mode 0${mode.toString(8)}); run chmod 600 ${path}`,
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
  if (!parsed.ok) throw new UsageError(`key file ${path}: ${parsed.message}`);
  return parsed.keys;
}
