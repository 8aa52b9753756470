/**
 * A long-running process in a namespace whose stdout lines a test waits for, and the polling
 * and metrics helpers that go with it. Shared by test/redteam_tep.test.ts and
 * test/tep_attack.test.ts.
 */
import type { Netns } from "../../lib/sys/netns.ts";
import { ROOT } from "./process.ts";
import { eventually } from "./wait.ts";

export interface Daemon {
  readonly proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  /** Every stdout line so far, in order. */
  readonly lines: string[];
  /** The first stdout line matching `pattern`; throws after `ms` (default 20,000 ms) or on exit. */
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
}

export interface DaemonOptions {
  /** Kills the process after this many ms. */
  timeoutMs: number;
  /** Adds the process's stderr to waitFor's error (waits for the process to end first). */
  stderrOnFailure?: boolean;
}

/** Starts `argv` in `where` (cwd: the project root), collecting its stdout lines. */
export function spawnDaemon(where: Netns, argv: readonly string[], options: DaemonOptions): Daemon {
  const proc = where.spawn([...argv], { timeoutMs: options.timeoutMs, cwd: ROOT });
  const lines: string[] = [];
  (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of proc.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        lines.push(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
    }
  })();
  return {
    proc,
    lines,
    async waitFor(pattern, ms = 20_000) {
      const match = () => lines.find((l) => pattern.test(l));
      await eventually(() => match() !== undefined || proc.exitCode !== null, {
        timeoutMs: ms,
        intervalMs: 50,
      });
      const line = match();
      if (line !== undefined) return line;
      const stderr = options.stderrOnFailure
        ? `\nstderr:\n${await new Response(proc.stderr).text()}`
        : "";
      throw new Error(`no line matching ${pattern}; stdout:\n${lines.join("\n")}${stderr}`);
    },
  };
}

/** The value of one series of a Prometheus text page (0 when absent). */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

/** Polls `check` every 100 ms for up to `ms` (default 20,000 ms); its last answer. */
export function until(check: () => Promise<boolean> | boolean, ms = 20_000): Promise<boolean> {
  return eventually(check, { timeoutMs: ms, intervalMs: 100 });
}
