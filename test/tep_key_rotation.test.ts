/**
 * Rotating the server ⇄ TEP key (`dstm server --tep-key`) on reload, without a restart
 * (docs/security.md "Rotating the TEP key"): the new file's first key signs from then on,
 * each of its keys verifies, and a key the file dropped is still accepted for
 * `--key-overlap`, then refused.
 *
 * - In-process, the server's channel (TepChannel) with real signed SYNCs: the overlap, then
 *   the refusal (`auth-unknown-key`), polled with a deadline.
 * - As root in namespaces, real `dstm server` and `dstm tep` processes under lease churn
 *   (a BIND + BIND_ACK and an UNBIND per lease): the three-step procedure — server file
 *   [old, new] via `dstm server reload`, TEP file [new] via SIGHUP, server file [new] via
 *   SIGHUP — drops no binding and refuses no message on either side; after the server's
 *   overlap (4 s here) a TEP still on the old key is refused.
 */
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { parseIPv6 } from "../lib/net/addr.ts";
import { planReload } from "../lib/server/reload.ts";
import type { ServerConfig } from "../lib/server/server.ts";
import { TepChannel } from "../lib/server/tep_channel.ts";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { type AuthKey, ReplayGuard, signMessage, verifyMessage } from "../lib/wire/auth.ts";
import { decodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";
import {
  type Daemon,
  daemonScope,
  keyLine,
  metric,
  linesSince as since,
  until,
} from "./helpers/daemon.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { tepArgv } from "./helpers/tep_argv.ts";
import { eventually } from "./helpers/wait.ts";

const OLD: AuthKey = { id: 11, secret: new Uint8Array(32).fill(0x11) };
const NEW: AuthKey = { id: 12, secret: new Uint8Array(32).fill(0x12) };
const UNBIND = { type: MessageType.UNBIND, host4: 0xc6336405, host6: "2001:db8:1::a" } as const;

describe("TepChannel.rotateKeys: the server's end of the TEP channel", () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  function channel() {
    const metrics = new Metrics();
    const sent: Uint8Array[] = [];
    const ch = new TepChannel({
      teps: ["2001:db8::1"],
      port: 4608,
      keys: [OLD],
      send: (data) => {
        sent.push(data);
        return true;
      },
      log: new Logger({ sink: () => {} }),
      metrics,
      now: Date.now,
    });
    cleanup.push(() => ch.close());
    let xid = 0;
    /** A SYNC from the TEP signed with `key`: accepted (true) or refused. */
    const sync = (key: AuthKey) => {
      const message: DstmMessage = {
        type: MessageType.SYNC,
        xid: ++xid,
        tep6: "2001:db8::1",
        syncCount: 0,
        syncDigest: 0,
      };
      const raw = signMessage(message, key, Date.now(), undefined, "tep");
      const decoded = decodeMessage(raw);
      if (!decoded.ok) throw new Error(decoded.error.message);
      return ch.receive(raw, decoded.value, "2001:db8::1", 4608) !== null;
    };
    /** The key id of the last message the server sent, verified for this TEP with `key`. */
    const lastSignedWith = (key: AuthKey) => {
      const raw = sent.at(-1)!;
      const decoded = decodeMessage(raw);
      if (!decoded.ok) throw new Error(decoded.error.message);
      const keys = new Map([[key.id, key]]);
      const audience = parseIPv6("2001:db8::1")!;
      const guard = new ReplayGuard({ notBefore: 0 });
      return verifyMessage(raw, decoded.value, keys, guard, Date.now(), "tep", audience);
    };
    const refused = (reason: string) => metrics.get("dstm_tep_refused_total", { reason }) ?? 0;
    return { ch, sync, lastSignedWith, refused };
  }

  test("[old, new]: old still signs, both verify; [new]: new signs, old verifies for the overlap, then is refused", async () => {
    const { ch, sync, lastSignedWith, refused } = channel();
    expect(sync(OLD)).toBe(true);
    expect(sync(NEW)).toBe(false);
    expect(refused("auth-unknown-key")).toBe(1);
    // Step 1: the new key added after the old one.
    expect(ch.rotateKeys([OLD, NEW], 60_000)).toEqual([]);
    ch.send("2001:db8::1", { ...UNBIND, xid: 1 });
    expect(lastSignedWith(OLD)).toBe("ok");
    expect(sync(OLD)).toBe(true);
    expect(sync(NEW)).toBe(true);
    // Step 3: the new key alone, a short overlap.
    const retired: number[] = [];
    const dropped = ch.rotateKeys([NEW], 300, (keys) => retired.push(...keys.map((k) => k.id)));
    expect(dropped.map((k) => k.id)).toEqual([OLD.id]);
    ch.send("2001:db8::1", { ...UNBIND, xid: 2 });
    expect(lastSignedWith(NEW)).toBe("ok");
    expect(lastSignedWith(OLD)).toBe("unknown-key");
    expect(sync(NEW)).toBe(true);
    expect(sync(OLD)).toBe(true); // within the overlap
    expect(await eventually(() => retired.length > 0, { timeoutMs: 10_000 })).toBe(true);
    expect(retired).toEqual([OLD.id]);
    expect(sync(OLD)).toBe(false);
    expect(refused("auth-unknown-key")).toBe(2);
    expect(sync(NEW)).toBe(true);
  });

  test("an unauthenticated channel cannot rotate (turning --tep-key on needs a restart)", () => {
    const ch = new TepChannel({
      teps: ["2001:db8::1"],
      port: 4608,
      keys: [],
      send: () => true,
      log: new Logger({ sink: () => {} }),
      metrics: new Metrics(),
      now: Date.now,
    });
    expect(() => ch.rotateKeys([NEW], 1000)).toThrow(/without --tep-key/);
    ch.close();
  });
});

