/**
 * An attacker on the link of a real `dstm server`, as root: three namespaces of the caller's
 * run — the server (with a bridge: the link), a host and an attacker — removed by `cleanup`.
 * Shared by test/redteam_server.test.ts and test/server_attack.test.ts.
 *
 * Prefixes on the link: 2001:db8:8::/64 (the host's) and 2001:db8:7::/64 (the attacker's).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LeaseJson } from "../../lib/control/lease_view.ts";
import { getUnix } from "../../lib/sys/http.ts";
import { createNetns, type Netns, vethPair } from "../../lib/sys/netns.ts";
import { BUN, ROOT } from "./process.ts";
import { eventually } from "./wait.ts";

export const SERVER6 = "2001:db8:8::53";
export const HOST6 = "2001:db8:8::10";
export const ATTACKER6 = "2001:db8:7::66";

/** Undo steps, run in reverse order after each test (the caller's afterEach). */
export type Cleanup = (() => unknown)[];

export interface Link {
  srv: Netns;
  host: Netns;
  attacker: Netns;
  /** A temporary directory of this link (control socket, keys), removed with it. */
  dir: string;
}

/** The server, the host and the attacker on one bridged link; `tmpPrefix` names its dir. */
export function attackerLink(cleanup: Cleanup, tmpPrefix: string): Link {
  const srv = createNetns("dstmt-");
  const host = createNetns("dstmt-");
  const attacker = createNetns("dstmt-");
  const dir = mkdtempSync(join(tmpdir(), tmpPrefix));
  cleanup.push(() => {
    for (const ns of [srv, host, attacker]) ns.delete();
    rmSync(dir, { recursive: true, force: true });
  });
  srv.ip("link", "add", "br0", "type", "bridge");
  srv.up("br0");
  vethPair(host, "eth0", srv, "vh");
  vethPair(attacker, "eth0", srv, "va");
  srv.ip("link", "set", "vh", "master", "br0");
  srv.ip("link", "set", "va", "master", "br0");
  srv.addAddress("br0", `${SERVER6}/64`);
  srv.addAddress("br0", "2001:db8:7::53/64");
  host.addAddress("eth0", `${HOST6}/64`);
  attacker.addAddress("eth0", `${ATTACKER6}/64`);
  // Both prefixes are on the link.
  host.addRoute("2001:db8:7::/64", "dev", "eth0");
  attacker.addRoute("2001:db8:8::/64", "dev", "eth0");
  return { srv, host, attacker, dir };
}

/**
 * Starts `dstm server` in `l.srv` (listening on [SERVER6]:4607, control socket in `l.dir`);
 * resolves when it answers on the control socket. Stopped by `cleanup` or by `stop()`.
 */
export async function startServer(l: Link, cleanup: Cleanup, flags: string[], db = "memory") {
  const control = join(l.dir, "control.sock");
  const proc = l.srv.spawn(
    [
      BUN,
      join(ROOT, "mod.ts"),
      "server",
      "--pool",
      "203.0.113.0/24",
      "--tep",
      "2001:db8:8::1,192.0.2.1",
      "--listen",
      `[${SERVER6}]:4607`,
      "--db",
      db,
      "--control",
      control,
      ...flags,
    ],
    { timeoutMs: 90_000, cwd: ROOT },
  );
  const stdout = new Response(proc.stdout).text();
  const stderr = new Response(proc.stderr).text();
  const stop = async () => {
    proc.kill("SIGTERM");
    await proc.exited;
    return { stdout: await stdout, stderr: await stderr };
  };
  cleanup.push(stop);
  const answers = () =>
    getUnix(control, "/v1/ping").then(
      (r) => r.ok,
      () => false,
    );
  const up = await eventually(async () => proc.exitCode !== null || (await answers()), {
    timeoutMs: 10_000,
    intervalMs: 50,
  });
  if (proc.exitCode !== null) throw new Error(`server exited: ${await stderr}`);
  if (!up) throw new Error(`dstm server: no answer on ${control} within 10 s`);
  return {
    stop,
    leases: async () =>
      ((await (await getUnix(control, "/v1/leases")).json()) as { leases: LeaseJson[] }).leases,
    /** The value of metric `name{labels}` (labels as printed), 0 when absent. */
    metric: async (name: string, labels: string) => {
      const text = await (await getUnix(control, "/metrics")).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
      return line ? Number(line.split(" ").at(-1)) : 0;
    },
  };
}
