/**
 * Allocation load generator: many simulated hosts, each sending one DSTM_DISCOVER over real
 * UDP, with a fixed number of exchanges in flight (like perfdhcp's rate-limited mode, but
 * closed-loop so the server's queue stays bounded). Reports durable allocations per second
 * and loss (requests with no answer within --timeout).
 *
 *   bun bench/alloc.ts --spawn [--hosts 100000] [--concurrency 256]   # starts its own server
 *   bun bench/alloc.ts --spawn --dstm TREE/dist/dstm --store sqlite --rounds 1   # one A/B side
 *   bun bench/alloc.ts --server ::1 --port 4607 --hosts 50000          # against a running one
 *   bun bench/alloc.ts --protocol dhcp4o6 [--target dstm|kea|both] [--hosts 30000] [--concurrency 64]
 *
 * Native defaults: --hosts 100000, --concurrency 256 exchanges in flight (why 256, and what 128
 * gives: docs/benchmarks.md "Session 16"), --rounds 3, --timeout 2000 ms, --duration 30 s,
 * --port 4607 (without --spawn); --json prints one JSON document. The first line of a run says
 * its hosts, exchanges in flight and timeout.
 *
 * With --spawn the server is `dist/dstm server` (or `bun mod.ts server` when not compiled)
 * with the SQLite store (synchronous=FULL, group commit) in a temporary directory, and
 * `--no-source-check` because every simulated host sends from ::1; `--dstm EXE` measures
 * another executable, `--store sqlite|memory|both` (default both, alternately),
 * `--server-log-level warn` a server that logs warnings only (default info: one line per
 * lease), `--server-log file` its log to a file in its directory rather than a pipe the bench
 * drains on the CPUs it shares with the server (default pipe). Each line says the server's CPU time (user + system, all threads, and its main
 * thread's) per allocation, and the load generator's own per answer (both share the CPUs).
 * `--host-addresses random|sequential`: the simulated hosts' IPv6 addresses (default random,
 * as real hosts' interface identifiers are; sequential: in host order, as before session 15;
 * {@link hostAddress}).
 * `--warm-up N` first sends N DISCOVERs of other hosts to each fresh server, not measured
 * (its JIT compiles the request path during the first ~40,000: 4 µs of JIT-thread CPU per
 * allocation over those); default 0, the server as it starts.
 * Bounded: stops after --hosts exchanges or --duration seconds, whichever comes first.
 *
 * `--protocol dhcp4o6` (as root) compares dstm's DHCPv4-over-DHCPv6 service with ISC Kea's
 * in one run: full DORAs from N simulated hosts, each its own IPv6 source address, against
 * each server in its own network namespace, alternating rounds on fresh servers, medians and
 * the ratio dstm/Kea (bench/dhcp4o6_bench.ts, bench/dhcp4o6_load.ts).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalIPv6 } from "../lib/net/addr.ts";
import { readU32 } from "../lib/net/bytes.ts";
import { connectUdp, LISTEN_RECEIVE_BUFFER } from "../lib/sys/udp.ts";
import { raiseUdpReceiveBuffer } from "../lib/sys/udp_buffer.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { DSTM_HEADER_LENGTH, DSTM_VERSION, MessageType } from "../lib/wire/dstm_types.ts";
import { parseBenchArgs } from "./bench_args.ts";
import { formatSummary, runDhcp4o6Bench, type Target } from "./dhcp4o6_bench.ts";
import { DSTM_FROM_SOURCE, spawnBenchServer } from "./server_process.ts";

const ROOT = join(import.meta.dir, "..");
export const BENCH_POOL = "198.18.0.0/15";

/**
 * Native exchanges in flight by default: the server's capacity is the rate where more in
 * flight brings no more. Swept on the final tree of session 16 (docs/benchmarks.md): 64 →
 * 43.9k/s, 128 → 45.1k, 192 → 48.1k, 256 → 51.7k, 384 → 51.0k, 512 → 51.0k; with 128 (the
 * default before) the closed loop left the server's main thread idle part of each cycle,
 * waiting for answers to come back as new requests.
 */
export const NATIVE_CONCURRENCY = 256;

export interface LoadResult {
  sent: number;
  acked: number;
  naks: number;
  lost: number;
  seconds: number;
  perSecond: number;
  lossPercent: number;
  p50ms: number;
  p99ms: number;
  /** CPU time (user + system, µs) of this load generator's process per answer: it shares the machine's CPUs with the server. */
  clientCpuUs: number;
}

