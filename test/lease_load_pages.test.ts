/**
 * SqliteLeaseStore.loadAll reads its rows in pages (lib/lease/sqlite.ts): every row comes back
 * once, in key order, whole (port sets, identities, states, TEP and pool strings), also at
 * the page boundaries and when the last page is exactly full.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Lease, leaseKey, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";

const PAGE = 16_384; // LOAD_PAGE_ROWS
const dir = mkdtempSync(join(tmpdir(), "dstm-load-pages-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function lease(i: number): Lease {
  const shared = i % 7 === 0;
  return {
    ipv4: 0xc6120000 + Math.floor(i / 2),
    portSet: shared ? { offset: 6, psidLength: 2, psid: 1 + (i % 2) } : WHOLE_ADDRESS,
    host6: `2001:db8:${(i >>> 16).toString(16)}::${(i & 0xffff).toString(16)}`,
    tep4: i % 5 === 0 ? 0xc0000201 : 0,
    tep6: i % 3 === 0 ? "2001:db8::2" : "2001:db8::1",
    pool: i % 3 === 0 ? "198.18.0.0/15" : "pool-a",
    state: i % 4 === 0 ? "released" : i % 4 === 1 ? "expired" : "active",
    grantedAt: 1_700_000_000_000 + i,
    expiresAt: 1_700_000_600_000 + i,
    ...(i % 11 === 0 ? { identity: `id:${i.toString(16)}` } : {}),
  };
}

async function roundTrip(n: number) {
  const path = join(dir, `${n}.db`);
  const store = SqliteLeaseStore.open(path);
  const rows: Lease[] = [];
  const keys = new Set<number>();
  for (let i = 0; rows.length < n; i++) {
    const l = lease(i);
    const key = leaseKey(l.ipv4, l.portSet.psid);
    if (keys.has(key)) continue;
    keys.add(key);
    rows.push(l);
  }
  await store.write(rows.map((l) => ({ op: "put" as const, lease: l })));
  await store.close();
  const again = SqliteLeaseStore.open(path);
  try {
    const loaded = await again.loadAll();
    const byKey = (a: Lease, b: Lease) =>
      leaseKey(a.ipv4, a.portSet.psid) - leaseKey(b.ipv4, b.portSet.psid);
    expect(loaded.length).toBe(n);
    expect(loaded).toEqual(rows.slice().sort(byKey));
    for (const l of loaded) expect("identity" in l).toBe(l.identity !== undefined);
  } finally {
    await again.close();
  }
}

describe("SqliteLeaseStore.loadAll in pages", () => {
  test(
    "two pages and 3 rows: every row once, in key order, whole",
    () => roundTrip(2 * PAGE + 3),
    60_000,
  );
  test("exactly one full page, and one row", async () => {
    await roundTrip(PAGE);
    await roundTrip(1);
  }, 60_000);
  test("an empty store", () => roundTrip(0));
  test("a row with an unknown state is refused, naming the state", async () => {
    const path = join(dir, "bad-state.db");
    const store = SqliteLeaseStore.open(path);
    await store.write([lease(2), lease(3)].map((l) => ({ op: "put" as const, lease: l })));
    await store.close();
    const db = new Database(path);
    db.run("PRAGMA ignore_check_constraints = ON"); // as a damaged file or another writer might
    db.run("UPDATE leases SET state = 'bogus' WHERE ipv4 = ?", [lease(3).ipv4]);
    db.close();
    const again = SqliteLeaseStore.open(path);
    try {
      await expect(again.loadAll()).rejects.toThrow("unknown state bogus");
    } finally {
      await again.close();
    }
  });
});
