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
}
