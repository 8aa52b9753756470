/**
 * A `dstm server` process for the benches that load one over loopback (bench/alloc.ts,
 * bench/active_active.ts, bench/reclaim_server.ts, bench/million_server.ts): started on [::1]:0 with what every such
 * bench needs (`--no-source-check`, since all simulated hosts send from ::1; no per-prefix cap
 * or rate), its UDP port read from its `start` line, the rest of its log read and dropped.
 *
 * @module
 */
import { join } from "node:path";

/** How a bench runs dstm by default: from source, with this Bun. */
export const DSTM_FROM_SOURCE: readonly string[] = [
  process.execPath,
  join(import.meta.dir, "..", "mod.ts"),
];

export interface BenchServer {
  readonly proc: ReturnType<typeof Bun.spawn>;
  /** The UDP port it answers on ([::1]). */
  readonly port: number;
  /** SIGTERM, and resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * Starts `dstm server` (`dstm`: the command, default {@link DSTM_FROM_SOURCE}) with `args`
 * after the bench defaults (a later flag wins); resolves once it listens. Throws with its
 * output when it exits first. `onLine`: called with each line of its log (else dropped).
 */
export async function spawnBenchServer(
  args: readonly string[],
  dstm: readonly string[] = DSTM_FROM_SOURCE,
  onLine?: (line: string) => void,
): Promise<BenchServer> {
  const proc = Bun.spawn(
    [
      ...dstm,
      "server",
      ...["--listen", "[::1]:0", "--no-source-check"],
      ...["--max-leases-per-prefix", "0", "--prefix-rate", "0"],
      ...args,
    ],
    { stdout: "pipe", stderr: "inherit" },
  );
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  let port = 0;
  while (!port) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited:\n${text}`);
    text += decoder.decode(value, { stream: true });
    port = Number(/ start listen=\[[0-9a-f:.]+\]:(\d+)/.exec(text)?.[1] ?? 0);
  }
  void (async () => {
    if (!onLine) {
      while (!(await reader.read()).done) {}
      return;
    }
    // `onLine` gets every log line, those of the start included.
    for (;;) {
      let nl = text.indexOf("\n");
      while (nl >= 0) {
        onLine(text.slice(0, nl));
        text = text.slice(nl + 1);
        nl = text.indexOf("\n");
      }
      const { value, done } = await reader.read();
      if (done) return;
      text += decoder.decode(value, { stream: true });
    }
  })();
  return {
    proc,
    port,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
