/**
 * The counters a lab benchmark reads around every run (dataplane.ts, bindings.ts): packets
 * and bytes at the TEP's IPv4 side, where dstm packets were dropped (A's DTI ring, the raw
 * sockets' queues, the TEP's TUN ring, the web host's UDP socket buffer, dstm's own drop
 * counters), the CPU time of each forwarding Worker (/proc/PID/task), of the whole machine,
 * and of the processes outside the lab (other people's load on a shared machine).
 *
 * @module
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import type { Lab } from "../lib/lab/lab.ts";
import { TICKS_PER_SECOND } from "./bench_common.ts";

/** Counters read around every run (cumulative values; a run reports differences). */
export interface Snapshot {
  /** TEP eth4 (IPv4 side): packets/bytes out = towards web, in = from web. */
  tepEth4TxPackets: number;
  tepEth4TxBytes: number;
  tepEth4RxPackets: number;
  tepEth4RxBytes: number;
  /** A's DTI: packets the kernel could not queue for the client Worker (TUN ring full). */
  dtiTxDropped: number;
  /** The TEP's TUN: the same on the TEP's encapsulating side. */
  tepTunTxDropped: number;
  /** Raw IPv6 sockets (next header 4): packets dropped because the receive queue was full. */
  tepRaw6Drops: number;
  aRaw6Drops: number;
  /** Web host: UDP datagrams dropped on a full socket buffer (the iperf3 server). */
  webUdpRcvbufErrors: number;
  /** dstm's own per-reason counters at the TEP (forwards and drops). */
  tepCounters: Record<string, number>;
  /** CPU clock ticks of the TEP's and node A's client threads, by thread name. */
  ticks: Record<string, number>;
  /** /proc/stat: busy and total ticks of the whole machine. */
  machine: { busy: number; total: number };
  /** CPU ticks of every user process outside the lab's namespaces (other people's load). */
  outside: Map<number, { name: string; ticks: number }>;
}

interface LinkStats {
  stats64: {
    rx: { packets: number; bytes: number; dropped: number };
    tx: { packets: number; bytes: number; dropped: number };
  };
}

function linkStats(lab: Lab, role: "a" | "tep", dev: string): LinkStats["stats64"] {
  const [link] = lab.ns[role].ipJson<LinkStats[]>("-s", "link", "show", "dev", dev);
  if (!link) throw new Error(`no link ${dev} in ${role}`);
  return link.stats64;
}

/** Drops of the bound raw IPv6 sockets of next header 4 (/proc/net/raw6, last column). */
function raw6Drops(lab: Lab, role: "a" | "tep"): number {
  const text = lab.run(role, ["cat", "/proc/net/raw6"]).stdout;
  let drops = 0;
  for (const line of text.trim().split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(":0004")) drops += Number(f[f.length - 1]);
  }
  return drops;
}

function nstat(lab: Lab, role: "web", name: string): number {
  const r = lab.run(role, ["nstat", "-az", "-j", name]);
  const parsed = JSON.parse(r.stdout || "{}") as { kernel?: Record<string, number> };
  return parsed.kernel?.[name] ?? 0;
}

async function tepCounters(lab: Lab): Promise<Record<string, number>> {
  const response = await fetch("http://localhost/v1/stats", { unix: lab.services.socket("tep") });
  return ((await response.json()) as { counters: Record<string, number> }).counters;
}

export async function snapshot(lab: Lab): Promise<Snapshot> {
  const eth4 = linkStats(lab, "tep", "eth4");
  return {
    tepEth4TxPackets: eth4.tx.packets,
    tepEth4TxBytes: eth4.tx.bytes,
    tepEth4RxPackets: eth4.rx.packets,
    tepEth4RxBytes: eth4.rx.bytes,
    dtiTxDropped: linkStats(lab, "a", "dti0").tx.dropped,
    tepTunTxDropped: linkStats(lab, "tep", "tep0").tx.dropped,
    tepRaw6Drops: raw6Drops(lab, "tep"),
    aRaw6Drops: raw6Drops(lab, "a"),
    webUdpRcvbufErrors: nstat(lab, "web", "UdpRcvbufErrors"),
    tepCounters: await tepCounters(lab),
    ticks: { ...threadTicks(lab.state.pids.tep), ...threadTicks(lab.state.pids["client-a"]) },
    machine: machineTicks(),
    outside: outsideTicks(lab),
  };
}

