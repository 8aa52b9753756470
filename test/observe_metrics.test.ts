/**
 * Observability end to end, as root in namespaces (issue 13 item 6): a server, a TEP and a
 * client, each with `--metrics ADDR:PORT`, under real traffic (ping through the tunnel). Every
 * endpoint is scraped over HTTP and checked by `promtool check metrics` (Prometheus's own
 * linter: exit 0 and not one lint line), the counters moved with the traffic sent, each role
 * exposes only series it can move, and each daemon tells systemd `READY=1` and, on SIGTERM,
 * `STOPPING=1` (sd_notify, a python3 datagram socket standing in for the service manager).
 *
 *   host ns: client, DTI ── veth ── core ns: server 2001:db8:7::53, TEP 2001:db8:7::1,
 *            2001:db8:7::a                  IPv4 peer 192.0.2.80 (lo), pool 198.51.100.0/29
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { clientCounters, type Daemon, metric, spawnDaemon, until } from "./helpers/daemon.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { tepArgv } from "./helpers/tep_argv.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("promtool") && Bun.which("curl") && Bun.which("ping") && Bun.which("python3")
    ? null
    : "needs promtool, curl, ping and python3 (scripts/test-deps.sh installs them)");
announceSkip("observe_metrics", skip);

const dir = mkdtempSync(join(tmpdir(), "dstm-observe-"));
const made: Netns[] = [];
const daemons: Daemon[] = [];
const listeners: Bun.Subprocess[] = [];
let host: Netns;
let core: Netns;
let server: Daemon;
let tep: Daemon;
let client: Daemon;
const notified: Record<"server" | "tep" | "client", string[]> = {
  server: [],
  tep: [],
  client: [],
};

const ENDPOINTS = {
  server: "http://[::1]:9604/metrics",
  tep: "http://[::1]:9605/metrics",
  client: "http://[::1]:9606/metrics",
} as const;

/** A unix datagram socket at `path` (python3); every datagram it receives is pushed on `into`. */
async function notifySocket(path: string, into: string[]): Promise<void> {
  const script = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
s.settimeout(120)
while True:
    print(s.recv(4096).decode().replace("\\n", " "), flush=True)
`;
  const proc = Bun.spawn(["python3", "-c", script, path], { stdout: "pipe", stderr: "pipe" });
  listeners.push(proc);
  let bound!: () => void;
  const ready = new Promise<void>((resolve) => {
    bound = resolve;
  });
  (async () => {
    let rest = "";
    for await (const chunk of proc.stdout) {
      rest += new TextDecoder().decode(chunk);
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line === "bound") bound();
        else into.push(line);
      }
    }
  })();
  await ready;
}

/** `dstm ...args` in `where`, telling systemd things on the socket of `role`. */
function dstm(where: Netns, role: keyof typeof notified, args: readonly string[]): Daemon {
  const argv = [BUN, join(ROOT, "mod.ts"), ...args, "--log-format", "json", "--log-level", "debug"];
  const d = spawnDaemon(where, argv, {
    timeoutMs: 120_000,
    stderrOnFailure: true,
    env: { NOTIFY_SOCKET: join(dir, `${role}.notify`) },
  });
  daemons.push(d);
  return d;
}

function scrape(where: Netns, url: string): string {
  const r = where.exec(["curl", "-sS", "--max-time", "10", "-g", url]);
  if (r.code !== 0) throw new Error(`curl ${url}: ${r.stderr}`);
  return r.stdout;
}

function promtool(text: string): { code: number; output: string } {
  const r = Bun.spawnSync(["promtool", "check", "metrics"], {
    stdin: new TextEncoder().encode(text),
  });
  return { code: r.exitCode, output: `${r.stdout.toString()}${r.stderr.toString()}` };
}

beforeAll(async () => {
  if (skip) return;
  host = createNetns("dstmo-");
  core = createNetns("dstmo-");
  made.push(host, core);
  vethPair(host, "c0", core, "t0");
  host.addAddress("c0", "2001:db8:7::a/64");
  for (const a of ["2001:db8:7::53/64", "2001:db8:7::1/64"]) core.addAddress("t0", a);
  core.up("lo");
  host.up("lo");
  core.addAddress("lo", "192.0.2.80/32");
  for (const role of ["server", "tep", "client"] as const)
    await notifySocket(join(dir, `${role}.notify`), notified[role]);
  server = dstm(core, "server", [
    "server",
    "--listen",
    "[2001:db8:7::53]:4607",
    "--pool",
    "198.51.100.0/29",
    "--tep",
    "2001:db8:7::1,192.0.2.1",
    "--db",
    "memory",
    "--control",
    join(dir, "server.sock"),
    "--metrics",
    "[::1]:9604",
  ]);
  await server.waitFor(/"event":"start"/);
  tep = dstm(core, "tep", [
    ...tepArgv({ ipv6: "2001:db8:7::1", server: "2001:db8:7::53", route: "198.51.100.0/29" }),
    "--control",
    join(dir, "tep.sock"),
    "--metrics",
    "[::1]:9605",
  ]);
  await tep.waitFor(/"event":"tep-start"/);
  await server.waitFor(/"event":"tep-connected"/);
  client = dstm(host, "client", [
    "client",
    "--server",
    "2001:db8:7::53",
    "--control",
    join(dir, "client.sock"),
    "--metrics",
    "[::1]:9606",
  ]);
  await client.waitFor(/"event":"bound"/);
}, 60_000);

afterAll(async () => {
  for (const d of daemons) d.proc.kill("SIGKILL");
  await Promise.all(daemons.map((d) => d.proc.exited));
  for (const l of listeners) l.kill();
  for (const ns of made) ns.delete();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe.skipIf(skip !== null)("metrics of the server, the TEP and the client", () => {
  test("each endpoint passes promtool, and its counters moved with the pings sent", async () => {
    const before = {
      tep: scrape(core, ENDPOINTS.tep),
      client: scrape(host, ENDPOINTS.client),
    };
    const ping = host.exec(["ping", "-c", "5", "-i", "0.2", "-W", "5", "192.0.2.80"], {
      timeoutMs: 30_000,
    });
    expect(ping.stdout).toContain("5 received");
    const pages = {
      server: scrape(core, ENDPOINTS.server),
      tep: scrape(core, ENDPOINTS.tep),
      client: scrape(host, ENDPOINTS.client),
    };
    for (const [role, text] of Object.entries(pages)) {
      const checked = promtool(text);
      expect({ role, ...checked }).toEqual({ role, code: 0, output: "" });
      expect(metric(text, "dstm_build_info")).toBe(1);
      expect(text).toMatch(/^process_cpu_seconds_total \d/m);
      expect(text).toMatch(/^process_resident_memory_bytes \d/m);
      // Counters end in _total (process_* are prom-client's and follow that too).
      for (const m of text.matchAll(/^# TYPE (\S+) counter$/gm)) expect(m[1]).toEndWith("_total");
    }
    // The control sockets serve the same exposition (the server's through lib/control/api.ts).
    for (const socket of ["server.sock", "tep.sock"]) {
      const response = await fetch("http://localhost/metrics", { unix: join(dir, socket) });
      const text = await response.text();
      expect({ socket, ...promtool(text) }).toEqual({ socket, code: 0, output: "" });
      expect(text).toContain("# TYPE dstm_build_info gauge");
    }
    const moved = (role: "tep" | "client", name: string, labels: Record<string, string>) =>
      metric(pages[role], name, labels) - metric(before[role], name, labels);
    const out = { direction: "encap", result: "forward" };
    const back = { direction: "decap", result: "forward" };
    // 5 echo requests of 84 bytes into the tunnel, 5 replies out of it.
    expect(moved("client", "dstm_client_packets_total", out)).toBeGreaterThanOrEqual(5);
    expect(moved("client", "dstm_client_packets_total", back)).toBeGreaterThanOrEqual(5);
    expect(
      moved("client", "dstm_client_bytes_total", { direction: "encap" }),
    ).toBeGreaterThanOrEqual(5 * 84);
    expect(moved("tep", "dstm_tep_packets_total", back)).toBeGreaterThanOrEqual(5);
    expect(moved("tep", "dstm_tep_packets_total", out)).toBeGreaterThanOrEqual(5);
    expect(moved("tep", "dstm_tep_bytes_total", { direction: "decap" })).toBeGreaterThanOrEqual(
      5 * 84,
    );
    expect(metric(pages.tep, "dstm_tep_bindings", { origin: "server" })).toBe(1);
    expect(metric(pages.client, "dstm_client_lease_bound")).toBe(1);
    expect(
      metric(pages.server, "dstm_messages_total", { type: "discover", result: "ack" }),
    ).toBeGreaterThanOrEqual(1);
    expect(metric(pages.server, "dstm_tep_connected", { tep: "2001:db8:7::1" })).toBe(1);
    // No series a role can never move: the TEP has no client counters, the client no TEP ones.
    expect(pages.tep).not.toMatch(/client/);
    expect(pages.client).not.toMatch(/dstm_tep_/);
    const counters = Object.keys(clientCounters(host, join(dir, "client.sock")));
    expect(
      counters.filter((c) => /^(decap|encap)-/.test(c) && c !== "encap-too-big-path-mtu"),
    ).toEqual([]);
  }, 60_000);

  test("JSON logs: one key style (kebab-case), durations as numbers; debug has one line per message", () => {
    const KEY = /^[a-z0-9]+(-[a-z0-9]+)*$/;
    const DURATION_TEXT = /^\d+(\.\d+)?(ms|s|m|h|d)$/;
    const bad: string[] = [];
    for (const [role, d] of Object.entries({ server, tep, client })) {
      expect(d.lines.length).toBeGreaterThan(0);
      for (const line of d.lines) {
        const record = JSON.parse(line) as Record<string, unknown>;
        for (const [key, value] of Object.entries(record)) {
          if (!KEY.test(key)) bad.push(`${role}: key ${key} in ${line}`);
          if (typeof value === "string" && DURATION_TEXT.test(value))
            bad.push(`${role}: duration as text ${key}=${value} in ${line}`);
        }
      }
      const messages = d.lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((r) => r.event === "message-received" || r.event === "message-sent");
      expect({ role, some: messages.length > 0 }).toEqual({ role, some: true });
      for (const m of messages) {
        expect(m.level).toBe("debug");
        expect(typeof m.type).toBe("string");
        expect(typeof m.peer).toBe("string");
      }
    }
    expect(bad).toEqual([]);
    const types = (d: Daemon, event: string) =>
      d.lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((r) => r.event === event)
        .map((r) => r.type);
    // The client's DISCOVER and its ACK, as the client and the server saw them.
    expect(types(client, "message-sent")).toContain("DISCOVER");
    expect(types(client, "message-received")).toContain("DISCOVER_ACK");
    expect(types(server, "message-received")).toContain("DISCOVER");
    // The server ⇄ TEP channel: SYNC both ways (the server answers each), BIND for the lease.
    expect(types(tep, "message-sent")).toContain("SYNC");
    expect(types(tep, "message-received")).toContain("SYNC");
    expect(types(server, "message-sent")).toContain("BIND");
  });

  test("each daemon sends READY=1, and STOPPING=1 when SIGTERM stops it", async () => {
    for (const [role, d] of [
      ["client", client],
      ["tep", tep],
      ["server", server],
    ] as const) {
      expect(notified[role].some((l) => l.includes("READY=1"))).toBe(true);
      d.proc.kill("SIGTERM");
      expect(await d.proc.exited).toBe(0);
      expect(await until(() => notified[role].some((l) => l.includes("STOPPING=1")), 10_000)).toBe(
        true,
      );
    }
  }, 60_000);
});
