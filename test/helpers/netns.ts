/**
 * Helpers for the tests that need root and network namespaces: why such a test is skipped,
 * and running a small script (test/sys_scripts/*.ts, test/e2e_scripts/*.ts) inside a namespace
 * to collect its JSON.
 */
import { afterAll, beforeAll } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createNetns, type Netns } from "../../lib/sys/netns.ts";
import { BUN, ROOT } from "./process.ts";

export const SCRIPTS = join(ROOT, "test", "sys_scripts");

/** Why the namespace tests cannot run here, or null when they can. */
export function netnsSkipReason(opts: { tun?: boolean } = {}): string | null {
  if (process.platform !== "linux") return "needs Linux";
  if (process.getuid?.() !== 0) return "needs root (network namespaces, TUN, raw sockets)";
  if (Bun.which("ip") === null) return "needs iproute2 (`ip`)";
  if (opts.tun && !existsSync("/dev/net/tun")) return "needs /dev/net/tun (load the tun module)";
  return null;
}

/** Prints the skip reason once, so a skipped suite says why. */
export function announceSkip(suite: string, reason: string | null): void {
  if (reason !== null) console.warn(`[skip] ${suite}: ${reason}`);
}

/**
 * Runs `fn` in a new namespace (lib/sys/netns.ts createNetns), with the veth pair v0 ⇄ v1 in it
 * when `veth`, and deletes the namespace afterwards, also on failure.
 */
export async function withNetns<T>(
  fn: (ns: Netns) => T | Promise<T>,
  o: { veth?: boolean } = {},
): Promise<T> {
  const ns = createNetns();
  try {
    if (o.veth) ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1");
    return await fn(ns);
  } finally {
    ns.delete();
  }
}

/**
 * A new namespace (createNetns(`prefix`)) whose loopback holds the IPv6 `addresses` (/128, no
 * DAD): where `dstm tep --check --ipv6 A` and `dstm client --check --host6 A` find A to be
 * this host's, as they ask (lib/config/listen_address.ts). The caller deletes it, also on
 * failure (afterAll, or try/finally).
 */
export function addressNetns(prefix: string, addresses: readonly string[]): Netns {
  const ns = createNetns(prefix);
  try {
    for (const address of addresses) ns.addAddress("lo", `${address}/128`);
  } catch (error) {
    ns.delete();
    throw error;
  }
  return ns;
}

/**
 * For a test file whose runs need a host that holds `addresses` (a `--check` asks the host for
 * `--ipv6` / `--host6`): a namespace made before the file's tests (addressNetns) and deleted
 * after them, when namespaces can be made here; `ns()` is undefined otherwise, and the skip
 * reason is announced under `suite`.
 */
export function ownAddressesNetns(
  suite: string,
  addresses: readonly string[],
  prefix = "dstmt-own-",
): { skip: string | null; ns: () => Netns | undefined } {
  const skip = netnsSkipReason();
  announceSkip(suite, skip);
  let ns: Netns | undefined;
  beforeAll(() => {
    if (skip === null) ns = addressNetns(prefix, addresses);
  });
  afterAll(() => ns?.delete());
  return { skip, ns: () => ns };
}

/** A script started in a namespace; `lines` fills as it prints. */
export interface ScriptRun<T> {
  readonly pid: number;
  /** Every stdout line so far. */
  readonly lines: readonly string[];
  /** Resolves with the first stdout line matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the JSON of the last stdout line once the script exits 0; rejects otherwise. */
  readonly result: Promise<T>;
  kill(): void;
}

/**
 * Runs `bun test/e2e_scripts/NAME ...args` in `where` (cwd the project root, killed after
 * `timeoutMs`) and parses the last line it printed as JSON; throws with its stdout and stderr
 * when that line is not JSON (the script failed).
 */
export function e2eJson<T>(
  where: Netns,
  script: string,
  args: readonly string[],
  timeoutMs = 20_000,
): T {
  const r = where.exec([BUN, join(ROOT, "test", "e2e_scripts", script), ...args], {
    cwd: ROOT,
    timeoutMs,
  });
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${script}: ${r.stdout}\n${r.stderr}`);
  }
}

/**
 * Starts `bun test/sys_scripts/NAME ...args` inside `ns` (killed after `timeoutMs`). The script
 * prints progress lines and, last, one line of JSON.
 */
export function startScript<T>(
  ns: Netns,
  script: string,
  args: readonly string[] = [],
  timeoutMs = 20_000,
): ScriptRun<T> {
  const proc = ns.spawn([BUN, join(SCRIPTS, script), ...args], { timeoutMs, cwd: ROOT });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const stderr = new Response(proc.stderr).text();
  const stdoutDone = (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of proc.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        lines.push(line);
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i]!.pattern.test(line)) waiters.splice(i, 1)[0]!.resolve(line);
        }
      }
    }
    if (rest !== "") lines.push(rest);
  })();
  const result = (async () => {
    const code = await proc.exited;
    await stdoutDone;
    const err = await stderr;
    if (code !== 0) {
      throw new Error(
        `${script} exited with ${code}\nstdout:\n${lines.join("\n")}\nstderr:\n${err}`,
      );
    }
    const last = lines.filter((l) => l.trim() !== "").at(-1) ?? "";
    try {
      return JSON.parse(last) as T;
    } catch {
      throw new Error(`${script}: last line is not JSON: ${last}\nstderr:\n${err}`);
    }
  })();
  result.catch(() => {});
  return {
    pid: proc.pid,
    lines,
    result,
    kill: () => proc.kill("SIGKILL"),
    waitFor(pattern, waitMs = 10_000) {
      const seen = lines.find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${script}: no line matching ${pattern} in ${waitMs} ms`)),
          waitMs,
        );
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
        result.then(
          () => reject(new Error(`${script} ended before printing ${pattern}`)),
          (error) => reject(error),
        );
      });
    },
  };
}

/** Runs a script in `ns` to completion and returns its JSON. */
export function runScript<T>(
  ns: Netns,
  script: string,
  args: readonly string[] = [],
  timeoutMs = 20_000,
): Promise<T> {
  return startScript<T>(ns, script, args, timeoutMs).result;
}
