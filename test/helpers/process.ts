/**
 * Runs `dstm` as a real process (from source, with the pinned Bun) and reads its log lines.
 */
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..", "..");
export const BUN = process.execPath;

export interface DstmProcess {
  readonly proc: ReturnType<typeof Bun.spawn>;
  /** Every stdout line so far. */
  readonly lines: string[];
  /** Resolves with the first line (already seen or coming) matching `pattern`; rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with stderr once the process has exited. */
  stderr(): Promise<string>;
  exited: Promise<number>;
}

/**
 * Starts `bun mod.ts ...args` (inside network namespace `netns` when given, via
 * `ip netns exec`; or behind the command prefix `netns` when it is an array, e.g. `nsenter -t
 * PID -m --`). The caller kills it (by PID, via proc.kill).
 */
export function spawnDstm(
  args: readonly string[],
  env: Record<string, string> = {},
  netns?: string | readonly string[],
): DstmProcess {
  const inNetns =
    netns === undefined ? [] : typeof netns === "string" ? ["ip", "netns", "exec", netns] : netns;
  const proc = Bun.spawn([...inNetns, BUN, join(ROOT, "mod.ts"), ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const stderrText = new Response(proc.stderr as ReadableStream).text();
  (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
      rest += decoder.decode(chunk, { stream: true });
      let nl = rest.indexOf("\n");
      while (nl >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        lines.push(line);
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i]!.pattern.test(line)) waiters.splice(i, 1)[0]!.resolve(line);
        }
        nl = rest.indexOf("\n");
      }
    }
  })();
  return {
    proc,
    lines,
    exited: proc.exited,
    stderr: async () => {
      await proc.exited;
      return stderrText;
    },
    waitFor(pattern, timeoutMs = 10_000) {
      const seen = lines.find((line) => pattern.test(line));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(async () => {
          proc.kill("SIGKILL");
          reject(
            new Error(
              `no line matching ${pattern} within ${timeoutMs} ms; stdout:\n${lines.join("\n")}\nstderr:\n${await stderrText}`,
            ),
          );
        }, timeoutMs);
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
        proc.exited.then(async (code) => {
          clearTimeout(timer);
          reject(
            new Error(
              `dstm exited with ${code} before printing ${pattern}; stderr: ${await stderrText}`,
            ),
          );
        });
      });
    },
  };
}

/**
 * Runs `bun mod.ts ...args` to completion, with `env` over this process's environment
 * (inside network namespace `netns` when given, via `ip netns exec`).
 */
export async function runDstm(
  args: readonly string[],
  env: Record<string, string> = {},
  netns?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const inNetns = netns === undefined ? [] : ["ip", "netns", "exec", netns];
  const proc = Bun.spawn([...inNetns, BUN, join(ROOT, "mod.ts"), ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** The UDP port from the server's `start listen=[addr]:port` line. */
export function listenPort(startLine: string): number {
  const match = /listen=\[[^\]]+\]:(\d+)/.exec(startLine);
  if (!match) throw new Error(`no listen= in ${startLine}`);
  return Number(match[1]);
}

/**
 * `dstm server` on `[::1]:0` with the SQLite store `db` for the loopback tests: pool `pool`
 * (default 198.51.100.0/24), one TEP, many simulated hosts of one /64 sent from ::1 (no
 * source check, no per-prefix cap or rate: admission is not under test), no control socket
 * unless `more` names one; `more` goes last (a later flag wins).
 */
export function loopbackServerArgs(
  db: string,
  more: readonly string[] = [],
  pool = "198.51.100.0/24",
): string[] {
  return [
    "server",
    "--pool",
    pool,
    "--tep",
    "2001:db8::1,192.0.2.1",
    "--listen",
    "[::1]:0",
    "--db",
    db,
    ...(more.includes("--control") ? [] : ["--no-control"]),
    "--no-source-check",
    "--max-leases-per-prefix",
    "0",
    "--prefix-rate",
    "0",
    ...more,
  ];
}
