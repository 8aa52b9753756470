/**
 * The lease routes of the control API (./api.ts), as ISC Kea's lease commands give them:
 * list with filters and a cursor, show, delete, add (static lease or reservation), wipe a
 * pool, and a streamed export. Parsing and validation live here; the operations are a
 * {@link LeaseAdminSource} (lib/server/lease_admin.ts). Bad input gets 400 with a one-line
 * `error`, counted and logged by the source (`refused`); nothing here throws on input.
 *
 * The socket's file mode is the privilege: whoever may connect may change leases
 * (docs/security.md).
 *
 * @module
 */
import type { Lease, Reservation } from "../lease/lease.ts";
import { canonicalIPv6, formatIPv4, parseIPv6 } from "../net/addr.ts";
import { exportLeases } from "./lease_export.ts";
import {
  BadRequest,
  decodeSegment,
  optionalPsid,
  parseAddress,
  parseLeaseFilter,
  parseLimit,
} from "./lease_params.ts";
import {
  formatCursor,
  type LeaseFilter,
  leasePage,
  matchesFilter,
  parseCursor,
} from "./lease_query.ts";
import { leaseToJson } from "./lease_view.ts";

export { EXPORT_CHUNK } from "./lease_export.ts";
export { BadRequest, PAGE_DEFAULT, PAGE_MAX, parseLeaseFilter } from "./lease_params.ts";

/** Longest lease an administrator may add (s): ten years. */
export const MAX_ADMIN_LEASE_SECONDS = 10 * 365 * 86_400;