let labNetnsInodes: Set<string> | undefined;

/**
 * utime + stime of the user processes that run outside the lab's namespaces, except this
 * one and its helpers (kernel threads are left out: softirq work of the test lands there).
 */
function outsideTicks(lab: Lab): Map<number, { name: string; ticks: number }> {
  labNetnsInodes ??= new Set(
    Object.values(lab.ns).map((ns) => `net:[${statSync(`/run/netns/${ns.name}`).ino}]`),
  );
  const out = new Map<number, { name: string; ticks: number }>();
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (labNetnsInodes.has(readlinkSync(`/proc/${pid}/ns/net`))) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // ppid (field 4) 2 = kthreadd's children; flags (field 9) PF_KTHREAD = 0x200000.
      if (pid === 2 || fields[1] === "2" || (Number(fields[6]) & 0x200000) !== 0) continue;
      if (Number(fields[1]) === process.pid) continue;
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      out.set(pid, { name, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

export function outsideLoad(
  before: Snapshot["outside"],
  after: Snapshot["outside"],
  seconds: number,
): { percent: number; top: string } {
  let total = 0;
  let top = { name: "", ticks: 0 };
  for (const [pid, a] of after) {
    const ticks = a.ticks - (before.get(pid)?.ticks ?? 0);
    total += ticks;
    if (ticks > top.ticks) top = { name: `${a.name} (${pid})`, ticks };
  }
  const pct = (ticks: number) => (100 * ticks) / TICKS_PER_SECOND / seconds;
  return {
    percent: pct(total),
    top: top.ticks ? `${top.name} ${pct(top.ticks).toFixed(0)}%` : "",
  };
}

/** utime + stime of each thread of `pid` whose name starts with "dstm-" (the Workers). */
function threadTicks(pid: number | undefined): Record<string, number> {
  const ticks: Record<string, number> = {};
  if (pid === undefined) return ticks;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      continue; // the thread ended meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    if (!comm.startsWith("dstm-")) continue;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of proc(5) (utime, stime); `fields` starts at field 3.
    ticks[comm.slice(5)] = (ticks[comm.slice(5)] ?? 0) + Number(fields[11]) + Number(fields[12]);
  }
  return ticks;
}

/** The machine's CPU ticks since boot (/proc/stat): busy (all but idle and iowait) and total. */
export function machineTicks(): { busy: number; total: number } {
  const v = readFileSync("/proc/stat", "utf8")
    .split("\n")[0]!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
}

export function dropsBetween(a: Snapshot, b: Snapshot): Record<string, number> {
  const drops: Record<string, number> = {
    "A dti0 ring full (tx_dropped)": b.dtiTxDropped - a.dtiTxDropped,
    "TEP raw6 socket queue full": b.tepRaw6Drops - a.tepRaw6Drops,
    "TEP tep0 ring full (tx_dropped)": b.tepTunTxDropped - a.tepTunTxDropped,
    "A raw6 socket queue full": b.aRaw6Drops - a.aRaw6Drops,
    "web UDP socket buffer full": b.webUdpRcvbufErrors - a.webUdpRcvbufErrors,
  };
  for (const [name, value] of Object.entries(b.tepCounters)) {
    if (/drop|rate-limited/.test(name))
      drops[`TEP counter ${name}`] = value - (a.tepCounters[name] ?? 0);
  }
  return Object.fromEntries(Object.entries(drops).filter(([, v]) => v !== 0));
}
