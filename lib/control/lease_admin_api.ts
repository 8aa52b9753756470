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
import type { Lease, LeaseState, Reservation } from "../lease/lease.ts";
import { canonicalIPv6, formatIPv4, parseIPv4, parseIPv6 } from "../net/addr.ts";
import { parseIPv4Prefix } from "../net/prefix.ts";
import {
  formatCursor,
  type LeaseFilter,
  leasePage,
  matchesFilter,
  parseCursor,
} from "./lease_query.ts";
import { type LeaseJson, leaseToJson } from "./lease_view.ts";

/** Rows per page when `limit` is absent, and the most a page may hold. */
export const PAGE_DEFAULT = 1000;
export const PAGE_MAX = 10_000;
/** Rows per chunk of an export stream. */
export const EXPORT_CHUNK = 1000;
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

/** Bad input to a lease route: a 400 with this one-line message; `reason` labels the count. */
export class BadRequest extends Error {
  override name = "BadRequest";
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const STATES: ReadonlySet<string> = new Set(["active", "released", "expired"]);

/**
 * Answers a lease route, or returns undefined when `url` is none of them:
 *
 * - `GET /v1/leases?address=&prefix=&host=&identity=&state=&pool=&limit=&after=` → `{leases, next}`
 * - `GET /v1/leases/export?format=ndjson|csv` (+ the same filters) → a stream
 * - `GET /v1/leases/{ipv4}[?psid=]` → `{leases, reservations}` (404 when neither)
 * - `DELETE /v1/leases/{ipv4}[?psid=]` → `{ended: [LeaseJson]}`
 * - `POST /v1/leases` `{"host6","ipv4","psid"?,"leaseTime"?,"reserve"?}` → 201
 * - `GET /v1/reservations`, `DELETE /v1/reservations/{host6}`
 * - `POST /v1/pools/{name-or-cidr}/wipe` → `{ended: N}`
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
      return exportLeases(admin, url.searchParams);
    }
    if (path === "/v1/leases" && method === "POST") {
      action = "add";
      return add(admin, request);
    }
    if (path === "/v1/reservations" && method === "GET")
      return json({ reservations: admin.reservations().map(reservationJson) });
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
  const page = leasePage(admin.rows(), after, limit, (l) => matchesFilter(l, filter, parseIPv6));
  return json({
    leases: page.leases.map(leaseToJson),
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
  return json({ leases: leases.map(leaseToJson), reservations: reservations.map(reservationJson) });
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

/**
 * The export: every row the filters select, as NDJSON (one {@link LeaseJson} per line,
 * default) or CSV (a header line, then one row per lease), streamed in chunks of
 * {@link EXPORT_CHUNK} rows: the server makes the next chunk only when the reader took the
 * last, and answers other requests in between. Rows come in table order, not sorted; each
 * row present from start to end appears once, as it was when its chunk was made.
 */
function exportLeases(admin: LeaseAdminSource, params: URLSearchParams): Response {
  const format = params.get("format") ?? "ndjson";
  if (format !== "ndjson" && format !== "csv")
    throw new BadRequest("bad-format", `format: "${format}" is not ndjson or csv`);
  if (!params.has("state") && !params.has("all")) params.set("state", "all");
  const filter = parseFilter(admin, params);
  const rows = admin.rows()[Symbol.iterator]();
  const encoder = new TextEncoder();
  let header = format === "csv";
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      let text = "";
      if (header) {
        text += `${CSV_COLUMNS.join(",")}\n`;
        header = false;
      }
      for (let n = 0; n < EXPORT_CHUNK; ) {
        const next = rows.next();
        if (next.done) {
          if (text) controller.enqueue(encoder.encode(text));
          controller.close();
          return;
        }
        if (!matchesFilter(next.value, filter, parseIPv6)) continue;
        const view = leaseToJson(next.value);
        text += format === "csv" ? csvLine(view) : `${JSON.stringify(view)}\n`;
        n++;
      }
      controller.enqueue(encoder.encode(text));
    },
  });
  return new Response(stream, {
    headers: {
      "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson",
    },
  });
}

const CSV_COLUMNS = [
  "hostIPv4",
  "hostIPv6",
  "tepIPv4",
  "tepIPv6",
  "portSet",
  "pool",
  "identity",
  "state",
  "grantedAt",
  "expiresAt",
] as const;

function csvLine(view: LeaseJson): string {
  // Every field is an address, a port set, a state, an ISO time or a pool name: no comma or
  // quote can occur but in a pool name, which is quoted when it has one.
  return `${CSV_COLUMNS.map((c) => {
    const cell = String(view[c] ?? "");
    return /[",\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
  }).join(",")}\n`;
}

