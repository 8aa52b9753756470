/**
 * `dstm ping4` on a host that runs `dstm client` (issue 8 item 6), as root in the lab's
 * namespaces: ping4 must send from the client's lease and leave it alone, not DISCOVER the
 * same lease (the server would "renew" it) and RELEASE it at the end, which ended the
 * client's lease while the client still said bound.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lab } from "../lib/lab/lab.ts";
import { dstmArgv } from "../lib/lab/services.ts";
import { LAB } from "../lib/lab/topology.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (existsSync("/usr/sbin/vsftpd") ? null : "needs vsftpd (scripts/test-deps.sh installs it)");
announceSkip("ping4_client", skip);

const name = `p${Math.random().toString(36).slice(2, 7)}`;
const base = mkdtempSync(join(tmpdir(), "dstm-ping4-"));
let lab: Lab;
const clients: Bun.Subprocess[] = [];

/** Each node's own runtime directory (its /run/dstm): where its client's control socket lives. */
const runDir = (node: "c" | "d") => join(base, `run-${node}`);

beforeAll(async () => {
  if (skip) return;
  lab = await Lab.up(name, base);
}, 90_000);

afterAll(async () => {
  for (const proc of clients) {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  if (!skip) await Lab.down(name, base);
  rmSync(base, { recursive: true, force: true });
}, 60_000);

/** Starts `dstm client` in node `node`'s namespace with its default control socket. */
function startClient(node: "c" | "d", extra: string[] = []) {
  mkdirSync(runDir(node), { recursive: true });
  const log = join(base, `client-${node}.log`);
  const proc = lab.ns[node].spawn(
    [
      "sh",
      "-c",
      `exec "$@" >${log} 2>&1`,
      "sh",
      ...dstmArgv(),
      "client",
      "--server",
      LAB.server6,
      ...extra,
    ],
    { env: { DSTM_RUNTIME_DIR: runDir(node) }, timeoutMs: 300_000 },
  );
  clients.push(proc);
  return { proc, log: () => (existsSync(log) ? readFileSync(log, "utf8") : "") };
}

/** Polls `check` for up to `ms`; throws naming `what` at the deadline (./helpers/wait.ts). */
const until = (what: string, check: () => boolean | Promise<boolean>, ms = 20_000) =>
  waitUntil(check, { timeoutMs: ms, intervalMs: 50, what });

async function activeLeases(): Promise<{ hostIPv4: string; hostIPv6: string }[]> {
  const response = await fetch("http://localhost/v1/leases", {
    unix: lab.services.socket("server"),
  });
  return ((await response.json()) as { leases: { hostIPv4: string; hostIPv6: string }[] }).leases;
}

function tepDrops(): number {
  const r = lab.run("tep", [
    ...dstmArgv(),
    "tep",
    "stats",
    "--json",
    "--stats",
    lab.services.socket("tep"),
  ]);
  return (JSON.parse(r.stdout) as { counters: Record<string, number> }).counters[
    "decap-drop-no-binding"
  ]!;
}

describe.skipIf(skip !== null)("dstm ping4 beside a running dstm client", () => {
  test("uses the client's lease and never releases it: the client keeps its address and its traffic", async () => {
    const client = startClient("c");
    await until("client C bound", () => / bound ipv4=/.test(client.log()));
    const before = (await activeLeases()).find((l) => l.hostIPv6 === LAB.nodeC6);
    expect(before).toBeDefined();

    const r = lab.run("c", ["env", `DSTM_RUNTIME_DIR=${runDir("c")}`, ...ping4Argv()], 30_000);
    expect(r.stderr).toMatch(/^using the lease of the dstm client on .*client-dti0\.sock\n$/);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("using the lease");
    expect(r.stdout).toContain(`from ${before!.hostIPv4}`);
    expect(r.stdout).toMatch(/ 0% packet loss/);

    // The server still holds the client's lease, unchanged; nothing was released.
    const after = (await activeLeases()).find((l) => l.hostIPv6 === LAB.nodeC6);
    expect(after?.hostIPv4).toBe(before!.hostIPv4);
    const serverLog = readFileSync(lab.services.logFile("server"), "utf8");
    expect(serverLog).not.toMatch(new RegExp(`\\brelease .*host6=${LAB.nodeC6}(\\s|$)`, "m"));
    // And the client's own traffic (kernel ping through its DTI) still reaches the web server.
    const drops = tepDrops();
    const kernelPing = lab.run("c", ["ping", "-c", "2", "-i", "0.2", "-W", "2", LAB.web4]);
    expect(kernelPing.code).toBe(0);
    expect(tepDrops()).toBe(drops);
  }, 90_000);

  test("beside a client with the same address and no lease (on demand, idle), ping4 refuses: exit 2, one line", async () => {
    const client = startClient("d", ["--on-demand"]);
    await until("client D idle", () => / on-demand /.test(client.log()));
    await until("client D's control socket", () =>
      existsSync(join(runDir("d"), "client-dti0.sock")),
    );
    const r = lab.run("d", ["env", `DSTM_RUNTIME_DIR=${runDir("d")}`, ...ping4Argv()], 30_000);
    expect(r.code).toBe(1); // a refusal at run time (README, exit codes), not a usage error
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^dstm: the dstm client on .* uses 2001:db8:1::d and holds no lease now \(idle\); ping4 will not take one beside it: send IPv4 traffic through dti0 \(the client takes a lease on demand\), then retry/,
    );
    expect((await activeLeases()).some((l) => l.hostIPv6 === LAB.nodeD6)).toBe(false);
  }, 90_000);

  test("the lab's layout (client sockets in RUNTIME/lab-NAME/): ping4 on node A finds A's client and leaves its lease and traffic alone", async () => {
    const a = await leaseOf(LAB.nodeA6);
    // As `ip netns exec dstm-lab-a dstm ping4 …` after `dstm lab up`: the runtime directory is
    // the lab's base, A's client answers on BASE/lab-NAME/client-a.sock.
    const r = lab.run("a", ["env", `DSTM_RUNTIME_DIR=${base}`, ...ping4Argv()], 30_000);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      `using the lease of the dstm client on ${join(base, `lab-${name}`, "client-a.sock")}\n`,
    );
    expect(r.stdout).toContain(`from ${a.hostIPv4}`);
    expect(r.stdout).toMatch(/ 0% packet loss/);
    await expectLeaseAndTrafficIntact("a", a.hostIPv4);
  }, 90_000);

  test("no --server (the README's `dstm ping4 192.0.2.80 -c 3`): ping4 finds A's client and uses its lease", async () => {
    const a = await leaseOf(LAB.nodeA6);
    const argv = [...dstmArgv(), "ping4", LAB.web4, "-c", "2", "-i", "0.2"];
    const r = lab.run("a", ["env", `DSTM_RUNTIME_DIR=${base}`, ...argv], 30_000);
    expect(r.stderr).toBe(
      `using the lease of the dstm client on ${join(base, `lab-${name}`, "client-a.sock")}\n`,
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`from ${a.hostIPv4}`);
    await expectLeaseAndTrafficIntact("a", a.hostIPv4);
  }, 90_000);

  test("a client ping4 cannot see (no socket in its runtime directory): the server's EXISTING_LEASE keeps ping4 from releasing it", async () => {
    const a = await leaseOf(LAB.nodeA6);
    const empty = join(base, "run-empty");
    mkdirSync(empty, { recursive: true });
    const r = lab.run("a", ["env", `DSTM_RUNTIME_DIR=${empty}`, ...ping4Argv()], 30_000);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      `using the lease ${LAB.nodeA6} already holds (the server says it existed: a dstm client on this host?); it will not be released\n`,
    );
    expect(r.stdout).toContain(`from ${a.hostIPv4}`);
    await expectLeaseAndTrafficIntact("a", a.hostIPv4);
  }, 90_000);

  test("--use-client PATH takes an explicit control socket", async () => {
    const b = await leaseOf(LAB.nodeB6);
    const socket = join(base, `lab-${name}`, "client-b.sock");
    const r = lab.run("b", [...ping4Argv(), "--use-client", socket], 30_000);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(`using the lease of the dstm client on ${socket}\n`);
    expect(r.stdout).toContain(`from ${b.hostIPv4}`);
    await expectLeaseAndTrafficIntact("b", b.hostIPv4);
  }, 90_000);

  test("each process shows its own counters: tep stats no client-*, client status no decap-* / encap-*", async () => {
    const r = lab.run("tep", [
      ...dstmArgv(),
      "tep",
      "stats",
      "--json",
      "--stats",
      lab.services.socket("tep"),
    ]);
    const tep = Object.keys((JSON.parse(r.stdout) as { counters: object }).counters);
    expect(tep).toContain("decap-forward");
    expect(tep).toContain("pmtu-learned");
    expect(tep.filter((n) => n.startsWith("client-"))).toEqual([]);
    const text = lab.run("tep", [
      ...dstmArgv(),
      "tep",
      "stats",
      "--stats",
      lab.services.socket("tep"),
    ]);
    expect(text.stdout).toContain("decap-forward");
    expect(text.stdout).not.toContain("client-");
    const status = await fetch("http://localhost/v1/status", {
      unix: lab.services.socket("client-a"),
    });
    const client = Object.keys(((await status.json()) as { counters: object }).counters);
    expect(client).toContain("client-encap-forward");
    expect(client).toContain("encap-too-big-path-mtu");
    expect(client.filter((n) => /^(decap|encap)-/.test(n))).toEqual(["encap-too-big-path-mtu"]);
  }, 60_000);

  test("without a client, ping4 takes a lease of its own and releases it", async () => {
    const r = lab.run("server", [
      "env",
      `DSTM_RUNTIME_DIR=${join(base, "run-server")}`,
      ...ping4Argv(),
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("using the lease");
    expect((await activeLeases()).some((l) => l.hostIPv6 === LAB.server6)).toBe(false);
  }, 60_000);
});

