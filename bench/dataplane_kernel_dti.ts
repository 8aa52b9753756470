/**
 * The full lab of bench/dataplane.ts with two more paths: dstm with the kernel DTI
 * (`dstm client --dti kernel`, lib/client/tunnel_dti.ts) and with the userspace DTI handing
 * encapsulation to the kernel (`--kernel-encap`), beside dstm with the userspace DTI and plain
 * kernel routing, alternating, medians over rounds.
 *
 *   bun bench/dataplane_kernel_dti.ts [--duration 4] [--omit 1] [--rounds 3] [--tcp-only] [--gro-b] [--json]   # as root
 *
 * `--gro-b` turns GRO on on node B's IPv6 veth (ethtool), as a NIC has it: the kernel DTI
 * then receives the TEP's segments merged.
 *
 * - **tun**: node A's client as in the lab (TUN DTI, Workers) → TEP → web (bench/dataplane.ts's "dstm").
 * - **kernel-dti**: node B's client restarted with `--dti kernel`: the kernel encapsulates
 *   (ip6tnl, or seg6 encap.red where the kernel has no ip6tnl), GSO super-packets and all;
 *   the same dstm TEP (Workers) decapsulates. iperf3 runs on B, which sits on the same
 *   bridge as A.
 * - **hybrid**: node C's client restarted with `--kernel-encap` (lib/client/kernel_encap.ts):
 *   the TUN DTI's Workers check each packet and hand it back to the kernel, which
 *   encapsulates (seg6 encap.red) and segments after encapsulation; in as for **tun**.
 * - **kernel**: node A, no tunnel, the same wires (bench/dataplane.ts's "kernel").
 *
 * Each round runs every test on the four paths in a rotating order; the table gives the
 * medians and the ratios kernel-dti / kernel, hybrid / kernel, tun / kernel and kernel-dti / tun.
 */

import { leasedAddress } from "../lib/lab/demo.ts";
import { Lab } from "../lib/lab/lab.ts";
import { LAB } from "../lib/lab/topology.ts";
import { parseBenchArgs } from "./bench_args.ts";
import {
  type BenchLog,
  benchLabSession,
  benchMain,
  benchPreflight,
  median,
  reportHead,
} from "./bench_common.ts";
import { addKernelPath, runOne } from "./dataplane.ts";
import { type Options, type RunResult, TESTS } from "./dataplane_tests.ts";

const PATHS = ["tun", "kernel-dti", "hybrid", "kernel"] as const;
type Path = (typeof PATHS)[number];

interface Run extends Omit<RunResult, "path"> {
  path: Path;
}

/** Runs `test` over `path` in the lab: which node and which of runOne's paths. */
async function runPath(
  lab: Lab,
  test: (typeof TESTS)[number],
  path: Path,
  round: number,
  o: Options,
): Promise<Run> {
  const r =
    path === "kernel-dti"
      ? await runOne(lab, test, "dstm", round, o, "b")
      : path === "hybrid"
        ? await runOne(lab, test, "dstm", round, o, "c")
        : await runOne(lab, test, path === "tun" ? "dstm" : "kernel", round, o);
  return { ...r, path };
}

type KernelDtiOptions = Options & { tcpOnly: boolean; groB: boolean };

async function kernelDtiLab(o: KernelDtiOptions): Promise<void> {
  const { log, busyBefore } = await benchPreflight(o.json);
  const { name, baseDir, takeDown, release } = benchLabSession("bk", "dstm-kdti-");
  const started = Date.now();
  let backend: string;
  let runs: Run[];
  try {
    const lab = await Lab.up(name, baseDir);
    backend = await preparePaths(lab, name, o, log);
    runs = await runRounds(lab, o, log);
  } finally {
    await takeDown();
    release();
  }
  const report = makeReport(o, runs, backend, busyBefore, started);
  if (o.json) console.log(JSON.stringify(report, null, 2));
  else printReport(o, report);
}

