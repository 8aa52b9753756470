/**
 * The JavaScript engine's compiler threads, as Linux shows them (/proc/self/task): how much
 * CPU they have used, for the server's warm-up (lib/server/warm_up.ts), which waits until the
 * compiles its exchanges started have ended before the server listens.
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";

/**
 * CPU time used so far by this process's JIT compiler threads (JavaScriptCore names them
 * `JITWorker`), in clock ticks (user + system, proc_pid_stat(5) fields 14 and 15; usually
 * 1/100 s). Linux only: 0 where /proc is not readable. Read by the server's warm-up
 * (lib/server/warm_up.ts) to wait until the compiles its exchanges started have ended.
 */
export function jitCompilerTicks(): number {
  let ticks = 0;
  let tasks: string[];
  try {
    tasks = readdirSync("/proc/self/task");
  } catch {
    return 0;
  }
  for (const task of tasks) {
    try {
      if (readFileSync(`/proc/self/task/${task}/comm`, "latin1") !== "JITWorker\n") continue;
      const stat = readFileSync(`/proc/self/task/${task}/stat`, "latin1");
      // The fields after the command name, which is in parentheses and may hold spaces.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return ticks;
}
