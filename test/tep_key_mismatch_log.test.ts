/**
 * A TEP whose `--key` is not the server's `tep-key` (the same key id, another secret): the
 * server refuses every SYNC (`tep-reject reason=auth-bad-mac type=sync`, counted each time)
 * but says so once a minute, with how many it left out, instead of every 2 s (about 1,800 lines
 * an hour, far under the WarnLimit's rate); and the TEP's `server-unreachable` names a key
 * mismatch as the likely cause (it hears nothing, since the server answers no refused SYNC).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { WarnLimit } from "../lib/control/warn_limit.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { ServerWatch } from "../lib/tep/server_watch.ts";
import { type AuthKey, signMessage } from "../lib/wire/auth.ts";
import { decodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";

const SERVER_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x71) };
const TEP_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x72) };
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
