/**
 * The metric families the server process declares at start, and the collect hook that fills
 * its gauges from the allocation engine when /metrics is scraped:
 *
 * - `dstm_pool_addresses{pool,state}`: leasable units of each pool (addresses, or address ×
 *   port set when shared; RFC 7597 §5.1), `state` active, free, reserved (kept for a
 *   reserved host) or blocked (an address with an active lease of another layout); the four
 *   add up to the pool's size;
 * - `dstm_leases_active`: active leases, all of them (as `dstm lease ls` lists them), those the
 *   pools no longer serve included;
 * - `dstm_leases_orphaned{kind}`: of those, the ones the pools no longer serve (./orphans.ts):
 *   `outside` (in no pool), `other-layout` (a port set the pool's share no longer gives);
 * - `dstm_lease_write_conflicts`: lease writes another server sharing the database won;
 * - `dstm_lease_expiries_lapsed`: expiries another server sharing the database did first (this
 *   server's write of them skipped, nothing else in its batch failed);
 * - `dstm_leases_expired_total`: leases the expiry sweeper reclaimed;
 * - `dstm_reloads_total{result}`: configuration reloads, applied or refused.
 *
 * Other families are declared by the part that counts them (handler, admission, TEP sync…).
 *
 * @module
 */
import type { AllocationEngine } from "../alloc/engine.ts";
import type { Metrics } from "../control/metrics.ts";
import { countOrphans, orphanTotal } from "./orphans.ts";

/** Declares the server's own families on `metrics` and gauges read from `engine` on collect. */
export function declareServerMetrics(metrics: Metrics, engine: AllocationEngine): void {
  metrics.gauge(
    "dstm_pool_addresses",
    "Leasable units of each pool (addresses, or address × port set when shared), by state",
    ["pool", "state"],
  );
  metrics.gauge("dstm_leases_active", "Active leases (orphaned ones included)");
  metrics.gauge(
    "dstm_leases_orphaned",
    "Active leases the pools no longer serve (kept until they end), by kind: outside (in no pool), other-layout (a port set the pool's share no longer gives)",
    ["kind"],
  );
  metrics.gauge(
    "dstm_lease_write_conflicts",
    "Lease writes another server sharing the database won (each decided again)",
  );
  metrics.gauge(
    "dstm_lease_expiries_lapsed",
    "Expiries another server sharing the database did first (this server's write of them skipped)",
  );
  metrics.counter("dstm_leases_expired_total", "Leases reclaimed by the expiry sweeper");
  metrics.onCollect(() => {
    let active = 0;
    for (const pool of engine.stats()) {
      metrics.set("dstm_pool_addresses", { pool: pool.pool, state: "active" }, pool.active);
      metrics.set("dstm_pool_addresses", { pool: pool.pool, state: "free" }, pool.free);
      metrics.set("dstm_pool_addresses", { pool: pool.pool, state: "reserved" }, pool.reserved);
      metrics.set("dstm_pool_addresses", { pool: pool.pool, state: "blocked" }, pool.blocked);
      active += pool.active;
    }
    const orphans = countOrphans(engine);
    metrics.set("dstm_leases_orphaned", { kind: "outside" }, orphans.outside);
    metrics.set("dstm_leases_orphaned", { kind: "other-layout" }, orphans.otherLayout);
    metrics.set("dstm_leases_active", {}, active + orphanTotal(orphans));
    metrics.set("dstm_lease_write_conflicts", {}, engine.conflicts());
    metrics.set("dstm_lease_expiries_lapsed", {}, engine.expiriesLapsed());
  });
  metrics.counter("dstm_reloads_total", "Configuration reloads, by result (applied, refused)", [
    "result",
  ]);
}
