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

/** Who reads a key file: where a missing one comes from (made here, or copied from the server). */
export interface KeyFileUse {
  /** The setting that named the file ("key", "tep-key"): errors then name FILE:LINE:COL when it came from the config file. */
  readonly setting?: string;
  /**
   * "server" (default): the server makes the key, so a missing file is made with `dstm keygen`.
   * "client", "tep": the key must be the server's (--key for hosts, --tep-key for TEPs); a new
   * one would not match, so a missing file is copied from the server.
   */
  readonly holder?: "server" | "client" | "tep";
}

/**
 * Reads a key file; throws UsageError naming the file on any problem. Like ssh with a private
 * key, it refuses a file that its group or others may read or write (mode & 0o077): a shared
 * HMAC key anyone on the host can read authenticates anyone. A file that is no key file at all
 * (`--key /etc/passwd`) is refused as such first, never with advice to chmod it.
 */
export function readKeys(path: string, use: KeyFileUse = {}): AuthKey[] {
  const opts = { setting: use.setting };
  let text: string;
  let mode: number;
  try {
    const stat = statSync(path);
    mode = stat.mode & 0o777;
    if (stat.isDirectory())
      throw new UsageError(`key file ${path} is a directory; ${makeOne(use)}`, opts);
    // A device or pipe others may open is refused unread (--key /dev/zero).
    if (!stat.isFile() && (mode & 0o077) !== 0) throw looseMode(path, mode, opts);
    if (stat.isFile() && stat.size > MAX_KEY_FILE_BYTES)
      throw new UsageError(
        `key file ${path}: ${stat.size} bytes, not a key file; ${makeOne(use)}`,
        opts,
      );
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? `no such file (${missing(path, use)})`
        : code === "EACCES"
          ? "permission denied (run as its owner, or chown it to the user dstm runs as)"
          : (code ?? (error as Error).message);
    throw new UsageError(`cannot read key file ${path}: ${why}`, opts);
  }
  const parsed = parseKeyFile(text);
  if (!parsed.ok)
    throw new UsageError(
      `key file ${path}: ${parsed.message}; is it a key file? (${makeOne(use)})`,
      opts,
    );
  if ((mode & 0o077) !== 0) throw looseMode(path, mode, opts);
  return parsed.keys;
}

/** The server's flag whose key file a client or TEP must hold. */
function serverFlag(use: KeyFileUse): string {
  return use.holder === "tep" ? "--tep-key" : "--key";
}

/** What to do about a missing key file: make it (server), or copy the server's (client, TEP). */
function missing(path: string, use: KeyFileUse): string {
  if (use.holder === "client" || use.holder === "tep")
    return `copy the server's ${serverFlag(use)} file to ${path}; a new key from dstm keygen would not match the server's`;
  return `create it with dstm keygen ${path}`;
}

/** Where a right key file comes from: `dstm keygen` on the server, a copy of the server's elsewhere. */
function makeOne(use: KeyFileUse): string {
  if (use.holder === "client" || use.holder === "tep")
    return `copy the server's ${serverFlag(use)} file here`;
  return "make one with dstm keygen FILE";
}

function looseMode(path: string, mode: number, opts: { setting?: string }): UsageError {
  return new UsageError(
    `key file ${path} is accessible by others (mode 0${mode.toString(8)}); run chmod 600 ${path}`,
    opts,
  );
}
