/**
 * The client service's Prometheus metrics (docs/metrics.md): its packet counters (the
 * `client` families of lib/tunnel/counter_metrics.ts, e.g. drops by reason) and its lease:
 * `dstm_client_lease_bound` (1 while a lease is held, else 0) and
 * `dstm_client_lease_remaining_seconds` (s until the lease held expires, 0 without one),
 * read when scraped; and while acquiring: `dstm_client_acquire_failures_total{reason}` (failed
 * tries by reason, ./acquire_state.ts) and `dstm_client_acquire_not_authorised` (1 while the
 * last tries were refused NOT_AUTHORISED: a missing or wrong `--key`, or a host the server
 * does not allow; else 0); `dstm_client_server_icmp_unreachable_total` (ICMPv6 destination
 * unreachable errors for messages sent to the server: ./exchange_warnings.ts).
 *
 * @module
 */
import type { Metrics } from "../control/metrics.ts";
import { counterFamilies, counterSeries } from "../tunnel/counter_metrics.ts";
import type { Counters } from "../tunnel/counters.ts";
import { ACQUIRE_FAILURES, type AcquireState } from "./acquire_state.ts";
import type { ClientLease } from "./protocol.ts";

/** Declares the client's families on `metrics`, filled from `counters` and `lease()` on collect. */
export function declareNodeMetrics(
  metrics: Metrics,
  counters: Counters,
  lease: () => ClientLease | undefined,
  acquire?: AcquireState,
  icmpUnreachable?: () => number,
): void {
  const m = metrics;
  for (const family of counterFamilies("client")) m.counter(family.name, family.help);
  m.gauge("dstm_client_lease_bound", "1 while the client holds a lease, else 0");
  m.gauge(
    "dstm_client_lease_remaining_seconds",
    "Seconds until the lease held expires (0 without a lease)",
  );
  m.counter(
    "dstm_client_acquire_failures_total",
    "Tries to obtain a lease that failed, by reason (not-authorised, refused, dti-failed, server-unreachable)",
    ["reason"],
  );
  m.gauge(
    "dstm_client_acquire_not_authorised",
    "1 while the last tries to obtain a lease were refused NOT_AUTHORISED (a missing or wrong --key, or a host the server does not allow), else 0",
  );
  m.counter(
    "dstm_client_server_icmp_unreachable_total",
    "ICMPv6 destination unreachable errors for messages sent to the DSTM server (most often port unreachable: nothing listens on its port there, e.g. --server names the TEP)",
  );
  m.onCollect(() => {
    m.set("dstm_client_server_icmp_unreachable_total", {}, icmpUnreachable?.() ?? 0);
    for (const reason of ACQUIRE_FAILURES)
      m.set("dstm_client_acquire_failures_total", { reason }, acquire?.counts[reason] ?? 0);
    m.set("dstm_client_acquire_not_authorised", {}, acquire?.notAuthorised ? 1 : 0);
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
