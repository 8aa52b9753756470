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
 * 2. `dstm tep` in its namespace (TUN, `--max-bindings 1100000`, `--insecure-control`). A
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
import { parseArgs } from "node:util";
import { DstmTransport } from "../lib/client/protocol.ts";
import { leaseKey } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { createNetns, deleteNetns, type Netns, netnsPids, vethPair } from "../lib/sys/netns.ts";
import { codeVersion } from "./dataplane.ts";
import {
  logLines,
  longestGap,
  probeDiscovers,
  runCommand,
  sampleRss,
  snapshotBytes,
} from "./million_ops_measure.ts";
import { BASE, fill, host, POOL, rss } from "./million_server.ts";
import { type BenchServer, DSTM_FROM_SOURCE, spawnBenchServer } from "./server_process.ts";

const { values } = parseArgs({
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
const SERVER6 = "2001:db8:ff::53";
const TEP6 = "2001:db8:ff::1";
const FLOW_LEASE = 5; // its host sends the flow
const GONE_LEASE = 7; // deleted while the server is down: forces the resync
const FLOW_PORT = 9999;
const MiB = 2 ** 20;

interface Places {
  dir: string;
  tepNs: string;
  v4Ns: string;
}

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

async function inside(places: Places): Promise<void> {
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
  const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const code = values.tree
    ? Bun.spawnSync(["git", "-C", values.tree, "rev-parse", "--short", "HEAD"])
        .stdout.toString()
        .trim()
    : codeVersion();
  const report: Record<string, unknown> = { code, leases: N, loadBefore: load() };
  const say = (line: string) => {
    console.log(line);
  };
  let fillMs = performance.now();
  await fill(db, N, TEP6);
  fillMs = performance.now() - fillMs;
  say(`wrote ${N.toLocaleString("en-US")} leases in ${(fillMs / 1000).toFixed(1)} s`);
  const serverArgs = [
    ...["--pool", POOL, "--tep", TEP6, "--db", db, "--lease-time", "1d"],
    ...["--listen", "[::]:4607", "--control", control, "--tep-source", SERVER6],
  ];
  let server: BenchServer | undefined = await spawnBenchServer(serverArgs, dstm, onServerLine);
  const children: { kill(signal?: number | NodeJS.Signals): void; exited: Promise<number> }[] = [];
  let transport: DstmTransport | undefined;
  try {
    await Bun.sleep(2000);
    const serverPid = () => server?.proc.pid ?? 0;
    const idle = rss(serverPid());
    say(`server started, RSS ${(idle / MiB).toFixed(0)} MiB`);
    transport = await DstmTransport.open({
      server: "::1",
      port: server.port,
      retry: { initialMs: 2000, tries: 3 },
    });
    let fresh = N + 1;
    const nextHost = () => fresh++;
    const ops: Record<string, unknown> = {};
    const measured = async (name: string, argv: string[], withServer = true) => {
      const serverRss = sampleRss(serverPid);
      const discovers = withServer ? probeDiscovers(transport!, nextHost) : undefined;
      const result = await runCommand(argv, join(dir, `${name}.out`));
      const answers = await discovers?.stop();
      const rssNow = serverRss.stop();
      const row = { ...result, serverRss: rssNow, discover: answers };
      ops[name] = row;
      say(
        `${name.padEnd(12)} ${(result.ms / 1000).toFixed(2)} s, ${result.lines.toLocaleString("en-US")} lines, ${(result.bytes / MiB).toFixed(1)} MiB; its RSS peak ${(result.ownRssPeak / MiB).toFixed(0)} MiB` +
          (withServer
            ? `; server RSS ${(rssNow.first / MiB).toFixed(0)} → peak ${(rssNow.peak / MiB).toFixed(0)} → ${(rssNow.last / MiB).toFixed(0)} MiB; DISCOVER during it: ${answers?.count} answered, p50 ${answers?.p50.toFixed(1)} ms, max ${answers?.max.toFixed(1)} ms`
            : ""),
      );
      return row;
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
    transport.close();
    transport = undefined;

    if (!PARTS.has("tep")) {
      report.loadAfter = load();
      say(`load average before ${report.loadBefore}, after ${report.loadAfter}; code ${code}`);
      if (values.json) console.log(JSON.stringify(report));
      return;
    }
    // 2. The TEP, its first snapshot, then a forced resync under a steady flow.
    const flowFile = join(dir, "flow-sent.f64");
    const recvFile = join(dir, "flow-received.f64");
    const probe = join(import.meta.dir, "flow_probe.ts");
    const receiver = Bun.spawn(
      ["ip", "netns", "exec", places.v4Ns, process.execPath, probe, "recv"].concat([
        "--port",
        String(FLOW_PORT),
        "--out",
        recvFile,
        "--seconds",
        "600",
      ]),
      { stdout: "pipe", stderr: "inherit" },
    );
    children.push(receiver);
    await Bun.sleep(500);
    const sender = Bun.spawn(
      [process.execPath, probe, "send", "--tep6", TEP6, "--src6", host(FLOW_LEASE)]
        .concat(["--src4", formatIPv4(BASE + 1 + FLOW_LEASE), "--dst4", "192.0.2.2"])
        .concat(["--port", String(FLOW_PORT), "--out", flowFile, "--seconds", "600"]),
      { stdout: "pipe", stderr: "inherit" },
    );
    children.push(sender);
    // Datagrams the TEP namespace's kernel dropped for a full socket receive buffer.
    const rcvbufErrors = () =>
      Number(
        /Udp6RcvbufErrors\s+(\d+)/.exec(
          Bun.spawnSync([
            "ip",
            "netns",
            "exec",
            places.tepNs,
            "cat",
            "/proc/net/snmp6",
          ]).stdout.toString(),
        )?.[1] ?? Number.NaN,
      );
    const drops0 = rcvbufErrors();
    const tepStarted = performance.now();
    const tep = Bun.spawn(
      ["ip", "netns", "exec", places.tepNs, ...dstm, "tep"]
        .concat(["--ipv6", TEP6, "--ipv4", "192.0.2.1", "--server", SERVER6])
        .concat(["--route", POOL, "--insecure-control", "--max-bindings", "1100000"])
        .concat(["--control", join(dir, "tep.sock"), "--log-format", "json"]),
      { stdout: "pipe", stderr: "inherit" },
    );
    children.push(tep);
    const tepLog = logLines(tep.stdout as ReadableStream<Uint8Array>);
    const tepRss = sampleRss(() => tep.pid);
    const started = await tepLog.wait("tep-start", 0, 60_000);
    const first = await tepLog.wait("snapshot", 0, 300_000);
    const firstRss = tepRss.stop();
    const drops1 = rcvbufErrors();
    const snapshotsSent = serverSnapshots.length;
    const firstSnapshot = {
      fromSpawnMs: first.at - tepStarted,
      fromTepStartMs: first.at - started.at,
      bindings: first.event.bindings,
      parts: first.event.parts,
      ...snapshotBytes(Number(first.event.bindings)),
      tepRssAtStart: firstRss.first,
      tepRssPeak: firstRss.peak,
      tepRssAfter: rss(tep.pid),
      serverSnapshotsSent: snapshotsSent,
      rcvbufDrops: drops1 - drops0,
    };
    say(
      `TEP first snapshot: ${firstSnapshot.bindings} bindings in ${firstSnapshot.parts} parts (${(firstSnapshot.bytes / MiB).toFixed(1)} MiB of SNAPSHOT messages), ${(firstSnapshot.fromSpawnMs / 1000).toFixed(2)} s from spawn, ${(firstSnapshot.fromTepStartMs / 1000).toFixed(2)} s from tep-start; TEP RSS ${(firstRss.first / MiB).toFixed(0)} → peak ${(firstRss.peak / MiB).toFixed(0)} → ${(firstSnapshot.tepRssAfter / MiB).toFixed(0)} MiB; snapshots the server sent ${snapshotsSent}, datagrams dropped for a full receive buffer ${firstSnapshot.rcvbufDrops}`,
    );
    // A steady stretch to compare with.
    await Bun.sleep(10_000);
    const steadyTo = performance.timeOrigin + performance.now();
    const steadyFrom = steadyTo - 10_000;
    const tepRss2 = sampleRss(() => tep.pid);
    await server.stop();
    server = undefined;
    const stoppedAt = performance.timeOrigin + performance.now();
    const store = SqliteLeaseStore.open(db);
    await store.write([{ op: "delete", key: leaseKey(BASE + 1 + GONE_LEASE, 0) }]);
    await store.close();
    const from = tepLog.lines.length;
    server = await spawnBenchServer(serverArgs, dstm, onServerLine);
    const restartedAt = performance.timeOrigin + performance.now();
    const second = await tepLog.wait("snapshot", from, 300_000);
    const appliedAt = performance.timeOrigin + (second.at as number);
    const secondRss = tepRss2.stop();
    const drops2 = rcvbufErrors();
    await Bun.sleep(2000);
    for (const p of [sender, receiver]) p.kill("SIGTERM");
    const flow = JSON.parse((await new Response(sender.stdout).text()).trim() || "{}");
    await receiver.exited;
    const sent = new Float64Array(readFileSync(flowFile).buffer.slice(0));
    const received = new Float64Array(readFileSync(recvFile).buffer.slice(0));
    const firstDelivered = received[0] ?? Number.NaN;
    const resync = {
      bindings: second.event.bindings,
      parts: second.event.parts,
      ...snapshotBytes(Number(second.event.bindings)),
      serverDownMs: restartedAt - stoppedAt,
      restartToAppliedMs: appliedAt - restartedAt,
      tepRssPeak: secondRss.peak,
      serverSnapshotsSent: serverSnapshots.length - snapshotsSent,
      rcvbufDrops: drops2 - drops1,
      received: longestGap(received, restartedAt, appliedAt),
      sent: longestGap(sent, restartedAt, appliedAt),
      receivedWhileDown: longestGap(received, stoppedAt, restartedAt),
      steadyReceived: longestGap(received, steadyFrom, steadyTo),
      steadySent: longestGap(sent, steadyFrom, steadyTo),
    };
    report.tep = {
      firstSnapshot,
      firstDeliveredFromTepStartMs: firstDelivered - (performance.timeOrigin + started.at),
      resync,
      flow: { ...flow, received: received.length },
    };
    say(
      `first packet of the flow delivered ${((report.tep as { firstDeliveredFromTepStartMs: number }).firstDeliveredFromTepStartMs / 1000).toFixed(2)} s after tep-start (the snapshot's log line: ${(firstSnapshot.fromTepStartMs / 1000).toFixed(2)} s)`,
    );
    say(
      `resync: ${resync.bindings} bindings, ${resync.parts} parts, applied ${(resync.restartToAppliedMs / 1000).toFixed(2)} s after the server's restart (down ${(resync.serverDownMs / 1000).toFixed(1)} s); TEP RSS peak ${(secondRss.peak / MiB).toFixed(0)} MiB; snapshots sent ${resync.serverSnapshotsSent}, receive-buffer drops ${resync.rcvbufDrops}`,
    );
    say(
      `flow: longest gap delivered ${resync.received.gap.toFixed(1)} ms (${resync.received.count} packets) / sent ${resync.sent.gap.toFixed(1)} ms during the resync; ${resync.steadyReceived.gap.toFixed(1)} / ${resync.steadySent.gap.toFixed(1)} ms in the 10 s before; ${resync.receivedWhileDown.gap.toFixed(1)} ms delivered while the server was down; ${received.length} of ${sent.length} delivered in all`,
    );
    for (const line of serverSnapshots) say(`server: ${line}`);
    report.serverSnapshots = serverSnapshots;
    report.loadAfter = load();
    say(`load average before ${report.loadBefore}, after ${report.loadAfter}; code ${code}`);
    if (values.json) console.log(JSON.stringify(report));
  } finally {
    transport?.close();
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exited));
    await server?.stop();
  }
}
