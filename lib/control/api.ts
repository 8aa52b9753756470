/**
 * The server's local control API, served on a Unix socket (`dstm lease ls` talks to it).
 *
 * GET /v1/ping    → {"ok":true}
 * GET /v1/leases  → {"leases":[LeaseJson…]}   (?all=1 includes released/expired history)
 * GET /v1/stats   → {"pools":[…],"counters":[…]}
 * GET /metrics    → Prometheus text
 * POST /v1/reload → {"ok":bool,"message":"…","changed":[…]}  (200 applied, 409 refused)
 *
 * @module
 */
import type { Lease } from "../lease/lease.ts";
import { leaseToJson } from "./lease_view.ts";
import type { Metrics } from "./metrics.ts";

export interface ControlSource {
  leases(all: boolean): readonly Lease[];
  pools(): readonly { pool: string; size: number; active: number; free: number }[];
  readonly metrics: Metrics;
  /** Reads the configuration again and applies it (SIGHUP does the same); absent: 404. */
  reload?(): Promise<{ ok: boolean; message: string; changed: readonly string[] }>;
}

/** Builds the fetch handler of the control API. */
export function controlHandler(
  source: ControlSource,
): (request: Request) => Response | Promise<Response> {
  return (request) => {
    const url = new URL(request.url);
    if (request.method === "POST" && url.pathname === "/v1/reload" && source.reload)
      return source.reload().then((result) => json(result, result.ok ? 200 : 409));
    if (request.method !== "GET") return json({ error: "method not allowed" }, 405);
    switch (url.pathname) {
      case "/v1/ping":
        return json({ ok: true });
      case "/v1/leases": {
        const all = url.searchParams.get("all") === "1";
        return json({ leases: source.leases(all).map(leaseToJson) });
      }
      case "/v1/stats":
        return json({ pools: source.pools(), counters: source.metrics.snapshot() });
      case "/metrics":
        return metricsResponse(source.metrics);
      default:
        return json({ error: `no such endpoint ${url.pathname}` }, 404);
    }
  };
}

/** The Prometheus exposition as an HTTP response. */
export function metricsResponse(metrics: Metrics): Response {
  return new Response(metrics.expose(), {
    headers: { "content-type": "text/plain; version=0.0.4" },
  });
}

function json(body: unknown, status = 200): Response {
  return new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: { "content-type": "application/json" },
  });
}