function parseFilter(admin: LeaseAdminSource, params: URLSearchParams): LeaseFilter {
  return parseLeaseFilter(params, (text) => poolName(admin, text));
}

/**
 * The filter of `address`, `prefix`, `host`, `identity`, `state` (default active; `all=1`: all) and
 * `pool` (through `resolvePool`, which may throw {@link BadRequest}). Throws BadRequest with
 * a one-line message on a malformed value.
 */
export function parseLeaseFilter(
  params: URLSearchParams,
  resolvePool: (text: string) => string,
): LeaseFilter {
  const filter: {
    -readonly [K in keyof LeaseFilter]: LeaseFilter[K];
  } = {};
  const address = params.get("address");
  if (address !== null) filter.address = parseAddress(address);
  const prefix = params.get("prefix");
  if (prefix !== null) {
    const p4 = parseIPv4Prefix(prefix);
    const p6 = p4 ? null : parseIPv6Prefix(prefix);
    if (p4) filter.prefix4 = p4;
    else if (p6) filter.prefix6 = p6;
    else
      throw new BadRequest(
        "bad-prefix",
        `prefix: "${prefix}" is neither an IPv4 nor an IPv6 prefix (e.g. 192.0.2.0/28, 2001:db8:1::/48)`,
      );
  }
  const host = params.get("host");
  if (host !== null) {
    const canonical = canonicalIPv6(host);
    if (!canonical) throw new BadRequest("bad-host", `host: "${host}" is not an IPv6 address`);
    filter.host = canonical;
  }
  const identity = params.get("identity");
  if (identity !== null) {
    // The stored form (lib/server/dhcp4o6_identity.ts): `id:HEX` or `hw:HTYPE:HEX`, hex in lower case.
    const match = /^(id:(?:[0-9a-f]{2})+|hw:\d{1,3}:(?:[0-9a-f]{2})*)$/i.exec(identity);
    if (!match)
      throw new BadRequest(
        "bad-identity",
        `identity: "${identity}" is not a 4o6 client identity (id:HEX of option 61, or hw:HTYPE:HEX of chaddr, e.g. hw:1:02005e0000aa)`,
      );
    filter.identity = identity.toLowerCase();
  }
  const state = params.get("state") ?? (params.get("all") === "1" ? "all" : "active");
  if (state !== "all") {
    if (!STATES.has(state))
      throw new BadRequest(
        "bad-state",
        `state: "${state}" is not active, released, expired or all`,
      );
    filter.state = state as LeaseState;
  }
  const pool = params.get("pool");
  if (pool !== null) filter.pool = resolvePool(pool);
  return filter;
}

/** A pool's name from its name or one of its CIDRs; 400 naming the pools when unknown. */
function poolName(admin: LeaseAdminSource, text: string): string {
  const pools = admin.pools();
  const found = pools.find((p) => p.name === text || p.prefixes.includes(text));
  if (found) return found.name;
  throw new BadRequest(
    "unknown-pool",
    `no pool "${text}"; the pools are ${pools.map((p) => p.name).join(", ")}`,
  );
}

function parseLimit(text: string | null): number {
  if (text === null || text === "") return PAGE_DEFAULT;
  const limit = Number(text);
  if (!/^\d{1,9}$/.test(text) || limit < 1 || limit > PAGE_MAX)
    throw new BadRequest(
      "bad-limit",
      `limit: "${text}" must be a whole number from 1 to ${PAGE_MAX}`,
    );
  return limit;
}

/**
 * A path segment's text (RFC 3986 §2.1 percent-decoding); BadRequest on a malformed escape
 * such as `%ZZ` (decodeURIComponent's URIError would otherwise escape as an uncounted 500).
 */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadRequest("bad-path", `"${segment}" has a malformed percent-escape (RFC 3986 §2.1)`);
  }
}

function parseAddress(text: string): number {
  const ipv4 = parseIPv4(text);
  if (ipv4 === null) throw new BadRequest("bad-address", `"${text}" is not an IPv4 address`);
  return ipv4;
}

function optionalPsid(text: string | null): number | undefined {
  if (text === null || text === "") return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new BadRequest(
      "bad-psid",
      `psid: "${text}" is not a PSID (a whole number from 0 to 65535)`,
    );
  return Number(text);
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

function parseIPv6Prefix(text: string): { bytes: Uint8Array; length: number } | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const bytes = parseIPv6(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (!bytes || !/^\d{1,3}$/.test(lengthText) || Number(lengthText) > 128) return null;
  return { bytes, length: Number(lengthText) };
}

/** The JSON of a reservation. */
export function reservationJson(r: Reservation): Record<string, unknown> {
  return {
    hostIPv6: r.host6,
    hostIPv4: formatIPv4(r.ipv4),
    psid: r.psid,
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
