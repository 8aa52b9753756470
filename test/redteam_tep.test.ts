/**
 * Red team: a captured server → TEP message replayed after the TEP restarts, as root with real
 * `dstm server` and `dstm tep` processes (TEP key on the channel). On one IPv6 link (a bridge
 * set to flood every frame, as a hub or a mirrored port): the server, the TEP, host A and an
 * attacker that records the server's BIND for A with dumpcap and has put the server's address
 * on its loopback, so it sends from the server's address and port.
 *
 * Before the fix, a restarted TEP started with an empty replay guard: the BIND captured a few
 * seconds earlier verified again (fresh timestamp, nonce unknown) and was applied.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { generateKeyFileText, parseKeyFile, signMessage } from "../lib/wire/auth.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import { captureStarted, stopAndFindBind } from "./helpers/bind_capture.ts";
import { type Daemon, metric, spawnDaemon, until } from "./helpers/daemon.ts";
import { hubLink } from "./helpers/hub.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("dumpcap") && Bun.which("tshark")
    ? null
    : "needs dumpcap and tshark (scripts/test-deps.sh installs them)");
announceSkip("redteam_tep", skip);

const NET = {
  server6: "2001:db8:1::53",
  tep6: "2001:db8:1::1",
  a6: "2001:db8:1::a",
  evil6: "2001:db8:1::e",
  tep4: "192.0.2.1",
  pool: "198.51.100.0/28",
} as const;

const dir = mkdtempSync(join(tmpdir(), "dstm-redteam-tep-"));
const procs: Bun.Subprocess<"ignore", "pipe", "pipe">[] = [];
const spaces: Netns[] = [];

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL");
  for (const n of spaces) n.delete();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts `argv` in `where`, collecting its stdout lines. */
function daemon(where: Netns, argv: readonly string[]): Daemon {
  const d = spawnDaemon(where, argv, { timeoutMs: 120_000 });
  procs.push(d.proc);
  return d;
}

const metricsOf = async (socket: string) =>
  (await fetch("http://localhost/metrics", { unix: join(dir, socket) })).text();

