/**
 * `GET /v1/leases` pages read from their cursor on (issue 12 item 2): with 1,000,000 leases a
 * page that walked the whole table held the server ~60 ms and paging through all of it took
 * a minute (docs/benchmarks.md "One million leases"). The lease table seeks to the cursor and
 * yields rows in key order (`LeaseTable.valuesAfter`); a page then reads what it lists.
 */
import { describe, expect, test } from "bun:test";
import { LeaseTable, TABLE_PAGE_SLOTS } from "../lib/alloc/lease_table.ts";
import { Pool } from "../lib/alloc/pool.ts";
import { type LeaseAdminSource, leaseRoute } from "../lib/control/lease_admin_api.ts";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { type Lease, leaseKey, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { parseIPv4 } from "../lib/net/addr.ts";

const ip = (text: string) => parseIPv4(text) as number;
const keyOf = (r: Lease) => leaseKey(r.ipv4, r.portSet.psid);

/** A row; `psidLength` 0: a whole address. */
function row(ipv4: number, psid = 0, psidLength = 0): Lease {
  return {
    ipv4,
    portSet: psidLength ? { offset: 6, psidLength, psid } : WHOLE_ADDRESS,
    host6: `2001:db8::${(ipv4 & 0xffff).toString(16)}:${psid}`,
    tep4: 0,
    tep6: "2001:db8::ffff",
    pool: "p",
    state: "active",
    grantedAt: 1,
    expiresAt: 2,
  };
}

/** Pools whose slot order is not the key order: prefixes listed high first, a shared pool below them. */
function table(): { table: LeaseTable; rows: Lease[] } {
  const whole = new Pool({ prefixes: ["198.18.64.0/18", "198.18.0.0/18"] });
  const shared = new Pool({ prefixes: ["192.0.2.0/24"], share: 4 });
  const t = new LeaseTable();
  t.setPools([whole, shared]);
  const rows: Lease[] = [];
  for (let i = 1; i < 3 * TABLE_PAGE_SLOTS; i += 7) rows.push(row(ip("198.18.0.0") + i));
  for (let i = 1; i < 2 * TABLE_PAGE_SLOTS; i += 5) rows.push(row(ip("198.18.64.0") + i));
  for (const psid of [3, 0, 2]) rows.push(row(ip("192.0.2.7"), psid, 2));
  rows.push(row(ip("192.0.2.8"), 1, 2));
  rows.push(row(ip("192.0.2.7"), 9, 4)); // a PSID beyond the share: outside the slots
  rows.push(row(ip("203.0.113.5"))); // in no pool
  rows.push(row(ip("10.0.0.1"))); // in no pool, below every pool
  for (const r of rows) t.set(keyOf(r), r);
  return { table: t, rows };
}

describe("LeaseTable.valuesAfter", () => {
  test("yields exactly the rows after the key, in key order, from any cursor", () => {
    const { table: t, rows } = table();
    const sorted = [...rows].sort((a, b) => keyOf(a) - keyOf(b));
    const cursors = [
      -1,
      0,
      leaseKey(ip("10.0.0.1"), 0),
      leaseKey(ip("192.0.2.7"), 0),
      leaseKey(ip("192.0.2.7"), 3), // the share's last PSID: next is 192.0.2.7 psid 9, then .8
      leaseKey(ip("192.0.2.255"), 65535),
      leaseKey(ip("198.18.0.0") + TABLE_PAGE_SLOTS, 0), // no row there
      keyOf(sorted[700] as Lease),
      leaseKey(ip("198.18.63.255"), 0), // the end of the first run by address
      keyOf(sorted[sorted.length - 2] as Lease),
      keyOf(sorted[sorted.length - 1] as Lease),
    ];
    for (const after of cursors) {
      const want = sorted.filter((r) => keyOf(r) > after);
      expect([...t.valuesAfter(after)]).toEqual(want);
    }
  });
});

describe("GET /v1/leases paging", () => {
  test("every row once, in key order, reading each row about once overall", async () => {
    const { table: t, rows } = table();
    let read = 0;
    const counted = (it: Iterable<Lease>): Iterable<Lease> => ({
      *[Symbol.iterator]() {
        for (const r of it) {
          read++;
          yield r;
        }
      },
    });
    const unused = () => {
      throw new Error("not used by a listing");
    };
    const source: LeaseAdminSource = {
      rows: () => counted(t.values()),
      rowsAfter: (after) => counted(t.valuesAfter(after)),
      reservations: () => [],
      pools: () => [],
      shareOf: () => 0,
      end: unused,
      add: unused,
      unreserve: unused,
      wipe: unused,
      refused: unused,
    };
    const listed: string[] = [];
    let after = "";
    let pages = 0;
    for (;;) {
      const url = new URL(`http://localhost/v1/leases?limit=100${after ? `&after=${after}` : ""}`);
      const response = (await leaseRoute(source, new Request(url.href), url)) as Response;
      const page = (await response.json()) as { leases: LeaseJson[]; next: string | null };
      pages++;
      for (const l of page.leases) listed.push(`${l.hostIPv4}/${l.portSet}`);
      if (page.next === null) break;
      after = page.next;
    }
    const want = [...rows].sort((a, b) => keyOf(a) - keyOf(b)).map((r) => `${formatRow(r)}`);
    expect(listed).toEqual(want);
    expect(pages).toBe(Math.ceil(rows.length / 100));
    // One row more than the page per page; a pass over the table a page read rows × pages.
    expect(read).toBeLessThanOrEqual(rows.length + pages);
  });
});

function formatRow(r: Lease): string {
  const ipv4 = [24, 16, 8, 0].map((s) => (r.ipv4 >>> s) & 255).join(".");
  const ps = r.portSet;
  return `${ipv4}/${ps.psidLength === 0 ? "all" : `${ps.offset}/${ps.psidLength}/${ps.psid}`}`;
}
