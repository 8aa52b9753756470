/**
 * Polling with a deadline: the tests' way to wait for something to happen (never a fixed
 * sleep, which is too short on a loaded machine and wasted time on an idle one).
 */

export interface WaitOptions {
  /** Give up after this long (ms, default 5000). */
  readonly timeoutMs?: number;
  /** Time between two looks (ms, default 10). */
  readonly intervalMs?: number;
  /** What is awaited, for the error message. */
  readonly what?: string;
}

/**
 * Resolves as soon as `condition()` returns true (it may be async); rejects with an error
 * naming `what` when it is still false after `timeoutMs`.
 *
 * @example await waitUntil(() => tep.received.length > 0, { what: "a SNAPSHOT" });
 */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  options: WaitOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 10;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (performance.now() >= deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${options.what ?? "a condition"}`,
      );
    }
    await Bun.sleep(intervalMs);
  }
}

/** Like {@link waitUntil}, but resolves to false instead of rejecting at the deadline. */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  options: WaitOptions = {},
): Promise<boolean> {
  try {
    await waitUntil(condition, options);
    return true;
  } catch {
    return false;
  }
}
