/**
 * SIGHUP no longer kills the TEP or the client (issue 13 item 1: exit 129, no RELEASE, a
 * lease kept by a dead client). Like Kea, SIGHUP means "read your configuration again": the
 * log level is applied, the process keeps running with its lease and its bindings, and
 * SIGTERM still stops it with a RELEASE. Server, TEP and client run in a namespace.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { tepArgv } from "./helpers/tep_argv.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("cli_hangup", skip);

const dir = mkdtempSync(join(tmpdir(), "dstm-hup-"));
let ns: Netns;
const running: DstmProcess[] = [];

beforeAll(() => {
  if (skip) return;
  ns = createNetns("dstmt-");
  ns.up("lo");
  ns.addAddress("lo", "2001:db8:ff::1/128");
  ns.addAddress("lo", "2001:db8:ff::2/128");
});
afterAll(async () => {
  for (const p of running) p.proc.kill("SIGKILL");
  await Promise.all(running.map((p) => p.proc.exited));
  ns?.delete();
  rmSync(dir, { recursive: true, force: true });
});

/** `dstm ...args` in the namespace (./helpers/process.ts: its stdout lines, waitFor). */
function start(args: readonly string[]): DstmProcess {
  const p = spawnDstm(args, {}, ns.name);
  running.push(p);
  return p;
}

function leases(control: string): { hostIPv6: string; state: string }[] {
  const r = ns.exec([BUN, join(ROOT, "mod.ts"), "lease", "ls", "--control", control, "--json"], {
    cwd: ROOT,
  });
  return (JSON.parse(r.stdout) as { leases: { hostIPv6: string; state: string }[] }).leases;
}

describe.skipIf(skip !== null)("SIGHUP: the TEP and the client reload and keep running", () => {
  test("the client keeps its lease through SIGHUP and releases it on SIGTERM; the TEP keeps running", async () => {
    const control = join(dir, "server.sock");
    const server = start([
      "server",
      "--pool",
      "198.51.100.0/29",
      "--tep",
      "2001:db8:ff::1,192.0.2.1",
      "--db",
      "memory",
      "--listen",
      "[::1]:4607",
      "--control",
      control,
    ]);
    await server.waitFor(/ start /, 15_000);
    const tep = start([
      ...tepArgv({ ipv6: "2001:db8:ff::1", server: "::1", route: "198.51.100.0/29" }),
      "--control",
      join(dir, "tep.sock"),
    ]);
    await tep.waitFor(/ tep-start /, 15_000);
    const client = start([
      "client",
      "--server",
      "::1",
      "--host6",
      "2001:db8:ff::2",
      "--control",
      join(dir, "client.sock"),
    ]);
    await client.waitFor(/ bound /, 15_000);
    expect(leases(control)).toEqual([
      expect.objectContaining({ hostIPv6: "2001:db8:ff::2", state: "active" }),
    ]);

    client.proc.kill("SIGHUP");
    tep.proc.kill("SIGHUP");
    expect(await client.waitFor(/ reload reason=SIGHUP log-level=info/, 15_000)).toBeTruthy();
    expect(await tep.waitFor(/ reload reason=SIGHUP log-level=info/, 15_000)).toBeTruthy();
    expect([client.proc.exitCode, tep.proc.exitCode]).toEqual([null, null]);
    expect(client.lines.some((l) => / release /.test(l))).toBe(false);
    expect(leases(control)).toEqual([
      expect.objectContaining({ hostIPv6: "2001:db8:ff::2", state: "active" }),
    ]);

    client.proc.kill("SIGTERM");
    expect(await client.proc.exited).toBe(0);
    // Released on the way out. The client waits up to --release-wait (2 s) for the server's
    // answer and exits without it on a slow machine; the RELEASE still gets there: polled.
    await waitUntil(() => leases(control).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: "the lease released",
    });
    tep.proc.kill("SIGTERM");
    expect(await tep.proc.exited).toBe(0);
    server.proc.kill("SIGTERM");
    expect(await server.proc.exited).toBe(0);
  }, 90_000);
});
