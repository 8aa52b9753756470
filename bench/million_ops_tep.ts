/**
 * Part 2 of bench/million_ops.ts (see there): a real `dstm tep` receiving the SNAPSHOT of its
 * N bindings while lease FLOW_LEASE's host keeps sending, then a forced resync. Also what the
 * bench's steps share: the addresses, the leases with a role, the `Bench` they pass on. Not a
 * test.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { leaseKey } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { logLines, longestGap, sampleRss, snapshotBytes } from "./million_ops_measure.ts";
import { BASE, host, POOL, rss } from "./million_server.ts";
import { type BenchServer, spawnBenchServer } from "./server_process.ts";

export const SERVER6 = "2001:db8:ff::53";
export const TEP6 = "2001:db8:ff::1";
export const FLOW_LEASE = 5; // its host sends the flow
export const GONE_LEASE = 7; // deleted while the server is down: forces the resync
export const FLOW_PORT = 9999;
export const MiB = 2 ** 20;

/** The run's directory and the TEP's and the IPv4 host's namespaces. */
export interface Places {
  dir: string;
  tepNs: string;
  v4Ns: string;
}

export type Child = { kill(signal?: number | NodeJS.Signals): void; exited: Promise<number> };

/**
 * What the steps inside the server's namespace share: the files, the dstm run, the server's
 * arguments and its `tep-snapshot` lines, the server (replaced by the resync's restart), the
 * children killed at the end, and the report.
 */
export interface Bench {
  places: Places;
  db: string;
  control: string;
  dstm: string[];
  code: string;
  serverArgs: string[];
  serverSnapshots: string[];
  onServerLine: (line: string) => void;
  server: BenchServer | undefined;
  children: Child[];
  report: Record<string, unknown>;
}

export const say = (line: string) => {
  console.log(line);
};

/** 2. The TEP, its first snapshot, then a forced resync under a steady flow. */
export async function measureTep(bench: Bench): Promise<void> {
  const flow = await startFlow(bench);
  const first = await firstSnapshot(bench);
  const resync = await forcedResync(bench, first);
  await reportFlow(bench, flow, first, resync);
}

/**
 * The flow (bench/flow_probe.ts): a receiver in the IPv4 namespace, then, 500 ms later, one
 * packet a millisecond from lease FLOW_LEASE's host; each writes its packets' times to a file.
 */
async function startFlow(bench: Bench) {
  const { dir, v4Ns } = bench.places;
  const flowFile = join(dir, "flow-sent.f64");
  const recvFile = join(dir, "flow-received.f64");
  const probe = join(import.meta.dir, "flow_probe.ts");
  const receiver = Bun.spawn(
    ["ip", "netns", "exec", v4Ns, process.execPath, probe, "recv"].concat([
      "--port",
      String(FLOW_PORT),
      "--out",
      recvFile,
      "--seconds",
      "600",
    ]),
    { stdout: "pipe", stderr: "inherit" },
  );
  bench.children.push(receiver);
  await Bun.sleep(500);
  const sender = Bun.spawn(
    [process.execPath, probe, "send", "--tep6", TEP6, "--src6", host(FLOW_LEASE)]
      .concat(["--src4", formatIPv4(BASE + 1 + FLOW_LEASE), "--dst4", "192.0.2.2"])
      .concat(["--port", String(FLOW_PORT), "--out", flowFile, "--seconds", "600"]),
    { stdout: "pipe", stderr: "inherit" },
  );
  bench.children.push(sender);
  return { flowFile, recvFile, receiver, sender };
}

/** Datagrams the TEP namespace's kernel dropped for a full socket receive buffer. */
function rcvbufErrors(tepNs: string): number {
  return Number(
    /Udp6RcvbufErrors\s+(\d+)/.exec(
      Bun.spawnSync(["ip", "netns", "exec", tepNs, "cat", "/proc/net/snmp6"]).stdout.toString(),
    )?.[1] ?? Number.NaN,
  );
}

type FirstSnapshot = Awaited<ReturnType<typeof firstSnapshot>>;

/** Starts the TEP and waits for its first snapshot: how long from spawn and tep-start, its RSS. */
async function firstSnapshot(bench: Bench) {
  const { places, dstm, serverSnapshots } = bench;
  const drops0 = rcvbufErrors(places.tepNs);
  const tepStarted = performance.now();
  const tep = Bun.spawn(
    ["ip", "netns", "exec", places.tepNs, ...dstm, "tep"]
      .concat(["--ipv6", TEP6, "--ipv4", "192.0.2.1", "--server", SERVER6])
      .concat(["--route", POOL, "--insecure-control", "--max-bindings", "1100000"])
      .concat(["--control", join(places.dir, "tep.sock"), "--log-format", "json"]),
    { stdout: "pipe", stderr: "inherit" },
  );
  bench.children.push(tep);
  const tepLog = logLines(tep.stdout as ReadableStream<Uint8Array>);
  const tepRss = sampleRss(() => tep.pid);
  const started = await tepLog.wait("tep-start", 0, 60_000);
  const first = await tepLog.wait("snapshot", 0, 300_000);
  const firstRss = tepRss.stop();
  const drops1 = rcvbufErrors(places.tepNs);
  const snapshotsSent = serverSnapshots.length;
  const figures = {
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
    `TEP first snapshot: ${figures.bindings} bindings in ${figures.parts} parts (${(figures.bytes / MiB).toFixed(1)} MiB of SNAPSHOT messages), ${(figures.fromSpawnMs / 1000).toFixed(2)} s from spawn, ${(figures.fromTepStartMs / 1000).toFixed(2)} s from tep-start; TEP RSS ${(firstRss.first / MiB).toFixed(0)} → peak ${(firstRss.peak / MiB).toFixed(0)} → ${(figures.tepRssAfter / MiB).toFixed(0)} MiB; snapshots the server sent ${snapshotsSent}, datagrams dropped for a full receive buffer ${figures.rcvbufDrops}`,
  );
  return { tep, tepLog, started, figures, drops1 };
}

