/**
 * The DTI set down and up by hand (`ip link set DTI down; ip link set DTI up`), as root in
 * namespaces with a real `dstm server` and `dstm tep`: the kernel deletes every IPv4 route
 * through the DTI at `down` (and, with `--kernel-encap`, the seg6 route of table 4608), and
 * `up` does not bring them back. The client puts them back once the DTI is up again
 * (lib/client/dti_routes.ts), says so at info and counts it; traffic through the tunnel
 * resumes without a restart. Before, it never did (every test here fails on the old code:
 * the pings after the bounce never answer). The keeper alone, on a TUN device in a namespace,
 * with interface notifications and without them (the periodic check, its fallback).
 *
 *   host ns: 2001:db8:7::10 ──veth── core ns: server 2001:db8:7::53, TEP 2001:db8:7::1
 *                                                 ──veth── web ns: 192.0.2.80
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { clientCounters, clientStatusJson } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  stopAll,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { runScript } from "./helpers/netns.ts";
import { type DstmProcess, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("kencap2_dti_bounce", "dstmk2b-");
let host: Netns;
let core: Netns;
const procs: DstmProcess[] = [];
const DTI = "dtik2b0";

beforeAll(async () => {
  if (skip) return;
  let web: Netns;
  ({ host, core, web } = createDtiLab("dstmk2b-", ["2001:db8:7::1/64", "2001:db8:7::53/64"]));
  made.push(host, core, web);
  procs.push(...(await startLabCore(core, { leaseTime: 60 })));
}, 60_000);

afterAll(() => tearDownLab({ procs, made, dir }), 30_000);

const ping = () => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;
const pingsWithin = (ms: number) => eventually(ping, { timeoutMs: ms, intervalMs: 250 });

/**
 * Starts a client with `dti` and `extra`, checks traffic, bounces the DTI and checks that
 * traffic comes back; resolves with the client's counters and log lines, and stops it.
 */
async function bounceAndRecover(
  dti: string,
  extra: readonly string[],
  socket: string,
): Promise<{ counters: Record<string, number>; lines: readonly string[]; routes: string }> {
  const client = spawnDstm(labClientArgv(dti, DTI, ["--control", socket, ...extra]), {}, host.name);
  procs.push(client);
  try {
    await client.waitFor(/ bound /, 20_000);
    expect(await pingsWithin(15_000)).toBe(true);
    const before = clientCounters(host, socket)["client-dti-route-restored"] ?? 0;
    expect(before).toBe(0);
    host.ip("link", "set", DTI, "down");
    // The kernel took the DTI's routes away (what the client must put back).
    expect(host.ip("-4", "route", "show", "dev", DTI)).not.toContain("192.0.2.0/24");
    // The status says the DTI is down while it is (it said "bound" and nothing else).
    expect(clientStatusJson<{ dtiLinkUp: boolean | null }>(host, socket).dtiLinkUp).toBe(false);
    host.ip("link", "set", DTI, "up");
    // Traffic comes back without a restart of the client.
    expect(await pingsWithin(20_000)).toBe(true);
    expect(clientStatusJson<{ dtiLinkUp: boolean | null }>(host, socket).dtiLinkUp).toBe(true);
    // The restore's log line reaches this process after the route works (the client's log
    // goes through a pipe): waited for, not raced.
    await client.waitFor(/ dti-route-restored .*192\.0\.2\.0\/24/, 5_000);
    return {
      counters: clientCounters(host, socket),
      lines: [...client.lines],
      routes: host.ip("-4", "route", "show", "table", "all", "dev", DTI),
    };
  } finally {
    await stopAll([client]);
  }
}

describe.skipIf(skip !== null)("the DTI set down and up: its routes are put back", () => {
  test("--kernel-encap: the route of table 4608 and the DTI's route come back; ping works again", async () => {
    const r = await bounceAndRecover("tun", ["--kernel-encap"], join(dir, "ke.sock"));
    expect(r.routes).toMatch(
      /^default\s+encap seg6 mode encap.red segs 1 \[ 2001:db8:7::1 \] .*table 4608/m,
    );
    expect(r.routes).toMatch(/^192\.0\.2\.0\/24 .*src 198\.51\.100\./m);
    expect(r.lines.some((l) => / kernel-encap-route-restored .*table 4608/.test(l))).toBe(true);
    expect(r.lines.some((l) => / dti-route-restored .*192\.0\.2\.0\/24/.test(l))).toBe(true);
    expect(r.counters["client-dti-route-restored"]).toBe(2);
    // The packets went through the Worker and the kernel's encapsulation again.
    expect(r.counters["client-kernel-encap"]).toBeGreaterThan(0);
  }, 90_000);

  test("the userspace TUN DTI (--dti tun): its route comes back; ping works again", async () => {
    const r = await bounceAndRecover("tun", [], join(dir, "tun.sock"));
    expect(r.routes).toMatch(/^192\.0\.2\.0\/24 .*src 198\.51\.100\./m);
    expect(r.lines.some((l) => / dti-route-restored .*192\.0\.2\.0\/24/.test(l))).toBe(true);
    expect(r.lines.some((l) => /kernel-encap-route-restored/.test(l))).toBe(false);
    expect(r.counters["client-dti-route-restored"]).toBe(1);
  }, 90_000);

  test("--dti seg6: its seg6 route comes back; ping works again", async () => {
    const r = await bounceAndRecover("seg6", [], join(dir, "seg6.sock"));
    expect(r.routes).toMatch(
      /^192\.0\.2\.0\/24\s+encap seg6 mode encap.red segs 1 \[ 2001:db8:7::1 \] .*src 198\.51\.100\./m,
    );
    expect(r.lines.some((l) => / dti-route-restored .*192\.0\.2\.0\/24/.test(l))).toBe(true);
    expect(r.counters["client-dti-route-restored"]).toBe(1);
  }, 90_000);
});

describe.skipIf(skip !== null)("the route keeper on a TUN device alone (namespace)", () => {
  for (const mode of ["events", "fallback"] as const)
    test(`${mode === "events" ? "interface notifications" : "without notifications (the periodic check)"}: both routes are put back, said and counted`, async () => {
      const ns = createNetns("dstmk2b-");
      made.push(ns);
      const r = await runScript<{
        afterDown: string;
        back: boolean;
        end: string;
        restored: number;
        lines: string[];
      }>(ns, "dti_route_keeper.ts", [mode]);
      expect(r.afterDown).not.toContain("192.0.2.0/24");
      expect(r.afterDown).not.toContain("table 4608");
      expect(r.back).toBe(true);
      expect(r.end).toMatch(
        /^default\s+encap seg6 mode encap.red segs 1 \[ 2001:db8:7::1 \] .*table 4608/m,
      );
      expect(r.end).toMatch(/^192\.0\.2\.0\/24 .*src 198\.51\.100\.5/m);
      expect(r.restored).toBe(2);
      expect(r.lines.some((l) => / kernel-encap-route-restored .*table 4608/.test(l))).toBe(true);
      expect(r.lines.some((l) => / dti-route-restored .*192\.0\.2\.0\/24/.test(l))).toBe(true);
      if (mode === "fallback")
        expect(r.lines.some((l) => /dti-route-watch-unavailable/.test(l))).toBe(false);
    }, 30_000);
});
