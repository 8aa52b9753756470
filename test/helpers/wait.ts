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

/**
 * Reads `stream` (a child's stdout or stderr) until a line matches `pattern`; resolves with
 * that line. Rejects when the stream ends first or after `timeoutMs` (default 10 000). The
 * stream stays locked to this reader: use it for a child whose output is not read otherwise.
 *
 * @example await waitForLine(proc.stdout, /^ready$/, { what: "the echo server" });
 */
export async function waitForLine(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
  options: WaitOptions = {},
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `no line matching ${pattern} from ${options.what ?? "the stream"} in ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
  });
  const read = (async () => {
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done)
        throw new Error(`${options.what ?? "the stream"} ended before a line matching ${pattern}`);
      text += decoder.decode(value, { stream: true });
      const lines = text.split("\n");
      text = lines.pop() ?? "";
      const line = lines.find((l) => pattern.test(l));
      if (line !== undefined) return line;
    }
  })();
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}
