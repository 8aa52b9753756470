/**
 * What bench/million_ops.ts measures with: RSS samples of a process, DISCOVERs answered while
 * something else runs, a command's time and output, gaps in a flow's packet times, the size of
 * a snapshot, a process's JSON log lines as they come. Not a test.
 *
 * @module
 */
import { readFileSync, statSync } from "node:fs";
import { DstmClient, type DstmTransport } from "../lib/client/protocol.ts";
import { encodingLength } from "../lib/wire/dstm.ts";
import { MessageType, SNAPSHOT_MAX_BINDINGS, type WireBinding } from "../lib/wire/dstm_types.ts";
import { BASE, host, rss } from "./million_server.ts";

/** RSS of `pid` every 50 ms until stopped: first, peak and last (bytes). */
export function sampleRss(pid: () => number) {
  let first = 0;
  let peak = 0;
  let last = 0;
  const timer = setInterval(() => {
    const value = rss(pid());
    if (!value) return;
    if (!first) first = value;
    peak = Math.max(peak, value);
    last = value;
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return { first, peak, last };
    },
  };
}

/** A DISCOVER of a new host every 20 ms, one at a time, until stopped: the answers' times (ms). */
export function probeDiscovers(transport: DstmTransport, next: () => number) {
  const waits: number[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const t = performance.now();
      await new DstmClient(transport, host(next())).discover();
      waits.push(performance.now() - t);
      await Bun.sleep(20);
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      const sorted = [...waits].sort((a, b) => a - b);
      return {
        count: waits.length,
        p50: sorted[Math.floor(sorted.length / 2)] ?? 0,
        max: sorted[sorted.length - 1] ?? 0,
      };
    },
  };
}

/** Runs `argv` with stdout into `out`; time (ms), the output's size and lines, and its own RSS. */
export async function runCommand(argv: string[], out: string) {
  const t = performance.now();
  const proc = Bun.spawn(argv, { stdout: Bun.file(out), stderr: "pipe" });
  const own = sampleRss(() => proc.pid);
  const code = await proc.exited;
  const ms = performance.now() - t;
  const ownRss = own.stop();
  if (code !== 0)
    throw new Error(`${argv.join(" ")}: exit ${code}\n${await new Response(proc.stderr).text()}`);
  const bytes = statSync(out).size;
  let lines = 0;
  const text = readFileSync(out);
  for (let i = 0; i < text.length; i++) if (text[i] === 10) lines++;
  return { ms, bytes, lines, ownRssPeak: ownRss.peak };
}

/** Longest gap (ms) between consecutive times within [from, to], and how many times fell there. */
export function longestGap(times: Float64Array, from: number, to: number) {
  let gap = 0;
  let count = 0;
  let previous = Number.NaN;
  for (const t of times) {
    if (t < from || t > to) continue;
    count++;
    if (!Number.isNaN(previous)) gap = Math.max(gap, t - previous);
    previous = t;
  }
  return { gap, count };
}

/** Bytes of the SNAPSHOT datagrams (DSTM messages, unsigned) of `n` bindings, and parts. */
export function snapshotBytes(n: number) {
  const binding: WireBinding = {
    host4: BASE + 1,
    host6: host(1),
    portSet: { offset: 0, psidLength: 0, psid: 0 },
  };
  const size = (k: number) =>
    encodingLength({
      type: MessageType.SNAPSHOT,
      xid: 0,
      snapshot: { id: 1, part: 0, parts: 1 },
      bindings: Array.from({ length: k }, () => binding),
    });
  const full = Math.floor(n / SNAPSHOT_MAX_BINDINGS);
  const rest = n % SNAPSHOT_MAX_BINDINGS;
  const parts = full + (rest ? 1 : 0);
  return {
    computedParts: parts,
    bytes: full * size(SNAPSHOT_MAX_BINDINGS) + (rest ? size(rest) : 0),
  };
}

/** Lines of a process's stdout (JSON log lines) with the time each came (ms, performance.now). */
export function logLines(stream: ReadableStream<Uint8Array>) {
  const lines: { at: number; event: Record<string, unknown> }[] = [];
  const waiters: (() => void)[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of stream) {
      const at = performance.now();
      text += decoder.decode(chunk, { stream: true });
      let nl = text.indexOf("\n");
      while (nl >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        try {
          lines.push({ at, event: JSON.parse(line) as Record<string, unknown> });
        } catch {
          lines.push({ at, event: { text: line } });
        }
        nl = text.indexOf("\n");
      }
      for (const w of waiters.splice(0)) w();
    }
  })();
  return {
    lines,
    /** The first line from index `from` on whose event is `name` (waits up to `ms`). */
    async wait(name: string, from: number, ms: number) {
      const deadline = performance.now() + ms;
      for (;;) {
        const found = lines.slice(from).find((l) => l.event.event === name || l.event.msg === name);
        if (found) return found;
        if (performance.now() > deadline) throw new Error(`no "${name}" log line in ${ms} ms`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 500);
        });
      }
    },
  };
}
