/**
 * A second `dstm client` on a host whose IPv6 address already has one (found by a newcomer):
 * the server gives that address's lease back to whoever asks from it, so the second client
 * used to take the same IPv4 address on a second DTI, and its release at stop ended the
 * first client's lease at the server and its TEP binding. Now it refuses (exit 2, one line
 * naming the address and what to do) without releasing, and the first keeps its lease, its
 * binding and its traffic. As root in namespaces (`dstmsc-`), with a real server and TEP.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import type { Netns } from "../lib/sys/netns.ts";
import { clientStatusJson } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { type DstmProcess, runDstm, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("client_second_on_host", "dstmsc-");
let host: Netns;
let core: Netns;
let core6: DstmProcess[] = [];
let first: DstmProcess | undefined;
const serverSocket = join(dir, "server.sock");
const firstSocket = join(dir, "first.sock");

beforeAll(async () => {
  if (skip) return;
  let web: Netns;
  ({ host, core, web } = createDtiLab("dstmsc-", ["2001:db8:7::1/64", "2001:db8:7::53/64"]));
  made.push(host, core, web);
  core6 = await startLabCore(core, { leaseTime: 60, control: serverSocket, tep6: "2001:db8:7::1" });
  first = spawnDstm(labClientArgv("tun", "dtisc0", ["--control", firstSocket]), {}, host.name);
  await first.waitFor(/ bound /, 20_000);
}, 90_000);

afterAll(() => tearDownLab({ procs: [first, ...core6], made, dir }), 30_000);

const ping = () => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;

test.skipIf(skip !== null)(
  "a second client refuses the first one's lease, releases nothing, and the first carries on",
  async () => {
    expect(await eventually(ping, { timeoutMs: 10_000, intervalMs: 250 })).toBe(true);
    const leased = clientStatusJson<{ ipv4: string }>(host, firstSocket).ipv4;
    const second = spawnDstm(
      labClientArgv("tun", "dtisc1").map((a) => (a === "192.0.2.0/24" ? "203.0.113.0/24" : a)),
      {},
      host.name,
    );
    // The old client took the lease and ran on: poll for its exit with a deadline, then end it.
    const exited = await eventually(() => second.proc.exitCode !== null, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    if (!exited) second.proc.kill("SIGKILL");
    const code = exited ? await second.exited : -1;
    const stderr = await second.stderr();
    expect(code).toBe(2);
    expect(stderr).toContain(`${leased}, the lease the server gave 2001:db8:7::10`);
    expect(stderr).toContain("another dstm client here holds it");
    // Nothing released: the server still has the lease, the TEP the binding, the host traffic.
    const leases = await runDstm(["lease", "ls", "--control", serverSocket, "--json"]);
    expect(leases.code).toBe(0);
    const { leases: rows } = JSON.parse(leases.stdout) as { leases: LeaseJson[] };
    const active = rows.filter((l) => l.hostIPv4 === leased && l.state === "active");
    expect(active).toHaveLength(1);
    expect(ping()).toBe(true);
    expect(host.exec(["ip", "link", "show", "dtisc1"]).code).not.toBe(0);
  },
  60_000,
);
