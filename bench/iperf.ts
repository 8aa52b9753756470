/**
 * iperf3 in a lab benchmark (dataplane.ts, bindings.ts): a one-test server (`-s -1`) on the
 * web host, killed by PID after its test, and a client whose JSON report (`-J`) is read. Each
 * test gets a port of its own.
 *
 * @module
 */
import type { Lab } from "../lib/lab/lab.ts";
import { LAB } from "../lib/lab/topology.ts";
import type { Netns } from "../lib/sys/netns.ts";
import { waitUntil } from "../test/helpers/wait.ts";

export interface IperfSum {
  seconds: number;
  bytes: number;
  bits_per_second: number;
  retransmits?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
}

/** The parts of iperf3's JSON report read here. */
export interface IperfJson {
  error?: string;
  start: { test_start: { blksize: number } };
  end: {
    sum_sent: IperfSum;
    sum_received: IperfSum;
    cpu_utilization_percent: { host_total: number; remote_total: number };
  };
}

let nextPort = 5201;

/** An iperf3 server for one test on the web host, listening; `stop()` ends it (by PID). */
export async function startIperfServer(
  lab: Lab,
  timeoutMs: number,
): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = nextPort++;
  const server = lab.ns.web.spawn(
    ["iperf3", "-s", "-1", "-B", LAB.web4, "-p", String(port), "--logfile", "/dev/null"],
    { timeoutMs },
  );
  const stop = async () => {
    if (server.exitCode !== null) return;
    const done = await Promise.race([
      server.exited.then(() => true),
      Bun.sleep(3000).then(() => false),
    ]);
    if (!done) {
      server.kill("SIGKILL");
      await server.exited;
    }
  };
  try {
    await waitUntil(
      () => lab.run("web", ["ss", "-Hltn", `sport = :${port}`]).stdout.includes(`:${port}`),
      { timeoutMs: 5000, intervalMs: 20, what: `the iperf3 server on port ${port}` },
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, stop };
}

/**
 * Runs `iperf3 ARGS… -J` in `where` (killed after `timeoutMs`) and returns its report; throws
 * with its stderr when it printed no JSON, with iperf3's error when the report has one.
 * `what` names the run in those errors.
 */
export async function runIperfClient(
  where: Netns,
  args: readonly string[],
  timeoutMs: number,
  what: string,
): Promise<IperfJson> {
  // Spawned, not run synchronously, so that Ctrl-C takes the lab down at once.
  const client = where.spawn(["iperf3", ...args, "-J"], { timeoutMs });
  const [stdout, stderr] = await Promise.all([
    new Response(client.stdout).text(),
    new Response(client.stderr).text(),
  ]);
  const code = await client.exited;
  let json: IperfJson;
  try {
    json = JSON.parse(stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 (${what}) exit ${code}: ${stderr.trim()}`);
  }
  if (json.error) throw new Error(`iperf3 (${what}): ${json.error}`);
  return json;
}
