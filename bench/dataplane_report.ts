/**
 * bench/dataplane.ts's output: a line per run, and per test the medians over rounds of both
 * paths with the ratio dstm / kernel, as a table.
 *
 * @module
 */
import { int, median } from "./bench_common.ts";
import { type PathName, type RunResult, TESTS } from "./dataplane_tests.ts";

export interface Summary {
  test: string;
  title: string;
  metric: "Gbit/s" | "packets/s received";
  dstm: number;
  kernel: number;
  ratio: number;
  /** Packets per second leaving the TEP towards the receiver (medians). */
  tepPps: { dstm: number; kernel: number };
  lossPercent?: { dstm: number; kernel: number };
  /** dstm: CPU time of the two Workers in the data's direction per tunnelled packet (µs). */
  workerUsPerPacket: number;
}

/** Per test: the medians over rounds of both paths and their ratio. */
export function summarize(results: RunResult[]): Summary[] {
  return TESTS.map((test) => {
    const of = (path: PathName) => results.filter((r) => r.test === test.id && r.path === path);
    const primary = (r: RunResult) => (test.kind === "udp" ? r.receivedPps! : r.gbps);
    const dstm = median(of("dstm").map(primary));
    const kernel = median(of("kernel").map(primary));
    const summary: Summary = {
      test: test.id,
      title: test.title,
      metric: test.kind === "udp" ? "packets/s received" : "Gbit/s",
      dstm,
      kernel,
      ratio: dstm / kernel,
      tepPps: {
        dstm: median(of("dstm").map((r) => r.tepPps)),
        kernel: median(of("kernel").map((r) => r.tepPps)),
      },
      workerUsPerPacket: median(of("dstm").map((r) => r.workerUsPerPacket ?? Number.NaN)),
    };
    if (test.kind === "udp")
      summary.lossPercent = {
        dstm: median(of("dstm").map((r) => r.lossPercent!)),
        kernel: median(of("kernel").map((r) => r.lossPercent!)),
      };
    return summary;
  });
}

function formatValue(s: Summary, path: PathName): string {
  if (s.metric === "Gbit/s") return `${s[path].toFixed(2)} Gbit/s`;
  return `${int(s[path])} pps, loss ${s.lossPercent![path].toFixed(1)}%`;
}

/** The medians as a table, a row per test. */
export function formatTable(summaries: Summary[]): string {
  const rows = [
    [
      "test",
      "dstm",
      "kernel",
      "dstm/kernel",
      "TEP IPv4 side pps, dstm / kernel",
      "dstm Worker CPU/packet",
    ],
    ...summaries.map((s) => [
      s.title,
      formatValue(s, "dstm"),
      formatValue(s, "kernel"),
      s.ratio.toFixed(2),
      `${int(s.tepPps.dstm)} / ${int(s.tepPps.kernel)}`,
      `${s.workerUsPerPacket.toFixed(1)} µs`,
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ")).join("\n");
}

/** One run as a line: the figures, the TEP's, the CPUs, the drops, other load. */
export function formatRun(r: RunResult): string {
  const test = TESTS.find((t) => t.id === r.test)!;
  const value =
    test.kind === "udp"
      ? `sent ${int(r.sentPps!)} pps, received ${int(r.receivedPps!)} pps, loss ${r.lossPercent!.toFixed(1)}%`
      : `${r.gbps.toFixed(2)} Gbit/s, ${r.retransmits} retransmits`;
  const size = ` (mean ${int(r.tepMeanBytes)} B)`;
  const drops = Object.entries(r.drops)
    .map(([k, v]) => `${k} ${int(v)}`)
    .join(", ");
  const workers =
    r.path === "dstm"
      ? `; Workers ${Object.entries(r.workers)
          .filter(([, v]) => v >= 1)
          .map(([k, v]) => `${k} ${v.toFixed(0)}%`)
          .join(
            " ",
          )}${r.workerUsPerPacket === undefined ? "" : ` (${int(r.tunnelPps!)} tunnelled pps, ${r.workerUsPerPacket.toFixed(1)} µs of Worker CPU per packet)`}`
      : "";
  return `round ${r.round + 1} ${r.path.padEnd(6)} ${test.title}: ${value}; TEP ${int(r.tepPps)} pps${size}; CPU: machine ${r.machineBusy.toFixed(0)}%, iperf3 sender ${r.cpu.sender.toFixed(0)}% receiver ${r.cpu.receiver.toFixed(0)}%${workers}${drops ? `; drops: ${drops}` : ""}${r.outsideLoad.percent >= 10 ? `; OTHER LOAD on the machine ${r.outsideLoad.percent.toFixed(0)}% of a CPU, top: ${r.outsideLoad.top}` : ""}`;
}
