import { describe, expect, test } from "bun:test";
import { LeaseTable, TABLE_PAGE_SLOTS } from "../lib/alloc/lease_table.ts";
import { Pool } from "../lib/alloc/pool.ts";
import { type Lease, leaseKey, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { parseIPv4 } from "../lib/net/addr.ts";

const ip = (text: string) => parseIPv4(text) as number;

function row(ipv4: number, psid = 0, host6 = "2001:db8::1"): Lease {
  return {
    ipv4,
    portSet: psid === 0 ? WHOLE_ADDRESS : { offset: 6, psidLength: 2, psid },
    host6,
    tep4: 0,
    tep6: "2001:db8::ffff",
    pool: "p",
    state: "active",
    grantedAt: 1,
    expiresAt: 2,
  };
}

describe("LeaseTable", () => {
  const whole = new Pool({ prefixes: ["198.18.0.0/16"] });
  const shared = new Pool({ prefixes: ["192.0.2.0/24"], share: 4 });

  test("rows of pool slots, of PSIDs beyond the share and of no pool are each kept once", () => {
    const table = new LeaseTable();
    table.setPools([whole, shared]);
    const rows = [
      row(ip("198.18.0.1")),
      // the last slot of the first page and the first of the second
      row(ip("198.18.0.0") + TABLE_PAGE_SLOTS - 1),
      row(ip("198.18.0.0") + TABLE_PAGE_SLOTS),
      row(ip("198.18.255.254")),
      row(ip("192.0.2.7"), 3),
      row(ip("192.0.2.7"), 1),
      row(ip("192.0.2.7"), 9), // PSID beyond the share of 4
      row(ip("203.0.113.5")), // in no pool
    ];
    for (const r of rows) table.set(leaseKey(r.ipv4, r.portSet.psid), r);
    expect(table.size).toBe(rows.length);
    for (const r of rows) expect(table.get(leaseKey(r.ipv4, r.portSet.psid))).toBe(r);
    expect(table.get(leaseKey(ip("198.18.0.2"), 0))).toBeUndefined();
    expect(table.get(leaseKey(ip("192.0.2.7"), 2))).toBeUndefined();
    expect(new Set(table.values())).toEqual(new Set(rows));

    // replacing a row does not count it twice
    const again = row(ip("198.18.0.1"), 0, "2001:db8::2");
    table.set(leaseKey(again.ipv4, 0), again);
    expect(table.size).toBe(rows.length);
    expect(table.get(leaseKey(again.ipv4, 0))).toBe(again);

    expect(table.delete(leaseKey(ip("192.0.2.7"), 3))).toBe(true);
    expect(table.delete(leaseKey(ip("192.0.2.7"), 3))).toBe(false);
    expect(table.delete(leaseKey(ip("203.0.113.5"), 0))).toBe(true);
    expect(table.delete(leaseKey(ip("203.0.113.6"), 0))).toBe(false);
    expect(table.size).toBe(rows.length - 2);
    expect([...table.values()].length).toBe(rows.length - 2);
    expect(table.get(leaseKey(ip("192.0.2.7"), 1))?.portSet.psid).toBe(1);
  });

  test("isLoadedRow is get(key) === row && isLoaded(key), in pool slots and outside them", () => {
    const table = new LeaseTable();
    table.setPools([whole, shared]);
    const keys = [
      leaseKey(ip("198.18.0.1"), 0),
      leaseKey(ip("192.0.2.7"), 3),
      leaseKey(ip("192.0.2.7"), 9), // PSID beyond the share
      leaseKey(ip("203.0.113.5"), 0), // in no pool
      leaseKey(ip("198.18.40.1"), 0), // a page with no row
    ];
    const rowOf = (key: number) => row(Math.floor(key / 65536), key % 65536);
    const loaded = keys.slice(0, 4).map((key) => {
      const r = rowOf(key);
      table.load(key, r);
      return r;
    });
    const agree = (key: number, r: Lease) =>
      expect(table.isLoadedRow(key, r)).toBe(table.get(key) === r && table.isLoaded(key));
    for (const [i, key] of keys.entries()) {
      agree(key, loaded[i] ?? rowOf(key));
      agree(key, rowOf(key)); // another object of the same fields
    }
    expect(table.isLoadedRow(keys[0]!, loaded[0]!)).toBe(true);
    expect(table.isLoadedRow(keys[3]!, loaded[3]!)).toBe(true);
    // set clears the loaded bit: no longer loaded, for the new row and the old one
    const fresh = rowOf(keys[0]!);
    table.set(keys[0]!, fresh);
    const outside = rowOf(keys[3]!);
    table.set(keys[3]!, outside);
    for (const [key, r] of [
      [keys[0]!, fresh],
      [keys[0]!, loaded[0]!],
      [keys[3]!, outside],
      [keys[3]!, loaded[3]!],
    ] as const) {
      agree(key, r);
      expect(table.isLoadedRow(key, r)).toBe(false);
    }
  });

  test("setPools refuses while rows are in; clear empties it for new pools", () => {
    const table = new LeaseTable();
    table.setPools([whole]);
    const r = row(ip("198.18.1.1"));
    table.set(leaseKey(r.ipv4, 0), r);
    expect(() => table.setPools([shared])).toThrow("not empty");
    table.clear();
    expect(table.size).toBe(0);
    expect(table.get(leaseKey(r.ipv4, 0))).toBeUndefined();
    table.setPools([shared]);
    // now outside every pool: kept all the same
    table.set(leaseKey(r.ipv4, 0), r);
    expect(table.get(leaseKey(r.ipv4, 0))).toBe(r);
    expect([...table.values()]).toEqual([r]);
  });
});
