/**
 * Sticky re-allocation picks the host's most recently freed slot (issue 10, mutant 6: keeping
 * the oldest freed row of a host instead of the newest survived the suite).
 *
 * A host has two freed rows when several servers share one lease table (each freed one for
 * it), or after a change of pools; the engine rebuilds its index from the store at start.
 */
import { describe, expect, test } from "bun:test";
import { type Lease, type LeaseState, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { ok, startEngine, T0 } from "./helpers/engine.ts";

const TEP6 = "2001:db8::1";
const H = "2001:db8:1::1";

function row(ipv4: string, host6: string, state: LeaseState, freedAgoMs: number): Lease {
  const expiresAt = T0 - freedAgoMs;
  return {
    ipv4: parseIPv4(ipv4)!,
    portSet: WHOLE_ADDRESS,
    host6,
    tep4: 0,
    tep6: TEP6,
    pool: "192.0.2.0/29",
    state,
    grantedAt: expiresAt - 600_000,
    expiresAt,
  };
}

async function engineOver(rows: Lease[]) {
  const store = new MemoryLeaseStore();
  await store.write(rows.map((lease) => ({ op: "put", lease })));
  return startEngine([{ prefixes: ["192.0.2.0/29"], tep6: TEP6 }], { store });
}

describe("sticky re-allocation: the newest freed row of the host", () => {
  for (const [older, newer] of [
    ["192.0.2.1", "192.0.2.4"],
    ["192.0.2.4", "192.0.2.1"],
  ] as const) {
    test(`freed ${older} long ago and ${newer} recently: the host gets ${newer} back`, async () => {
      const { engine } = await engineOver([
        row(older, H, "expired", 3_600_000),
        row(newer, H, "released", 60_000),
      ]);
      const again = ok(await engine.discover(H));
      expect([formatIPv4(again.ipv4), again.outcome]).toEqual([newer, "reused"]);
    });
  }

  test("the newest row is sticky after a release in this run too", async () => {
    const { engine, clock } = await engineOver([row("192.0.2.1", H, "expired", 3_600_000)]);
    // Another host holds the old sticky address, so H is given another one, then frees it.
    const other = ok(await engine.discover("2001:db8:1::2", { hint: parseIPv4("192.0.2.1")! }));
    expect(formatIPv4(other.ipv4)).toBe("192.0.2.1");
    const second = ok(await engine.discover(H));
    expect(formatIPv4(second.ipv4)).not.toBe("192.0.2.1");
    clock.now += 1000;
    ok(await engine.release(H, second.ipv4));
    ok(await engine.release("2001:db8:1::2", other.ipv4));
    clock.now += 1000;
    const third = ok(await engine.discover(H));
    expect([third.ipv4, third.outcome]).toEqual([second.ipv4, "reused"]);
  });
});
