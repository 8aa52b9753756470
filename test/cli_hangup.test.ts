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
import { BUN, ROOT } from "./helpers/process.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("cli_hangup", skip);

const dir = mkdtempSync(join(tmpdir(), "dstm-hup-"));
let ns: Netns;
interface Running {
  proc: ReturnType<Netns["spawn"]>;
  lines: string[];
  waitFor(pattern: RegExp, what: string): Promise<string>;
}
const running: Running[] = [];

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

/** `dstm ...args` in the namespace, its stdout lines collected. */
function start(args: readonly string[]): Running {
  const proc = ns.spawn([BUN, join(ROOT, "mod.ts"), ...args], { cwd: ROOT, timeoutMs: 60_000 });
  const lines: string[] = [];
  (async () => {
    let rest = "";
    for await (const chunk of proc.stdout) {
      rest += new TextDecoder().decode(chunk);
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        lines.push(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
    }
  })();
  const waitFor = async (pattern: RegExp, what: string) => {
    for (let i = 0; i < 1500; i++) {
      const line = lines.find((l) => pattern.test(l));
      if (line) return line;
      if (proc.exitCode !== null) break;
      await Bun.sleep(10);
    }
    throw new Error(
      `${what}: no line ${pattern}\n${lines.join("\n")}\n${await new Response(proc.stderr).text()}`,
    );
  };
  const p = { proc, lines, waitFor };
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
    await server.waitFor(/ start /, "server");
    const tep = start([
      "tep",
      "--ipv6",
      "2001:db8:ff::1",
      "--ipv4",
      "192.0.2.1",
      "--server",
      "::1",
      "--route",
      "198.51.100.0/29",
      "--control",
      join(dir, "tep.sock"),
    ]);
    await tep.waitFor(/ tep-start /, "tep");
    const client = start([
      "client",
      "--server",
      "::1",
      "--host6",
      "2001:db8:ff::2",
      "--control",
      join(dir, "client.sock"),
    ]);
    await client.waitFor(/ bound /, "client");
    expect(leases(control)).toEqual([
      expect.objectContaining({ hostIPv6: "2001:db8:ff::2", state: "active" }),
    ]);

    client.proc.kill("SIGHUP");
    tep.proc.kill("SIGHUP");
    expect(
      await client.waitFor(/ reload reason=SIGHUP log-level=info/, "client reload"),
    ).toBeTruthy();
    expect(await tep.waitFor(/ reload reason=SIGHUP log-level=info/, "tep reload")).toBeTruthy();
    expect([client.proc.exitCode, tep.proc.exitCode]).toEqual([null, null]);
    expect(client.lines.some((l) => / release /.test(l))).toBe(false);
    expect(leases(control)).toEqual([
      expect.objectContaining({ hostIPv6: "2001:db8:ff::2", state: "active" }),
    ]);

    client.proc.kill("SIGTERM");
    expect(await client.proc.exited).toBe(0);
    expect(leases(control)).toEqual([]); // released on the way out
    tep.proc.kill("SIGTERM");
    expect(await tep.proc.exited).toBe(0);
    server.proc.kill("SIGTERM");
    expect(await server.proc.exited).toBe(0);
  }, 90_000);
});
