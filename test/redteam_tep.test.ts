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
import { generateKeyFileText } from "../lib/wire/auth.ts";
import { captureStarted, stopAndFindBind } from "./helpers/bind_capture.ts";
import {
  channelServerArgs,
  channelTepArgs,
  controlCaptureArgv,
  controlCount,
  dstmArgv,
  forgeUdp,
  leaseByForge,
  CHANNEL_NET as NET,
  tepConnected,
} from "./helpers/channel_attack.ts";
import { type Daemon, spawnDaemon, until } from "./helpers/daemon.ts";
import { hubLink } from "./helpers/hub.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("dumpcap") && Bun.which("tshark")
    ? null
    : "needs dumpcap and tshark (scripts/test-deps.sh installs them)");
announceSkip("redteam_tep", skip);

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

/** The TEP's count of control messages `kind`/`result` on its stats socket `socket` in `in_`. */
const controlAt = (in_: string, socket: string, kind: string, result: string) =>
  controlCount(join(in_, socket), kind, result);

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
    const server = daemon(
      ns.srv,
      dstmArgv(
        channelServerArgs({
          hostKey: join(dir, "host.key"),
          tepKey: join(dir, "tep.key"),
          control: join(dir, "server.sock"),
        }),
      ),
    );
    await server.waitFor(/ start listen=/);
    const tepArgv = dstmArgv(
      channelTepArgs({ key: join(dir, "tep.key"), extra: ["--stats", join(dir, "tep.sock")] }),
    );
    let tep = daemon(ns.tep, tepArgv);
    await tep.waitFor(/ tep-start /);
    expect(await tepConnected(join(dir, "server.sock"), NET.tep6)).toBe(true);

    // The attacker records the server → TEP traffic while A leases.
    const pcap = join(dir, "control.pcap");
    const capture = daemon(ns.evil, controlCaptureArgv(pcap));
    await captureStarted(pcap);
    const leased = await leaseByForge(ns.a, hostKeyText);
    expect(leased.received).toBe(1);
    const capturedBind = await stopAndFindBind(capture, ns.evil, pcap);
    expect(capturedBind).not.toBe("");

    // The TEP restarts (an upgrade, a crash) and gets its table back from the server.
    tep.proc.kill("SIGTERM");
    await tep.proc.exited;
    tep = daemon(ns.tep, tepArgv);
    await tep.waitFor(/ tep-start /);
    expect(await tep.waitFor(/ snapshot bindings=1 /)).toBeDefined();
    const replay = await forgeUdp(ns.evil, {
      from: NET.server6,
      fromPort: 4607,
      to: NET.tep6,
      toPort: 4608,
      datagrams: [capturedBind],
      listenMs: 500,
    });
    expect(replay.sent).toBe(1);
    // Before the fix: kind=bind result=ok (the replay applied) and a BIND_ACK went back.
    const stale = () => controlAt(dir, "tep.sock", "bind", "drop-auth-stale");
    expect(await until(async () => (await stale()) === 1, 10_000)).toBe(true);
    expect(await controlAt(dir, "tep.sock", "bind", "ok")).toBe(0);
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
    const server = daemon(ns.srv, dstmArgv(["server", "--config", join(d, "server.toml")]));
    await server.waitFor(/ start listen=/);
    const tepOn = (where: Netns, tep6: string, tep4: string, route: string, stats: string) =>
      daemon(
        where,
        dstmArgv(
          channelTepArgs({
            ...{ tep6, tep4, route, key: join(d, "tep.key") },
            extra: ["--stats", join(d, stats)],
          }),
        ),
      );
    await tepOn(ns.tep1, NET.tep6, "192.0.2.1", "198.51.100.0/28", "tep1.sock").waitFor(
      / tep-start /,
    );
    await tepOn(ns.tep2, tep2, "192.0.2.2", "198.51.100.16/28", "tep2.sock").waitFor(/ tep-start /);
    for (const tep6 of [NET.tep6, tep2]) {
      expect(await tepConnected(join(d, "server.sock"), tep6)).toBe(true);
    }
    // The attacker records what the server sends TEP 1 while A leases from the first pool.
    const pcap = join(d, "control.pcap");
    const capture = daemon(ns.evil, controlCaptureArgv(pcap, NET.tep6));
    await captureStarted(pcap);
    const leased = await leaseByForge(ns.a, hostKeyText);
    expect(leased.received).toBe(1);
    expect(await until(async () => (await controlAt(d, "tep1.sock", "bind", "ok")) === 1)).toBe(
      true,
    );
    const capturedBind = await stopAndFindBind(capture, ns.evil, pcap);
    expect(capturedBind).not.toBe("");
    const replay = await forgeUdp(ns.evil, {
      from: NET.server6,
      fromPort: 4607,
      to: tep2,
      toPort: 4608,
      datagrams: [capturedBind],
      listenMs: 500,
    });
    expect(replay.sent).toBe(1);
    // Before the fix: TEP 2 applied it (kind=bind result=ok): a binding the server never gave it.
    const badMac = () => controlAt(d, "tep2.sock", "bind", "drop-auth-bad-mac");
    expect(await until(async () => (await badMac()) === 1, 10_000)).toBe(true);
    expect(await controlAt(d, "tep2.sock", "bind", "ok")).toBe(0);
  }, 120_000);
});
