/**
 * Child processes and timers for the lab and the demo, on `Bun.spawn`, `Bun.sleep` and
 * `Bun.which` (https://bun.sh/docs/api/spawn, https://bun.sh/docs/api/utils), so lib/lab
 * needs no runtime global of its own. Not for the data path.
 *
 * @module
 */

/** A child started by {@link spawnDetached}: what the lab watches and signals. */
export interface ChildProcess {
  readonly pid: number;
  /** Exit code once it has exited, else `null`. */
  readonly exitCode: number | null;
  /** The signal that ended it, else `null`. */
  readonly signalCode: NodeJS.Signals | number | null;
  /** Resolves with the exit code when it exits. */
  readonly exited: Promise<number>;
  kill(signal?: NodeJS.Signals | number): void;
}

export interface SpawnDetachedOptions {
  /** File descriptor its stdout and stderr go to (both). */
  readonly outputFd: number;
  readonly env?: Record<string, string | undefined>;
}

/**
 * Starts `argv` in its own process group (it outlives a Ctrl-C of this process's group),
 * stdin closed, stdout and stderr to `outputFd`; this process does not wait for it to exit.
 *
 * @example const child = spawnDetached(["ip", "netns", "exec", ns, "sleep", "9"], { outputFd: fd });
 */
export function spawnDetached(argv: readonly string[], opts: SpawnDetachedOptions): ChildProcess {
  const proc = Bun.spawn([...argv], {
    stdin: "ignore",
    stdout: opts.outputFd,
    stderr: opts.outputFd,
    detached: true,
    env: opts.env ?? process.env,
  });
  proc.unref();
  return proc;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return Bun.sleep(ms);
}

/** The path of `command` on PATH, or `null` when it is not installed. */
export function which(command: string): string | null {
  return Bun.which(command);
}
