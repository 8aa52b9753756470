/**
 * Reservations under active-active: two engines on one shared store (the in-process model,
 * and two engines on a real PostgreSQL database), a reservation made through one. The other
 * engine never gives the slot to another host, even before it has learned of the reservation
 * (the store refuses the row: trigger / check), and once it has learned, it gives the
 * reserved host its slot.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import type { LeaseStore } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { T0 } from "./helpers/engine.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";
import { eventually } from "./helpers/wait.ts";

const POOLS = [{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }]; // .1 – .6
const RESERVED = "2001:db8:1::99";
const host = (n: number) => `2001:db8:2::${n.toString(16)}`;

let pg: Promise<PgServer> | undefined;
afterAll(async () => {
  if (pg) await (await pg).stop();
});

async function engines(stores: [LeaseStore, LeaseStore]) {
  const made = [];
  for (const store of stores) {
    const engine = new AllocationEngine({ pools: POOLS, store, leaseTime: 600, now: () => T0 });
    await engine.start();
    made.push(engine);
  }
  return made as [AllocationEngine, AllocationEngine];
}

async function check(stores: [LeaseStore, LeaseStore]) {
  const [a, b] = await engines(stores);
  try {
    const reserved = await a.reserve({
      host6: RESERVED,
      ipv4: parseIPv4("198.51.100.3")!,
      psid: 0,
      createdAt: T0,
    });
    expect(reserved.ok).toBe(true);
    // At once, before b can have heard of it: six other hosts ask b for the six addresses.
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => b.discover(host(i))));
    const granted = results.flatMap((r) => (r.ok ? [formatIPv4(r.lease.ipv4)] : []));
    expect(granted).not.toContain("198.51.100.3");
    expect(granted.length).toBe(5);
    const stored = await stores[0].loadAll();
    expect(
      stored.filter((l) => l.state === "active" && formatIPv4(l.ipv4) === "198.51.100.3"),
    ).toEqual([]);
    // Once b has learned of it, the reserved host gets its address from b.
    expect(
      await eventually(() => b.reservationOf(RESERVED) !== undefined, { timeoutMs: 10_000 }),
    ).toBe(true);
    const mine = await b.discover(RESERVED);
    expect(mine.ok ? formatIPv4(mine.lease.ipv4) : mine.message).toBe("198.51.100.3");
    // And a reservation through b of a slot a's host holds is refused with the holder.
    const clash = await b.reserve({
      host6: "2001:db8:1::98",
      ipv4: parseIPv4("198.51.100.1")!,
      psid: 0,
      createdAt: T0,
    });
    expect(clash.ok ? "reserved" : clash.reason).toBe("in-use");
  } finally {
    await a.close();
    await b.close();
  }
}

describe("a reservation made through one server holds at the other", () => {
  test("two engines on one shared in-process store", async () => {
    const store = new MemoryLeaseStore({ shared: true });
    await check([store, store]);
  });

  test.skipIf(postgresBin() === undefined)(
    "two engines on one PostgreSQL database",
    async () => {
      pg ??= startPostgres();
      const url = await (await pg).createDatabase();
      const one = await PostgresLeaseStore.open(url);
      const two = await PostgresLeaseStore.open(url);
      try {
        await check([one, two]);
      } finally {
        await one.close();
        await two.close();
      }
    },
    60_000,
  );
});
