/**
 * Multihomed hosts (issue 9 item 5), as root in namespaces: a server with two IPv6 addresses
 * listening on [::] answers each query from the address it was sent to (native protocol on
 * 4607, DHCPv4-over-DHCPv6 on 547), and its BIND / UNBIND reach a TEP that accepts only the
 * server address it was configured with (one the kernel would not pick as source). The client
 * host and the TEP have two addresses too.
 *
 *   client ns: 2001:db8:5::10, ::11 ──veth── server ns: 2001:db8:5::53, ::54 | 2001:db8:6::2
 *                                                                 ──veth── TEP ns: 2001:db8:6::3, ::1
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { tepArgv } from "./helpers/tep_argv.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("multihomed", skip);

const dir = mkdtempSync(join(tmpdir(), "dstm-mh-"));
const made: Netns[] = [];
const procs: DstmProcess[] = [];
let host: Netns;
let srv: Netns;
let tep: Netns;
let server: DstmProcess;
let tepProc: DstmProcess;
const tepStats = join(dir, "tep.sock");

beforeAll(async () => {
  if (skip) return;
  host = createNetns("dstmm-");
  srv = createNetns("dstmm-");
  tep = createNetns("dstmm-");
  made.push(host, srv, tep);
  vethPair(host, "c0", srv, "s0");
  vethPair(srv, "s1", tep, "t0");
  for (const a of ["2001:db8:5::53/64", "2001:db8:5::54/64"]) srv.addAddress("s0", a);
  srv.addAddress("s1", "2001:db8:6::2/64");
  for (const a of ["2001:db8:5::10/64", "2001:db8:5::11/64"]) host.addAddress("c0", a);
  // The TEP's other address first: it is not the one the TEP was told to use.
  for (const a of ["2001:db8:6::3/64", "2001:db8:6::1/64"]) tep.addAddress("t0", a);
  tep.addRoute("2001:db8:5::/64", "via", "2001:db8:6::2");
  host.addRoute("2001:db8:6::/64", "via", "2001:db8:5::53");
  srv.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  server = spawnDstm(
    [
      "server",
      "--listen",
      "[::]:4607",
      "--pool",
      "198.51.100.0/28",
      "--tep",
      "2001:db8:6::1,192.0.2.1",
      "--require-tep",
      "--db",
      "memory",
      "--dhcp4o6",
      "--control",
      join(dir, "server.sock"),
    ],
    {},
    srv.name,
  );
  procs.push(server);
  await server.waitFor(/ start /, 20_000);
  // The TEP knows the server as 2001:db8:5::54; towards the TEP the server's kernel would
  // pick 2001:db8:6::2.
  tepProc = spawnDstm(
    [
      ...tepArgv({ ipv6: "2001:db8:6::1", server: "2001:db8:5::54", route: "198.51.100.0/28" }),
      // The server is on another host of the link; the channel is not under test here.
      "--insecure-control",
      "--stats",
      tepStats,
    ],
    {},
    tep.name,
  );
  procs.push(tepProc);
  await tepProc.waitFor(/tep-start/, 20_000);
  await server.waitFor(/tep-connected/, 20_000);
}, 60_000);

afterAll(async () => {
  for (const p of procs) p.proc.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
  for (const ns of made) ns.delete();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

function answerSources(mode: "dstm" | "dhcp4o6", server6: string, host6: string): string[] {
  const r = host.exec(
    [BUN, join(ROOT, "test", "e2e_scripts", "answer_source.ts"), mode, server6, host6],
    { cwd: ROOT, timeoutMs: 20_000 },
  );
  if (r.code !== 0) throw new Error(`answer_source.ts: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { from: string[] }).from;
}

describe.skipIf(skip !== null)("multihomed server, client and TEP", () => {
  for (const mode of ["dstm", "dhcp4o6"] as const) {
    for (const server6 of ["2001:db8:5::53", "2001:db8:5::54"]) {
      test(`${mode}: a query to ${server6} is answered from ${server6}`, () => {
        const from = answerSources(mode, server6, "2001:db8:5::10");
        expect(from.length).toBeGreaterThan(0);
        expect(new Set(from)).toEqual(new Set([server6]));
      }, 30_000);
    }
  }

  test("the TEP confirms the binding (BIND from the address it knows), for the client's second address", async () => {
    const r = host.exec(
      [
        BUN,
        join(ROOT, "mod.ts"),
        "lease",
        "get",
        "--server",
        "2001:db8:5::53",
        "--host6",
        "2001:db8:5::11",
        "--json",
      ],
      { cwd: ROOT, timeoutMs: 30_000 },
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lease = JSON.parse(r.stdout) as { hostIPv4: string; hostIPv6: string };
    expect(lease.hostIPv6).toBe("2001:db8:5::11");
    // --require-tep: the ACK left only after the TEP acknowledged the BIND.
    const bind = `bind ipv4=${lease.hostIPv4} host6=2001:db8:5::11`;
    await tepProc.waitFor({ test: (line: string) => line.includes(bind) } as RegExp, 10_000);
    const stats = tep.exec([
      BUN,
      join(ROOT, "mod.ts"),
      "tep",
      // The server is on another host of the link; the channel is not under test here.
      "--insecure-control",
      "stats",
      "--json",
      "--stats",
      tepStats,
    ]);
    // This lease and the one the native probes above got for 2001:db8:5::10.
    expect((JSON.parse(stats.stdout) as { serverBindings: number }).serverBindings).toBe(2);
    expect(server.lines.some((l) => l.includes("tep-unreachable"))).toBe(false);
  }, 40_000);
});
