/**
 * `GET /v1/leases/export`: the selected leases streamed as NDJSON or CSV (./lease_admin_api.ts).
 *
 * @module
 */
import type { Lease } from "../lease/lease.ts";
import { parseIPv6 } from "../net/addr.ts";
import { BadRequest } from "./lease_params.ts";
import { type LeaseFilter, matchesFilter } from "./lease_query.ts";
import { type LeaseJson, leaseToJson } from "./lease_view.ts";

/** Rows per chunk of an export stream. */
export const EXPORT_CHUNK = 1000;

/**
 * The export: every row the filters select, as NDJSON (one {@link LeaseJson} per line,
 * default) or CSV (a header line, then one row per lease), streamed in chunks of
 * {@link EXPORT_CHUNK} rows: the server makes the next chunk only when the reader took the
 * last, and lets the event loop turn before each chunk, so other requests are answered in
 * between however fast the reader is. Rows come in table order, not sorted; each
 * row present from start to end appears once, as it was when its chunk was made.
 */
export function exportLeases(
  rows: Iterable<Lease>,
  params: URLSearchParams,
  parseFilter: (params: URLSearchParams) => LeaseFilter,
  offered: (lease: Lease) => boolean = () => false,
): Response {
  const format = params.get("format") ?? "ndjson";
  if (format !== "ndjson" && format !== "csv")
    throw new BadRequest("bad-format", `format: "${format}" is not ndjson or csv`);
  if (!params.has("state") && !params.has("all")) params.set("state", "all");
  const filter = parseFilter(params);
  const it = rows[Symbol.iterator]();
  const encoder = new TextEncoder();
  let header = format === "csv";
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      // The event loop turns before each chunk: a stream whose pull returns at once is pulled
      // again from a microtask as soon as the socket took the last chunk, so a fast reader got
      // dozens of chunks in a row while DISCOVERs waited (up to 781 ms with 1,000,000 leases,
      // docs/benchmarks.md "One million leases").
      await new Promise<void>((resolve) => setImmediate(resolve));
      let text = "";
      if (header) {
        text += `${CSV_COLUMNS.join(",")}\n`;
        header = false;
      }
      for (let n = 0; n < EXPORT_CHUNK; ) {
        const next = it.next();
        if (next.done) {
          if (text) controller.enqueue(encoder.encode(text));
          controller.close();
          return;
        }
        if (!matchesFilter(next.value, filter, parseIPv6)) continue;
        const view = leaseToJson(next.value, offered(next.value));
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
