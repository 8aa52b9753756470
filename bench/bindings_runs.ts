/**
 * bench/bindings.ts's runs: the static binding file, the TEP restarted with 1 or 65,537
 * bindings, and the two tests (spread: bench/spray4in6.ts straight to the TEP; iperf3: the
 * UDP test of bench/dataplane.ts from node A), each read as a {@link Run}.
 *
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Lab } from "../lib/lab/lab.ts";
import { LAB } from "../lib/lab/topology.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { waitUntil } from "../test/helpers/wait.ts";
import { TICKS_PER_SECOND } from "./bench_common.ts";
import { runOne } from "./dataplane.ts";
import { type Options, type RunResult, TESTS } from "./dataplane_tests.ts";
import { dropsBetween, outsideLoad, snapshot } from "./lab_counters.ts";

export const STATIC_BASE = "198.18.0.0";
export const STATIC_ROUTE = "198.18.0.0/18";
export const STATIC_ADDRESSES = 16_384;
export const PSIDS = 4;
/** Where the spread test sends: on the IPv4 side, nobody's, neighbour entry → web's MAC. */
export const SINK4 = "192.0.2.99";

/** The TEP's table: 1 binding (A's lease) or 65,537 (the file's and A's). */
export type Config = "one" | "many";
/** spread: every packet another binding; iperf3: node A's own flow. */
export type TestId = "iperf3" | "spread";

const UDP_MAX = TESTS.find((t) => t.id === "udp64-max")!;

export interface Run {
  round: number;
  config: Config;
  test: TestId;
  /** Packets per second offered to the tunnel (iperf3 sender or the spray). */
  sentPps: number;
  /** Packets per second leaving the TEP's IPv4 side (eth4). */
  tepPps: number;
  /** The TEP's decap-forward counter per second. */
  tunnelPps: number;
  /** CPU time of the TEP's decapsulating Worker per packet it forwarded (µs). */
  decapUs: number;
  /** iperf3 only: received at the web host, and loss. */
  receivedPps?: number;
  lossPercent?: number;
  drops: Record<string, number>;
  outsideLoad: { percent: number; top: string };
}

export interface Lease {
  ipv4: number;
  offset: number;
  psidLength: number;
  psid: number;
}

/** 65,536 lines: the addresses of STATIC_ROUTE × PSIDs 0..3 under the lease's rule → A. */
export function writeBindingFile(path: string, lease: Lease): number {
  const base = parseIPv4(STATIC_BASE)!;
  const rule = `${lease.offset}/${lease.psidLength}`;
  const lines = [
    `# bench/bindings.ts: ${STATIC_ADDRESSES} addresses of ${STATIC_ROUTE} (RFC 2544) shared by ${PSIDS}, all bound to node A`,
  ];
  for (let a = 0; a < STATIC_ADDRESSES; a++)
    for (let p = 0; p < PSIDS; p++)
      lines.push(`${formatIPv4(base + a)} ${LAB.nodeA6} ${rule}/${p}`);
  writeFileSync(path, `${lines.join("\n")}\n`);
  return lines.length - 1;
}

interface TepStats {
  bindings: number;
  serverBindings: number;
  staticBindings: number;
}

async function tepStats(lab: Lab): Promise<TepStats> {
  const response = await fetch("http://localhost/v1/stats", { unix: lab.services.socket("tep") });
  return (await response.json()) as TepStats;
}

/** Restarts the TEP in `config`; resolves once A's lease is back in its table and A reaches web. */
export async function startTep(
  lab: Lab,
  config: Config,
  file: string,
  statics: number,
): Promise<{ readyMs: number; loadMs?: number }> {
  const started = performance.now();
  const extra = ["--route", STATIC_ROUTE, ...(config === "many" ? ["--binding-file", file] : [])];
  await lab.restart("tep", extra);
  const want = config === "many" ? statics : 0;
  await waitUntil(
    async () => {
      const s = await tepStats(lab);
      return s.serverBindings === 1 && s.staticBindings === want;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: `the TEP (${config}) to hold its bindings` },
  );
  const readyMs = performance.now() - started;
  const ping = lab.run("a", ["ping", "-c", "1", "-W", "2", LAB.web4]);
  if (ping.code !== 0) throw new Error(`TEP (${config}): A cannot ping ${LAB.web4}`);
  const log = readFileSync(lab.services.logFile("tep"), "utf8");
  const loaded = [...log.matchAll(/ binding-file .* ms=(\d+)/g)].at(-1);
  return { readyMs, loadMs: config === "many" && loaded ? Number(loaded[1]) : undefined };
}

export async function runSpray(
  lab: Lab,
  config: Config,
  lease: Lease,
  round: number,
  o: Options,
): Promise<Run> {
  const keys =
    config === "many"
      ? ["--base", STATIC_BASE, "--addresses", String(STATIC_ADDRESSES), "--psids", String(PSIDS)]
      : ["--base", formatIPv4(lease.ipv4), "--first-psid", String(lease.psid)];
  // On the CPU that the TEP's decapsulating Worker is not pinned to (forwarder.ts: CPU 0),
  // so that the sender and the TEP each have a CPU and the TEP is what limits the rate.
  const cpus = navigator.hardwareConcurrency;
  const argv = [
    ...(cpus >= 2 ? ["taskset", "-c", String(cpus - 1)] : []),
    process.execPath,
    join(import.meta.dir, "spray4in6.ts"),
    "--tep6",
    LAB.tep6,
    "--dst",
    SINK4,
    "--rule",
    `${lease.offset}/${lease.psidLength}`,
    "--seconds",
    String(o.duration),
    ...keys,
  ];
  const before = await snapshot(lab);
  const proc = lab.ns.a.spawn(argv, { timeoutMs: (o.duration + 20) * 1000 });
  const [stdout, stderr] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  const code = await proc.exited;
  const after = await snapshot(lab);
  if (code !== 0) throw new Error(`spray4in6 (${config}) exit ${code}: ${stderr.trim()}`);
  const out = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
    sent: number;
    errors: number;
    seconds: number;
  };
  const forwarded =
    (after.tepCounters["decap-forward"] ?? 0) - (before.tepCounters["decap-forward"] ?? 0);
  const decapTicks = (after.ticks["tep-decap"] ?? 0) - (before.ticks["tep-decap"] ?? 0);
  const drops = dropsBetween(before, after);
  if (out.errors) drops["spray send errors"] = out.errors;
  return {
    round,
    config,
    test: "spread",
    sentPps: out.sent / out.seconds,
    tepPps: (after.tepEth4TxPackets - before.tepEth4TxPackets) / out.seconds,
    tunnelPps: forwarded / out.seconds,
    decapUs: (1e6 * decapTicks) / TICKS_PER_SECOND / Math.max(1, forwarded),
    drops,
    outsideLoad: outsideLoad(before.outside, after.outside, out.seconds),
  };
}

export async function runIperf(lab: Lab, config: Config, round: number, o: Options): Promise<Run> {
  const r: RunResult = await runOne(lab, UDP_MAX, "dstm", round, o);
  const tunnelPps = r.tunnelPps ?? 0;
  return {
    round,
    config,
    test: "iperf3",
    sentPps: r.sentPps ?? 0,
    tepPps: r.tepPps,
    tunnelPps,
    // workers: % of one CPU over the traffic time; per packet = share / packets per second.
    decapUs: ((r.workers["tep-decap"] ?? 0) / 100 / Math.max(1, tunnelPps)) * 1e6,
    receivedPps: r.receivedPps,
    lossPercent: r.lossPercent,
    drops: r.drops,
    outsideLoad: r.outsideLoad,
  };
}
