/**
 * The client service's Prometheus metrics (docs/metrics.md): its packet counters (the
 * `client` families of lib/tunnel/counter_metrics.ts, e.g. drops by reason) and its lease:
 * `dstm_client_lease_bound` (1 while a lease is held, else 0) and
 * `dstm_client_lease_remaining_seconds` (s until the lease held expires, 0 without one),
 * read when scraped.
 *
 * @module
 */
import type { Metrics } from "../control/metrics.ts";
import { counterFamilies, counterSeries } from "../tunnel/counter_metrics.ts";
import type { Counters } from "../tunnel/counters.ts";
import type { ClientLease } from "./protocol.ts";

/** Declares the client's families on `metrics`, filled from `counters` and `lease()` on collect. */
export function declareNodeMetrics(
  metrics: Metrics,
  counters: Counters,
  lease: () => ClientLease | undefined,
): void {
  const m = metrics;
  for (const family of counterFamilies("client")) m.counter(family.name, family.help);
  m.gauge("dstm_client_lease_bound", "1 while the client holds a lease, else 0");
  m.gauge(
    "dstm_client_lease_remaining_seconds",
    "Seconds until the lease held expires (0 without a lease)",
  );
  m.onCollect(() => {
    const snap = counters.snapshot();
    for (const s of counterSeries("client")) m.set(s.metric, s.labels, snap[s.counter]);
    const held = lease();
    m.set("dstm_client_lease_bound", {}, held ? 1 : 0);
    m.set(
      "dstm_client_lease_remaining_seconds",
      {},
      held ? Math.max(0, Math.round((held.expiresAt - Date.now()) / 1000)) : 0,
    );
  });
}
