/**
 * A `dstm server` process for the benches that load one over loopback (bench/alloc.ts,
 * bench/active_active.ts, bench/reclaim_server.ts, bench/million_server.ts): started on [::1]:0 with what every such
 * bench needs (`--no-source-check`, since all simulated hosts send from ::1; no per-prefix cap
 * or rate), its UDP port read from its `start` line, the rest of its log read and dropped.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "../test/helpers/wait.ts";

/** A UDP port free on [::1] now (bound, read, closed). */
async function freeUdpPort(): Promise<number> {
  const socket = await Bun.udpSocket({ hostname: "::1", port: 0 });
  const port = socket.port;
  socket.close();
  return port;
}

/**
 * Whether process `pid`'s network namespace has a UDP socket bound to `port`
 * (/proc/PID/net/udp6, or `udp` for IPv4).
 */
export function udpBound(pid: number, port: number, table: "udp6" | "udp" = "udp6"): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  try {
    return readFileSync(`/proc/${pid}/net/${table}`, "utf8")
      .split("\n")
      .some((line) => line.trim().split(/\s+/)[1]?.endsWith(hex));
  } catch {
    return false;
  }
}

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
 * `logFile`: the server's log goes to this file instead (as `dstm server > FILE` or a journal
 * would take it), so no process of the bench reads a pipe on the CPUs the server shares;
 * `onLine` is then not called.
 */
export async function spawnBenchServer(
  args: readonly string[],
  dstm: readonly string[] = DSTM_FROM_SOURCE,
  onLine?: (line: string) => void,
  logLevel: "info" | "warn" = "info",
  logFile?: string,
): Promise<BenchServer> {
  // At warn, or with the log in a file, the port is picked here, and the server is ready
  // once its socket is bound (its store is loaded by then).
  const fixed = logLevel === "warn" || logFile ? await freeUdpPort() : 0;
  const proc = Bun.spawn(
    [
      ...dstm,
      "server",
      ...["--listen", `[::1]:${fixed}`, "--no-source-check"],
      ...["--max-leases-per-prefix", "0", "--prefix-rate", "0"],
      ...(logLevel === "warn" ? ["--log-level", "warn"] : []),
      ...args,
    ],
    { stdout: logFile ? Bun.file(logFile) : "pipe", stderr: "inherit" },
  );
  if (fixed) {
    await waitUntil(
      () => {
        if (proc.exitCode !== null) throw new Error(`server exited (${proc.exitCode})`);
        return udpBound(proc.pid, fixed);
      },
      { timeoutMs: 30_000, intervalMs: 20, what: `dstm server bound to [::1]:${fixed}` },
    );
    if (!logFile)
      void (async () => {
        const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
        const decoder = new TextDecoder();
        for (let r = await reader.read(); !r.done; r = await reader.read())
          for (const line of decoder.decode(r.value).split("\n")) if (line) onLine?.(line);
      })();
    return {
      proc,
      port: fixed,
      stop: async () => {
        proc.kill("SIGTERM");
        await proc.exited;
      },
    };
  }
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
