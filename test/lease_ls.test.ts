/**
 * `dstm lease ls` as users read it (issue 10, mutants 4 and 5): the EXPIRES column says
 * "in …" for a lease still running and "… ago" for one past its expiry, and `--db` without
 * `--all` lists only active leases, like the live view.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LeaseJson, leaseToJson, renderLeaseTable } from "../lib/control/lease_view.ts";
import { type Lease, type LeaseState, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { runDstm } from "./helpers/process.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const NOW = Date.parse("2026-01-01T12:00:00Z");

function lease(ipv4: string, host6: string, state: LeaseState, expiresAt: number): Lease {
  return {
    ipv4: parseIPv4(ipv4)!,
    portSet: WHOLE_ADDRESS,
    host6,
    tep4: 0,
    tep6: "2001:db8::1",
    pool: "192.0.2.0/29",
    state,
    grantedAt: expiresAt - 600_000,
    expiresAt,
  };
}

/** The EXPIRES cell of each row of the table. */
function expiresColumn(table: string): string[] {
  const [header, ...rows] = table.trimEnd().split("\n");
  const at = header!.indexOf("EXPIRES");
  expect(at).toBeGreaterThan(0);
  return rows.map((row) => row.slice(at).trim());
}

describe("lease ls: the EXPIRES column", () => {
  test("a running lease expires 'in …', an ended one says how it ended and when", () => {
    const leases: LeaseJson[] = [
      leaseToJson(lease("192.0.2.1", "2001:db8:a::1", "active", NOW + 3_725_000)),
      leaseToJson(lease("192.0.2.2", "2001:db8:a::2", "expired", NOW - 90_000)),
      leaseToJson(lease("192.0.2.3", "2001:db8:a::3", "active", NOW + 5_000)),
      // A release stamps its own time: not an expiry (newcomer: "2s ago" under EXPIRES).
      leaseToJson(lease("192.0.2.4", "2001:db8:a::4", "released", NOW - 2_000)),
      // Active past its expiry, not yet reclaimed.
      leaseToJson(lease("192.0.2.5", "2001:db8:a::5", "active", NOW - 7_000)),
    ];
    expect(expiresColumn(renderLeaseTable(leases, NOW))).toEqual([
      "in 1h2m5s",
      "expired 1m30s ago",
      "in 5s",
      "released 2s ago",
      "7s ago",
    ]);
  });
});

describe("lease ls --db", () => {
  test("lists only active leases without --all, every row with it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dstm-lease-ls-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const db = join(dir, "leases.db");
    const store = SqliteLeaseStore.open(db);
    const now = Date.now();
    const rows = [
      lease("192.0.2.1", "2001:db8:a::1", "active", now + 600_000),
      lease("192.0.2.2", "2001:db8:a::2", "expired", now - 60_000),
      lease("192.0.2.3", "2001:db8:a::3", "released", now - 30_000),
    ];
    await store.write(rows.map((l) => ({ op: "put", lease: l })));
    await store.close();

    const active = await runDstm(["lease", "ls", "--db", db, "--json"]);
    expect(active.stderr).toBe("");
    expect(active.code).toBe(0);
    const listed = (JSON.parse(active.stdout) as { leases: LeaseJson[] }).leases;
    expect(listed.map((l) => [l.hostIPv4, l.state])).toEqual([["192.0.2.1", "active"]]);

    const table = await runDstm(["lease", "ls", "--db", db]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain("192.0.2.1");
    expect(table.stdout).not.toContain("192.0.2.2");
    expect(table.stdout).not.toContain("192.0.2.3");

    const all = await runDstm(["lease", "ls", "--db", db, "--json", "--all"]);
    expect(all.code).toBe(0);
    const every = (JSON.parse(all.stdout) as { leases: LeaseJson[] }).leases;
    expect(every.map((l) => [l.hostIPv4, l.state])).toEqual([
      ["192.0.2.1", "active"],
      ["192.0.2.2", "expired"],
      ["192.0.2.3", "released"],
    ]);
  });
});
