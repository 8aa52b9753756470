/**
 * `dstm lease ls | head -1`, `dstm ping4 … | head -1`: once the reader of stdout has gone, a
 * write fails with EPIPE. Bun ignores SIGPIPE, so without a handler that surfaces as an
 * uncaught error with a stack trace. Instead, by what the command is doing:
 *
 * - a query (`lease ls`, `lease get`, `tep stats`, `keygen`, `completion`, `--help`…) ends at
 *   once and quietly with status 141 (128 + SIGPIPE), what `cat` or `ls` report, so a
 *   `set -o pipefail` script sees dstm behave as they do;
 * - a command holding something it must give back (`ping4`'s temporary lease, `lab demo`'s
 *   namespaces) finishes with its output dropped, cleans up, and then exits 141;
 * - a daemon (`server`, `tep`, `client`) keeps serving: only its log lines are lost.
 *
 * @module
 */

/** Exit status of a process whose output pipe was closed. */
export const EXIT_PIPE_CLOSED = 141;

export type ClosedPipePolicy = "exit" | "finish" | "ignore";

/** Policy per command path (words after `dstm`); every other command: "exit". */
const POLICIES: Readonly<Record<string, ClosedPipePolicy>> = {
  server: "ignore",
  tep: "ignore",
  client: "ignore",
  ping4: "finish",
  "lab up": "finish",
  "lab down": "finish",
  "lab demo": "finish",
};

let _policy: ClosedPipePolicy = "exit";
let _closed = false;

/** Chooses the policy for the command about to run (cli/main.ts calls it before the action). */
export function closedPipePolicyFor(commandPath: readonly string[]): ClosedPipePolicy {
  _policy = POLICIES[commandPath.join(" ")] ?? "exit";
  return _policy;
}

/**
 * Installs the EPIPE handler on stdout and stderr. `exit` is process.exit (injectable for tests).
 */
export function endQuietlyOnClosedPipe(
  streams: readonly NodeJS.WriteStream[] = [process.stdout, process.stderr],
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  for (const stream of streams) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE") throw error;
      _closed = true;
      // "finish" and "ignore": Bun drops further writes to the closed stream.
      if (_policy === "exit") exit(EXIT_PIPE_CLOSED);
    });
  }
}

/** The exit status once the command returned `code`: 141 for a finished command whose pipe closed. */
export function exitStatus(code: number): number {
  return _closed && code === 0 && _policy === "finish" ? EXIT_PIPE_CLOSED : code;
}