export interface LoadOptions {
  server: string;
  port: number;
  hosts: number;
  concurrency: number;
  durationS: number;
  timeoutMs: number;
  /** First simulated host number, so that runs against one server can use fresh hosts. */
  firstHost?: number;
  /** How the hosts' IPv6 addresses look (default random): see {@link hostAddress}. */
  hostAddresses?: HostAddresses;
}

/** `--host-addresses`: the simulated hosts' IPv6 addresses (see {@link hostAddress}). */
export type HostAddresses = "random" | "sequential";

/**
 * The IPv6 address of simulated host `n` (a 32-bit number; distinct hosts, distinct addresses).
 * - `random`: 2001:db8:1:0 and an interface identifier that looks random (two multiplicative
 *   hashes of `n`, the first a bijection of 32 bits), as real hosts' are: SLAAC with stable
 *   (RFC 7217) or temporary (RFC 8981) identifiers. The order in which hosts arrive says
 *   nothing about the order of their addresses, as on a real link.
 * - `sequential`: 2001:db8:HI:LO::1, in the order of the host numbers, which flatters any
 *   index kept in address order (what bench results before session 15 used).
 */
export function hostAddress(n: number, kind: HostAddresses = "random"): string {
  if (kind === "sequential")
    return `2001:db8:${((n >>> 16) & 0xffff).toString(16)}:${(n & 0xffff).toString(16)}::1`;
  const a = Math.imul(n, 0x9e3779b1) >>> 0;
  const b = Math.imul(n ^ 0x5bd1e995, 0x85ebca6b) >>> 0;
  const h = (x: number) => (x >>> 16).toString(16);
  const l = (x: number) => (x & 0xffff).toString(16);
  // Canonical (RFC 5952): a zero group beside the fourth becomes "::".
  return canonicalIPv6(`2001:db8:1:0:${h(a)}:${l(a)}:${h(b)}:${l(b)}`) as string;
}

