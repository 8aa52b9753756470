/**
 * Byte counters are exported as bytes metrics, never as events: `client-kernel-encap-bytes`
 * (the IPv4 bytes a `--kernel-encap` client handed to the kernel) was a sample of
 * `dstm_client_events_total{event="kernel-encap-bytes"}`, a count of events, so a dashboard
 * summing events added bytes to packets. Checked on the exposition text /metrics serves, made
 * by the client's own metric declarations (lib/client/node_metrics.ts) over real counters.
 */
import { describe, expect, test } from "bun:test";
import { declareNodeMetrics } from "../lib/client/node_metrics.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { counterFamilies, counterSeries } from "../lib/tunnel/counter_metrics.ts";
import { Counter, Counters } from "../lib/tunnel/counters.ts";

async function exposition(set: (slice: Float64Array) => void): Promise<string> {
  const counters = Counters.create({ slices: 1 });
  set(counters.slice(0));
  const metrics = new Metrics();
  declareNodeMetrics(metrics, counters, () => undefined);
  return metrics.text();
}

describe("byte counters in the metrics exposition", () => {
  test("client-kernel-encap-bytes is dstm_client_kernel_encap_bytes_total, a counter, not an event", async () => {
    const text = await exposition((s) => {
      s[Counter["client-kernel-encap-bytes"]] = 123_456;
      s[Counter["client-kernel-encap"]] = 3;
    });
    expect(text).toContain("# TYPE dstm_client_kernel_encap_bytes_total counter");
    expect(text).toMatch(/^# HELP dstm_client_kernel_encap_bytes_total IPv4 bytes .*kernel/m);
    expect(text).toMatch(/^dstm_client_kernel_encap_bytes_total 123456$/m);
    expect(text).not.toContain("kernel-encap-bytes");
    // The packet count stays an event: it counts packets.
    expect(text).toMatch(/^dstm_client_events_total\{event="kernel-encap"\} 3$/m);
  });

  test("no *-bytes counter of either role is exported under an events or packets metric", () => {
    for (const role of ["client", "tep"] as const) {
      const bytes = counterSeries(role).filter((s) => s.counter.endsWith("-bytes"));
      expect(bytes.length).toBeGreaterThan(0);
      for (const s of bytes) expect(s.metric).toEndWith("_bytes_total");
      const families = new Set(counterFamilies(role).map((f) => f.name));
      for (const s of counterSeries(role)) expect(families.has(s.metric)).toBe(true);
    }
  });
});