/** What the operations answer: an HTTP status and a JSON body. */
export interface AdminReply {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** `POST /v1/leases`. */
export interface AddLeaseRequest {
  readonly host6: string;
  readonly ipv4: number;
  readonly psid: number;
  /** Static lease: its lease time (s); absent: the server's lease time. */
  readonly leaseTime?: number;
  /** A reservation instead of a lease: the host gets the slot whenever it asks. */
  readonly reserve: boolean;
}

/** What the lease routes need from the server. */
export interface LeaseAdminSource {
  /** Every lease row, live, in any order. */
  rows(): Iterable<Lease>;
  /**
   * The rows whose key (`leaseKey`) is greater than `after`, live, in ascending key order;
   * when given, a `GET /v1/leases` page reads only the rows it lists (absent: a pass over
   * {@link rows} a page).
   */
  rowsAfter?(after: number): Iterable<Lease>;
  /** Whether `lease` is an OFFER held in memory only (never stored); absent: none is. */
  isOffer?(lease: Lease): boolean;
  reservations(): readonly Reservation[];
  /** The configured pools: name and prefixes (CIDR text). */
  pools(): readonly { readonly name: string; readonly prefixes: readonly string[] }[];
  /** Hosts per address of the pool holding `ipv4` (0: in no pool). */
  shareOf(ipv4: number): number;
  /** Ends the active lease of (`ipv4`, `psid`) now. */
  end(ipv4: number, psid: number): Promise<AdminReply>;
  add(request: AddLeaseRequest): Promise<AdminReply>;
  unreserve(host6: string): Promise<AdminReply>;
  /** Ends every active lease of the pool named `pool`. */
  wipe(pool: string): Promise<AdminReply>;
  /** Counts and logs (warn, rate-limited) a request refused for bad input. */
  refused(action: string, reason: string, message: string): void;
}

/**
 * Answers a lease route, or returns undefined when `url` is none of them:
 *
 * - `GET /v1/leases?address=&prefix=&host=&identity=&state=&pool=&limit=&after=` → `{leases, next}`
 * - `GET /v1/leases/export?format=ndjson|csv` (+ the same filters) → a stream
 * - `GET /v1/leases/{ipv4}[?psid=]` → `{leases, reservations}` (404 when neither)
 * - `DELETE /v1/leases/{ipv4}[?psid=]` → `{ended: [LeaseJson]}`
 * - `POST /v1/leases` `{"host6","ipv4","psid"?,"leaseTime"?,"reserve"?}` → 201
 * - `GET /v1/reservations`, `DELETE /v1/reservations/{host6}`
 * - `POST /v1/pools/{cidr}/wipe` (one of the pool's prefixes) → `{ended: N}`
 */
export function leaseRoute(
  admin: LeaseAdminSource,
  request: Request,
  url: URL,
): Response | Promise<Response> | undefined {
  const path = url.pathname;
  const method = request.method;
  let action = "list";
  try {
    if (path === "/v1/leases" && method === "GET") return list(admin, url.searchParams);
    if (path === "/v1/leases/export" && method === "GET") {
      action = "export";
      return exportLeases(
        admin.rows(),
        url.searchParams,
        (q) => parseFilter(admin, q),
        (l) => admin.isOffer?.(l) ?? false,
      );
    }
    if (path === "/v1/leases" && method === "POST") {
      action = "add";
      return add(admin, request);
    }
    if (path === "/v1/reservations" && method === "GET")
      return json({
        reservations: admin.reservations().map((r) => reservationJson(r, admin.shareOf(r.ipv4))),
      });
    const reservation = /^\/v1\/reservations\/([^/]+)$/.exec(path);
    if (reservation && method === "DELETE") {
      action = "unreserve";
      const host6 = canonicalIPv6(decodeSegment(reservation[1] as string));
      if (!host6) throw new BadRequest("bad-host", `"${reservation[1]}" is not an IPv6 address`);
      return admin.unreserve(host6).then(reply);
    }
    const one = /^\/v1\/leases\/([^/]+)$/.exec(path);
    if (one && (method === "GET" || method === "DELETE")) {
      action = method === "GET" ? "show" : "delete";
      const ipv4 = parseAddress(decodeSegment(one[1] as string));
      const psid = optionalPsid(url.searchParams.get("psid"));
      if (psid !== undefined) checkPsid(admin, ipv4, psid);
      return method === "GET" ? show(admin, ipv4, psid) : del(admin, ipv4, psid);
    }
    const wipe = /^\/v1\/pools\/(.+)\/wipe$/.exec(path);
    if (wipe && method === "POST") {
      action = "wipe";
      return admin.wipe(poolName(admin, decodeSegment(wipe[1] as string))).then(reply);
    }
  } catch (error) {
    if (!(error instanceof BadRequest)) throw error;
    admin.refused(action, error.reason, error.message);
    return json({ error: error.message }, 400);
  }
  return undefined;
}

function list(admin: LeaseAdminSource, params: URLSearchParams): Response {
  const filter = parseFilter(admin, params);
  const limit = parseLimit(params.get("limit"));
  const afterText = params.get("after");
  const after = afterText === null || afterText === "" ? -1 : parseCursor(afterText);
  if (after === null)
    throw new BadRequest("bad-cursor", `after: "${afterText}" is not a cursor (IPV4:PSID)`);
  const keep = (l: Lease) => matchesFilter(l, filter, parseIPv6);
  const page = admin.rowsAfter
    ? leasePage(admin.rowsAfter(after), after, limit, keep, true)
    : leasePage(admin.rows(), after, limit, keep);
  return json({
    leases: page.leases.map((l) => leaseToJson(l, admin.isOffer?.(l) ?? false)),
    next: page.next === null ? null : formatCursor(page.next),
  });
}

function show(admin: LeaseAdminSource, ipv4: number, psid: number | undefined): Response {
  const leases: Lease[] = [];
  for (const row of admin.rows()) {
    if (row.ipv4 === ipv4 && (psid === undefined || row.portSet.psid === psid)) leases.push(row);
  }
  leases.sort((a, b) => a.portSet.psid - b.portSet.psid);
  const reservations = admin
    .reservations()
    .filter((r) => r.ipv4 === ipv4 && (psid === undefined || r.psid === psid));
  if (leases.length === 0 && reservations.length === 0) {
    const where = `${formatIPv4(ipv4)}${psid === undefined ? "" : ` psid ${psid}`}`;
    return json({ error: `no lease and no reservation for ${where}` }, 404);
  }
  return json({
    leases: leases.map((l) => leaseToJson(l, admin.isOffer?.(l) ?? false)),
    reservations: reservations.map((r) => reservationJson(r, admin.shareOf(r.ipv4))),
  });
}

async function del(
  admin: LeaseAdminSource,
  ipv4: number,
  psid: number | undefined,
): Promise<Response> {
  if (psid === undefined) {
    const active: Lease[] = [];
    for (const row of admin.rows())
      if (row.ipv4 === ipv4 && row.state === "active") active.push(row);
    if (active.length > 1) {
      const message = `${formatIPv4(ipv4)} is shared by ${active.length} active leases (psid ${active.map((l) => l.portSet.psid).join(", ")}); give ?psid=`;
      admin.refused("delete", "psid-needed", message);
      return json({ error: message }, 400);
    }
    psid = active[0]?.portSet.psid ?? 0;
  }
  return reply(await admin.end(ipv4, psid));
}

async function add(admin: LeaseAdminSource, request: Request): Promise<Response> {
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    admin.refused("add", "bad-json", "the body is not JSON");
    return json({ error: 'the body is not JSON; send {"host6":"…","ipv4":"…"}' }, 400);
  }
  try {
    const b = (body ?? {}) as Record<string, unknown>;
    if (typeof b !== "object" || Array.isArray(b))
      throw new BadRequest("bad-json", "the body must be a JSON object");
    const host6 = typeof b.host6 === "string" ? canonicalIPv6(b.host6) : null;
    if (!host6 || host6 === "::" || host6.startsWith("ff"))
      throw new BadRequest(
        "bad-host",
        `host6: ${JSON.stringify(b.host6)} is not a unicast IPv6 address`,
      );
    const ipv4 = parseAddress(typeof b.ipv4 === "string" ? b.ipv4 : String(b.ipv4));
    const psid = optionalPsid(b.psid === undefined || b.psid === null ? null : String(b.psid)) ?? 0;
    checkPsid(admin, ipv4, psid);
    let leaseTime: number | undefined;
    if (b.leaseTime !== undefined && b.leaseTime !== null) {
      leaseTime = Number(b.leaseTime);
      if (!Number.isInteger(leaseTime) || leaseTime < 1 || leaseTime > MAX_ADMIN_LEASE_SECONDS)
        throw new BadRequest(
          "bad-lease-time",
          `leaseTime: ${JSON.stringify(b.leaseTime)} is not a whole number of seconds from 1 to ${MAX_ADMIN_LEASE_SECONDS}`,
        );
    }
    if (b.reserve !== undefined && typeof b.reserve !== "boolean")
      throw new BadRequest("bad-json", "reserve must be true or false");
    if (b.reserve === true && leaseTime !== undefined)
      throw new BadRequest(
        "bad-json",
        "a reservation has no lease time: the host's leases get the server's",
      );
    return reply(await admin.add({ host6, ipv4, psid, leaseTime, reserve: b.reserve === true }));
  } catch (error) {
    if (!(error instanceof BadRequest)) throw error;
    admin.refused("add", error.reason, error.message);
    return json({ error: error.message }, 400);
  }
}