/**
 * The three paths: the kernel route beside A's DTI, B's client restarted with the kernel DTI
 * (GRO on on its veth with `--gro-b`), and a ping over each. Returns the kernel DTI's backend
 * ("ip6tnl" or "seg6").
 */
async function preparePaths(
  lab: Lab,
  name: string,
  o: KernelDtiOptions,
  log: BenchLog,
): Promise<string> {
  await leasedAddress(lab, "a");
  const [dti] = lab.ns.a.ipJson<{ mtu: number }[]>("link", "show", "dev", "dti0");
  const mtu = dti?.mtu ?? LAB.ipv6Mtu - 40;
  addKernelPath(lab, mtu);
  await lab.restart("client-b", ["--dti", "kernel"]);
  await lab.restart("client-c", ["--kernel-encap"]);
  // A veth does GRO only when asked (NAPI); a NIC does it by default.
  if (o.groB) lab.run("b", ["ethtool", "-K", "eth0", "gro", "on"]);
  const b4 = await leasedAddress(lab, "b");
  const c4 = await leasedAddressOfC(lab);
  const backend =
    lab.ns.b.ipJson<{ linkinfo?: { info_kind?: string } }[]>("-d", "link", "show", "dev", "dti0")[0]
      ?.linkinfo?.info_kind === "ip6tnl"
      ? "ip6tnl"
      : "seg6";
  for (const [node, extra] of [
    ["a", []],
    ["b", []],
    ["c", []],
    ["a", ["-I", "203.0.113.2"]],
  ] as const) {
    const r = lab.run(node, ["ping", "-c", "1", "-W", "2", ...extra, LAB.web4]);
    if (r.code !== 0) throw new Error(`node ${node}: ping ${LAB.web4} failed: ${r.stdout}`);
  }
  log(
    `lab ${name}: A tun DTI (MTU ${mtu}); B kernel DTI (${backend}, ${b4}); C tun DTI --kernel-encap (${c4}); kernel routing from A`,
  );
  return backend;
}

/** Node C's leased IPv4 address (lib/lab/demo.ts leasedAddress, which takes A, B or E). */
async function leasedAddressOfC(lab: Lab): Promise<string> {
  const response = await fetch("http://localhost/v1/status", {
    unix: lab.services.socket("client-c"),
  });
  const status = (await response.json()) as { ipv4: string | null };
  if (!status.ipv4) throw new Error("node C has no lease");
  return status.ipv4;
}

/** Every test (TCP only with `--tcp-only`) over the four paths, `o.rounds` times, rotating. */
async function runRounds(lab: Lab, o: KernelDtiOptions, log: BenchLog): Promise<Run[]> {
  const runs: Run[] = [];
  const tests = TESTS.filter((t) => !o.tcpOnly || t.kind === "tcp");
  for (let round = 0; round < o.rounds; round++) {
    for (const test of tests) {
      for (let i = 0; i < PATHS.length; i++) {
        const path = PATHS[(i + round) % PATHS.length]!;
        const r = await runPath(lab, test, path, round, o);
        runs.push(r);
        log(
          `round ${round} ${test.id.padEnd(11)} ${path.padEnd(10)} ${r.gbps.toFixed(3)} Gbit/s` +
            `${r.retransmits !== undefined ? ` retr ${r.retransmits}` : ""} machine ${r.machineBusy.toFixed(0)}% busy, outside ${r.outsideLoad.percent.toFixed(0)}%`,
        );
      }
    }
  }
  return runs;
}

