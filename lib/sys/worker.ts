/**
 * Forwarding loops in Workers: Bun's Web `Worker` (https://bun.sh/docs/api/workers),
 * `SharedArrayBuffer` + `Atomics` for the stop flag, `postMessage` with a transfer list for
 * the init data. Generic: the loops themselves live with the tunnel code.
 *
 * A loop blocks in FFI calls (read + poll with a timeout), so it never returns to the event
 * loop and cannot receive messages; it polls a shared stop flag instead. {@link
 * WorkerHandle.stop} raises the flag, waits for the loop to return, then terminates the
 * Worker if it did not. Each Worker dlopens libc for itself (see `libc.ts`): it just imports
 * the `lib/sys` modules it needs. Fds are per process, so pass fd numbers in the init data.
 *
 * Main thread:
 * ```ts
 * const w = startWorker<Init, Stats>(new URL("./encap_worker.ts", import.meta.url), { tunFd });
 * await w.ready;
 * // ... later
 * const { result } = await w.stop();
 * ```
 * Worker module:
 * ```ts
 * runWorker<Init, Stats>(({ tunFd }, ctx) => {
 *   const tun = attachTun(tunFd);
 *   ctx.ready();
 *   while (!ctx.stopRequested) { ... }
 *   return stats;
 * });
 * ```
 *
 * @module
 */

/** What the body running in the Worker gets besides its init data. */
export class WorkerContext {
  private readonly _flag: Int32Array;

  constructor(
    buffer: SharedArrayBuffer,
    private readonly _post: (message: unknown, transfer?: Bun.Transferable[]) => void,
  ) {
    this._flag = new Int32Array(buffer, 0, 1);
  }

  /** True once the main thread asked the loop to stop (one atomic load: check it per packet). */
  get stopRequested(): boolean {
    return Atomics.load(this._flag, 0) !== 0;
  }

  /** Tells the main thread that setup is done ({@link WorkerHandle.ready} resolves). */
  ready(): void {
    this._post({ kind: "dstm-worker-ready" });
  }

  /**
   * Posts `message` to the main thread (a `message` event on {@link WorkerHandle.worker});
   * give it a `kind` other than `dstm-worker-*`. `transfer`: buffers moved, not copied.
   */
  post(message: unknown, transfer?: Bun.Transferable[]): void {
    this._post(message, transfer);
  }
}

/** What the main thread sends a Worker first. */
interface _InitMessage<I> {
  kind: "dstm-worker-init";
  stop: SharedArrayBuffer;
  init: I;
}

/** What a Worker answers once its body returned or threw. */
type _DoneMessage<R> =
  | { kind: "dstm-worker-ready" }
  | { kind: "dstm-worker-result"; value: R }
  | { kind: "dstm-worker-error"; message: string; stack?: string };

export interface StartWorkerOptions {
  /** Objects moved (not copied) to the Worker with the init data: ArrayBuffers, ports. */
  transfer?: Bun.Transferable[];
  /** Worker name, shown in stack traces and debuggers. */
  name?: string;
}

export interface StopResult<R> {
  /** The body's return value, when it returned in time. */
  result?: R;
  /** True when the Worker did not finish within the timeout and was terminated. */
  terminated: boolean;
}

/** A running Worker started by {@link startWorker}. */
export interface WorkerHandle<R> {
  readonly worker: Worker;
  /** Resolves when the body calls `ctx.ready()`; rejects if it fails or exits first. */
  readonly ready: Promise<void>;
  /** Settles with the body's return value; rejects with its error, or if the Worker died. */
  readonly result: Promise<R>;
  /** Resolves when the Worker has exited (for any reason). */
  readonly exited: Promise<void>;
  /** Raises the stop flag, waits up to `timeoutMs` (default 2000) for the body, then terminates. */
  stop(timeoutMs?: number): Promise<StopResult<R>>;
}

/**
 * Starts a Worker running `moduleUrl` (a module that calls {@link runWorker}) and hands it
 * `init` plus a fresh stop flag.
 */
export function startWorker<I, R>(
  moduleUrl: string | URL,
  init: I,
  opts: StartWorkerOptions = {},
): WorkerHandle<R> {
  const stopBuffer = new SharedArrayBuffer(4);
  const flag = new Int32Array(stopBuffer);
  const worker = new Worker(moduleUrl, opts.name === undefined ? {} : { name: opts.name });
  let settled = false;
  let resolveResult!: (value: R) => void;
  let rejectResult!: (error: Error) => void;
  const result = new Promise<R>((resolve, reject) => {
    resolveResult = (value) => {
      settled = true;
      resolve(value);
    };
    rejectResult = (error) => {
      settled = true;
      reject(error);
    };
  });
  result.catch(() => {}); // observed through stop() or by the caller
  let resolveReady!: () => void;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    result.then(
      () => reject(new Error("the Worker finished without calling ready()")),
      (error) => reject(error),
    );
  });
  ready.catch(() => {});
  const exited = new Promise<void>((resolve) => {
    worker.addEventListener("close", () => {
      if (!settled) rejectResult(new Error("the Worker exited before its loop returned"));
      resolve();
    });
  });
  worker.addEventListener("message", (event: MessageEvent) => {
    const done = event.data as _DoneMessage<R>;
    if (done?.kind === "dstm-worker-ready") resolveReady();
    else if (done?.kind === "dstm-worker-result") resolveResult(done.value);
    else if (done?.kind === "dstm-worker-error") {
      const error = new Error(done.message);
      if (done.stack !== undefined) error.stack = done.stack;
      rejectResult(error);
    }
  });
  worker.addEventListener("error", (event: Event) => {
    rejectResult(new Error((event as ErrorEvent).message ?? "error in the Worker"));
  });
  const message: _InitMessage<I> = { kind: "dstm-worker-init", stop: stopBuffer, init };
  worker.postMessage(message, opts.transfer ?? []);

  return {
    worker,
    ready,
    result,
    exited,
    async stop(timeoutMs = 2000): Promise<StopResult<R>> {
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const inTime = await Promise.race([
        exited.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (!inTime) worker.terminate();
      const value = await result.then(
        (v) => ({ ok: true as const, v }),
        () => ({ ok: false as const }),
      );
      if (!inTime) await exited;
      return value.ok ? { result: value.v, terminated: !inTime } : { terminated: !inTime };
    },
  };
}

interface _WorkerScope {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown, transfer?: Bun.Transferable[]): void;
}

/**
 * The Worker side: waits for the init message, runs `body(init, ctx)` once, posts its
 * return value (or error) to the main thread, and lets the Worker exit.
 */
export function runWorker<I, R>(body: (init: I, ctx: WorkerContext) => R | Promise<R>): void {
  const scope = globalThis as unknown as _WorkerScope;
  scope.onmessage = async (event: MessageEvent) => {
    const message = event.data as _InitMessage<I>;
    if (message?.kind !== "dstm-worker-init") return;
    scope.onmessage = null; // nothing else keeps the Worker alive once the body is done
    try {
      const ctx = new WorkerContext(message.stop, (m, t) => scope.postMessage(m, t ?? []));
      const value = await body(message.init, ctx);
      scope.postMessage({ kind: "dstm-worker-result", value } satisfies _DoneMessage<R>);
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      scope.postMessage({
        kind: "dstm-worker-error",
        message: e.message,
        stack: e.stack,
      } satisfies _DoneMessage<R>);
    }
  };
}
