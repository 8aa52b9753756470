/**
 * A long-running process in a namespace whose stdout lines a test waits for, and the polling
 * and metrics helpers that go with it; {@link daemonScope} is a suite's directory, namespaces
 * and daemons with their one teardown. Shared by the namespace suites that run real `dstm`
 * processes (test/redteam_tep.test.ts, test/tep_attack.test.ts, test/observe_reload.test.ts…).
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns } from "../../lib/sys/netns.ts";
import { generateKeyFileText } from "../../lib/wire/auth.ts";
import { BUN, ROOT } from "./process.ts";
import { eventually } from "./wait.ts";

export { metric } from "./prometheus.ts";

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
  /** Added to the environment (e.g. NOTIFY_SOCKET). */
  env?: Record<string, string>;
}

/** Starts `argv` in `where` (cwd: the project root), collecting its stdout lines. */
export function spawnDaemon(where: Netns, argv: readonly string[], options: DaemonOptions): Daemon {
  const proc = where.spawn([...argv], {
    timeoutMs: options.timeoutMs,
    cwd: ROOT,
    env: options.env,
  });
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

/** `dstm client status --json` of the client on `socket`, asked in `where`, parsed. */
export function clientStatusJson<T>(where: Netns, socket: string): T {
  const status = where.exec([
    BUN,
    join(ROOT, "mod.ts"),
    "client",
    "status",
    "--json",
    "--control",
    socket,
  ]);
  if (status.code !== 0) throw new Error(`dstm client status: ${status.stderr}`);
  return JSON.parse(status.stdout) as T;
}

/** The counters of `dstm client status --json` for the client on `socket`, asked in `where`. */
export function clientCounters(where: Netns, socket: string): Record<string, number> {
  return clientStatusJson<{ counters: Record<string, number> }>(where, socket).counters;
}

/** A lease as `dstm lease ls --json` lists it (the fields the tests read). */
export interface ListedLease {
  readonly hostIPv4: string;
  readonly hostIPv6: string;
}

/** The leases of the server whose control socket is `socket`, from `dstm lease ls --json` run in `where`. */
export function leaseList(where: Netns, socket: string): ListedLease[] {
  const r = where.exec([BUN, join(ROOT, "mod.ts"), "lease", "ls", "--json", "--control", socket]);
  if (r.code !== 0) throw new Error(`dstm lease ls: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { leases: ListedLease[] }).leases;
}

/** Polls `check` every 100 ms for up to `ms` (default 20,000 ms); its last answer. */
export function until(check: () => Promise<boolean> | boolean, ms = 20_000): Promise<boolean> {
  return eventually(check, { timeoutMs: ms, intervalMs: 100 });
}

/** The line of a new key file (lib/wire/auth.ts) that holds key `id`: `ID SECRET`. */
export function keyLine(id: number): string {
  return generateKeyFileText(id).split("\n")[1]!;
}

/** The lines of `d` after its first `from` that match `pattern`. */
export function linesSince(d: Daemon, from: number, pattern: RegExp): string[] {
  return d.lines.slice(from).filter((l) => pattern.test(l));
}

/**
 * A test file's (or a describe block's) temporary directory, namespaces and daemons, all
 * removed by one afterAll, also when a test fails: daemons killed by PID (and awaited),
 * namespaces deleted, the directory removed. Namespaces are made when asked for (in a
 * beforeAll or a test), so a skipped suite makes none.
 */
export function daemonScope(tmpPrefix: string, options: DaemonOptions = { timeoutMs: 300_000 }) {
  const dir = mkdtempSync(join(tmpdir(), tmpPrefix));
  const procs: Bun.Subprocess<"ignore", "pipe", "pipe">[] = [];
  const spaces: Netns[] = [];
  afterAll(async () => {
    for (const p of procs) p.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    for (const n of spaces) n.delete();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);
  const daemon = (where: Netns, argv: readonly string[]): Daemon => {
    const d = spawnDaemon(where, argv, options);
    procs.push(d.proc);
    return d;
  };
  return {
    dir,
    /** `name` in the scope's directory. */
    file: (name: string): string => join(dir, name),
    /** Writes the key file `name` (mode 0600) in the scope's directory: one key a line. */
    writeKey: (name: string, ...lines: string[]): void =>
      writeFileSync(join(dir, name), `${lines.join("\n")}\n`, { mode: 0o600 }),
    /** A new namespace named `prefix…` (lib/sys/netns.ts createNetns). */
    netns(prefix: string): Netns {
      const ns = createNetns(prefix);
      spaces.push(ns);
      return ns;
    },
    /** `argv` started in `where` (./daemon.ts spawnDaemon). */
    daemon,
    /** `dstm ARGS…` from source (`bun mod.ts`) started in `where`. */
    dstm: (where: Netns, args: readonly string[]): Daemon =>
      daemon(where, [BUN, join(ROOT, "mod.ts"), ...args]),
  };
}
