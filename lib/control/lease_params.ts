/**
 * The query and path parameters of the lease routes (./lease_admin_api.ts) and of
 * `dstm lease ls --db`: filters, page limits, addresses, PSIDs, percent-escapes. Every
 * malformed value throws {@link BadRequest} with a one-line message and a reason that labels
 * the refusal count; nothing else is thrown.
 *
 * @module
 */
import type { LeaseState } from "../lease/lease.ts";
import { canonicalIPv6, parseIPv4, parseIPv6 } from "../net/addr.ts";
import { parseIPv4Prefix } from "../net/prefix.ts";
import type { LeaseFilter } from "./lease_query.ts";

/** Rows per page when `limit` is absent, and the most a page may hold. */
export const PAGE_DEFAULT = 1000;
export const PAGE_MAX = 10_000;
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
    // The stored forms (lib/server/dhcp4o6_identity.ts), in lower case: `id:HEX`,
    // `hw:HTYPE:HEX`, and a link-local client's `ll:ADDRESS` followed by `%IFINDEX` or
    // `@LINK` (`net:HEX`, `at:…`, or a relay path): matched whole, so only its shape is checked.
    const match =
      /^(id:(?:[0-9a-f]{2})+|hw:\d{1,3}:(?:[0-9a-f]{2})*|ll:fe[89ab][0-9a-f]:[0-9a-f:.]*[%@]\S*)$/i.exec(
        identity,
      );
    if (!match)
      throw new BadRequest(
        "bad-identity",
        `identity: "${identity}" is not a 4o6 client identity (id:HEX of option 61, hw:HTYPE:HEX of chaddr, e.g. hw:1:02005e0000aa, or ll:ADDRESS@LINK of a link-local client, as lease ls shows it)`,
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

export function parseLimit(text: string | null): number {
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
export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadRequest("bad-path", `"${segment}" has a malformed percent-escape (RFC 3986 §2.1)`);
  }
}

export function parseAddress(text: string): number {
  const ipv4 = parseIPv4(text);
  if (ipv4 === null) throw new BadRequest("bad-address", `"${text}" is not an IPv4 address`);
  return ipv4;
}

export function optionalPsid(text: string | null): number | undefined {
  if (text === null || text === "") return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new BadRequest(
      "bad-psid",
      `psid: "${text}" is not a PSID (a whole number from 0 to 65535)`,
    );
  return Number(text);
}

function parseIPv6Prefix(text: string): { bytes: Uint8Array; length: number } | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const bytes = parseIPv6(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (!bytes || !/^\d{1,3}$/.test(lengthText) || Number(lengthText) > 128) return null;
  return { bytes, length: Number(lengthText) };
}
