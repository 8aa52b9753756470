/**
 * lib/tep/snapshot_flaps.ts: SNAPSHOTs from the TEP's servers in turn (servers with separate
 * lease databases) are reported once at warn; one server's catch-up SNAPSHOTs, or turns
 * slower than the window, are not.
 */
import { expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { FLAP_LIMIT, FLAP_WINDOW_PERIODS, SnapshotFlapWatch } from "../lib/tep/snapshot_flaps.ts";

const PERIOD = 2000;
const A = "2001:db8:1::53";
const B = "2001:db8:1::54";

function watch() {
  const lines: string[] = [];
  const log = new Logger({ sink: (line) => lines.push(line), level: "debug" });
  const metrics = new Metrics();
  const clock = { t: 1_000_000 };
  const w = new SnapshotFlapWatch({ intervalMs: PERIOD, log, metrics, now: () => clock.t });
  const text = () => {
    log.flush();
    return lines.join("\n");
  };
  return { w, metrics, clock, text };
}

test("servers replacing each other's bindings in turn: one warn naming both, the gauge at 1, every flap counted", () => {
  const { w, metrics, clock, text } = watch();
  const order = [A, B, A, B, A, B, A];
  for (const server of order) {
    w.applied(server);
    clock.t += PERIOD;
  }
  expect(w.disagree).toBe(true);
  expect(metrics.get("dstm_tep_snapshot_flaps_total", {})).toBe(order.length - 1);
  const warns = text()
    .split("\n")
    .filter((l) => l.includes("servers-disagree"));
  expect(warns).toHaveLength(1);
  expect(warns[0]).toContain(`servers=${A},${B}`);
  expect(warns[0]).toMatch(/WARN/);
});

test("the warn comes at the FLAP_LIMIT-th flap, not before", () => {
  const { w, clock } = watch();
  w.applied(A);
  for (let i = 1; i < FLAP_LIMIT; i++) {
    clock.t += PERIOD;
    w.applied(i % 2 ? B : A);
    expect(w.disagree).toBe(false);
  }
  clock.t += PERIOD;
  w.applied(FLAP_LIMIT % 2 ? B : A);
  expect(w.disagree).toBe(true);
});

test("one server's SNAPSHOTs (a restarted TEP, lost UNBINDs) are no flap", () => {
  const { w, metrics, clock, text } = watch();
  for (let i = 0; i < 10; i++) {
    w.applied(A);
    clock.t += PERIOD;
  }
  expect(w.disagree).toBe(false);
  expect(metrics.get("dstm_tep_snapshot_flaps_total", {}) ?? 0).toBe(0);
  expect(text()).not.toContain("servers-disagree");
});

test("servers taking turns more slowly than the window: no flap", () => {
  const { w, clock, text } = watch();
  for (const server of [A, B, A, B, A, B]) {
    w.applied(server);
    clock.t += FLAP_WINDOW_PERIODS * PERIOD + 1;
  }
  expect(w.disagree).toBe(false);
  expect(text()).not.toContain("servers-disagree");
});

test("a quiet window after a run ends it: servers-agree at info, the gauge back to 0; a new run warns again", async () => {
  const { w, metrics, clock, text } = watch();
  for (const server of [A, B, A, B]) {
    w.applied(server);
    clock.t += PERIOD;
  }
  expect(w.disagree).toBe(true);
  expect(await metrics.text()).toMatch(/^dstm_tep_servers_disagree 1$/m);
  w.tick();
  expect(w.disagree).toBe(true); // still within the window
  clock.t += FLAP_WINDOW_PERIODS * PERIOD;
  w.tick();
  expect(w.disagree).toBe(false);
  expect(await metrics.text()).toMatch(/^dstm_tep_servers_disagree 0$/m);
  expect(text()).toMatch(/Z servers-agree /);
  for (const server of [B, A, B, A]) {
    w.applied(server);
    clock.t += PERIOD;
  }
  expect(
    text()
      .split("\n")
      .filter((l) => l.includes("servers-disagree")),
  ).toHaveLength(2);
});
