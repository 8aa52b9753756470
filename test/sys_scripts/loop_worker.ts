/**
 * Worker bodies for test/sys_worker.test.ts. init.mode: "count" loops until stopped and
 * returns how often it looked at the flag; "stuck" ignores the flag (a loop that never ends);
 * "throw" fails during setup; "libc" checks that libc works in this thread.
 */
import * as libc from "../../lib/sys/libc.ts";
import { runWorker } from "../../lib/sys/worker.ts";

export interface LoopInit {
  mode: "count" | "stuck" | "throw" | "libc";
  data?: ArrayBuffer;
  /** Int32 [0]: iterations so far, so the test can wait for the loop to run. */
  progress?: SharedArrayBuffer;
}

runWorker<LoopInit, { iterations: number; dataBytes: number; errno?: string }>((init, ctx) => {
  if (init.mode === "throw") throw new Error("setup failed in the Worker");
  ctx.ready();
  let iterations = 0;
  if (init.mode === "libc") {
    // Its own dlopen: a failing call in this thread sets this thread's errno.
    const r = libc.close(-1);
    return { iterations, dataBytes: 0, errno: libc.errnoName(r) };
  }
  const progress = init.progress ? new Int32Array(init.progress) : undefined;
  const deadline = Date.now() + 10_000;
  while ((init.mode === "stuck" || !ctx.stopRequested) && Date.now() < deadline) {
    iterations++;
    if (progress) Atomics.store(progress, 0, iterations);
    Bun.sleepSync(1);
  }
  return { iterations, dataBytes: init.data?.byteLength ?? 0 };
});
