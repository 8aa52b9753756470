/**
 * A TEP whose `--key` is not the server's `tep-key` (the same key id, another secret): the
 * server refuses every SYNC (`tep-reject reason=auth-bad-mac type=sync`, counted each time)
 * but says so once a minute, with how many it left out, instead of every 2 s (about 1,800 lines
 * an hour, far under the WarnLimit's rate); and the TEP's `server-unreachable` names a key
 * mismatch as the likely cause (it hears nothing, since the server answers no refused SYNC).
 *
 * The commonest mismatch, a TEP given the hosts' key file (the server's `--key`) instead of
 * the server's `--tep-key` file, is named as such: the server finds the SYNC signed with one of
 * its host keys (`tep-reject reason=auth-host-key`, saying what to give the TEP); a TEP none of
 * whose server's messages has passed its key since start says `key-mismatch`, naming --key and
 * --tep-key, once a minute (before: only the generic `reject reason=drop-auth-bad-mac`).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { KeyRing } from "../lib/control/key_ring.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { WarnLimit } from "../lib/control/warn_limit.ts";
import { parseIPv6 } from "../lib/net/addr.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { ControlGate } from "../lib/tep/control_gate.ts";
import { ServerWatch } from "../lib/tep/server_watch.ts";
import { type AuthKey, signMessage } from "../lib/wire/auth.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";

const SERVER_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x71) };
const TEP_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x72) };
/** The hosts' key (the server's --key), given to a TEP by mistake. */
const HOST_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x73) };
const cleanup: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanup) c();
});

describe("server: a TEP with another key", () => {
  test("an hour of SYNCs every 2 s: every one counted, one tep-reject line a minute saying how many were left out", () => {
    let now = 1_000_000;
    const lines: string[] = [];
    const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
    const metrics = new Metrics();
    const sync = new TepSync(
      {
        keys: [SERVER_KEY],
        teps: ["2001:db8::1"],
        tepPort: 4608,
        log,
        metrics,
        now: () => now,
        send: () => true,
      },
      [],
    );
    cleanup.push(() => sync.close());
    const message: DstmMessage = {
      type: MessageType.SYNC,
      xid: 9,
      tep6: "2001:db8::1",
      syncCount: 0,
      syncDigest: 0,
    };
    for (let i = 0; i < 1800; i++) {
      const bytes = signMessage(message, TEP_KEY, now, undefined, "tep");
      const d = decodeMessage(bytes);
      if (!d.ok) throw new Error("bad SYNC");
      sync.onTepMessage(bytes, d.value, "2001:db8::1", 4608);
      now += 2000;
    }
    log.flush();
    expect(metrics.get("dstm_tep_refused_total", { reason: "auth-bad-mac" })).toBe(1800);
    const rejects = lines.filter((l) => / WARN tep-reject /.test(l));
    expect(rejects.length).toBe(60);
    expect(rejects[0]).toContain("reason=auth-bad-mac");
    expect(rejects[0]).toContain("tep-key");
    expect(rejects[0]).not.toContain("suppressed-repeats");
    expect(rejects[1]).toContain("suppressed-repeats=29");
  });
});

describe("TEP: server-unreachable", () => {
  const watch = (keyed: boolean) => {
    let now = 0;
    const lines: string[] = [];
    const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
    const w = new ServerWatch({
      server: "2001:db8::53",
      port: 4607,
      intervalMs: 2000,
      warn: new WarnLimit(log),
      metrics: new Metrics(),
      now: () => now,
      keyed,
    });
    now = 6000;
    w.check();
    log.flush();
    return lines.find((l) => / WARN server-unreachable /.test(l)) ?? "";
  };

  test("with --key it says a key mismatch looks like this (compare --key with the server's tep-key)", () => {
    const line = watch(true);
    expect(line).toContain("--key");
    expect(line).toContain("tep-key");
    expect(line).toContain("auth-bad-mac");
  });

  test("without a key it names the server's tep-key as the cause to check", () => {
    expect(watch(false)).toContain("auth-missing");
  });
});