test("planReload: a changed --tep-key file is live; turning --tep-key on or off is refused", () => {
  const base = {
    pools: [{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" }],
    leaseTime: 3600,
    listen: { address: "::", port: 4607 },
    sourceCheck: true,
  } as unknown as ServerConfig;
  const teps = new Set(["2001:db8::1"]);
  const withKeys = (keys?: AuthKey[]) => ({ ...base, tepKeys: keys }) as ServerConfig;
  expect(planReload(withKeys([OLD]), withKeys([OLD, NEW]), teps)).toEqual({
    changed: ["tep-key"],
  });
  // The first key signs: the same keys in another order are a change.
  expect(planReload(withKeys([OLD, NEW]), withKeys([NEW, OLD]), teps)).toEqual({
    changed: ["tep-key"],
  });
  expect(planReload(withKeys([OLD]), withKeys([OLD]), teps)).toEqual({ changed: [] });
  expect(planReload(withKeys(), withKeys([NEW]), teps)).toEqual({
    refused: "turning --tep-key authentication on or off cannot change without a restart",
  });
  expect(planReload(withKeys([OLD]), withKeys(), teps)).toEqual({
    refused: "turning --tep-key authentication on or off cannot change without a restart",
  });
});

const skip = netnsSkipReason();
announceSkip("tep_key_rotation", skip);

describe.skipIf(skip !== null)("dstm server --tep-key reload with real server and TEP", () => {
  const { file, netns, dstm, writeKey } = daemonScope("dstm-tepkey-", {
    timeoutMs: 240_000,
    stderrOnFailure: true,
  });
  let host: Netns;
  let core: Netns;
  let server: Daemon;
  let tep: Daemon;
  const T1 = keyLine(21);
  const T2 = keyLine(22);
  const tepArgs = (key: string) => [
    ...tepArgv({ ipv6: "2001:db8:a::1", server: "2001:db8:a::53", route: "198.51.100.0/28" }),
    "--key",
    file(key),
    "--control",
    file(`tep-${key}.sock`),
  ];
  const serverMetrics = async () =>
    (await fetch("http://localhost/metrics", { unix: file("server.sock") })).text();

  beforeAll(async () => {
    host = netns("dstmk-");
    core = netns("dstmk-");
    vethPair(host, "c0", core, "t0");
    host.addAddress("c0", "2001:db8:a::a/64");
    for (const a of ["2001:db8:a::53/64", "2001:db8:a::1/64"]) core.addAddress("t0", a);
    core.up("lo");
    host.up("lo");
    writeKey("server-tep.key", T1);
    writeKey("tep.key", T1);
    server = dstm(core, [
      "server",
      "--listen",
      "[2001:db8:a::53]:4607",
      "--pool",
      "198.51.100.0/28",
      "--tep",
      "2001:db8:a::1,192.0.2.1",
      "--db",
      "memory",
      "--no-source-check",
      "--tep-key",
      file("server-tep.key"),
      "--key-overlap",
      "4s",
      "--control",
      file("server.sock"),
    ]);
    await server.waitFor(/ start /);
    tep = dstm(core, tepArgs("tep.key"));
    await tep.waitFor(/ tep-start /);
    await server.waitFor(/ tep-connected /);
  }, 60_000);

  test("the three-step rotation under lease churn: no binding dropped, no message refused; then the old key is refused", async () => {
    const serverMark = server.lines.length;
    const tepMark = tep.lines.length;
    const churn = host.spawn(
      [
        BUN,
        join(ROOT, "test", "e2e_scripts", "dstm_churn.ts"),
        "2001:db8:a::53",
        "4607",
        "2001:db8:100",
        "6",
        file("stop"),
      ],
      { timeoutMs: 200_000, cwd: ROOT },
    );
    const churnOut = new Response(churn.stdout).text();
    const churnErr = new Response(churn.stderr).text();
    const binds = () => since(tep, tepMark, / bind ipv4=/).length;
    // Some churn before, between and after each step.
    const moreBinds = async (n: number) => {
      const target = binds() + n;
      expect(await until(() => binds() >= target, 60_000)).toBe(true);
    };
    await moreBinds(6);
    // A lease held throughout (an hour): its binding must stay at the TEP.
    const held = host.exec(
      [
        BUN,
        join(ROOT, "mod.ts"),
        "lease",
        "get",
        "--server",
        "2001:db8:a::53",
        "--host6",
        "2001:db8:200::1",
        "--json",
      ],
      { cwd: ROOT, timeoutMs: 30_000 },
    );
    expect(held.stderr).toBe("");
    expect(held.code).toBe(0);
    const heldIPv4 = (JSON.parse(held.stdout) as { hostIPv4: string }).hostIPv4;

    // 1. The server accepts the new key too; the old one still signs.
    writeKey("server-tep.key", T1, T2);
    const reload = core.exec(
      [BUN, join(ROOT, "mod.ts"), "server", "reload", "--control", file("server.sock")],
      { cwd: ROOT, timeoutMs: 30_000 },
    );
    expect(reload.stderr).toBe("");
    expect(reload.code).toBe(0);
    expect(await server.waitFor(/ tep-key-rotated signing-key=21 keys=21,22$/)).toBeTruthy();
    await moreBinds(6);

    // 2. The TEP moves to the new key (signs SYNC and BIND_ACK with it; the old one overlaps).
    writeKey("tep.key", T2);
    tep.proc.kill("SIGHUP");
    expect(await tep.waitFor(/ reload reason=SIGHUP .*changed=key$/)).toBeTruthy();
    await moreBinds(6);

    // 3. The server signs with the new key alone; the old one overlaps for 4 s.
    writeKey("server-tep.key", T2);
    server.proc.kill("SIGHUP");
    expect(
      await server.waitFor(/ tep-key-rotated signing-key=22 keys=22 overlapping=21 overlap-s=4 /),
    ).toBeTruthy();
    await moreBinds(12);
    expect(await server.waitFor(/ tep-key-retired keys=21$/, 30_000)).toBeTruthy();
    await moreBinds(6);

    writeFileSync(file("stop"), "");
    expect(await churn.exited).toBe(0);
    const out = (await churnOut).trim().split("\n");
    expect(await churnErr).toBe("");
    const summary = JSON.parse(out.at(-1)!) as { ok: number; failed: number };
    // Every DISCOVER (each a BIND the TEP acknowledged) and every RELEASE succeeded.
    expect(out.filter((l) => l.startsWith("{") && l.includes('"error"'))).toEqual([]);
    expect(summary.failed).toBe(0);
    expect(summary.ok).toBeGreaterThanOrEqual(2 * 36);
    // Nothing refused on either side of the channel, no link lost. A TEP stalled for more
    // than the server's 250 ms retransmission interval answers a BIND twice; the second
    // BIND_ACK, authenticated like the first (lib/server/tep_channel.ts checks keys before it
    // looks for the exchange), is refused as unexpected-answer: the load's doing, not the keys'.
    expect(
      since(
        server,
        serverMark,
        /tep-reject reason=(?!unexpected-answer )|tep-disconnected|tep-unavailable/,
      ),
    ).toEqual([]);
    expect(since(tep, tepMark, /reject|server-unreachable/)).toEqual([]);
    const text = await serverMetrics();
    expect(text).not.toMatch(
      /^dstm_tep_refused_total\{reason="(?!unexpected-answer")[^}]*\} [1-9]/m,
    );
    expect(since(tep, tepMark, new RegExp(` unbind ipv4=${heldIPv4} `))).toEqual([]);
    expect(
      since(tep, tepMark, new RegExp(` bind ipv4=${heldIPv4} .*host6=2001:db8:200::1`)).length,
    ).toBe(1);
    const tepText = await (
      await fetch("http://localhost/metrics", { unix: file("tep-tep.key.sock") })
    ).text();
    expect(tepText).not.toMatch(/result="(drop-)?auth[^"]*"\} [1-9]/);

    // After the overlap, a TEP still on the old key is refused: its SYNC does not verify.
    writeKey("tep-old.key", T1);
    tep.proc.kill("SIGTERM");
    expect(await tep.proc.exited).toBe(0);
    tep = dstm(core, tepArgs("tep-old.key"));
    await tep.waitFor(/ tep-start /);
    const refused = async () =>
      metric(await serverMetrics(), "dstm_tep_refused_total", { reason: "auth-unknown-key" });
    await eventually(async () => (await refused()) >= 1, { timeoutMs: 30_000, intervalMs: 200 });
    expect(await refused()).toBeGreaterThanOrEqual(1);
    expect(await server.waitFor(/WARN tep-reject reason=auth-unknown-key type=sync/)).toBeTruthy();
  }, 180_000);
});
