/**
 * Live operation, as root in namespaces (issue 13 item 6): the server and the TEP say at warn
 * when the other goes away and when it comes back; the TEP and the client reload their keys
 * on SIGHUP under traffic — the key they replace still accepted for --key-overlap — without a
 * dropped binding or a refused packet, and refuse (one line, old configuration kept) a change
 * that needs a restart.
 *
 *   host ns: client 2001:db8:8::a (+ ::b) ── veth ── core ns: server 2001:db8:8::53,
 *                                                    TEP 2001:db8:8::1, IPv4 peer 192.0.2.80
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import {
  type Daemon,
  daemonScope,
  keyLine,
  metric,
  linesSince as since,
  until,
} from "./helpers/daemon.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT, runDstm } from "./helpers/process.ts";
import { tepArgv } from "./helpers/tep_argv.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("ping") ? null : "needs ping (scripts/test-deps.sh)");
announceSkip("observe_reload", skip);

const { dir, file, netns, dstm, writeKey } = daemonScope("dstm-reload-", {
  timeoutMs: 180_000,
  stderrOnFailure: true,
});
let host: Netns;
let core: Netns;
let server: Daemon;
let tep: Daemon;
let client: Daemon;

const H1 = keyLine(1);
const H2 = keyLine(2);
const T1 = keyLine(11);
const T2 = keyLine(12);

const serverArgs = [
  "server",
  "--listen",
  "[2001:db8:8::53]:4607",
  "--pool",
  "198.51.100.0/29",
  "--tep",
  "2001:db8:8::1,192.0.2.1",
  "--db",
  join(dir, "leases.db"),
  "--lease-time",
  "8",
  "--key",
  join(dir, "hosts.key"),
  "--tep-key",
  join(dir, "server-tep.key"),
  "--control",
  join(dir, "server.sock"),
];

const tepArgs = [
  ...tepArgv({ ipv6: "2001:db8:8::1", server: "2001:db8:8::53", route: "198.51.100.0/29" }),
  "--key",
  join(dir, "tep.key"),
  "--control",
  join(dir, "tep.sock"),
];

/** `dstm tep stats` as an operator reads it. */
async function tepStats(): Promise<string> {
  const r = await runDstm(["tep", "stats", "--control", join(dir, "tep.sock")]);
  expect(r.code).toBe(0);
  return r.stdout;
}

async function tepMetrics(): Promise<string> {
  const response = await fetch("http://localhost/metrics", { unix: join(dir, "tep.sock") });
  return response.text();
}

beforeAll(async () => {
  if (skip) return;
  host = netns("dstmr-");
  core = netns("dstmr-");
  vethPair(host, "c0", core, "t0");
  for (const a of ["2001:db8:8::a/64", "2001:db8:8::b/64"]) host.addAddress("c0", a);
  for (const a of ["2001:db8:8::53/64", "2001:db8:8::1/64"]) core.addAddress("t0", a);
  core.up("lo");
  host.up("lo");
  core.addAddress("lo", "192.0.2.80/32");
  writeKey("hosts.key", H1, H2);
  writeKey("server-tep.key", T1, T2); // T1 signs; SYNC signed with either is accepted
  writeKey("tep.key", T1);
  writeKey("client.key", H1);
  writeFileSync(file("client.toml"), `mtu = 1400\nkey = "${file("client.key")}"\n`);
  server = dstm(core, serverArgs);
  await server.waitFor(/ start /);
  tep = dstm(core, tepArgs);
  await tep.waitFor(/ tep-start /);
  await server.waitFor(/ tep-connected /);
  client = dstm(host, [
    "client",
    "--server",
    "2001:db8:8::53",
    "--host6",
    "2001:db8:8::a",
    "--config",
    file("client.toml"),
    "--control",
    join(dir, "client.sock"),
  ]);
  await client.waitFor(/ bound /);
}, 60_000);

