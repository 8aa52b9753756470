/**
 * A test file's temporary directory, namespaces and processes (dstm from source, or anything
 * spawned in a namespace), all removed by one afterAll, also when a test fails: processes
 * killed by PID and awaited, namespaces deleted, the directory removed. Namespaces are made
 * when asked for, so a skipped suite makes none. (./daemon.ts daemonScope is the same for
 * tests that read daemons' log lines.)
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns } from "../../lib/sys/netns.ts";
import { type DstmProcess, spawnDstm } from "./process.ts";

/** What a scope can stop: a process (kill by signal, then its exit). */
export interface Stoppable {
  kill(signal?: number | NodeJS.Signals): void;
  readonly exited: Promise<number>;
}

/** See the module comment. `tmpPrefix` names the directory, `nsPrefix` the namespaces. */
export function processScope(tmpPrefix: string, nsPrefix: string) {
  const dir = mkdtempSync(join(tmpdir(), tmpPrefix));
  const spawned: Stoppable[] = [];
  const namespaces: Netns[] = [];
  afterAll(async () => {
    for (const p of spawned) p.kill("SIGKILL");
    await Promise.all(spawned.map((p) => p.exited));
    for (const n of namespaces) n.delete();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);
  return {
    dir,
    /** A new namespace named `nsPrefix…`, deleted after the file. */
    ns(): Netns {
      const n = createNetns(nsPrefix);
      namespaces.push(n);
      return n;
    },
    /** Stops `p` after the file (SIGKILL). Returns `p`. */
    track<T extends Stoppable>(p: T): T {
      spawned.push(p);
      return p;
    },
    /** `dstm ARGS…` from source started in `where`, stopped after the file. */
    spawnIn(where: Netns, args: readonly string[]): DstmProcess {
      const p = spawnDstm(args, {}, where.name);
      spawned.push({ kill: (s) => p.proc.kill(s), exited: p.exited });
      return p;
    },
  };
}
