/**
 * DHCPv4-over-DHCPv6 side by side: dstm's 4o6 service against ISC Kea's (kea-dhcp6 +
 * kea-dhcp4 linked by "dhcp4o6-port"), same load, same pool, alternating rounds on fresh
 * servers, in network namespaces made for the run (removed afterwards, also on failure).
 * `bun bench/alloc.ts --protocol dhcp4o6` is the command; docs/benchmarks.md has the results.
 *
 * ```
 *                 2001:db8:d::/64 (veth)   ┌─────────────────────────────────────────────┐
 *   ┌────────────┐ ::1 ───────────── ::547 │ dstm server --dhcp4o6, SQLite (FULL, group  │
 *   │ generator  │                         │ commit)                                     │
 *   │ AnyIP      │                         └─────────────────────────────────────────────┘
 *   │ 2001:db8:  │ 2001:db8:e::/64 (veth)  ┌─────────────────────────────────────────────┐
 *   │   ff::/64  │ ::1 ───────────── ::547 │ kea-dhcp6 ⇄ (::1, dhcp4o6-port) ⇄ kea-dhcp4 │
 *   └────────────┘                         │ memfile, persist true; 203.0.113.67 on eth0 │
 *                                          └─────────────────────────────────────────────┘
 * ```
 *
 * The generator (bench/dhcp4o6_load.ts) runs in its own namespace, where 2001:db8:ff::/64 is
 * local (AnyIP route on lo); each server's namespace routes that prefix back over its veth.
 * Both servers: pool 198.18.0.0/15 (131,070 addresses), lease time 3600 s, logs at their
 * default level (info: dstm writes a line per ACK, Kea two per DORA) to a file. Every round
 * starts fresh servers on empty lease stores; the order of the two flips each round.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, deleteNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { waitUntil } from "../test/helpers/wait.ts";
import type { Dhcp4o6LoadResult } from "./dhcp4o6_load.ts";
import { udpBound } from "./server_process.ts";

const ROOT = join(import.meta.dir, "..");
const KEA4 = "/usr/sbin/kea-dhcp4";
const KEA6 = "/usr/sbin/kea-dhcp6";

export type Target = "dstm" | "kea";

/** Addresses of the run: documentation prefixes only; the pool is RFC 2544's benchmarking range. */
export const NET4O6 = {
  hostPrefix: "2001:db8:ff::",
  hostPrefixLength: 64,
  dstm: { link: "2001:db8:d::", gen: "2001:db8:d::1", server: "2001:db8:d::547" },
  kea: { link: "2001:db8:e::", gen: "2001:db8:e::1", server: "2001:db8:e::547" },
  /** kea-dhcp4 needs an IPv4 address on its 4o6 interface: it becomes the server id. */
  keaServerId: "203.0.113.67",
  dstmServerId: "203.0.113.68",
  pool: "198.18.0.0/15",
  poolFirst: "198.18.0.1",
  poolLast: "198.19.255.254",
  leaseTime: 3600,
  dhcp4o6Port: 6767,
} as const;

export interface Dhcp4o6BenchOptions {
  targets: readonly Target[];
  rounds: number;
  hosts: number;
  concurrency: number;
  timeoutMs: number;
  durationS: number;
  /** Print each round as it ends (text) — off for --json. */
  verbose: boolean;
  /** The dstm executable to measure (default dist/dstm, else `bun mod.ts`). */
  dstmExe?: string;
  /** More `dstm server` flags, after the bench's own (a later flag wins), e.g. `--db memory`. */
  dstmArgs?: readonly string[];
  /** Both servers' log level: "info" (default: one or more lines per lease) or "warn". */
  serverLogLevel?: "info" | "warn";
  /** dstm's `--db` (e.g. a `postgres://` URL), asked for once per round; default SQLite in the round's directory. */
  dstmDb?: () => Promise<string>;
  /** Kea's "lease-database" map, asked for once per round; default memfile (persist, no LFC). */
  keaLeaseDatabase?: () => Promise<Record<string, unknown>>;
  /** Kea's "multi-threading" map for both daemons (e.g. enabled, thread pool = CPUs); default Kea's own. */
  keaMultiThreading?: Record<string, unknown>;
}

export interface Dhcp4o6Row {
  round: number;
  target: Target;
  result: Dhcp4o6LoadResult;
  /** CPU seconds the server process(es) used during the load (Kea: both daemons). */
  serverCpuSeconds: number;
  /** CPU seconds of the (first) server process's main thread during the load. */
  mainThreadCpuSeconds: number;
  /** Leases the server had written to its store when stopped (dstm: active rows; Kea: CSV rows). */
  leasesOnDisk: number;
}

