/**
 * The engine's administration primitives (lib/alloc/admin.ts): reservations hold against
 * every allocation path and survive a restart, an administrator's end of a lease makes the
 * host's INIT-REBOOT REQUEST fail (NAK), static leases are refused on another host's slot,
 * and the paged walk lists each row once in key order while the table changes.
 */
import { describe, expect, test } from "bun:test";
import { leasePage } from "../lib/control/lease_query.ts";
import { leaseKey } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { ok, startEngine } from "./helpers/engine.ts";

const TEP6 = "2001:db8::1";
const POOL = { prefixes: ["192.0.2.0/29"], tep6: TEP6 }; // usable .1 – .6
const ip = (text: string) => parseIPv4(text) as number;
const host = (n: number) => `2001:db8:1::${n.toString(16)}`;
const slot = (h: number, ipv4: string) => ({
  host6: host(h),
  ipv4: ip(ipv4),
  psid: 0,
  createdAt: 1,
});

describe("reservations", () => {
  test("no other host ever gets a reserved address, by any path; its host gets it", async () => {
    const { engine } = await startEngine([POOL]);
    const r = { host6: host(99), ipv4: ip("192.0.2.3"), psid: 0, createdAt: 1 };
    expect((await engine.reserve(r)).ok).toBe(true);
    // Five other hosts take every other address; the sixth finds the pool exhausted.
    const got = new Set<string>();
    for (let i = 1; i <= 5; i++) got.add(formatIPv4(ok(await engine.discover(host(i))).ipv4));
    expect(got.has("192.0.2.3")).toBe(false);
    expect(got.size).toBe(5);
    const sixth = await engine.discover(host(6), { hint: ip("192.0.2.3") });
    expect(sixth.ok ? formatIPv4(sixth.lease.ipv4) : sixth.reason).toBe("pool-exhausted");
    // INIT-REBOOT for the reserved address from another host: in use.
    const stolen = await engine.request(host(7), ip("192.0.2.3"));
    expect(stolen.ok ? "granted" : stolen.reason).toBe("address-in-use");
    expect(engine.stats()[0]?.free).toBe(0);
    // The reserved host gets it, by DISCOVER (and its REQUEST for another address is NAKed).
    const other = await engine.request(host(99), ip("192.0.2.1"));
    expect(other.ok ? "granted" : other.message).toContain("has a reservation for 192.0.2.3");
    expect(formatIPv4(ok(await engine.discover(host(99))).ipv4)).toBe("192.0.2.3");
  });

  test("a reservation survives a restart (stored), and is refused on another host's slot", async () => {
    const store = new MemoryLeaseStore();
    const { engine } = await startEngine([POOL], { store });
    const a = ok(await engine.discover(host(1)));
    const refused = await engine.reserve({ host6: host(2), ipv4: a.ipv4, psid: 0, createdAt: 1 });
    expect(refused.ok ? "reserved" : refused.reason).toBe("in-use");
    expect(refused.ok ? "" : refused.message).toContain(`is leased to ${host(1)}`);
    const outside = await engine.reserve(slot(2, "198.51.100.1"));
    expect(outside.ok ? "reserved" : outside.reason).toBe("not-in-pool");
    const holder = await engine.reserve(slot(1, "192.0.2.5"));
    expect(holder.ok ? "" : holder.message).toContain("delete that lease first");
    expect((await engine.reserve(slot(2, "192.0.2.5"))).ok).toBe(true);
    await engine.close();
    const { engine: again } = await startEngine([POOL], { store });
    expect(again.reservations().map((r) => r.host6)).toEqual([host(2)]);
    for (let i = 3; i <= 7; i++) {
      const r = await again.discover(host(i));
      if (r.ok) expect(formatIPv4(r.lease.ipv4)).not.toBe("192.0.2.5");
    }
    expect(formatIPv4(ok(await again.discover(host(2))).ipv4)).toBe("192.0.2.5");
    // Removed: the slot goes back to everyone.
    expect((await again.unreserve(host(2))).ok).toBe(true);
    expect(again.reservationOf(host(2))).toBeUndefined();
  });
});

describe("an administrator ends a lease", () => {
  test("the lease is released durably and the host's INIT-REBOOT REQUEST is refused", async () => {
    const store = new MemoryLeaseStore();
    const { engine } = await startEngine([POOL], { store });
    const lease = ok(await engine.discover(host(1)));
    const ended = await engine.endLeases([leaseKey(lease.ipv4, 0)]);
    expect(ended.ok && ended.value.map((l) => l.host6)).toEqual([host(1)]);
    expect((await store.loadAll()).map((l) => l.state)).toEqual(["released"]);
    const renew = await engine.request(host(1), lease.ipv4);
    expect(renew.ok ? "renewed" : renew.reason).toBe("no-such-lease");
    expect(renew.ok ? "" : renew.message).toContain("ended by an administrator");
    // A DISCOVER starts over (the host may get the address back: it is free).
    expect(ok(await engine.discover(host(1))).state).toBe("active");
  });

  test("a static lease: granted for the time given, refused on another host's slot", async () => {
    const { engine } = await startEngine([POOL]);
    const granted = await engine.grant(host(1), ip("192.0.2.4"), 0, 86_400);
    expect(granted.ok && granted.value.expiresAt - granted.value.grantedAt).toBe(86_400_000);
    const clash = await engine.grant(host(2), ip("192.0.2.4"), 0, 60);
    expect(clash.ok ? "granted" : clash.message).toContain(`is leased to ${host(1)}`);
    const beyond = await engine.grant(host(2), ip("192.0.2.4"), 3, 60);
    expect(beyond.ok ? "granted" : beyond.message).toContain("psid beyond its share of 1");
  });
});

describe("leasePage", () => {
  test("every row exactly once, in key order, while rows are added between pages", async () => {
    const { engine } = await startEngine([{ prefixes: ["10.0.0.0/20"], tep6: TEP6 }], {
      maxLeasesPerPrefix: 0,
    });
    for (let i = 1; i <= 2500; i++) ok(await engine.discover(`2001:db8:${i.toString(16)}::1`));
    const before = [...engine.rows()].map((l) => leaseKey(l.ipv4, l.portSet.psid));
    const seen: number[] = [];
    let after = -1;
    let pages = 0;
    for (;;) {
      const page = leasePage(engine.rows(), after, 97, (l) => l.state === "active");
      seen.push(...page.leases.map((l) => leaseKey(l.ipv4, l.portSet.psid)));
      pages++;
      // More allocations between pages: they land above or below the cursor.
      for (let j = 0; j < 3; j++) await engine.discover(`2001:db8:f${pages}:${j}::1`);
      if (page.next === null) break;
      after = page.next;
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    const listed = new Set(seen);
    expect(before.filter((key) => !listed.has(key))).toEqual([]);
    expect(before.length).toBe(2500);
  });
});