function parseFilter(admin: LeaseAdminSource, params: URLSearchParams): LeaseFilter {
  return parseLeaseFilter(params, (text) => poolName(admin, text));
}

/**
 * A pool's name (its first prefix, lib/alloc/pool.ts; [[pool]] has no name setting) from any of
 * its prefixes; 400 naming the pools when unknown.
 */
function poolName(admin: LeaseAdminSource, text: string): string {
  const pools = admin.pools();
  const found = pools.find((p) => p.name === text || p.prefixes.includes(text));
  if (found) return found.name;
  throw new BadRequest(
    "unknown-pool",
    `no pool "${text}"; the pools are ${pools.map((p) => p.name).join(", ")}`,
  );
}

/** 400 when `psid` is beyond the share of the pool holding `ipv4`. */
function checkPsid(admin: LeaseAdminSource, ipv4: number, psid: number): void {
  const share = admin.shareOf(ipv4);
  if (share > 0 && psid >= share)
    throw new BadRequest(
      "bad-psid",
      `psid ${psid} is out of range: the pool of ${formatIPv4(ipv4)} shares each address by ${share} (psid 0–${share - 1})`,
    );
}

/**
 * The JSON of a reservation: `shared` is true when its pool shares each address among several
 * hosts (`share` = hosts per address, {@link LeaseAdminSource.shareOf}), and only then does
 * its `psid` name a port set (RFC 7597 §5.1); an unshared reservation holds every port.
 */
export function reservationJson(r: Reservation, share: number): Record<string, unknown> {
  return {
    hostIPv6: r.host6,
    hostIPv4: formatIPv4(r.ipv4),
    psid: r.psid,
    shared: share > 1,
    createdAt: new Date(r.createdAt).toISOString(),
  };
}

function reply(r: AdminReply): Response {
  return json(r.body, r.status);
}

function json(body: unknown, status = 200): Response {
  return new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: { "content-type": "application/json" },
  });
}
