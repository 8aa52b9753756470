/**
 * One million leases on one server (issue 12, item 2), the operations part: `dstm lease ls`
 * (live, paged), `dstm lease export` (streamed NDJSON) and `dstm lease ls --db` against a
 * server holding 1,000,000 active leases, and a real `dstm tep` receiving the SNAPSHOT of its
 * 1,000,000 bindings while a host it already forwards for keeps sending. As root. Not a test.
 *
 *   node_modules/.bin/bun bench/million_ops.ts [--leases 1000000] [--parts ops,tep] [--tree DIR] [--json]
 *
 * `--parts`: `ops` (1. below), `tep` (2.), or both. `--tree DIR`: run the dstm of another
 * checkout (server, TEP and commands), for an A/B of the same bench.
 *
 * Network (three namespaces `dstmmo-*`, removed at the end, also on failure; the processes in
 * them are killed by PID first):
 *
 *   [server ns] 2001:db8:ff::53/64, host 2001:db8::5 ── [TEP ns] 2001:db8:ff::1/64 | tep0 TUN
 *                                                       192.0.2.1/24 ── [IPv4 ns] 192.0.2.2/24
 *
 * The parent builds them and runs itself again inside the server namespace (`--inside`),
 * where the rest happens. The leases are bench/million_server.ts's: lease i is 198.16.0.0 +
 * 1 + i (198.16.0.0/12, within RFC 2544's benchmarking range widened as bench/million.ts
 * does; nothing is sent to them but the flow below) for 2001:db8:(i>>>16)::(i&0xffff), all on
 * the TEP 2001:db8:ff::1.
 *
 * 1. The server (from source, SQLite, control socket) with N active leases. While each
 *    command runs, the server's RSS is sampled every 50 ms and a DSTM_DISCOVER of a new host
 *    goes to it (over [::1]) every 20 ms, one at a time: the longest answer shows whether the
 *    command held the server (`idle`: the same for 5 s without a command). Commands: `dstm lease ls --limit 1000` (first page), `dstm lease
 *    ls` (every page, 1,000 a page), `dstm lease export` (NDJSON), `dstm lease ls --db` (the
 *    file, without the server; its own RSS sampled).
 * 2. (bench/million_ops_tep.ts) `dstm tep` in its namespace (TUN, `--max-bindings 1100000`, `--insecure-control`). A
 *    flow (bench/flow_probe.ts) of one IPv4-in-IPv6 UDP packet a millisecond from lease 5's
 *    host (2001:db8::5, 198.16.0.6) to 192.0.2.2 runs from before the TEP starts; a receiver
 *    in the IPv4 namespace records when each packet arrives. First snapshot: from the TEP's
 *    spawn to its `snapshot` log line (parts, bindings), its RSS. Then a forced resync: the
 *    server is stopped, lease 7 deleted from the database, the server started again; the
 *    TEP's next SYNC no longer matches and it receives a snapshot of N − 1 bindings while
 *    the flow's binding is in its table. Reported: the longest gap between delivered packets
 *    (and between sent ones) from the server's restart to the TEP's `snapshot` line, against
 *    the 10 s before the server was stopped. Also: how many snapshots the server sent
 *    (its `tep-snapshot` lines) before the TEP applied one, and the datagrams the TEP's
 *    namespace dropped for a full socket receive buffer (`Udp6RcvbufErrors`).
 *
 * @module
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmTransport } from "../lib/client/protocol.ts";
import { createNetns, deleteNetns, type Netns, netnsPids, vethPair } from "../lib/sys/netns.ts";
import { parseBenchArgs } from "./bench_args.ts";
import { codeVersion } from "./dataplane.ts";
import { probeDiscovers, runCommand, sampleRss } from "./million_ops_measure.ts";
import {
  type Bench,
  FLOW_LEASE,
  MiB,
  measureTep,
  type Places,
  SERVER6,
  say,
  TEP6,
} from "./million_ops_tep.ts";
import { fill, host, POOL, rss } from "./million_server.ts";
import { DSTM_FROM_SOURCE, spawnBenchServer } from "./server_process.ts";

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    leases: { type: "string", default: "1000000" },
    json: { type: "boolean", default: false },
    inside: { type: "string" },
    parts: { type: "string", default: "ops,tep" },
    tree: { type: "string" },
  },
});
const PARTS = new Set(values.parts.split(","));
const N = Number(values.leases);

if (values.inside) await inside(JSON.parse(values.inside) as Places);
else await outside();

/** Builds the namespaces, runs the bench inside the server's, removes everything. */
async function outside(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error("million_ops: run as root (namespaces, TUN)");
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), "dstm-million-ops-"));
  const made: Netns[] = [];
  const killInside = () => {
    for (const ns of made) {
      for (const pid of netnsPids(ns.name)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    }
  };
  // Before createNetns installs its own handlers (which delete the namespaces and exit).
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
    process.once(signal, () => {
      killInside();
      rmSync(dir, { recursive: true, force: true });
    });
  try {
    const srv = createNetns("dstmmo-");
    made.push(srv);
    const tep = createNetns("dstmmo-");
    made.push(tep);
    const v4 = createNetns("dstmmo-");
    made.push(v4);
    vethPair(srv, "v6", tep, "v6t");
    vethPair(tep, "v4t", v4, "v4");
    srv.addAddress("v6", `${SERVER6}/64`);
    srv.addAddress("v6", `${host(FLOW_LEASE)}/128`);
    tep.addAddress("v6t", `${TEP6}/64`);
    tep.ip("-6", "route", "add", "2001:db8::/44", "via", SERVER6);
    tep.addAddress("v4t", "192.0.2.1/24");
    tep.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    v4.addAddress("v4", "192.0.2.2/24");
    v4.addRoute(POOL, "via", "192.0.2.1");
    const places: Places = { dir, tepNs: tep.name, v4Ns: v4.name };
    const child = Bun.spawn(
      [
        "ip",
        ...["netns", "exec", srv.name],
        ...[process.execPath, import.meta.path, "--leases", String(N)],
        ...(values.json ? ["--json"] : []),
        ...["--parts", values.parts, ...(values.tree ? ["--tree", values.tree] : [])],
        ...["--inside", JSON.stringify(places)],
      ],
      { stdout: "inherit", stderr: "inherit" },
    );
    const code = await child.exited;
    if (code !== 0) process.exitCode = code;
  } finally {
    killInside();
    for (const ns of made) deleteNetns(ns.name);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The load average over 1, 5 and 15 minutes. */
function load(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

/** In the server's namespace: the leases, the server, then 1. and 2. (see the top). */
async function inside(places: Places): Promise<void> {
  const bench = await startServer(places);
  try {
    await Bun.sleep(2000);
    await measureOps(bench);
    if (PARTS.has("tep")) await measureTep(bench);
    finish(bench);
  } finally {
    for (const c of bench.children) c.kill("SIGKILL");
    await Promise.all(bench.children.map((c) => c.exited));
    await bench.server?.stop();
  }
}

/** Writes the N leases into a new database and starts the server on it. */
async function startServer(places: Places): Promise<Bench> {
  const { dir } = places;
  const db = join(dir, "leases.db");
  const control = join(dir, "server.sock");
  // `--tree DIR`: the dstm of another checkout (an A/B of the same bench), else this one.
  const dstm = values.tree
    ? [process.execPath, join(values.tree, "mod.ts")]
    : [...DSTM_FROM_SOURCE];
  const serverSnapshots: string[] = [];
  const onServerLine = (line: string) => {
    if (/ tep-snapshot /.test(line)) serverSnapshots.push(line);
  };
  const code = values.tree
    ? Bun.spawnSync(["git", "-C", values.tree, "rev-parse", "--short", "HEAD"])
        .stdout.toString()
        .trim()
    : codeVersion();
  const report: Record<string, unknown> = { code, leases: N, loadBefore: load() };
  let fillMs = performance.now();
  await fill(db, N, TEP6);
  fillMs = performance.now() - fillMs;
  say(`wrote ${N.toLocaleString("en-US")} leases in ${(fillMs / 1000).toFixed(1)} s`);
  const serverArgs = [
    ...["--pool", POOL, "--tep", TEP6, "--db", db, "--lease-time", "1d"],
    ...["--listen", "[::]:4607", "--control", control, "--tep-source", SERVER6],
  ];
  const server = await spawnBenchServer(serverArgs, dstm, onServerLine);
  const children: Bench["children"] = [];
  return {
    places,
    db,
    control,
    dstm,
    code,
    serverArgs,
    serverSnapshots,
    onServerLine,
    server,
    children,
    report,
  };
}

/** 1. The commands (`--parts ops`), each with the server's RSS and DISCOVERs alongside. */
async function measureOps(bench: Bench): Promise<void> {
  const { dstm, control, db, report } = bench;
  const serverPid = () => bench.server?.proc.pid ?? 0;
  const idle = rss(serverPid());
  say(`server started, RSS ${(idle / MiB).toFixed(0)} MiB`);
  const transport = await DstmTransport.open({
    server: "::1",
    port: bench.server!.port,
    retry: { initialMs: 2000, tries: 3 },
  });
  try {
    let fresh = N + 1;
    const nextHost = () => fresh++;
    const ops: Record<string, unknown> = {};
    const measured = async (name: string, argv: string[], withServer = true) => {
      const discovers = withServer ? { transport, nextHost } : undefined;
      ops[name] = await measureCommand(bench, name, argv, serverPid, discovers);
    };
    if (PARTS.has("ops")) {
      // The same DISCOVERs with nothing else going on: what the commands are compared with.
      await measured("idle", ["sleep", "5"]);
      await measured("ls-first", [...dstm, "lease", "ls", "--control", control, "--limit", "1000"]);
      await measured("ls-all", [...dstm, "lease", "ls", "--control", control]);
      await measured("export", [...dstm, "lease", "export", "--control", control]);
      await measured("ls-db", [...dstm, "lease", "ls", "--db", db], false);
    }
    report.ops = ops;
    report.serverRssIdle = idle;
    report.serverRssAfter = rss(serverPid());
  } finally {
    transport.close();
  }
}

/**
 * Runs `argv` (output into `name`.out) while sampling the server's RSS and, given `discovers`,
 * sending it DISCOVERs; prints the line of it and returns the row.
 */
async function measureCommand(
  bench: Bench,
  name: string,
  argv: string[],
  serverPid: () => number,
  discovers?: { transport: DstmTransport; nextHost: () => number },
) {
  const serverRss = sampleRss(serverPid);
  const probe = discovers ? probeDiscovers(discovers.transport, discovers.nextHost) : undefined;
  const result = await runCommand(argv, join(bench.places.dir, `${name}.out`));
  const answers = await probe?.stop();
  const rssNow = serverRss.stop();
  say(
    `${name.padEnd(12)} ${(result.ms / 1000).toFixed(2)} s, ${result.lines.toLocaleString("en-US")} lines, ${(result.bytes / MiB).toFixed(1)} MiB; its RSS peak ${(result.ownRssPeak / MiB).toFixed(0)} MiB` +
      (discovers
        ? `; server RSS ${(rssNow.first / MiB).toFixed(0)} → peak ${(rssNow.peak / MiB).toFixed(0)} → ${(rssNow.last / MiB).toFixed(0)} MiB; DISCOVER during it: ${answers?.count} answered, p50 ${answers?.p50.toFixed(1)} ms, max ${answers?.max.toFixed(1)} ms`
        : ""),
  );
  return { ...result, serverRss: rssNow, discover: answers };
}

/** The load average after, the closing line, and the JSON report with `--json`. */
function finish(bench: Bench): void {
  const { report } = bench;
  report.loadAfter = load();
  say(`load average before ${report.loadBefore}, after ${report.loadAfter}; code ${bench.code}`);
  if (values.json) console.log(JSON.stringify(report));
}
