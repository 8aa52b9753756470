/**
 * The error of a setting the user gave wrong (a flag, a config file value, an unreadable key
 * file): cli/ prints it as one line `dstm: …` and exits with code 2 (cli/errors.ts has the
 * whole exit code rule). Defined here, below cli/, so that the settings' checks in lib/config
 * can throw it.
 *
 * @module
 */

/** An error in the command line or configuration the user can fix: `dstm: …`, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
  /**
   * The setting (kebab-case, e.g. "key") whose value the message is about, when the message
   * does not start with `--NAME`: Settings.explain (./merge.ts) then prefixes `FILE:LINE:COL:`
   * when that value came from the config file.
   */
  readonly setting?: string;
  constructor(message: string, opts: { setting?: string } = {}) {
    super(message);
    if (opts.setting !== undefined) this.setting = opts.setting;
  }
}

/**
 * Why a file the user named could not be read, in words (`no such file`, `it is a directory`,
 * `permission denied`), for `cannot read … PATH: WHY`; another error's code (EIO, ELOOP …) or
 * message as it is.
 */
export function readErrorText(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EISDIR":
      return "it is a directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "ENOTDIR":
      return "a part of the path is not a directory";
  }
  return code ?? (error instanceof Error ? error.message : String(error));
}
