/**
 * Shared addresses end to end, as root, with the real `dstm server --share 64`, `dstm tep`
 * and `dstm client` (1,008 ports per host): fragments of shared-address flows both ways
 * (RFC 7597 §8.3.3), more short TCP connections than the port set holds (RFC 5382 transitory
 * state and port reuse), and an answer to the application when no port is free.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lab } from "../lib/lab/lab.ts";
import { labTepStats } from "../lib/lab/probes.ts";
import { dstmArgv } from "../lib/lab/services.ts";
import { LAB } from "../lib/lab/topology.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { ROOT } from "./helpers/process.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (existsSync("/usr/sbin/vsftpd") ? null : "needs vsftpd (scripts/test-deps.sh installs it)");
announceSkip("lab_napt", skip);

const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const PROBE = join(ROOT, "test", "e2e_scripts", "napt_probe.py");
const UDP_PORT = "7007";
const TCP_PORT = "7008";
const name = `n${Math.random().toString(36).slice(2, 7)}`;
const base = mkdtempSync(join(tmpdir(), "dstm-napt-"));
let lab: Lab;
const servers: Bun.Subprocess[] = [];

/** Starts a probe server in the web namespace and waits for its "ready" line. */
async function server(kind: string, port: string): Promise<void> {
  const proc = lab.ns.web.spawn([PYTHON, "-u", PROBE, kind, LAB.web4, port], {
    timeoutMs: 600_000,
  });
  servers.push(proc);
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${kind} exited: ${await new Response(proc.stderr).text()}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
}

beforeAll(async () => {
  if (skip) return;
  lab = await Lab.up(name, base, () => {}, { share: 64 });
  await server("udp-echo-server", UDP_PORT);
  await server("tcp-server", TCP_PORT);
}, 90_000);

afterAll(async () => {
  for (const proc of servers) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
  if (!skip) await Lab.down(name, base);
  rmSync(base, { recursive: true, force: true });
}, 60_000);

function probe(node: "a" | "b", args: string[], timeoutMs = 120_000) {
  const r = lab.run(node, [PYTHON, PROBE, ...args], timeoutMs);
  if (r.code !== 0) throw new Error(`napt_probe ${args.join(" ")}: ${r.code} ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
}

function clientStatus(node: "a" | "b", json = true) {
  const r = lab.run(node, [
    ...dstmArgv(),
    "client",
    "status",
    ...(json ? ["--json"] : []),
    "--control",
    lab.services.socket(node === "a" ? "client-a" : "client-b"),
  ]);
  expect(r.code).toBe(0);
  return r.stdout;
}

const clientCounters = (node: "a" | "b") =>
  (JSON.parse(clientStatus(node)) as { counters: Record<string, number> }).counters;

/** The lab TEP's counters (lib/lab/probes.ts). */
function tepCounters(): Record<string, number> {
  return labTepStats(lab).counters;
}

describe.skipIf(skip !== null)("shared address (--share 64): fragments and NAPT state", () => {
  test("a 3,000-byte UDP datagram goes out and its 3,000-byte echo comes back, fragmented both ways", () => {
    // The IPv4 link has MTU 9000: give the web server a 1,400-byte path to the pool so that its
    // 3,000-byte reply leaves as IPv4 fragments (the host's leave the 1,460-byte DTI as fragments).
    const route = lab.run("web", [
      "ip",
      "route",
      "replace",
      LAB.pool,
      "via",
      LAB.tep4,
      "mtu",
      "1400",
    ]);
    expect(route.code).toBe(0);
    const before = tepCounters();
    const r = probe("a", ["udp-big", LAB.web4, UDP_PORT, "3000", "5"]);
    expect(r).toEqual({ sent: 5, ok: 5, errors: {} });
    const tep = tepCounters();
    const client = clientCounters("a");
    // The host's fragments were tracked by the client NAPT and by the TEP's source check;
    // the web server's fragments by the TEP's port demultiplexing and the client NAPT.
    expect(client["client-out-frag-tracked"]).toBeGreaterThanOrEqual(5);
    expect(client["client-in-frag-tracked"]).toBeGreaterThanOrEqual(5);
    expect(tep["decap-frag-tracked"]! - before["decap-frag-tracked"]!).toBeGreaterThanOrEqual(5);
    expect(tep["encap-frag-tracked"]! - before["encap-frag-tracked"]!).toBeGreaterThanOrEqual(5);
    expect(client["client-napt-drop-no-ports"]).toBe(0);
    expect(tep["encap-drop-no-binding"]! - before["encap-drop-no-binding"]!).toBe(0);
    expect(tep["decap-drop-bad-port"]! - before["decap-drop-bad-port"]!).toBe(0);
  }, 60_000);

  test("1,200 short TCP connections closed with FIN, more than the 1,008 ports of the set, all succeed", () => {
    const r = probe("b", ["tcp-short", LAB.web4, TCP_PORT, "1200"], 150_000);
    expect(r).toEqual({ ok: 1200, errors: {} });
    const c = clientCounters("b");
    expect(c["client-napt-tcp-reuse-closed"]).toBeGreaterThan(0);
    // A late segment of a closed connection whose port a new SYN took over (the host's
    // TIME-WAIT answering a retransmitted FIN) is `client-napt-drop-closed`, not a want of
    // ports (test/tunnel_napt_state.test.ts reproduces the race): no SYN ever lacked a port.
    expect(c["client-napt-drop-no-port"]).toBe(0);
    expect(c["client-napt-no-port-rst"]).toBe(0);
    const status = clientStatus("b", false);
    expect(status).toMatch(/napt tcp +\d+ established, \d+ half-open, \d+ closing, \d+ closed/);
  }, 180_000);

  test("when every port is held, connect() is refused at once (RST) and UDP gets ICMP 3/13, not silence", () => {
    // Connections held open until one fails: the failure must be a refusal, not a timeout.
    const tcp = probe("a", ["tcp-fill", LAB.web4, TCP_PORT, "1100"], 150_000);
    expect(tcp.error).toBe("ECONNREFUSED");
    expect(tcp.opened as number).toBeGreaterThanOrEqual(1000);
    expect(tcp.opened as number).toBeLessThanOrEqual(1008);
    const udp = probe("a", ["udp-fill", LAB.web4, UDP_PORT, "1100"], 150_000);
    expect(udp.error).toBe("EHOSTUNREACH");
    expect(udp.opened as number).toBeGreaterThanOrEqual(1000);
    expect(udp.opened as number).toBeLessThanOrEqual(1008);
    const c = clientCounters("a");
    expect(c["client-napt-no-port-rst"]).toBeGreaterThanOrEqual(1);
    expect(c["client-napt-no-port-icmp"]).toBeGreaterThanOrEqual(1);
    expect(c["client-napt-drop-no-port"]).toBeGreaterThanOrEqual(2);
  }, 300_000);
});
