/**
 * The data plane's refusals are logged, rate-limited (lib/control/drop_summary.ts): a line per
 * interval at most, with the drops of each reason since the last one. Unit tests on a fake
 * counter set, then a real `dstm tep` in namespaces refusing a kernel 4over6 host's packets
 * whose inner source has no binding: its log says so within one interval.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DropSummary } from "../lib/control/drop_summary.ts";
import { Logger } from "../lib/control/log.ts";
import { vethPair } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { processScope } from "./helpers/process_scope.ts";
import { kernelHostBehindTep } from "./helpers/seg6_host.ts";
import { tepArgv, tepCounters } from "./helpers/tep_argv.ts";
import { waitUntil } from "./helpers/wait.ts";

function summary() {
  const lines: string[] = [];
  const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
  const counters: Record<string, number> = {
    "decap-forward": 0,
    "decap-drop-no-binding": 0,
    "decap-drop-spoofed-source": 0,
  };
  const drops = new DropSummary({ counters: () => ({ ...counters }), log, intervalMs: 10_000 });
  const logged = () => {
    log.flush();
    return lines.splice(0);
  };
  return { counters, drops, logged };
}

describe("DropSummary", () => {
  test("one warn line per check with the drops of each reason since the last; forwards are not refusals", () => {
    const { counters, drops, logged } = summary();
    counters["decap-forward"] = 1000;
    expect(drops.check()).toEqual({});
    expect(logged()).toEqual([]);
    counters["decap-drop-no-binding"] = 7;
    counters["decap-drop-spoofed-source"] = 2;
    expect(drops.check()).toEqual({ "decap-drop-no-binding": 7, "decap-drop-spoofed-source": 2 });
    const [line, ...rest] = logged();
    expect(rest).toEqual([]);
    expect(line).toMatch(/ WARN data-drops interval-s=10 /);
    expect(line).toContain("decap-drop-no-binding=7");
    expect(line).toContain("decap-drop-spoofed-source=2");
    // Only what is new since the last check.
    counters["decap-drop-no-binding"] = 10;
    expect(drops.check()).toEqual({ "decap-drop-no-binding": 3 });
    expect(logged()[0]).not.toContain("spoofed");
    expect(drops.check()).toEqual({});
    expect(logged()).toEqual([]);
  });
});

const skip = netnsSkipReason({ tun: true });
announceSkip("drop_summary (dstm tep)", skip);
const scope = processScope("dstm-drops-", "dstmdl-");

describe.skipIf(skip !== null)("a real dstm tep", () => {
  test("refusing a host's packets for lack of a binding logs data-drops within an interval", async () => {
    const host = scope.ns();
    const tep = scope.ns();
    vethPair(host, "h0", tep, "t0");
    host.addAddress("h0", "2001:db8:1::11/64");
    tep.addAddress("t0", "2001:db8:1::1/64");
    // The host sends from 198.51.100.10; the TEP binds only .11 to it: every packet has no binding.
    kernelHostBehindTep(host, tep, "198.51.100.10");
    const socket = join(scope.dir, "tep.sock");
    const proc = scope.spawnIn(
      tep,
      tepArgv({ staticBinding: { binding: "198.51.100.11=2001:db8:1::10", stats: socket } }),
    );
    await proc.waitFor(/tep-start/, 20_000);
    // The first packets may wait for duplicate address detection and neighbour discovery on
    // the new link: send until the TEP has refused some (bounded), never a fixed sleep.
    await waitUntil(
      () => {
        host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]);
        return (tepCounters(tep, socket)["decap-drop-no-binding"] ?? 0) > 0;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: "the TEP refusing the host's packets" },
    );
    // The summary runs every 10 s: its line comes within one interval (and a margin).
    const line = await proc.waitFor(/ WARN data-drops .*decap-drop-no-binding=\d+/, 15_000);
    expect(line).toMatch(/interval-s=10/);
  }, 60_000);
});
