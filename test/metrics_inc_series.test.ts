// Metrics.incSeries (lib/control/metrics.ts) and the 4o6 counters kept per (type, result)
// (countDhcp4o6, lib/server/dhcp4o6_query.ts): a kept series counts in get(), snapshot() and
// the exposition, and each Metrics (each daemon) keeps its own.
import { describe, expect, test } from "bun:test";
import { Metrics } from "../lib/control/metrics.ts";
import { countDhcp4o6 } from "../lib/server/dhcp4o6_query.ts";

describe("Metrics.incSeries", () => {
  test("returns the series it counted; adding to it is counting", async () => {
    const m = new Metrics();
    m.counter("dstm_test_total", "test", ["result"]);
    const series = m.incSeries("dstm_test_total", { result: "ack" });
    expect(m.get("dstm_test_total", { result: "ack" })).toBe(1);
    series.value += 2;
    expect(m.get("dstm_test_total", { result: "ack" })).toBe(3);
    expect(m.incSeries("dstm_test_total", { result: "ack" })).toBe(series);
    expect(m.get("dstm_test_total", { result: "ack" })).toBe(4);
    expect(await m.text()).toContain('dstm_test_total{result="ack"} 4');
  });

  test("an undeclared family throws, as inc does", () => {
    expect(() => new Metrics().incSeries("dstm_nope_total", {})).toThrow("not declared");
  });
});

describe("countDhcp4o6", () => {
  test("counts each (type, result) of each Metrics apart", () => {
    const a = new Metrics();
    const b = new Metrics();
    for (const m of [a, b]) m.counter("dstm_dhcp4o6_messages_total", "4o6", ["type", "result"]);
    for (let i = 0; i < 5; i++) countDhcp4o6(a, "request", "ack");
    countDhcp4o6(a, "request", "nak");
    countDhcp4o6(a, "discover", "offer");
    for (let i = 0; i < 3; i++) countDhcp4o6(b, "request", "ack");
    const get = (m: Metrics, type: string, result: string) =>
      m.get("dstm_dhcp4o6_messages_total", { type, result });
    expect(get(a, "request", "ack")).toBe(5);
    expect(get(a, "request", "nak")).toBe(1);
    expect(get(a, "discover", "offer")).toBe(1);
    expect(get(a, "discover", "ack")).toBe(0);
    expect(get(b, "request", "ack")).toBe(3);
    expect(get(b, "request", "nak")).toBe(0);
  });
});
