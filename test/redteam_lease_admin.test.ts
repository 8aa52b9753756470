/**
 * Red team on the control socket's lease routes (lib/control/lease_admin_api.ts), in process:
 * a malformed percent-escape in a path segment, and the paging inputs an operator's script
 * (or a user allowed on the socket) could get wrong: a huge limit, a bad cursor, a /0 prefix.
 * Every one must get a 400 with a one-line error and a count by reason, never an exception
 * (Bun.serve turns one into a 500 with a stack page, uncounted and unlogged).
 */
import { describe, expect, test } from "bun:test";
import { controlHandler } from "../lib/control/api.ts";
import type { LeaseAdminSource } from "../lib/control/lease_admin_api.ts";
import { Metrics } from "../lib/control/metrics.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { parseIPv4 } from "../lib/net/addr.ts";

/** 300 active leases 198.51.100.0 … 198.51.101.43, one host each. */
function rows(): Lease[] {
  const base = parseIPv4("198.51.100.0")!;
  return Array.from({ length: 300 }, (_, i) => ({
    ipv4: base + i,
    host6: `2001:db8:5::${(i + 1).toString(16)}`,
    tep6: "2001:db8::1",
    tep4: parseIPv4("192.0.2.1")!,
    portSet: { offset: 0, psidLength: 0, psid: 0 },
    pool: "p",
    state: "active",
    grantedAt: 0,
    expiresAt: 4_000_000_000_000,
  })) as unknown as Lease[];
}

function setup() {
  const refused: string[] = [];
  const called: string[] = [];
  const table = rows();
  const admin: LeaseAdminSource = {
    rows: () => table,
    reservations: () => [],
    pools: () => [{ name: "p", prefixes: ["198.51.100.0/23"] }],
    shareOf: () => 1,
    end: async () => {
      called.push("end");
      return { status: 200, body: {} };
    },
    add: async () => ({ status: 201, body: {} }),
    unreserve: async () => {
      called.push("unreserve");
      return { status: 200, body: {} };
    },
    wipe: async () => {
      called.push("wipe");
      return { status: 200, body: {} };
    },
    refused: (action, reason) => refused.push(`${action} ${reason}`),
  };
  const handler = controlHandler({ admin, pools: () => [], metrics: new Metrics() });
  const ask = async (method: string, path: string) => {
    const response = await handler(new Request(`http://localhost${path}`, { method }));
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  return { ask, refused, called };
}

describe("lease routes: a malformed percent-escape in the path", () => {
  // Before: decodeURIComponent threw URIError out of the handler (a 500, nothing counted).
  for (const [method, path, action] of [
    ["GET", "/v1/leases/%ZZ", "show"],
    ["DELETE", "/v1/leases/198.51.100.1%E0%A4%A", "delete"],
    ["DELETE", "/v1/reservations/%E0%A4%A", "unreserve"],
    ["POST", "/v1/pools/%ZZ/wipe", "wipe"],
  ] as const) {
    test(`${method} ${path}: 400 bad-path, counted, nothing done`, async () => {
      const { ask, refused, called } = setup();
      const { status, body } = await ask(method, path);
      expect(status).toBe(400);
      expect(String(body.error)).toContain("percent-escape");
      expect(refused).toEqual([`${action} bad-path`]);
      expect(called).toEqual([]);
    });
  }
});

describe("lease routes: paging inputs (held before this change)", () => {
  test("a limit beyond the maximum, a 10-digit limit, zero: 400 bad-limit", async () => {
    const { ask, refused } = setup();
    for (const limit of ["10001", "9999999999", "0", "-1", "1e4"])
      expect((await ask("GET", `/v1/leases?limit=${limit}`)).status).toBe(400);
    expect(refused).toEqual(Array(5).fill("list bad-limit"));
  });

  test("a bad cursor: 400 bad-cursor; a cursor past the end: an empty last page", async () => {
    const { ask, refused } = setup();
    for (const after of ["x", "198.51.100.1:65536", "198.51.100.1:-1", "::1"])
      expect((await ask("GET", `/v1/leases?after=${encodeURIComponent(after)}`)).status).toBe(400);
    expect(refused).toEqual(Array(4).fill("list bad-cursor"));
    const end = await ask("GET", "/v1/leases?after=255.255.255.255:65535");
    expect(end).toEqual({ status: 200, body: { leases: [], next: null } });
  });

  test("prefix /0 (IPv4 and IPv6) selects everything, paged; /33 and /129 are refused", async () => {
    const { ask, refused } = setup();
    for (const prefix of ["0.0.0.0/0", "::/0"]) {
      const seen = new Set<string>();
      let after = "";
      for (let page = 0; page < 10; page++) {
        const { status, body } = await ask(
          "GET",
          `/v1/leases?prefix=${encodeURIComponent(prefix)}&limit=128${after ? `&after=${after}` : ""}`,
        );
        expect(status).toBe(200);
        for (const l of body.leases as { hostIPv4: string }[]) {
          expect(seen.has(l.hostIPv4)).toBe(false);
          seen.add(l.hostIPv4);
        }
        if (body.next === null) break;
        after = String(body.next);
      }
      expect(seen.size).toBe(300);
    }
    for (const prefix of ["0.0.0.0/33", "::/129", "198.51.100.1/24"])
      expect((await ask("GET", `/v1/leases?prefix=${encodeURIComponent(prefix)}`)).status).toBe(
        400,
      );
    expect(refused).toEqual(Array(3).fill("list bad-prefix"));
  });
});