/** Runs test/e2e_scripts/forge_udp.ts in `ns`. */
function forge(ns: Netns, spec: object): { sent: number; received: number } {
  const run = ns.exec(
    [BUN, join(ROOT, "test", "e2e_scripts", "forge_udp.ts"), JSON.stringify(spec)],
    {
      cwd: ROOT,
      timeoutMs: 30_000,
    },
  );
  if (run.code !== 0) throw new Error(`forge_udp.ts: ${run.stderr}`);
  return JSON.parse(run.stdout.trim().split("\n").at(-1)!);
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe.skipIf(skip !== null)("a TEP restarted under an attacker on the link", () => {
  test("a BIND captured before the restart and replayed after it is refused as stale", async () => {
    const ns = {} as Record<"sw" | "srv" | "tep" | "a" | "evil", Netns>;
    for (const role of ["sw", "srv", "tep", "a", "evil"] as const) {
      ns[role] = createNetns("dstmt-rt-");
      spaces.push(ns[role]);
    }
    hubLink(ns.sw, [
      ["srv", ns.srv, "eth0", NET.server6],
      ["tep", ns.tep, "eth6", NET.tep6],
      ["a", ns.a, "eth0", NET.a6],
      ["evil", ns.evil, "eth0", NET.evil6],
    ]);
    ns.evil.addAddress("lo", `${NET.server6}/128`);
    ns.tep.addAddress("lo", `${NET.tep4}/32`);
    const hostKeyText = generateKeyFileText(1);
    writeFileSync(join(dir, "host.key"), hostKeyText, { mode: 0o600 });
    writeFileSync(join(dir, "tep.key"), generateKeyFileText(1), { mode: 0o600 });
    const server = daemon(ns.srv, [
      BUN,
      join(ROOT, "mod.ts"),
      "server",
      "--pool",
      NET.pool,
      "--tep",
      `${NET.tep6},${NET.tep4}`,
      "--listen",
      `[${NET.server6}]:4607`,
      "--db",
      "memory",
      "--control",
      join(dir, "server.sock"),
      "--key",
      join(dir, "host.key"),
      "--tep-key",
      join(dir, "tep.key"),
    ]);
    await server.waitFor(/ start listen=/);
    const tepArgv = [
      BUN,
      join(ROOT, "mod.ts"),
      "tep",
      "--ipv6",
      NET.tep6,
      "--ipv4",
      NET.tep4,
      "--server",
      NET.server6,
      "--route",
      NET.pool,
      "--key",
      join(dir, "tep.key"),
      "--stats",
      join(dir, "tep.sock"),
    ];
    let tep = daemon(ns.tep, tepArgv);
    await tep.waitFor(/ tep-start /);
    const connected = () =>
      until(
        async () =>
          metric(await metricsOf("server.sock"), "dstm_tep_connected", { tep: NET.tep6 }) === 1,
      );
    expect(await connected()).toBe(true);

    // The attacker records the server → TEP traffic while A leases.
    const pcap = join(dir, "control.pcap");
    const capture = daemon(ns.evil, [
      "dumpcap",
      "-q",
      "-P",
      "-i",
      "eth0",
      "-f",
      "udp dst port 4608",
      "-w",
      pcap,
    ]);
    await captureStarted(pcap);
    const parsed = parseKeyFile(hostKeyText);
    if (!parsed.ok) throw new Error(parsed.message);
    const discover = signMessage(
      { type: MessageType.DISCOVER, xid: 1, host6: NET.a6 },
      parsed.keys[0]!,
      Date.now(),
    );
    const leased = forge(ns.a, {
      from: NET.a6,
      fromPort: 0,
      to: NET.server6,
      toPort: 4607,
      datagrams: [hex(discover)],
      listenMs: 1500,
    });
    expect(leased.received).toBe(1);
    const capturedBind = await stopAndFindBind(capture, ns.evil, pcap);
    expect(capturedBind).not.toBe("");

    // The TEP restarts (an upgrade, a crash) and gets its table back from the server.
    tep.proc.kill("SIGTERM");
    await tep.proc.exited;
    tep = daemon(ns.tep, tepArgv);
    await tep.waitFor(/ tep-start /);
    expect(await tep.waitFor(/ snapshot bindings=1 /)).toBeDefined();
    const replay = forge(ns.evil, {
      from: NET.server6,
      fromPort: 4607,
      to: NET.tep6,
      toPort: 4608,
      datagrams: [capturedBind],
      listenMs: 500,
    });
    expect(replay.sent).toBe(1);
    // Before the fix: kind=bind result=ok (the replay applied) and a BIND_ACK went back.
    expect(
      await until(
        async () =>
          metric(await metricsOf("tep.sock"), "dstm_tep_control_total", {
            kind: "bind",
            result: "drop-auth-stale",
          }) === 1,
        10_000,
      ),
    ).toBe(true);
    const page = await metricsOf("tep.sock");
    expect(metric(page, "dstm_tep_control_total", { kind: "bind", result: "ok" })).toBe(0);
    expect(replay.received).toBe(0);
  }, 120_000);
});

describe.skipIf(skip !== null)("two TEPs sharing the TEP key under an attacker on the link", () => {
  test("a BIND the server signed for TEP 1, replayed to TEP 2 from the server's address and port, is refused", async () => {
    const ns = {} as Record<"sw" | "srv" | "tep1" | "tep2" | "a" | "evil", Netns>;
    for (const role of ["sw", "srv", "tep1", "tep2", "a", "evil"] as const) {
      ns[role] = createNetns("dstmt-rt-");
      spaces.push(ns[role]);
    }
    const tep2 = "2001:db8:1::2";
    hubLink(ns.sw, [
      ["srv", ns.srv, "eth0", NET.server6],
      ["tep1", ns.tep1, "eth0", NET.tep6],
      ["tep2", ns.tep2, "eth0", tep2],
      ["a", ns.a, "eth0", NET.a6],
      ["evil", ns.evil, "eth0", NET.evil6],
    ]);
    ns.evil.addAddress("lo", `${NET.server6}/128`);
    ns.tep1.addAddress("lo", "192.0.2.1/32");
    ns.tep2.addAddress("lo", "192.0.2.2/32");
    const d = mkdtempSync(join(dir, "two-"));
    const hostKeyText = generateKeyFileText(1);
    writeFileSync(join(d, "host.key"), hostKeyText, { mode: 0o600 });
    writeFileSync(join(d, "tep.key"), generateKeyFileText(1), { mode: 0o600 });
    // One server, two pools, each with its own TEP; one TEP key (the server signs with it).
    writeFileSync(
      join(d, "server.toml"),
      [
        `listen = "[${NET.server6}]:4607"`,
        `db = "memory"`,
        `key = "${join(d, "host.key")}"`,
        `tep-key = "${join(d, "tep.key")}"`,
        `control = "${join(d, "server.sock")}"`,
        "[[pool]]",
        `prefixes = ["198.51.100.0/28"]`,
        `tep = "${NET.tep6},192.0.2.1"`,
        "[[pool]]",
        `prefixes = ["198.51.100.16/28"]`,
        `tep = "${tep2},192.0.2.2"`,
        "",
      ].join("\n"),
    );
    const server = daemon(ns.srv, [
      BUN,
      join(ROOT, "mod.ts"),
      "server",
      "--config",
      join(d, "server.toml"),
    ]);
    await server.waitFor(/ start listen=/);
    const tepOn = (where: Netns, tep6: string, tep4: string, route: string, stats: string) =>
      daemon(where, [
        BUN,
        join(ROOT, "mod.ts"),
        "tep",
        "--ipv6",
        tep6,
        "--ipv4",
        tep4,
        "--server",
        NET.server6,
        "--route",
        route,
        "--key",
        join(d, "tep.key"),
        "--stats",
        join(d, stats),
      ]);
    await tepOn(ns.tep1, NET.tep6, "192.0.2.1", "198.51.100.0/28", "tep1.sock").waitFor(
      / tep-start /,
    );
    await tepOn(ns.tep2, tep2, "192.0.2.2", "198.51.100.16/28", "tep2.sock").waitFor(/ tep-start /);
    const metricsAt = async (socket: string) =>
      (await fetch("http://localhost/metrics", { unix: join(d, socket) })).text();
    for (const tep6 of [NET.tep6, tep2]) {
      expect(
        await until(
          async () =>
            metric(await metricsAt("server.sock"), "dstm_tep_connected", { tep: tep6 }) === 1,
        ),
      ).toBe(true);
    }
    // The attacker records what the server sends TEP 1 while A leases from the first pool.
    const pcap = join(d, "control.pcap");
    const capture = daemon(ns.evil, [
      "dumpcap",
      "-q",
      "-P",
      "-i",
      "eth0",
      "-f",
      `udp dst port 4608 and dst host ${NET.tep6}`,
      "-w",
      pcap,
    ]);
    await captureStarted(pcap);
    const parsed = parseKeyFile(hostKeyText);
    if (!parsed.ok) throw new Error(parsed.message);
    const leased = forge(ns.a, {
      from: NET.a6,
      fromPort: 0,
      to: NET.server6,
      toPort: 4607,
      datagrams: [
        hex(
          signMessage(
            { type: MessageType.DISCOVER, xid: 1, host6: NET.a6 },
            parsed.keys[0]!,
            Date.now(),
          ),
        ),
      ],
      listenMs: 1500,
    });
    expect(leased.received).toBe(1);
    expect(
      await until(
        async () =>
          metric(await metricsAt("tep1.sock"), "dstm_tep_control_total", {
            kind: "bind",
            result: "ok",
          }) === 1,
      ),
    ).toBe(true);
    const capturedBind = await stopAndFindBind(capture, ns.evil, pcap);
    expect(capturedBind).not.toBe("");
    const replay = forge(ns.evil, {
      from: NET.server6,
      fromPort: 4607,
      to: tep2,
      toPort: 4608,
      datagrams: [capturedBind],
      listenMs: 500,
    });
    expect(replay.sent).toBe(1);
    // Before the fix: TEP 2 applied it (kind=bind result=ok): a binding the server never gave it.
    expect(
      await until(
        async () =>
          metric(await metricsAt("tep2.sock"), "dstm_tep_control_total", {
            kind: "bind",
            result: "drop-auth-bad-mac",
          }) === 1,
        10_000,
      ),
    ).toBe(true);
    expect(
      metric(await metricsAt("tep2.sock"), "dstm_tep_control_total", {
        kind: "bind",
        result: "ok",
      }),
    ).toBe(0);
  }, 120_000);
});
