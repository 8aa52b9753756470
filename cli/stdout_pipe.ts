/**
 * `dstm lease ls | head -1`, `dstm ping4 … | head -1`: once the reader of stdout has gone, a
 * write fails with EPIPE. Bun ignores SIGPIPE, so without a handler that surfaces as an
 * uncaught error with a stack trace. Instead dstm ends at once and quietly with status 141
 * (128 + SIGPIPE), what `cat`, `ls` and other tools killed by SIGPIPE report, so a
 * `set -o pipefail` script sees dstm behave as they do.
 *
 * @module
 */

/** Exit status of a process that stopped because its output pipe was closed. */
export const EXIT_PIPE_CLOSED = 141;

/** Installs the handler on `stream` (process.stdout and process.stderr), once. */
export function endQuietlyOnClosedPipe(
  stream: NodeJS.WriteStream = process.stdout,
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") exit(EXIT_PIPE_CLOSED);
    else throw error;
  });
}
