/**
 * The JavaScript engine's compiler threads, as Linux shows them (/proc/self/task): how much
 * CPU they have used, for the server's warm-up (lib/server/warm_up.ts), which waits until the
 * compiles its exchanges started have ended before the server listens; and their scheduling
 * priority, which `dstm server` lowers so that compiling never takes the CPU from answering.
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

/**
 * CPU time used so far by this process's JIT compiler threads (JavaScriptCore names them
 * `JITWorker`), in clock ticks (user + system, proc_pid_stat(5) fields 14 and 15; usually
 * 1/100 s). Linux only: 0 where /proc is not readable. Read by the server's warm-up
 * (lib/server/warm_up.ts) to wait until the compiles its exchanges started have ended.
 */
export function jitCompilerTicks(): number {
  let ticks = 0;
  for (const task of _tasks()) {
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

/**
 * Gives this process's JIT compiler threads the scheduling niceness `nice` (setpriority(2)
 * with a thread id, as Linux allows; 0 normal, 19 lowest), so that compiling yields the CPU to
 * the threads that answer. Threads already at `nice` are left alone; returns how many were
 * changed. Linux only: 0 where /proc is not readable; a thread whose change is refused
 * (EACCES: raising priority needs CAP_SYS_NICE) keeps its niceness.
 */
export function niceJitCompilerThreads(nice: number): number {
  let changed = 0;
  for (const task of _tasks()) {
    try {
      if (readFileSync(`/proc/self/task/${task}/comm`, "latin1") !== "JITWorker\n") continue;
      const tid = Number(task);
      if (getPriority(tid) === nice) continue;
      setPriority(tid, nice);
      changed++;
    } catch {
      // The thread ended meanwhile, or the change was refused.
    }
  }
  return changed;
}

/** This process's thread ids (/proc/self/task); none where /proc is not readable. */
function _tasks(): string[] {
  try {
    return readdirSync("/proc/self/task");
  } catch {
    return [];
  }
}
