/**
 * Address sharing end to end, as root: four DSTM nodes share one IPv4 address by port sets
 * (the server's --share 4), each translating its flows into its set, the TEP demultiplexing
 * the replies by port; plus on-demand mode over a shared lease.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lab } from "../lib/lab/lab.ts";
import { labTepStats } from "../lib/lab/probes.ts";
import { nodePage } from "../lib/lab/services.ts";
import { LAB } from "../lib/lab/topology.ts";
import { portInSet } from "../lib/net/portset.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { waitForLine, waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (existsSync("/usr/sbin/vsftpd") ? null : "needs vsftpd (scripts/test-deps.sh installs it)");
announceSkip("lab_share", skip);

const name = `s${Math.random().toString(36).slice(2, 7)}`;
const base = mkdtempSync(join(tmpdir(), "dstm-share-"));
let lab: Lab;
const NODES = ["a", "b", "c", "d"] as const;
type Node = (typeof NODES)[number];
const host6 = (node: Node) =>
  ({ a: LAB.nodeA6, b: LAB.nodeB6, c: LAB.nodeC6, d: LAB.nodeD6 })[node];

beforeAll(async () => {
  if (skip) return;
  // Nodes A and B forward in batches (DTI offloads, the default), C and D one packet per system
  // call (--no-offload): both client data planes carry every test below.
  lab = await Lab.up(name, base, () => {}, { share: 4, clientNoOffload: ["client-c", "client-d"] });
  lab.state.pids["client-c"] = await lab.services.start("client-c");
  lab.state.pids["client-d"] = await lab.services.start("client-d");
}, 60_000);

afterAll(async () => {
  if (!skip) await Lab.down(name, base);
  rmSync(base, { recursive: true, force: true });
}, 60_000);

interface LeaseJson {
  hostIPv4: string;
  hostIPv6: string;
  portSet: string;
}

async function leases(): Promise<LeaseJson[]> {
  const response = await fetch("http://localhost/v1/leases", {
    unix: lab.services.socket("server"),
  });
  return ((await response.json()) as { leases: LeaseJson[] }).leases;
}

/** The lab TEP's counters (lib/lab/probes.ts). */
async function tepCounters(): Promise<Record<string, number>> {
  return labTepStats(lab).counters;
}

function portSetOf(text: string) {
  const [offset, psidLength, psid] = text.split("/").map(Number);
  return { offset: offset!, psidLength: psidLength!, psid: psid! };
}

describe.skipIf(skip !== null)("four hosts share one IPv4 address", () => {
  test("the four leases are one address with four different port sets", async () => {
    const all = await leases();
    expect(all.length).toBe(4);
    expect(new Set(all.map((l) => l.hostIPv4)).size).toBe(1);
    expect(new Set(all.map((l) => l.portSet)).size).toBe(4);
    for (const l of all) expect(l.portSet).toMatch(/^6\/2\/[0-3]$/);
  });

  test("all four fetch from the web server at the same time, and each gets its own page", async () => {
    const fetches = NODES.map((node) => {
      const proc = lab.ns[node].spawn([
        "curl",
        "-sS",
        "--max-time",
        "15",
        `http://${LAB.web4}/node-${node}.txt`,
      ]);
      return Promise.all([proc.exited, new Response(proc.stdout).text()]).then(([code, body]) => ({
        node,
        code,
        body,
      }));
    });
    for (const { node, code, body } of await Promise.all(fetches)) {
      expect(code).toBe(0);
      expect(body).toBe(nodePage(node));
    }
  }, 60_000);

  test("each host's connections reach the IPv4 side from the shared address and a port of its own set", async () => {
    const all = await leases();
    // A server on the IPv4 side that answers with the address and port it sees.
    const echo = lab.ns.web.spawn([
      BUN,
      "-e",
      `Bun.serve({ hostname: "${LAB.web4}", port: 8081, fetch(r, s) { const p = s.requestIP(r); return new Response(p.address + " " + p.port); } }); console.log("ready");`,
    ]);
    try {
      await waitForLine(echo.stdout, /^ready$/, { what: "the echo server" });
      for (const node of NODES) {
        const lease = all.find((l) => l.hostIPv6 === host6(node))!;
        for (let i = 0; i < 3; i++) {
          const r = lab.run(node, ["curl", "-sS", "--max-time", "5", `http://${LAB.web4}:8081/`]);
          expect(r.code).toBe(0);
          const [address, port] = r.stdout.trim().split(" ");
          expect(address).toBe(lease.hostIPv4);
          expect(portInSet(Number(port), portSetOf(lease.portSet))).toBe(true);
        }
      }
    } finally {
      echo.kill("SIGKILL");
      await echo.exited;
    }
    const counters = await tepCounters();
    expect(counters["decap-drop-bad-port"]).toBe(0);
    expect(counters["decap-drop-spoofed-source"]).toBe(0);
  }, 60_000);

  test("a host sending from a port outside its set is dropped and counted at the TEP", async () => {
    const all = await leases();
    const shared = all[0]!.hostIPv4;
    const ofA = portSetOf(all.find((l) => l.hostIPv6 === host6("a"))!.portSet);
    const before = await tepCounters();
    // From B: an echo identifier in A's set (spoofing A), then one in no set (a well-known port).
    let idOfA = 1024;
    while (!portInSet(idOfA, ofA)) idOfA++;
    for (const id of [idOfA, 80]) {
      const r = lab.run("b", [
        BUN,
        join(ROOT, "test", "e2e_scripts", "send_spoofed.ts"),
        host6("b"),
        LAB.tep6,
        shared,
        LAB.web4,
        "2",
        String(id),
      ]);
      expect(r.code).toBe(0);
    }
    // Each packet is counted under exactly one forward or drop counter: wait until the four
    // are counted somewhere, then see where.
    const delta = (now: Record<string, number>, name: string) => now[name]! - before[name]!;
    let after = before;
    await waitUntil(
      async () => {
        after = await tepCounters();
        const counted = ["decap-drop-spoofed-source", "decap-drop-bad-port", "decap-forward"];
        return counted.reduce((n, name) => n + delta(after, name), 0) >= 4;
      },
      { timeoutMs: 10_000, intervalMs: 100, what: "the TEP to count the four packets" },
    );
    expect(delta(after, "decap-drop-spoofed-source")).toBe(2);
    expect(delta(after, "decap-drop-bad-port")).toBe(2);
  });

  test("ping works from every sharing host (ICMP echo identifiers translated into each set)", () => {
    for (const node of NODES) {
      const r = lab.run(node, ["ping", "-c", "2", "-i", "0.2", "-W", "2", LAB.web4]);
      expect(r.code).toBe(0);
    }
  }, 30_000);

  test("on-demand over a shared lease: 192.0.0.2 and the host's ports are both translated", async () => {
    await lab.stop("client-d");
    lab.state.pids["client-d"] = await lab.services.start("client-d", 15_000, [
      "--on-demand",
      "--idle",
      "30",
    ]);
    expect((await leases()).some((l) => l.hostIPv6 === host6("d"))).toBe(false);
    const r = lab.run("d", ["curl", "-sS", "--max-time", "10", `http://${LAB.web4}/node-d.txt`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(nodePage("d"));
    const lease = (await leases()).find((l) => l.hostIPv6 === host6("d"));
    expect(lease?.portSet).toMatch(/^6\/2\/[0-3]$/);
  }, 60_000);
});