/** Per test: the medians (Gbit/s) of each path and their ratios. */
function medianTable(runs: Run[]) {
  return [...new Set(runs.map((r) => r.test))].map((test) => {
    const of = (path: Path) =>
      median(runs.filter((r) => r.test === test && r.path === path).map((r) => r.gbps));
    const [tun, kdti, hybrid, kernel] = [of("tun"), of("kernel-dti"), of("hybrid"), of("kernel")];
    // Under load the paths' absolute figures swing between rounds: the ratio within each
    // round (same minute, same load), then its median, is the steadier figure.
    const at = (round: number, path: Path) =>
      runs.find((r) => r.test === test && r.round === round && r.path === path)?.gbps ?? Number.NaN;
    const rounds = [...new Set(runs.map((r) => r.round))];
    const paired = median(rounds.map((round) => at(round, "kernel-dti") / at(round, "kernel")));
    const hybridPaired = median(rounds.map((round) => at(round, "hybrid") / at(round, "kernel")));
    return {
      test,
      tun,
      kernelDti: kdti,
      hybrid,
      kernel,
      kdtiPerKernel: kdti / kernel,
      hybridPerKernel: hybrid / kernel,
      hybridPerKernelPaired: hybridPaired,
      kdtiPerKernelPaired: paired,
      tunPerKernel: tun / kernel,
      kdtiPerTun: kdti / tun,
    };
  });
}

type Report = ReturnType<typeof makeReport>;

/** The JSON report: the common head, the kernel DTI's backend, the medians, every run. */
function makeReport(
  o: KernelDtiOptions,
  runs: Run[],
  backend: string,
  busyBefore: number,
  started: number,
) {
  return {
    ...reportHead(
      `bun bench/dataplane_kernel_dti.ts --duration ${o.duration} --omit ${o.omit} --rounds ${o.rounds}${o.tcpOnly ? " --tcp-only" : ""}${o.groB ? " --gro-b" : ""}`,
      busyBefore,
      started,
    ),
    backend,
    runsWithOtherLoad: runs.filter((r) => r.outsideLoad.percent >= 10).length,
    medianOutsideLoadPercent: median(runs.map((r) => r.outsideLoad.percent)),
    table: medianTable(runs),
    runs,
  };
}

/** The medians as a Markdown table, and how loaded the machine was. */
function printReport(o: KernelDtiOptions, report: Report): void {
  console.log(
    `\nmedians of ${o.rounds} rounds, Gbit/s (kernel DTI: ${report.backend}; code ${report.code}):\n`,
  );
  console.log(
    "| test | tun DTI | kernel DTI | tun --kernel-encap | kernel routing | kernel DTI / kernel | same, per round (median) | --kernel-encap / kernel | same, per round | tun / kernel | kernel DTI / tun |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const t of report.table)
    console.log(
      `| ${t.test} | ${t.tun.toFixed(3)} | ${t.kernelDti.toFixed(3)} | ${t.hybrid.toFixed(3)} | ${t.kernel.toFixed(3)} | ${t.kdtiPerKernel.toFixed(3)} | ${t.kdtiPerKernelPaired.toFixed(3)} | ${t.hybridPerKernel.toFixed(3)} | ${t.hybridPerKernelPaired.toFixed(3)} | ${t.tunPerKernel.toFixed(3)} | ${t.kdtiPerTun.toFixed(2)} |`,
    );
  console.log(
    `\nmachine ${(report.machine.busyBefore * 100).toFixed(0)}% busy before; ${report.runsWithOtherLoad} of ${report.runs.length} runs with ≥ 10% of a CPU used outside the lab (median ${report.medianOutsideLoadPercent.toFixed(0)}%)`,
  );
}

if (import.meta.main) {
  const { values } = parseBenchArgs(import.meta.path, {
    options: {
      duration: { type: "string", default: "4" },
      omit: { type: "string", default: "1" },
      rounds: { type: "string", default: "3" },
      "tcp-only": { type: "boolean", default: false },
      "gro-b": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const o: KernelDtiOptions = {
    duration: Number(values.duration),
    omit: Number(values.omit),
    rounds: Number(values.rounds),
    json: values.json,
    tcpOnly: values["tcp-only"],
    groB: values["gro-b"],
  };
  const valid =
    o.duration >= 1 &&
    o.duration <= 30 &&
    o.omit >= 0 &&
    o.omit <= 5 &&
    o.rounds >= 1 &&
    o.rounds <= 7;
  const usage = "--duration 1..30, --omit 0..5, --rounds 1..7";
  await benchMain("dataplane_kernel_dti", valid, usage, () => kernelDtiLab(o));
}