export interface Dhcp4o6Summary {
  medians: Partial<
    Record<
      Target,
      {
        perSecond: number;
        lossPercent: number;
        p50ms: number;
        p99ms: number;
        serverCpuMsPerDora: number;
      }
    >
  >;
  /** dstm / Kea, of the median ACKs per second (when both ran). */
  ratio?: number;
  maxLossPercent: number;
}

/** Why this cannot run here, or null. */
export function dhcp4o6SkipReason(targets: readonly Target[]): string | null {
  if (process.getuid?.() !== 0)
    return "--protocol dhcp4o6 needs root: it creates network namespaces and binds UDP 546/547 (run with sudo)";
  if (!Bun.which("ip")) return "--protocol dhcp4o6 needs iproute2 (`ip`)";
  if (targets.includes("kea") && !(existsSync(KEA4) && existsSync(KEA6)))
    return `--target kea needs ISC Kea (${KEA4}, ${KEA6}: apt-get install kea-dhcp4-server kea-dhcp6-server), or use --target dstm`;
  return null;
}

/** Processes we started (killed by PID on the way out, whatever happens) and our temp dirs. */
const _children = new Set<Bun.Subprocess>();
const _dirs = new Set<string>();
let _hooks = false;
function _installHooks(): void {
  if (_hooks) return;
  _hooks = true;
  const killAll = () => {
    for (const proc of _children) {
      try {
        proc.kill("SIGKILL");
      } catch {}
    }
    for (const dir of _dirs) rmSync(dir, { recursive: true, force: true });
  };
  // Registered before lib/sys/netns.ts's own handlers (which delete the namespaces and exit).
  process.on("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, killAll);
}

function _spawn(ns: Netns, argv: string[], logFile: string, env: Record<string, string> = {}) {
  const fd = openSync(logFile, "a");
  const proc = Bun.spawn(["ip", "netns", "exec", ns.name, ...argv], {
    stdin: "ignore",
    stdout: fd,
    stderr: fd,
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  closeSync(fd);
  _children.add(proc);
  return proc;
}

async function _stop(proc: Bun.Subprocess, graceMs = 5000): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill("SIGTERM");
    const done = await Promise.race([
      proc.exited.then(() => true),
      Bun.sleep(graceMs).then(() => false),
    ]);
    if (!done) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }
  _children.delete(proc);
}

/**
 * Waits until `file` matches every pattern and `ready()` holds, or throws with the file's tail
 * if `proc` exits first.
 */
async function _ready(
  proc: Bun.Subprocess,
  file: string,
  patterns: RegExp[],
  what: string,
  ready: () => boolean = () => true,
) {
  await waitUntil(
    () => {
      const text = existsSync(file) ? readFileSync(file, "utf8") : "";
      if (patterns.every((p) => p.test(text)) && ready()) return true;
      if (proc.exitCode !== null)
        throw new Error(`${what} exited (${proc.exitCode}): ${text.slice(-600)}`);
      return false;
    },
    { timeoutMs: 15_000, intervalMs: 50, what: `${what} to be ready (see ${file})` },
  );
}

/** utime + stime of a process (or with `thread`, of its main thread only), in seconds (0 when it is gone). */
function _cpuSeconds(pid: number, thread = false): number {
  try {
    const stat = readFileSync(
      thread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`,
      "utf8",
    );
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // fields 14, 15; USER_HZ 100
  } catch {
    return 0;
  }
}

interface _Topology {
  gen: Netns;
  server: Partial<Record<Target, Netns>>;
}

function _buildTopology(targets: readonly Target[]): _Topology {
  const namespaces: Netns[] = [];
  try {
    const gen = createNetns("dstmt-4g-");
    namespaces.push(gen);
    const topo: _Topology = { gen, server: {} };
    const prefix = `${NET4O6.hostPrefix}/${NET4O6.hostPrefixLength}`;
    gen.exec(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
    gen.exec(["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
    // Every address of the host prefix is local here: the generator sends from any of them.
    gen.ip("-6", "route", "add", "local", prefix, "dev", "lo");
    for (const target of targets) {
      const net = NET4O6[target];
      const ns = createNetns(`dstmt-4${target[0]}-`);
      namespaces.push(ns);
      topo.server[target] = ns;
      ns.exec(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
      ns.exec(["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
      vethPair(gen, `to-${target}`, ns, "eth0");
      gen.addAddress(`to-${target}`, `${net.gen}/64`);
      ns.addAddress("eth0", `${net.server}/64`);
      ns.addRoute(prefix, "via", net.gen);
      if (target === "kea") ns.addAddress("eth0", `${NET4O6.keaServerId}/24`);
    }
    return topo;
  } catch (error) {
    for (const ns of namespaces) deleteNetns(ns.name);
    throw error;
  }
}

interface _Running {
  pids: number[];
  stop(): Promise<void>;
  leasesOnDisk(): number;
}

async function _startDstm(ns: Netns, dir: string, o: Dhcp4o6BenchOptions): Promise<_Running> {
  const exe = o.dstmExe
    ? [o.dstmExe]
    : existsSync(join(ROOT, "dist", "dstm"))
      ? [join(ROOT, "dist", "dstm")]
      : [process.execPath, join(ROOT, "mod.ts")];
  const db = o.dstmDb ? await o.dstmDb() : join(dir, "leases.db");
  const log = join(dir, "dstm.log");
  const proc = _spawn(
    ns,
    [
      ...exe,
      "server",
      "--pool",
      NET4O6.pool,
      "--tep",
      `${NET4O6.dstm.gen},192.0.2.1`,
      "--lease-time",
      String(NET4O6.leaseTime),
      "--listen",
      "[::1]:4607",
      "--db",
      db,
      "--no-control",
      "--dhcp4o6",
      "--dhcp4o6-listen",
      `[${NET4O6.dstm.server}]:547`,
      "--dhcp4o6-server-id",
      NET4O6.dstmServerId,
      "--log-level",
      o.serverLogLevel ?? "info",
      // perfdhcp's simulated clients share a few source prefixes: no rate limit, no lease cap.
      "--prefix-rate",
      "0",
      "--max-leases-per-prefix",
      "0",
      ...(o.dstmArgs ?? []),
    ],
    log,
  );
  // Ready once UDP 547 is bound: the store is loaded by then (works with any --log-level).
  await _ready(proc, log, [], "dstm server", () => udpBound(proc.pid, 547));
  return {
    pids: [proc.pid],
    stop: () => _stop(proc),
    leasesOnDisk: () => {
      if (!existsSync(db)) return 0; // --db memory
      const sql = new Database(db, { readonly: true });
      try {
        const row = sql.query("SELECT count(*) AS n FROM leases WHERE state = 'active'").get() as {
          n: number;
        };
        return row.n;
      } finally {
        sql.close();
      }
    },
  };
}

function _keaConfigs(
  dir: string,
  level: "info" | "warn",
  lease4?: Record<string, unknown>,
  multiThreading?: Record<string, unknown>,
): { v4: unknown; v6: unknown } {
  const mt = multiThreading ? { "multi-threading": multiThreading } : {};
  const leaseDb = (file: string) => ({
    type: "memfile",
    persist: true,
    name: join(dir, file),
    "lfc-interval": 0,
  });
  const logger = (name: string) => [
    { name, output_options: [{ output: join(dir, `${name}.log`) }], severity: level.toUpperCase() },
  ];
  return {
    v4: {
      Dhcp4: {
        // kea-dhcp4 drops every 4o6 query unless the interface is listed and has an IPv4 address.
        "interfaces-config": { interfaces: ["eth0"], "dhcp-socket-type": "udp" },
        "dhcp4o6-port": NET4O6.dhcp4o6Port,
        "lease-database": lease4 ?? leaseDb("kea-leases4.csv"),
        ...mt,
        "valid-lifetime": NET4O6.leaseTime,
        "renew-timer": NET4O6.leaseTime / 2,
        "rebind-timer": (NET4O6.leaseTime * 7) / 8,
        subnet4: [
          {
            id: 1,
            subnet: NET4O6.pool,
            "4o6-subnet": `${NET4O6.hostPrefix}/${NET4O6.hostPrefixLength}`,
            pools: [{ pool: `${NET4O6.poolFirst} - ${NET4O6.poolLast}` }],
          },
        ],
        loggers: logger("kea-dhcp4"),
      },
    },
    v6: {
      Dhcp6: {
        "interfaces-config": { interfaces: [`eth0/${NET4O6.kea.server}`] },
        "dhcp4o6-port": NET4O6.dhcp4o6Port,
        "data-directory": dir,
        "lease-database": leaseDb("kea-leases6.csv"),
        ...mt,
        subnet6: [{ id: 1, subnet: `${NET4O6.kea.link}/64`, interface: "eth0" }],
        "option-data": [
          {
            name: "dhcp4o6-server-addr",
            code: 88,
            space: "dhcp6",
            "csv-format": true,
            data: NET4O6.kea.server,
          },
        ],
        loggers: logger("kea-dhcp6"),
      },
    },
  };
}

async function _startKea(ns: Netns, dir: string, o: Dhcp4o6BenchOptions): Promise<_Running> {
  const configs = _keaConfigs(
    dir,
    o.serverLogLevel ?? "info",
    await o.keaLeaseDatabase?.(),
    o.keaMultiThreading,
  );
  writeFileSync(join(dir, "kea-dhcp4.json"), JSON.stringify(configs.v4, null, 2));
  writeFileSync(join(dir, "kea-dhcp6.json"), JSON.stringify(configs.v6, null, 2));
  // PID and lock files in our directory, not /run/kea.
  const env = { KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir };
  const started: Bun.Subprocess[] = [];
  try {
    for (const [v, binary] of [
      ["6", KEA6],
      ["4", KEA4],
    ] as const) {
      const proc = _spawn(
        ns,
        [binary, "-c", join(dir, `kea-dhcp${v}.json`)],
        join(dir, `kea-dhcp${v}.out`),
        env,
      );
      started.push(proc);
      // Ready once its sockets are bound (the log says DHCPn_STARTED only at level info):
      // kea-dhcp6 547 and the 4o6 port, kea-dhcp4 the 4o6 port + 1 and 67.
      const port = NET4O6.dhcp4o6Port;
      const bound =
        v === "6"
          ? () => udpBound(proc.pid, 547) && udpBound(proc.pid, port)
          : () => udpBound(proc.pid, port + 1) && udpBound(proc.pid, 67, "udp");
      await _ready(proc, join(dir, `kea-dhcp${v}.out`), [], `kea-dhcp${v}`, bound);
    }
  } catch (error) {
    for (const proc of started.reverse()) await _stop(proc);
    throw error;
  }
  return {
    pids: started.map((p) => p.pid),
    stop: async () => {
      for (const proc of [...started].reverse()) await _stop(proc);
    },
    leasesOnDisk: () => {
      const file = join(dir, "kea-leases4.csv");
      if (!existsSync(file)) return 0;
      return readFileSync(file, "utf8").trim().split("\n").length - 1; // header line
    },
  };
}

/** Runs the generator in its namespace against `target`; resolves with its JSON result. */
async function _load(
  topo: _Topology,
  target: Target,
  o: Dhcp4o6BenchOptions,
  dir: string,
): Promise<Dhcp4o6Row["result"]> {
  const out = join(dir, "generator.out");
  const proc = _spawn(
    topo.gen,
    [
      process.execPath,
      join(ROOT, "bench", "dhcp4o6_load.ts"),
      "--server",
      NET4O6[target].server,
      "--prefix",
      NET4O6.hostPrefix,
      "--hosts",
      String(o.hosts),
      "--concurrency",
      String(o.concurrency),
      "--timeout",
      String(o.timeoutMs),
      "--duration",
      String(o.durationS),
      "--json",
    ],
    out,
  );
  // Bounded twice: the generator stops itself; this kills it if it does not.
  const limitMs = (o.durationS + 30) * 1000 + o.timeoutMs;
  const finished = await Promise.race([
    proc.exited.then(() => true),
    Bun.sleep(limitMs).then(() => false),
  ]);
  if (!finished) await _stop(proc, 100);
  _children.delete(proc);
  const text = readFileSync(out, "utf8");
  const line = text
    .trim()
    .split("\n")
    .findLast((l) => l.startsWith("{"));
  if (proc.exitCode !== 0 || !line)
    throw new Error(`load generator failed (${proc.exitCode}): ${text.slice(-800)}`);
  return JSON.parse(line);
}

/** One round on one target: fresh server, load, CPU and lease count, stop. */
async function _round(
  topo: _Topology,
  target: Target,
  round: number,
  o: Dhcp4o6BenchOptions,
): Promise<Dhcp4o6Row> {
  const dir = mkdtempSync(join(tmpdir(), `dstm-4o6-${target}-`));
  _dirs.add(dir);
  let server: _Running | undefined;
  try {
    const ns = topo.server[target]!;
    server = target === "dstm" ? await _startDstm(ns, dir, o) : await _startKea(ns, dir, o);
    // Neighbour discovery both ways before the load: the first burst of answers must not wait
    // in (and overflow) the queue of an unresolved neighbour.
    topo.gen.exec(["ping", "-6", "-q", "-c", "1", "-W", "2", NET4O6[target].server]);
    const cpuBefore = server.pids.reduce((s, pid) => s + _cpuSeconds(pid), 0);
    const mainBefore = _cpuSeconds(server.pids[0]!, true);
    const result = await _load(topo, target, o, dir);
    const serverCpuSeconds = server.pids.reduce((s, pid) => s + _cpuSeconds(pid), 0) - cpuBefore;
    const mainThreadCpuSeconds = _cpuSeconds(server.pids[0]!, true) - mainBefore;
    await server.stop();
    const leasesOnDisk = server.leasesOnDisk();
    server = undefined;
    return { round, target, result, serverCpuSeconds, mainThreadCpuSeconds, leasesOnDisk };
  } finally {
    if (server) await server.stop();
    rmSync(dir, { recursive: true, force: true });
    _dirs.delete(dir);
  }
}

export function formatRow(r: Dhcp4o6Row): string {
  const x = r.result;
  const cpuMs = x.acked ? (1000 * r.serverCpuSeconds) / x.acked : 0;
  return `round ${r.round} ${r.target.padEnd(4)}: ${x.acked} DORA in ${x.seconds.toFixed(2)} s = ${Math.round(x.perSecond)}/s, loss ${x.lossPercent.toFixed(2)}% (${x.lost} timed out, ${x.naks} NAK), DORA latency p50 ${x.p50ms.toFixed(2)} ms p99 ${x.p99ms.toFixed(2)} ms, server CPU ${r.serverCpuSeconds.toFixed(2)} s (${(cpuMs * 1000).toFixed(0)} µs/DORA; main thread ${x.acked ? ((1e6 * r.mainThreadCpuSeconds) / x.acked).toFixed(0) : 0} µs), generator CPU ${x.generatorCpuSeconds.toFixed(2)} s, ${x.distinctAddresses} distinct addresses, ${x.misdirected} misdirected, ${r.leasesOnDisk} leases on disk`;
}

/**
 * The whole comparison: namespaces, rounds (each target once per round, order flipping),
 * medians, ratio. Tears everything down before returning or throwing.
 */
export async function runDhcp4o6Bench(
  o: Dhcp4o6BenchOptions,
): Promise<{ rows: Dhcp4o6Row[]; summary: Dhcp4o6Summary }> {
  const skip = dhcp4o6SkipReason(o.targets);
  if (skip) throw new Error(skip);
  _installHooks();
  const topo = _buildTopology(o.targets);
  const rows: Dhcp4o6Row[] = [];
  try {
    for (let round = 1; round <= o.rounds; round++) {
      const order = round % 2 === 1 ? [...o.targets] : [...o.targets].reverse();
      for (const target of order) {
        const row = await _round(topo, target, round, o);
        rows.push(row);
        if (o.verbose) console.log(formatRow(row));
      }
    }
  } finally {
    for (const proc of [..._children]) await _stop(proc, 1000);
    for (const ns of [topo.gen, ...Object.values(topo.server)]) deleteNetns(ns.name);
  }
  return { rows, summary: summarize(rows, o.targets) };
}

function _median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return 0;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function summarize(rows: readonly Dhcp4o6Row[], targets: readonly Target[]): Dhcp4o6Summary {
  const medians: Dhcp4o6Summary["medians"] = {};
  for (const target of targets) {
    const mine = rows.filter((r) => r.target === target);
    medians[target] = {
      perSecond: Math.round(_median(mine.map((r) => r.result.perSecond))),
      lossPercent: _median(mine.map((r) => r.result.lossPercent)),
      p50ms: _median(mine.map((r) => r.result.p50ms)),
      p99ms: _median(mine.map((r) => r.result.p99ms)),
      serverCpuMsPerDora: _median(
        mine.map((r) => (r.result.acked ? (1000 * r.serverCpuSeconds) / r.result.acked : 0)),
      ),
    };
  }
  const d = medians.dstm?.perSecond;
  const k = medians.kea?.perSecond;
  return {
    medians,
    ratio: d !== undefined && k ? d / k : undefined,
    maxLossPercent: Math.max(0, ...rows.map((r) => r.result.lossPercent)),
  };
}

export function formatSummary(s: Dhcp4o6Summary): string {
  const parts = (
    Object.entries(s.medians) as [Target, NonNullable<Dhcp4o6Summary["medians"][Target]>][]
  ).map(
    ([t, m]) =>
      `${t} ${m.perSecond}/s (loss ${m.lossPercent.toFixed(2)}%, p50 ${m.p50ms.toFixed(2)} ms, p99 ${m.p99ms.toFixed(2)} ms, ${(m.serverCpuMsPerDora * 1000).toFixed(0)} µs server CPU/DORA)`,
  );
  const ratio = s.ratio === undefined ? "" : `, dstm/Kea = ${s.ratio.toFixed(2)}`;
  return `median: ${parts.join(", ")}${ratio}, max loss ${s.maxLossPercent.toFixed(2)}%`;
}
