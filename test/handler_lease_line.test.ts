/**
 * The native handler writes its lease lines (allocate, renew, release; `sticky=true` for a
 * host given its previous slot again) straight as text (lib/server/handler.ts #leaseText,
 * Logger.logText): every line must have exactly the bytes the general path writes,
 * `log.info(event, {ipv4, ports, host6, tep6, pool, expires, sticky})` — whole and shared
 * addresses, a pool name that must be quoted, a second pool after the first (the cached TEP
 * and pool text changes), and the journal's priority prefix. The JSON format keeps the general
 * path. Logger.logText itself: the same bytes as `log` at every level, nothing below the level.
 */
import { describe, expect, test } from "bun:test";
import type { PoolConfig } from "../lib/alloc/engine.ts";
import { IsoTime, Logger, type LogLevel } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { formatPortSet } from "../lib/net/portset.ts";
import { DstmHandler } from "../lib/server/handler.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";
import { startEngine } from "./helpers/engine.ts";

const POOLS: Record<string, PoolConfig[]> = {
  "whole addresses, a pool name with a space and a quote": [
    {
      name: 'lab "a" pool',
      prefixes: ["198.51.100.0/28"],
      tep6: "2001:db8:1::1",
      tep4: parseIPv4("192.0.2.1")!,
    },
  ],
  "shared addresses (ports), two pools of two TEPs": [
    { name: "first", prefixes: ["203.0.113.0/31"], tep6: "2001:db8:2::1", share: 4 },
    { name: "second", prefixes: ["203.0.113.8/30"], tep6: "2001:db8:3::1", share: 16 },
  ],
};

/** A logger writing into `lines`, on the tests' clock. */
function logger(
  lines: string[],
  clock: { now: number },
  format: "text" | "json" = "text",
  priorityPrefix = false,
) {
  return new Logger({ sink: (t) => lines.push(t), now: () => clock.now, format, priorityPrefix });
}

describe("lease lines written as text have the general path's bytes", () => {
  for (const [name, pools] of Object.entries(POOLS)) {
    for (const [format, priorityPrefix] of [
      ["text", false],
      ["text", true],
      ["json", false],
    ] as const) {
      test(`${name}, ${format}${priorityPrefix ? " with priority prefix" : ""}`, async () => {
        const { engine, clock } = await startEngine(pools.map((p) => ({ ...p })));
        const got: string[] = [];
        const want: string[] = [];
        const log = logger(got, clock, format, priorityPrefix);
        const reference = logger(want, clock, format, priorityPrefix);
        const expires = new IsoTime();
        const handler = new DstmHandler({ engine, log, metrics: new Metrics() });
        let xid = 0x6b000000;
        /** The line `log.info` writes for `lease` (the handler's #logLease fields). */
        const expect_ = (event: string, lease: Lease, sticky: boolean) =>
          reference.info(event, {
            ipv4: formatIPv4(lease.ipv4),
            ports: lease.portSet.psidLength === 0 ? undefined : formatPortSet(lease.portSet),
            host6: lease.host6,
            tep6: lease.tep6,
            pool: lease.pool,
            expires: event === "release" ? undefined : expires.format(lease.expiresAt),
            sticky: sticky ? true : undefined,
          });
        const exchange = async (request: DstmMessage): Promise<DstmMessage> => {
          const answer = await handler.handle(encodeMessage(request), request.host6!, 4607);
          const decoded = answer ? decodeMessage(answer) : undefined;
          if (!decoded?.ok || decoded.value.type === MessageType.NAK) throw new Error("no ACK");
          return decoded.value;
        };
        // More hosts than the first pool has slots: the later ones get the second pool's.
        for (let h = 1; h <= 10; h++) {
          const host6 = `2001:db8:4::${h.toString(16)}`;
          clock.now += 1_234;
          const offer = await exchange({ type: MessageType.DISCOVER, xid: ++xid, host6 });
          expect_("allocate", engine.lookupHost(host6)!, false);
          clock.now += 1;
          await exchange({ type: MessageType.REQUEST, xid: ++xid, host6, host4: offer.host4 });
          expect_("renew", engine.lookupHost(host6)!, false);
          if (h % 3 === 0) {
            const held = engine.lookupHost(host6)!;
            await exchange({ type: MessageType.RELEASE, xid: ++xid, host6, host4: offer.host4 });
            expect_("release", held, false);
            clock.now += 7;
            // Its previous slot again: `sticky=true`.
            await exchange({ type: MessageType.DISCOVER, xid: ++xid, host6 });
            expect_("allocate", engine.lookupHost(host6)!, true);
          }
        }
        log.flush();
        reference.flush();
        expect(got.join("").length).toBeGreaterThan(0);
        expect(got.join("")).toBe(want.join(""));
        const text = got.join("");
        if (format === "json") {
          expect(text).toContain('"sticky":true');
        } else {
          expect(text).toContain("sticky=true");
          if (name.startsWith("whole")) expect(text).toContain('pool="lab \\"a\\" pool"');
          else expect(text).toContain("pool=second");
          if (name.startsWith("shared")) expect(text).toContain("ports=6/4/0");
          if (priorityPrefix) expect(text.startsWith("<6>")).toBe(true);
        }
        await engine.close();
      });
    }
  }
});

describe("Logger.logText", () => {
  for (const priorityPrefix of [false, true]) {
    test(`the bytes of log() at each level${priorityPrefix ? ", priority prefix" : ""}`, () => {
      const clock = { now: Date.UTC(2026, 11, 1, 3, 0, 0, 7) };
      const got: string[] = [];
      const want: string[] = [];
      const a = logger(got, clock, "text", priorityPrefix);
      const b = logger(want, clock, "text", priorityPrefix);
      a.setLevel("debug");
      b.setLevel("debug");
      for (const level of ["debug", "info", "warn", "error"] as LogLevel[]) {
        a.logText(level, "renew", ' ipv4=198.51.100.1 pool="a b"');
        b.log(level, "renew", { ipv4: "198.51.100.1", pool: "a b" });
        clock.now += 1001;
      }
      a.flush();
      b.flush();
      expect(got.join("")).toBe(want.join(""));
      expect(want.join("").split("\n").length).toBe(5);
    });
  }

  test("nothing below the level; refused for the JSON format", () => {
    const lines: string[] = [];
    const clock = { now: 0 };
    const log = logger(lines, clock);
    log.setLevel("warn");
    log.logText("info", "allocate", " ipv4=198.51.100.1");
    log.flush();
    expect(lines).toEqual([]);
    expect(() => logger([], clock, "json").logText("info", "allocate", "")).toThrow(/not text/);
  });
});