/** The lab client's lease of `host6`, once it has one. */
async function leaseOf(host6: string): Promise<{ hostIPv4: string; hostIPv6: string }> {
  await until(`a lease for ${host6}`, async () =>
    (await activeLeases()).some((l) => l.hostIPv6 === host6),
  );
  return (await activeLeases()).find((l) => l.hostIPv6 === host6)!;
}

/** Node `node`'s lease is still `ipv4`, never released, and its DTI still carries traffic. */
async function expectLeaseAndTrafficIntact(node: "a" | "b", ipv4: string): Promise<void> {
  const host6 = node === "a" ? LAB.nodeA6 : LAB.nodeB6;
  expect((await activeLeases()).find((l) => l.hostIPv6 === host6)?.hostIPv4).toBe(ipv4);
  const serverLog = readFileSync(lab.services.logFile("server"), "utf8");
  expect(serverLog).not.toMatch(new RegExp(`\\brelease .*host6=${host6}(\\s|$)`, "m"));
  expect(serverLog).not.toMatch(new RegExp(`\\brelease ipv4=${ipv4.replaceAll(".", "\\.")}\\b`));
  const drops = tepDrops();
  const kernelPing = lab.run(node, ["ping", "-c", "2", "-i", "0.2", "-W", "2", LAB.web4]);
  expect(kernelPing.code).toBe(0);
  expect(tepDrops()).toBe(drops);
}

function ping4Argv(): string[] {
  return [...dstmArgv(), "ping4", LAB.web4, "--server", LAB.server6, "-c", "2", "-i", "0.2"];
}
