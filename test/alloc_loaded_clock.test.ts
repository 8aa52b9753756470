/**
 * Rows loaded at start get their monotonic deadline from one clock offset taken at the load
 * (lib/alloc/lease_clock.ts markLoad, the lease table's loaded bit): a wall-clock step after
 * the start must expire none of them early nor keep them late, through a reload too, and a
 * loaded lease that is renewed runs on its own deadline from then on.
 */
import { describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { ok, T0 } from "./helpers/engine.ts";

const POOL = { prefixes: ["192.0.2.0/24"], tep6: "2001:db8::1" };

function stored(n: number, expiresAt: number): Lease {
  return {
    ipv4: (parseIPv4("192.0.2.0") as number) + n,
    portSet: WHOLE_ADDRESS,
    host6: `2001:db8:1::${n}`,
    tep4: 0,
    tep6: "2001:db8::1",
    pool: "192.0.2.0/24",
    state: "active",
    grantedAt: T0,
    expiresAt,
  };
}

async function loaded() {
  const store = new MemoryLeaseStore();
  // .1 has 60 s left at the start, .2 has 120 s
  await store.write([
    { op: "put", lease: stored(1, T0 + 60_000) },
    { op: "put", lease: stored(2, T0 + 120_000) },
  ]);
  const clocks = { wall: T0, mono: 7_000 };
  const steps: number[] = [];
  const engine = new AllocationEngine({
    pools: [POOL],
    store,
    leaseTime: 600,
    now: () => clocks.wall,
    monotonic: () => clocks.mono,
    onClockStep: (ms) => steps.push(ms),
  });
  await engine.start();
  return { engine, clocks, steps };
}

describe("leases loaded at start run on the monotonic clock", () => {
  test("a wall-clock step after the start expires none early; each ends on its monotonic deadline", async () => {
    const { engine, clocks, steps } = await loaded();
    clocks.wall += 3 * 3600_000; // stepped 3 h forward
    clocks.mono += 1_000;
    clocks.wall += 1_000;
    expect(await engine.sweep()).toEqual([]);
    expect(steps).toEqual([3 * 3600_000]);
    expect(engine.remainingMs(engine.lookupHost("2001:db8:1::1") as Lease)).toBe(59_000);
    expect(engine.nextExpiry()).toBe(T0 + 60_000);
    clocks.mono += 58_999;
    expect(await engine.sweep()).toEqual([]);
    clocks.mono += 1;
    expect((await engine.sweep()).map((l) => l.host6)).toEqual(["2001:db8:1::1"]);
    expect(engine.lookupHost("2001:db8:1::2")).toBeDefined();
  });

  test("a reload keeps the loaded leases' deadlines", async () => {
    const { engine, clocks } = await loaded();
    clocks.wall -= 3600_000; // stepped 1 h back
    clocks.mono += 10_000;
    engine.reconfigure({ pools: [POOL], leaseTime: 600 });
    expect(engine.remainingMs(engine.lookupHost("2001:db8:1::1") as Lease)).toBe(50_000);
    clocks.mono += 50_000;
    expect((await engine.sweep()).map((l) => l.host6)).toEqual(["2001:db8:1::1"]);
  });

  test("a renewed loaded lease runs on its new deadline", async () => {
    const { engine, clocks } = await loaded();
    clocks.wall += 3600_000; // stepped 1 h forward
    const renewed = ok(await engine.request("2001:db8:1::1", parseIPv4("192.0.2.1") as number));
    expect(engine.remainingMs(renewed)).toBe(600_000);
    clocks.mono += 60_000;
    expect(await engine.sweep()).toEqual([]);
    clocks.mono += 60_000; // the other, still the loaded row, ends on its loaded deadline
    expect((await engine.sweep()).map((l) => l.host6)).toEqual(["2001:db8:1::2"]);
    clocks.mono += 479_999;
    expect(await engine.sweep()).toEqual([]);
    clocks.mono += 1;
    expect((await engine.sweep()).map((l) => l.host6)).toEqual(["2001:db8:1::1"]);
  });
});
