/**
 * The server's local control API, served on a Unix socket (`dstm lease …` talks to it).
 * Whoever may connect to the socket (mode 0660, the daemon's user and group) may read and
 * change leases: the file mode is the privilege (docs/security.md).
 *
 * GET /v1/ping    → {"ok":true}
 * GET /v1/stats   → {"pools":[…],"counters":[…]}
 * GET /metrics    → Prometheus text
 * POST /v1/reload → {"ok":bool,"message":"…","changed":[…]}  (200 applied, 409 refused)
 *
 * Leases (./lease_admin_api.ts; errors are `{"error":"one line"}` with 400 for bad input, 404
 * for nothing there, 409 for a refusal, 503 when the store failed):
 *
 * GET /v1/leases?address=&prefix=&host=&state=&pool=&limit=&after=
 *     → {"leases":[LeaseJson…],"next":"IPV4:PSID"|null}: one page in (IPv4, PSID) order.
 *     `state` active (default), released, expired or all (`all=1` too); `prefix` an IPv4
 *     prefix of the lease address or an IPv6 prefix of the host; `pool` one of the pool's
 *     prefixes (CIDR; a pool is named by its first, the name its leases are stored under);
 *     `limit` 1–10000 (default 1000); `after` the `next` of the previous page.
 * GET /v1/leases/export?format=ndjson|csv (same filters, every state by default) → a stream
 * GET /v1/leases/{ipv4}[?psid=]    → {"leases":[…],"reservations":[…]}
 * DELETE /v1/leases/{ipv4}[?psid=] → {"ended":[LeaseJson]}: the lease ends now (durable,
 *     TEP unbound; the host's next renewal is refused)
 * POST /v1/leases {"host6","ipv4","psid"?,"leaseTime"?,"reserve"?} → 201 {"lease"} or {"reservation"}
 * GET /v1/reservations → {"reservations":[…]};  DELETE /v1/reservations/{host6}
 * POST /v1/pools/{cidr}/wipe (one of the pool's prefixes) → {"ended":N}
 *
 * @module
 */
import { type LeaseAdminSource, leaseRoute } from "./lease_admin_api.ts";
import type { Metrics } from "./metrics.ts";

export interface ControlSource {
  /** The lease routes' operations (lib/server/lease_admin.ts). */
  admin: LeaseAdminSource;
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
    const leases = leaseRoute(source.admin, request, url);
    if (leases) return leases;
    if (request.method !== "GET") return json({ error: "method not allowed" }, 405);
    switch (url.pathname) {
      case "/v1/ping":
        return json({ ok: true });
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