describe.skipIf(skip !== null)("server ⇄ TEP links and live reload", () => {
  test("a TEP that stops syncing is a WARN tep-disconnected at the server, its return a WARN tep-connected", async () => {
    const mark = server.lines.length;
    tep.proc.kill("SIGTERM");
    expect(await tep.proc.exited).toBe(0);
    expect(
      await server.waitFor(/WARN tep-disconnected tep6=2001:db8:8::1 silent-s=\d+/, 20_000),
    ).toBeTruthy();
    tep = dstm(core, tepArgs);
    await tep.waitFor(/ tep-start /);
    const back = await server.waitFor(/WARN tep-connected tep6=2001:db8:8::1 .*down-s=\d+/, 20_000);
    expect(back).toBeTruthy();
    expect(since(server, mark, /tep-disconnected/).length).toBe(1); // once per loss
  }, 60_000);

  test("a server that stops answering SYNC is a WARN server-unreachable at the TEP, its return a WARN server-reachable", async () => {
    expect(metric(await tepMetrics(), "dstm_tep_server_connected")).toBe(1);
    server.proc.kill("SIGTERM");
    expect(await server.proc.exited).toBe(0);
    expect(
      await tep.waitFor(/WARN server-unreachable server=2001:db8:8::53 port=4607 silent-s=\d+/),
    ).toBeTruthy();
    expect(metric(await tepMetrics(), "dstm_tep_server_connected")).toBe(0);
    expect(metric(await tepMetrics(), "dstm_tep_server_disconnects_total")).toBe(1);
    expect(await tepStats()).toMatch(
      /server 2001:db8:8::53: NOT CONNECTED \(last heard \d+ s ago\)/,
    );
    server = dstm(core, serverArgs);
    await server.waitFor(/ start /);
    expect(
      await tep.waitFor(/WARN server-reachable server=2001:db8:8::53 .*down-s=\d+/),
    ).toBeTruthy();
    expect(metric(await tepMetrics(), "dstm_tep_server_connected")).toBe(1);
    expect(await tepStats()).toMatch(/server 2001:db8:8::53: connected \(last heard \d+ s ago\)/);
  }, 60_000);

  test("SIGHUP rotates the client's and the TEP's keys under traffic: no binding dropped, no packet refused", async () => {
    // Settled after the server's restart above (the client may have had to lease again).
    const answers = () => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;
    expect(await until(answers, 40_000)).toBe(true);
    const ping = host.spawn(["ping", "-i", "0.1", "-c", "120", "-W", "3", "192.0.2.80"], {
      timeoutMs: 60_000,
    });
    const pingOut = new Response(ping.stdout).text();
    const before = await tepMetrics();
    const clientMark = client.lines.length;
    const tepMark = tep.lines.length;
    const serverMark = server.lines.length;
    // A change that needs a restart: refused in one line, and the client runs on as it was.
    writeFileSync(file("client.toml"), `mtu = 1300\nkey = "${file("client.key")}"\n`);
    client.proc.kill("SIGHUP");
    const refused = await client.waitFor(/WARN reload-refused reason=SIGHUP/);
    expect(refused).toContain("--mtu cannot change without a restart (1400 → 1300)");
    expect(since(client, clientMark, /reload-refused/).length).toBe(1);
    // New keys: the client's host key (the server knows both), the TEP's server-TEP key.
    writeFileSync(file("client.toml"), `mtu = 1400\nkey = "${file("client.key")}"\n`);
    writeKey("client.key", H2);
    writeKey("tep.key", T2);
    client.proc.kill("SIGHUP");
    tep.proc.kill("SIGHUP");
    expect(await client.waitFor(/ reload reason=SIGHUP log-level=info changed=key$/)).toBeTruthy();
    expect(await tep.waitFor(/ reload reason=SIGHUP log-level=info changed=key$/)).toBeTruthy();
    expect(await client.waitFor(/ key-overlap keys=1 overlap-s=3600 /)).toBeTruthy();
    expect(await tep.waitFor(/ key-overlap keys=11 overlap-s=3600 /)).toBeTruthy();
    const reloaded = client.lines.length;
    // The client renews (every 4 s) signed with the new key; the server answers with it.
    expect(await until(() => since(client, reloaded, / renewed /).length > 0, 15_000)).toBe(true);
    // A new lease after the rotation: its BIND, still signed by the server with T1, is taken
    // by the TEP (T1 overlaps), and its SYNC, signed with T2, by the server.
    const get = host.exec(
      [
        BUN,
        join(ROOT, "mod.ts"),
        "lease",
        "get",
        "--server",
        "2001:db8:8::53",
        "--host6",
        "2001:db8:8::b",
        "--key",
        file("client.key"),
        "--json",
      ],
      { cwd: ROOT, timeoutMs: 30_000 },
    );
    expect(get.stderr).toBe("");
    expect(get.code).toBe(0);
    expect(await until(() => since(tep, tepMark, / bind ipv4=/).length > 0)).toBe(true);
    const out = await pingOut;
    expect(await ping.exited).toBe(0);
    expect(out).toContain("120 packets transmitted, 120 received");
    // Nothing refused on either side of the server ⇄ TEP channel, nothing lost by the client.
    expect(since(tep, tepMark, /reject|server-unreachable/)).toEqual([]);
    expect(since(server, serverMark, /tep-reject|tep-disconnected|tep-unreachable/)).toEqual([]);
    expect(since(client, clientMark, /lease-lost|renew-failed| refused /)).toEqual([]);
    const text = await tepMetrics();
    expect(metric(text, "dstm_reloads_total", { result: "applied" })).toBe(1);
    expect(text).not.toMatch(/result="drop-auth/);
    for (const direction of ["decap", "encap"])
      for (const reason of ["no-binding", "spoofed-source", "bad-port"]) {
        const labels = { direction, result: "drop", reason };
        const dropped =
          metric(text, "dstm_tep_packets_total", labels) -
          metric(before, "dstm_tep_packets_total", labels);
        expect({ ...labels, dropped }).toEqual({ ...labels, dropped: 0 });
      }
    // The client's binding stayed (its lease was renewed, never lost); lease get's lease (8 s,
    // never renewed) may have expired since: its UNBIND is the only one.
    expect(metric(text, "dstm_tep_bindings", { origin: "server" })).toBeGreaterThanOrEqual(1);
    const leased = JSON.parse(get.stdout) as { hostIPv4: string };
    const unbinds = since(tep, tepMark, / unbind ipv4=/);
    expect(unbinds.every((l) => l.includes(`ipv4=${leased.hostIPv4} `))).toBe(true);
  }, 90_000);
});
