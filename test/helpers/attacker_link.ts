/**
 * An attacker on the link of a real `dstm server`, as root: three namespaces of the caller's
 * run — the server (with a bridge: the link), a host and an attacker — removed by `cleanup`.
 * Shared by test/redteam_server.test.ts and test/server_attack.test.ts ({@link attackerSuite}),
 * and the crafter ({@link forgeUdp}) also by the channel tests (./channel_attack.ts).
 *
 * Prefixes on the link: 2001:db8:8::/64 (the host's) and 2001:db8:7::/64 (the attacker's).
 */
import { afterEach } from "bun:test";
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

/**
 * One test file's attacker links: registers an afterEach that runs `cleanup` in reverse, and
 * gives `link()` ({@link attackerLink}, its directory named `tmpPrefix`…) and
 * `server(l, flags, db?)` ({@link startServer}) bound to it. Call at the file's top level.
 */
export function attackerSuite(tmpPrefix: string) {
  const cleanup: Cleanup = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  return {
    cleanup,
    link: () => attackerLink(cleanup, tmpPrefix),
    server: (l: Link, flags: string[], db?: string) => startServer(l, cleanup, flags, db),
  };
}

/** What forge_udp.ts reports: datagrams and bytes sent, and answers received. */
export interface ForgeResult {
  sent: number;
  sentBytes: number;
  received: number;
  receivedBytes: number;
}

/**
 * Runs the attacker's crafter, test/e2e_scripts/forge_udp.ts, with `spec` (its JSON input:
 * from, fromPort, to, toPort, datagrams as hex, listenMs, rounds…) in `ns`, optionally as
 * another user (`user`: an argv prefix such as setpriv's); its result. Throws when it fails.
 */
export async function forgeUdp(
  ns: Netns,
  spec: object,
  o: { user?: readonly string[]; timeoutMs?: number } = {},
): Promise<ForgeResult> {
  const script = join(ROOT, "test", "e2e_scripts", "forge_udp.ts");
  const proc = ns.spawn([...(o.user ?? []), BUN, script, JSON.stringify(spec)], {
    timeoutMs: o.timeoutMs ?? 120_000,
    cwd: ROOT,
  });
  const [code, out, err] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  if (code !== 0) throw new Error(`forge_udp.ts exited ${code}: ${err}`);
  return JSON.parse(out.trim().split("\n").at(-1)!) as ForgeResult;
}

/** Bytes as lower-case hex (forge_udp.ts's datagram format). */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

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
 * Starts `dstm server` in `l.srv` (listening on `listen`, default [SERVER6]:4607, control
 * socket in `l.dir`); resolves when it answers on the control socket. Stopped by `cleanup` or
 * by `stop()`.
 */
export async function startServer(
  l: Link,
  cleanup: Cleanup,
  flags: string[],
  db = "memory",
  listen = `[${SERVER6}]:4607`,
) {
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
      listen,
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
