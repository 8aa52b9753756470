/**
 * The two kinds of error the user sees, and the exit code rule of every subcommand:
 *
 * - 0: done (for `--check`: the configuration is valid).
 * - 1: the operation failed at run time although the command was well formed: a port in use,
 *   a server/client/TEP that does not answer, a refusal, a store failure ({@link RuntimeError}
 *   and the libraries' one-line errors).
 * - 2: the command line or the configuration file is wrong: unknown or malformed flag, bad
 *   value, bad TOML, overlapping pools, an unreadable key file, an address this host does not
 *   have (to listen on, `--ipv6`, `--host6`) ({@link UsageError}).
 * - 70: internal error (a bug: the stack trace is printed).
 *
 * Errors are printed as one line `dstm: MESSAGE` on stderr; a malformed command line (unknown
 * flag, bad choice, missing argument) adds a second, `dstm: see 'dstm … --help'`.
 *
 * @module
 */

export { UsageError } from "../lib/config/errors.ts";

/** A well-formed command that failed at run time (nothing answers, refused): `dstm: …`, exit code 1. */
export class RuntimeError extends Error {
  override name = "RuntimeError";
}

/** Exit codes (see the module doc). */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERNAL = 70;