/**
 * After a steady 10 s: the server stopped, lease GONE_LEASE deleted from its database, the
 * server started again, until the TEP applies the snapshot that follows (times in ms since
 * the epoch, as the flow's files have them).
 */
async function forcedResync(bench: Bench, first: FirstSnapshot) {
  const { tep, tepLog } = first;
  // A steady stretch to compare with.
  await Bun.sleep(10_000);
  const steadyTo = performance.timeOrigin + performance.now();
  const steadyFrom = steadyTo - 10_000;
  const tepRss2 = sampleRss(() => tep.pid);
  await bench.server?.stop();
  bench.server = undefined;
  const stoppedAt = performance.timeOrigin + performance.now();
  const store = SqliteLeaseStore.open(bench.db);
  await store.write([{ op: "delete", key: leaseKey(BASE + 1 + GONE_LEASE, 0) }]);
  await store.close();
  const from = tepLog.lines.length;
  bench.server = await spawnBenchServer(bench.serverArgs, bench.dstm, bench.onServerLine);
  const restartedAt = performance.timeOrigin + performance.now();
  const second = await tepLog.wait("snapshot", from, 300_000);
  const appliedAt = performance.timeOrigin + (second.at as number);
  const secondRss = tepRss2.stop();
  const drops2 = rcvbufErrors(bench.places.tepNs);
  return { steadyFrom, steadyTo, stoppedAt, restartedAt, appliedAt, second, secondRss, drops2 };
}

/** Stops the flow and reports the TEP part: the first snapshot, the resync, the flow's gaps. */
async function reportFlow(
  bench: Bench,
  flowRun: Awaited<ReturnType<typeof startFlow>>,
  first: FirstSnapshot,
  r: Awaited<ReturnType<typeof forcedResync>>,
): Promise<void> {
  const { sender, receiver } = flowRun;
  const { serverSnapshots, report } = bench;
  const { figures: firstSnapshot } = first;
  await Bun.sleep(2000);
  for (const p of [sender, receiver]) p.kill("SIGTERM");
  const flow = JSON.parse((await new Response(sender.stdout).text()).trim() || "{}");
  await receiver.exited;
  const sent = new Float64Array(readFileSync(flowRun.flowFile).buffer.slice(0));
  const received = new Float64Array(readFileSync(flowRun.recvFile).buffer.slice(0));
  const firstDelivered = received[0] ?? Number.NaN;
  const resync = {
    bindings: r.second.event.bindings,
    parts: r.second.event.parts,
    ...snapshotBytes(Number(r.second.event.bindings)),
    serverDownMs: r.restartedAt - r.stoppedAt,
    restartToAppliedMs: r.appliedAt - r.restartedAt,
    tepRssPeak: r.secondRss.peak,
    serverSnapshotsSent: serverSnapshots.length - firstSnapshot.serverSnapshotsSent,
    rcvbufDrops: r.drops2 - first.drops1,
    received: longestGap(received, r.restartedAt, r.appliedAt),
    sent: longestGap(sent, r.restartedAt, r.appliedAt),
    receivedWhileDown: longestGap(received, r.stoppedAt, r.restartedAt),
    steadyReceived: longestGap(received, r.steadyFrom, r.steadyTo),
    steadySent: longestGap(sent, r.steadyFrom, r.steadyTo),
  };
  const firstDeliveredFromTepStartMs = firstDelivered - (performance.timeOrigin + first.started.at);
  report.tep = {
    firstSnapshot,
    firstDeliveredFromTepStartMs,
    resync,
    flow: { ...flow, received: received.length },
  };
  say(
    `first packet of the flow delivered ${(firstDeliveredFromTepStartMs / 1000).toFixed(2)} s after tep-start (the snapshot's log line: ${(firstSnapshot.fromTepStartMs / 1000).toFixed(2)} s)`,
  );
  say(
    `resync: ${resync.bindings} bindings, ${resync.parts} parts, applied ${(resync.restartToAppliedMs / 1000).toFixed(2)} s after the server's restart (down ${(resync.serverDownMs / 1000).toFixed(1)} s); TEP RSS peak ${(r.secondRss.peak / MiB).toFixed(0)} MiB; snapshots sent ${resync.serverSnapshotsSent}, receive-buffer drops ${resync.rcvbufDrops}`,
  );
  say(
    `flow: longest gap delivered ${resync.received.gap.toFixed(1)} ms (${resync.received.count} packets) / sent ${resync.sent.gap.toFixed(1)} ms during the resync; ${resync.steadyReceived.gap.toFixed(1)} / ${resync.steadySent.gap.toFixed(1)} ms in the 10 s before; ${resync.receivedWhileDown.gap.toFixed(1)} ms delivered while the server was down; ${received.length} of ${sent.length} delivered in all`,
  );
  for (const line of serverSnapshots) say(`server: ${line}`);
  report.serverSnapshots = serverSnapshots;
}