describe("server: a TEP given the hosts' key instead of the TEP key", () => {
  const run = (tepSigns: AuthKey) => {
    const now = 1_000_000;
    const lines: string[] = [];
    const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
    const metrics = new Metrics();
    const sync = new TepSync(
      {
        keys: [SERVER_KEY],
        hostKeys: () => [HOST_KEY],
        teps: ["2001:db8::1"],
        tepPort: 4608,
        log,
        metrics,
        now: () => now,
        send: () => true,
      },
      [],
    );
    cleanup.push(() => sync.close());
    const message: DstmMessage = {
      type: MessageType.SYNC,
      xid: 9,
      tep6: "2001:db8::1",
      syncCount: 0,
      syncDigest: 0,
    };
    const bytes = signMessage(message, tepSigns, now, undefined, "tep");
    const d = decodeMessage(bytes);
    if (!d.ok) throw new Error("bad SYNC");
    sync.onTepMessage(bytes, d.value, "2001:db8::1", 4608);
    log.flush();
    return { metrics, rejects: lines.filter((l) => / WARN tep-reject /.test(l)) };
  };

  test("its SYNC, signed with a host key, is refused as auth-host-key and the line says what to give the TEP", () => {
    const { metrics, rejects } = run(HOST_KEY);
    expect(metrics.get("dstm_tep_refused_total", { reason: "auth-host-key" })).toBe(1);
    expect(metrics.get("dstm_tep_refused_total", { reason: "auth-bad-mac" })).toBe(0);
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toContain("reason=auth-host-key");
    expect(rejects[0]).toMatch(
      /hosts' key \(this server's --key, key id 1\).*--tep-key file as its --key/,
    );
  });

  test("a key that is neither is still auth-bad-mac", () => {
    const { metrics, rejects } = run(TEP_KEY);
    expect(metrics.get("dstm_tep_refused_total", { reason: "auth-bad-mac" })).toBe(1);
    expect(rejects[0]).toContain("reason=auth-bad-mac");
  });
});

describe("TEP: every message of its server fails its key from the start", () => {
  const TEP6 = "2001:db8::7";
  const SERVER = "2001:db8::53";
  const setup = () => {
    let now = 1_000_000;
    const lines: string[] = [];
    const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
    const metrics = new Metrics();
    metrics.counter("dstm_tep_control_total", "as lib/tep/control.ts declares it", [
      "kind",
      "result",
    ]);
    const gate = new ControlGate({
      servers: [SERVER],
      port: 4607,
      tep6: TEP6,
      keys: new KeyRing(HOST_KEY), // the hosts' key, given to the TEP by mistake
      warn: new WarnLimit(log, { now: () => now }),
      metrics,
      now: () => now,
    });
    const bind: DstmMessage = {
      type: MessageType.BIND,
      xid: 1,
      host4: 0xc0000201,
      host6: "2001:db8:1::1",
    };
    const said = () => {
      log.flush();
      return lines;
    };
    return {
      gate,
      metrics,
      said,
      tick: (ms: number) => {
        now += ms;
      },
      // What the server sends: signed with its --tep-key for this TEP, or unsigned.
      fromServer: (key: AuthKey | undefined) =>
        key
          ? signMessage(bind, key, now, undefined, "tep", parseIPv6(TEP6) ?? undefined)
          : encodeMessage(bind),
    };
  };

  test("signed with another key: key-mismatch names --key and the server's --tep-key, once a minute, every one counted", () => {
    const t = setup();
    for (let i = 0; i < 120; i++) {
      expect(t.gate.accept(t.fromServer(SERVER_KEY), SERVER, 4607)).toBeUndefined();
      t.tick(1000);
    }
    expect(
      t.metrics.get("dstm_tep_control_total", { kind: "bind", result: "drop-auth-bad-mac" }),
    ).toBe(120);
    const mismatch = t.said().filter((l) => / WARN key-mismatch /.test(l));
    expect(mismatch).toHaveLength(2);
    expect(mismatch[0]).toContain(`server=${SERVER}`);
    expect(mismatch[0]).toContain("reason=drop-auth-bad-mac");
    expect(mismatch[0]).toMatch(
      /this TEP's --key is not the server's --tep-key file.*hosts' key file/,
    );
    expect(t.said().filter((l) => / WARN reject /.test(l))).toEqual([]);
  });

  test("unsigned (the server has no --tep-key): key-mismatch says to give the server --tep-key", () => {
    const t = setup();
    t.gate.accept(t.fromServer(undefined), SERVER, 4607);
    const mismatch = t.said().filter((l) => / WARN key-mismatch /.test(l));
    expect(mismatch).toHaveLength(1);
    expect(mismatch[0]).toContain("reason=drop-auth-missing");
    expect(mismatch[0]).toMatch(/the server has no --tep-key.*give the server --tep-key/);
  });

  test("once a message of the server has passed, a failure is a plain reject (no mix-up)", () => {
    const t = setup();
    expect(t.gate.accept(t.fromServer(HOST_KEY), SERVER, 4607)).toBeDefined();
    t.tick(1000);
    t.gate.accept(t.fromServer(SERVER_KEY), SERVER, 4607);
    expect(t.said().filter((l) => / key-mismatch /.test(l))).toEqual([]);
    expect(t.said().filter((l) => / WARN reject .*drop-auth-bad-mac/.test(l))).toHaveLength(1);
  });
});