/** Runs the closed-loop DISCOVER load; resolves when every host has been answered or timed out. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const sentAt = new Float64Array(o.hosts);
  const latencies: number[] = [];
  const done = new Uint8Array(o.hosts);
  let next = 0;
  let inFlight = 0;
  let acked = 0;
  let naks = 0;
  let lost = 0;
  const first = o.firstHost ?? 1;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  // Every DISCOVER encoded before the clock starts, and answers read from their header only
  // (version, type, xid): the generator shares the two CPUs with the server it measures.
  const requests = Array.from({ length: o.hosts }, (_, i) => {
    const host6 = hostAddress(first + i, o.hostAddresses);
    return encodeMessage({ type: MessageType.DISCOVER, xid: i, host6 });
  });
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const deadline = started + o.durationS * 1000;
  // Connected to the server: the kernel routes once, not per request (lib/sys/udp.ts).
  const socket = await connectUdp(o.server, o.port, (data) => {
    // A DSTM header (lib/wire/dstm.ts): version 1, type, flags, xid (u32 at 4), length.
    if (data.length < DSTM_HEADER_LENGTH || data[0] !== DSTM_VERSION) return;
    const i = readU32(data, 4);
    if (i >= o.hosts || done[i]) return;
    done[i] = 1;
    inFlight--;
    latencies.push(performance.now() - sentAt[i]!);
    if (data[1] === MessageType.DISCOVER_ACK) acked++;
    else naks++;
    schedulePump();
  });
  // As large as the server's own (lib/sys/udp.ts): the answers to a whole group commit come in
  // one burst, and with more than about 270 in flight the default 208 KiB would drop some
  // (counted as lost, though the server answered).
  try {
    raiseUdpReceiveBuffer(socket.port, LISTEN_RECEIVE_BUFFER);
  } catch {
    // The kernel's default stays (not root: up to net.core.rmem_max).
  }
  // The answers of one turn are replaced by new requests in one sendmmsg(2), at the end of
  // the turn: the generator pays per batch, as the server does (lib/sys/udp_send_queue.ts),
  // and leaves the CPUs it shares with the server to the server.
  let pumpScheduled = false;
  const schedulePump = () => {
    if (pumpScheduled) return;
    pumpScheduled = true;
    setImmediate(() => {
      pumpScheduled = false;
      pump();
    });
  };
  const batch: Uint8Array[] = [];
  function pump() {
    const now = performance.now();
    while (inFlight < o.concurrency && next < o.hosts && now < deadline) {
      const i = next++;
      sentAt[i] = now;
      inFlight++;
      batch.push(requests[i]!);
    }
    // What the kernel did not take (a full send buffer) goes one by one; a refused one is
    // left to the reaper (lost), as a datagram dropped on the way would be.
    if (batch.length > 0) {
      for (let at = socket.sendMany(batch); at < batch.length; at++) socket.send(batch[at]!);
      batch.length = 0;
    }
    if (inFlight === 0) finish();
  }
  // Expire exchanges that got no answer in time (counted as lost, like perfdhcp's drops).
  const reaper = setInterval(
    () => {
      const now = performance.now();
      for (let i = 0; i < next; i++) {
        if (!done[i] && now - sentAt[i]! > o.timeoutMs) {
          done[i] = 1;
          inFlight--;
          lost++;
        }
      }
      pump();
    },
    Math.max(50, o.timeoutMs / 4),
  );
  pump();
  await finished;
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  clearInterval(reaper);
  socket.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
  const sent = next;
  return {
    sent,
    acked,
    naks,
    lost,
    seconds,
    perSecond: acked / seconds,
    lossPercent: sent ? (100 * lost) / sent : 0,
    p50ms: pct(0.5),
    p99ms: pct(0.99),
    clientCpuUs: (cpu.user + cpu.system) / Math.max(1, acked + naks),
  };
}

/** Starts a dstm server with the SQLite store on [::1]:0; resolves with its port and a stop function. */
export async function spawnServer(
  pool: string,
  extra: string[] = [],
  dstm?: string,
  logLevel: "info" | "warn" = "info",
  logTo: "pipe" | "file" = "pipe",
): Promise<{
  port: number;
  stop: () => Promise<void>;
  dir: string;
  cpuSeconds: () => number;
  mainThreadCpuSeconds: () => number;
}> {
  const dir = mkdtempSync(join(tmpdir(), "dstm-bench-"));
  const exe = dstm
    ? [dstm]
    : existsSync(join(ROOT, "dist", "dstm"))
      ? [join(ROOT, "dist", "dstm")]
      : DSTM_FROM_SOURCE;
  // Every simulated host sends from ::1: the bench defaults (no source check, no rate limit
  // per source prefix, no lease cap) are spawnBenchServer's.
  const server = await spawnBenchServer(
    [
      ...["--pool", pool, "--tep", "2001:db8::1,192.0.2.1"],
      ...["--db", join(dir, "leases.db"), "--no-control"],
      ...extra,
    ],
    exe,
    undefined,
    logLevel,
    logTo === "file" ? join(dir, "server.log") : undefined,
  );
  return {
    port: server.port,
    dir,
    cpuSeconds: () => processCpuSeconds(server.proc.pid),
    // The main thread's task id is the process id (proc(5), /proc/PID/task/TID/stat).
    mainThreadCpuSeconds: () =>
      processCpuSeconds(server.proc.pid, `/proc/${server.proc.pid}/task/${server.proc.pid}/stat`),
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * User + system CPU time (s) of process `pid` so far, all its threads (/proc/PID/stat,
 * proc(5)), or of one thread with `path` /proc/PID/task/TID/stat; NaN when unreadable.
 */
export function processCpuSeconds(pid: number, path = `/proc/${pid}/stat`): number {
  try {
    const stat = readFileSync(path, "utf8");
    // Fields after the command name (which may hold spaces): utime and stime are the 14th and 15th.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[11]) + Number(rest[12])) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}
/** sysconf(_SC_CLK_TCK) on Linux: 100 on every architecture dstm runs on. */
const CLOCK_TICKS = 100;

export function formatResult(
  name: string,
  r: LoadResult & { serverCpuUs?: number; serverMainThreadCpuUs?: number },
): string {
  const main =
    r.serverMainThreadCpuUs === undefined
      ? ""
      : ` (main thread ${r.serverMainThreadCpuUs.toFixed(1)})`;
  const cpu =
    (r.serverCpuUs === undefined
      ? ""
      : `, server CPU ${r.serverCpuUs.toFixed(1)}${main} µs/allocation`) +
    `, load generator CPU ${r.clientCpuUs.toFixed(1)} µs/answer`;
  return `${name}: ${r.acked} allocations in ${r.seconds.toFixed(2)} s = ${Math.round(r.perSecond)}/s, loss ${r.lossPercent.toFixed(2)}% (${r.lost} lost, ${r.naks} NAK), latency p50 ${r.p50ms.toFixed(2)} ms p99 ${r.p99ms.toFixed(2)} ms${cpu}`;
}

/** `--protocol dhcp4o6`: the side-by-side run against ISC Kea; exit code 1 with one line on failure. */
async function mainDhcp4o6(values: {
  target: string;
  hosts?: string;
  concurrency?: string;
  duration?: string;
  timeout: string;
  rounds: string;
  json: boolean;
  dstm?: string;
  "dstm-args"?: string;
  "server-log-level": string;
}): Promise<void> {
  const targets: Target[] | undefined = (
    { both: ["dstm", "kea"], dstm: ["dstm"], kea: ["kea"] } as Record<string, Target[]>
  )[values.target];
  if (!targets) {
    console.error(`--target ${values.target}: expected dstm, kea or both`);
    process.exit(2);
  }
  const options = {
    targets,
    rounds: Number(values.rounds),
    hosts: Number(values.hosts ?? 30_000),
    concurrency: Number(values.concurrency ?? 64),
    durationS: Number(values.duration ?? 60),
    timeoutMs: Number(values.timeout),
    verbose: !values.json,
    dstmExe: values.dstm,
    dstmArgs: values["dstm-args"]?.split(/\s+/).filter(Boolean),
    serverLogLevel: values["server-log-level"] as "info" | "warn",
  };
  if (options.serverLogLevel !== "info" && options.serverLogLevel !== "warn") {
    console.error(`--server-log-level ${options.serverLogLevel}: expected info or warn`);
    process.exit(2);
  }
  if (!values.json)
    console.log(
      `DHCPv4-over-DHCPv6 DORA: ${options.rounds} round(s) × (${targets.join(", ")}), ${options.hosts} hosts each, ${options.concurrency} in flight, timeout ${options.timeoutMs} ms${options.dstmExe ? `, dstm = ${options.dstmExe}` : ""}${values["dstm-args"] ? `, dstm server flags + ${values["dstm-args"]}` : ""}, server logs at ${options.serverLogLevel}`,
    );
  try {
    const { rows, summary } = await runDhcp4o6Bench(options);
    console.log(values.json ? JSON.stringify({ options, rows, summary }) : formatSummary(summary));
  } catch (error) {
    console.error(`bench/alloc --protocol dhcp4o6: ${(error as Error).message}`);
    process.exit(1);
  }
}

if (import.meta.main) {
  const { values } = parseBenchArgs(
    import.meta.path,
    {
      options: {
        protocol: { type: "string", default: "dstm" },
        target: { type: "string", default: "both" },
        spawn: { type: "boolean", default: false },
        server: { type: "string", default: "::1" },
        port: { type: "string", default: "4607" },
        // Defaults depend on the protocol: dstm 100000 / 256 / 30 s, dhcp4o6 30000 / 64 / 60 s.
        hosts: { type: "string" },
        concurrency: { type: "string" },
        duration: { type: "string" },
        timeout: { type: "string", default: "2000" },
        rounds: { type: "string", default: "3" },
        json: { type: "boolean", default: false },
        // The dstm executable to measure (--spawn and dhcp4o6); dhcp4o6 only: extra server flags.
        dstm: { type: "string" },
        // --spawn: which stores (sqlite, memory, or both alternately).
        store: { type: "string", default: "both" },
        "dstm-args": { type: "string" },
        // dhcp4o6 only: both servers' log level (info: a line per lease, as deployed; or warn).
        "server-log-level": { type: "string", default: "info" },
        // --spawn: where the server's log goes: a pipe the bench drains (pipe), or a file in
        // the server's directory (file: as `dstm server > FILE`; nothing of the bench reads it).
        "server-log": { type: "string", default: "pipe" },
        // --spawn: DISCOVERs of other hosts sent to each fresh server before the measured ones
        // (not counted), so that the JIT has compiled its paths: the steady state, not the start.
        "warm-up": { type: "string", default: "0" },
        // dstm: the simulated hosts' IPv6 addresses, random (as real hosts') or sequential.
        "host-addresses": { type: "string", default: "random" },
      },
    },
    ["hosts", "concurrency", "duration"],
  );
  if (values.protocol === "dhcp4o6") {
    await mainDhcp4o6(values);
    process.exit(0);
  }
  if (values.protocol !== "dstm") {
    console.error(`--protocol ${values.protocol}: expected dstm or dhcp4o6`);
    process.exit(2);
  }
  if (!["sqlite", "memory", "both"].includes(values.store)) {
    console.error(`--store ${values.store}: expected sqlite, memory or both`);
    process.exit(2);
  }
  if (values["server-log-level"] !== "info" && values["server-log-level"] !== "warn") {
    console.error(`--server-log-level ${values["server-log-level"]}: expected info or warn`);
    process.exit(2);
  }
  if (values["host-addresses"] !== "random" && values["host-addresses"] !== "sequential") {
    console.error(`--host-addresses ${values["host-addresses"]}: expected random or sequential`);
    process.exit(2);
  }
  if (values["server-log"] !== "pipe" && values["server-log"] !== "file") {
    console.error(`--server-log ${values["server-log"]}: expected pipe or file`);
    process.exit(2);
  }
  const load = (port: number): LoadOptions => ({
    server: values.server,
    port,
    hosts: Number(values.hosts ?? 100_000),
    // 256 in flight: enough to keep a server busy (docs/benchmarks.md, session 16: with 128 the
    // closed loop left it idle part of the time; the rate levels off from 256 on).
    concurrency: Number(values.concurrency ?? NATIVE_CONCURRENCY),
    durationS: Number(values.duration ?? 30),
    timeoutMs: Number(values.timeout),
    hostAddresses: values["host-addresses"] as HostAddresses,
  });
  const poolHosts = 131_070; // BENCH_POOL's usable addresses
  if (values.spawn && Number(values["warm-up"]) + load(0).hosts > poolHosts) {
    console.error(
      `--warm-up ${values["warm-up"]} + --hosts: at most ${poolHosts} (the pool's size)`,
    );
    process.exit(2);
  }
  const shape = load(0);
  // What is measured, first (the JSON carries it as `load`): a run can be read on its own.
  if (!values.json)
    console.log(
      `native DSTM_DISCOVER: ${shape.hosts} hosts, ${shape.concurrency} in flight, timeout ${shape.timeoutMs} ms${values.spawn ? `, ${values.rounds} round(s) × (${values.store === "both" ? "sqlite, memory" : values.store}), server logs at ${values["server-log-level"]}` : ""}`,
    );
  if (!values.spawn) {
    const result = await runLoad(load(Number(values.port)));
    console.log(
      values.json
        ? JSON.stringify(result)
        : formatResult(`[${values.server}]:${values.port}`, result),
    );
  } else {
    // Side by side, alternating, each round on fresh servers: the durable SQLite store and the
    // in-memory store (same server, same load), so the cost of durability shows as a ratio.
    const stores = values.store === "both" ? ["sqlite", "memory"] : [values.store];
    const rows: {
      store: string;
      result: LoadResult & { serverCpuUs: number; serverMainThreadCpuUs: number };
    }[] = [];
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const store of stores) {
        const server = await spawnServer(
          BENCH_POOL,
          store === "memory" ? ["--db", "memory"] : [],
          values.dstm,
          values["server-log-level"] === "warn" ? "warn" : "info",
          values["server-log"] === "file" ? "file" : "pipe",
        );
        try {
          const warmUp = Number(values["warm-up"]);
          if (warmUp > 0) await runLoad({ ...load(server.port), hosts: warmUp });
          const cpuBefore = server.cpuSeconds();
          const mainBefore = server.mainThreadCpuSeconds();
          const load1 = await runLoad({ ...load(server.port), firstHost: warmUp + 1 });
          const perAck = (seconds: number) => (seconds * 1e6) / Math.max(1, load1.acked);
          const serverCpuUs = perAck(server.cpuSeconds() - cpuBefore);
          const serverMainThreadCpuUs = perAck(server.mainThreadCpuSeconds() - mainBefore);
          const result = { ...load1, serverCpuUs, serverMainThreadCpuUs };
          rows.push({ store, result });
          if (!values.json) console.log(formatResult(`round ${round + 1} ${store}`, result));
        } finally {
          await server.stop();
        }
      }
    }
    const median = (store: string) => {
      const rates = rows
        .filter((r) => r.store === store)
        .map((r) => r.result.perSecond)
        .sort((a, b) => a - b);
      return rates[Math.floor(rates.length / 2)] ?? 0;
    };
    const summary = {
      sqlitePerSecond: Math.round(median("sqlite")),
      memoryPerSecond: Math.round(median("memory")),
      ratio: median("sqlite") / median("memory"),
      maxLossPercent: Math.max(...rows.map((r) => r.result.lossPercent)),
    };
    console.log(
      values.json
        ? JSON.stringify({
            load: {
              hosts: shape.hosts,
              concurrency: shape.concurrency,
              timeoutMs: shape.timeoutMs,
            },
            rows,
            summary,
          })
        : `median: sqlite (durable) ${summary.sqlitePerSecond}/s, memory ${summary.memoryPerSecond}/s, durable/memory = ${summary.ratio.toFixed(2)}, max loss ${summary.maxLossPercent.toFixed(2)}%`,
    );
  }
}
