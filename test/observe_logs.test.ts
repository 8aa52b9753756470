/**
 * Warnings an operator acts on (issue 13 item 6): a pool crossing --pool-warn-percent and
 * running out, each said once per crossing with hysteresis, from the running server too; store
 * errors with their cause.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { causeOf, Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { PoolWatch } from "../lib/server/pool_watch.ts";
import { DstmServer } from "../lib/server/server.ts";
import { SYNC_INTERVAL_MS, TepSync } from "../lib/server/tep_sync.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";
import { waitUntil } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function captured(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = new Logger({
    sink: (text) => lines.push(...text.trimEnd().split("\n")),
    now: () => 0,
  });
  return { log, lines };
}

describe("PoolWatch", () => {
  test("warns once when a pool reaches the threshold, once when exhausted, and again only after falling 5 points below", () => {
    const { log, lines } = captured();
    const watch = new PoolWatch(log, 90);
    const at = (used: number) => {
      watch.check([{ pool: "198.51.100.0/24", size: 100, free: 100 - used }]);
      log.flush();
    };
    at(89);
    expect(lines).toEqual([]);
    at(90);
    at(95);
    at(89); // below the threshold, not 5 points below: still said
    at(92);
    expect(lines.filter((l) => l.includes("pool-filling")).length).toBe(1);
    expect(lines[0]).toBe(
      "1970-01-01T00:00:00.000Z WARN pool-filling pool=198.51.100.0/24 used-percent=90 used=90 size=100 warn-percent=90",
    );
    at(100);
    at(99);
    at(100);
    expect(lines.filter((l) => l.includes("pool-exhausted")).length).toBe(1);
    at(84); // 5 points below: re-armed
    expect(lines.at(-1)).toContain(" pool-recovered pool=198.51.100.0/24 used-percent=84");
    at(91);
    expect(lines.filter((l) => l.includes("pool-filling")).length).toBe(2);
    watch.percent = 95; // a reload
    at(80);
    at(94);
    expect(lines.filter((l) => l.includes("pool-filling")).length).toBe(2);
  });

  test("the running server warns when its pool fills and when it runs out", async () => {
    const { log, lines } = captured();
    const server = await DstmServer.start({
      pools: [{ prefixes: ["192.0.2.0/29"], tep6: "::1" }],
      leaseTime: 600,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      poolWarnPercent: 50,
      sweepIntervalMs: 50,
      log,
    });
    cleanup.push(() => server.stop());
    const transport = await DstmTransport.open({ server: "::1", port: server.listening.port });
    cleanup.push(() => transport.close());
    for (let i = 1; i <= 3; i++) await new DstmClient(transport, `2001:db8:2::${i}`).discover();
    await waitUntil(() => lines.some((l) => l.includes("WARN pool-filling")), {
      what: "pool-filling",
    });
    expect(lines.find((l) => l.includes("pool-filling"))).toContain("used=3 size=6");
    for (let i = 4; i <= 6; i++) await new DstmClient(transport, `2001:db8:2::${i}`).discover();
    await waitUntil(() => lines.some((l) => l.includes("WARN pool-exhausted")), {
      what: "pool-exhausted",
    });
    expect(lines.filter((l) => l.includes("pool-filling")).length).toBe(1);
  });
});

describe("TEP links at the server", () => {
  // A TEP that first synced more than 3 periods after the start was said `tep-disconnected`
  // ("has not synced since the server started") then `WARN tep-connected down-s=…`, while
  // docs/metrics.md says tep-disconnected is for a TEP that had synced and a first sync is info.
  test("a configured TEP that syncs late (tep-not-synced, then an info tep-connected), stops syncing, and comes back: one warn each", () => {
    const { log, lines } = captured();
    let now = 1_000_000;
    const metrics = new Metrics();
    const sync = new TepSync(
      {
        teps: ["2001:db8::7"],
        log,
        metrics,
        now: () => now,
        send: () => true,
      },
      [],
    );
    cleanup.push(() => sync.close());
    const said = (event: string) => {
      log.flush();
      return lines.filter((l) => l.includes(` ${event} `));
    };
    const report = () => {
      const message: DstmMessage = {
        type: MessageType.SYNC,
        xid: 1,
        tep6: "2001:db8::7",
        syncCount: 0,
        syncDigest: 0,
      };
      sync.onTepMessage(encodeMessage(message), message, "2001:db8::7", 4608);
    };
    now += 2 * SYNC_INTERVAL_MS;
    sync.watch();
    expect(said("tep-not-synced")).toEqual([]);
    now += SYNC_INTERVAL_MS;
    sync.watch();
    now += SYNC_INTERVAL_MS;
    sync.watch(); // said once, not once per period
    expect(said("tep-not-synced")).toEqual([
      '1970-01-01T00:00:00.000Z WARN tep-not-synced tep6=2001:db8::7 silent-s=6 bindings=0 detail="has not synced since the server started: is it running, with this --server?"',
    ]);
    expect(said("tep-disconnected")).toEqual([]);
    now += 2000;
    report();
    // Its first SYNC: info, as for a TEP on time (with how long after the start).
    expect(said("tep-connected")).toEqual([
      "1970-01-01T00:00:00.000Z tep-connected tep6=2001:db8::7 from=2001:db8::7 bindings=0 since-start-s=10",
    ]);
    for (let i = 0; i < 5; i++) {
      now += SYNC_INTERVAL_MS;
      report();
      sync.watch();
    }
    expect(said("tep-disconnected")).toEqual([]);
    expect(metrics.get("dstm_tep_disconnects_total", { tep: "2001:db8::7" })).toBe(0);
    now += 3 * SYNC_INTERVAL_MS;
    sync.watch();
    sync.watch();
    expect(said("tep-disconnected").length).toBe(1);
    expect(said("tep-disconnected")[0]).toContain(
      "WARN tep-disconnected tep6=2001:db8::7 silent-s=6",
    );
    expect(metrics.get("dstm_tep_disconnects_total", { tep: "2001:db8::7" })).toBe(1);
    now += 1000;
    report();
    expect(said("tep-connected")[1]).toContain("WARN tep-connected tep6=2001:db8::7");
    expect(said("tep-connected")[1]).toContain("down-s=7");
  });
});

describe("causeOf", () => {
  test("names the code and the chain of causes under an error, nothing when there is none", () => {
    const io = Object.assign(new Error("disk I/O error"), { code: "SQLITE_IOERR" });
    const error = new Error("commit failed", { cause: io });
    expect(causeOf(error)).toBe("disk I/O error <- SQLITE_IOERR");
    expect(causeOf(new Error("plain"))).toBeUndefined();
    expect(causeOf(Object.assign(new Error("x"), { code: "ENOSPC" }))).toBe("ENOSPC");
  });
});

test("log timestamps follow the clock: lines of one millisecond share one, the next millisecond gets its own", () => {
  const lines: string[] = [];
  let t = Date.UTC(2026, 10, 30, 8, 0, 0, 123);
  const log = new Logger({
    sink: (text) => lines.push(...text.trimEnd().split("\n")),
    now: () => t,
  });
  log.info("a");
  log.info("b");
  t += 1;
  log.info("c");
  t += 60_000;
  log.warn("d");
  log.flush();
  expect(lines).toEqual([
    "2026-11-30T08:00:00.123Z a",
    "2026-11-30T08:00:00.123Z b",
    "2026-11-30T08:00:00.124Z c",
    "2026-11-30T08:01:00.124Z WARN d",
  ]);
});
