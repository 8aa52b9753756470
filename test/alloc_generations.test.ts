/**
 * The generation of every lease write reaches the caller with the write's result
 * (lib/alloc/lease_writer.ts, docs/protocol.md "Generations"): a grant, a release, an
 * expiry and an administrator's end of leases (`dstm lease del` / `wipe`) each come back with
 * the shared store's version of their write, in commit order across engines, whichever lease
 * object the caller holds; an engine on a store with one writer gets none.
 */
import { describe, expect, test } from "bun:test";
import { AllocationEngine, type EngineResult } from "../lib/alloc/engine.ts";
import { type Lease, leaseKey } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { T0 } from "./helpers/engine.ts";
import { waitUntil } from "./helpers/wait.ts";

const POOLS = [{ prefixes: ["198.18.0.0/29"], tep6: "2001:db8::1" }];
const host = (n: number) => `2001:db8:1::${n.toString(16)}`;
const keyOf = (l: Lease) => leaseKey(l.ipv4, l.portSet.psid);

function ok(result: EngineResult): Extract<EngineResult, { ok: true }> {
  if (!result.ok) throw new Error(result.message);
  return result;
}

async function engines(shared: boolean) {
  const store = new MemoryLeaseStore({ shared });
  const clock = { now: T0 };
  const make = async () => {
    const engine = new AllocationEngine({
      pools: POOLS,
      store,
      leaseTime: 60,
      now: () => clock.now,
    });
    await engine.start();
    return engine;
  };
  return { clock, a: await make(), b: shared ? await make() : undefined };
}

describe("generations come back with the write's result", () => {
  test("grant, release, administrator's end and expiry: each its write's, in commit order", async () => {
    const { clock, a, b } = await engines(true);
    const granted = ok(await a.discover(host(1)));
    expect(granted.generation).toBeGreaterThan(0);
    const released = ok(await a.release(host(1), granted.lease.ipv4));
    expect(released.generation).toBeGreaterThan(granted.generation!);

    // `dstm lease del`: the lease ended is the row as it was, not the row written, and still
    // comes with the generation of the write that ended it.
    const second = ok(await a.discover(host(2)));
    const ended = await a.endLeases([keyOf(second.lease)]);
    if (!ended.ok) throw new Error(ended.message);
    expect(ended.value).toEqual([second.lease]);
    expect(ended.generations?.[0]).toBeGreaterThan(second.generation!);

    // The other engine grants the slot again: its generation is above the end's.
    await waitUntil(() => b!.slotView(second.lease.ipv4, 0)?.row?.state === "released", {
      what: "the other engine's view of the end",
    });
    const again = ok(await b!.discover(host(2), { hint: second.lease.ipv4 }));
    expect(again.generation).toBeGreaterThan(ended.generations![0]!);

    // An administrator's static lease, and its expiry by the sweep.
    const base = parseIPv4("198.18.0.0")!;
    const unused = [1, 2, 3, 4, 5, 6].map((i) => base + i).find((ip) => !a.slotView(ip, 0)?.row)!;
    const manual = await a.grant(host(3), unused, 0, 60);
    if (!manual.ok) throw new Error(manual.message);
    expect(manual.generations?.[0]).toBeGreaterThan(again.generation!);
    clock.now += 61_000;
    const expired = await a.reclaim();
    expect(expired.leases.length).toBeGreaterThan(0);
    const mine = expired.leases.findIndex((l) => l.host6 === host(3));
    expect(expired.generations?.[mine]).toBeGreaterThan(manual.generations![0]!);
    await a.close();
    await b!.close();
  });

  test("a store with one writer numbers nothing: no generation anywhere", async () => {
    const { clock, a } = await engines(false);
    const granted = ok(await a.discover(host(1)));
    expect(granted.generation).toBeUndefined();
    const ended = await a.endLeases([keyOf(granted.lease)]);
    expect(ended.ok && ended.generations).toBeUndefined();
    ok(await a.discover(host(2)));
    clock.now += 61_000;
    const expired = await a.reclaim();
    expect(expired.leases.length).toBe(1);
    expect(expired.generations).toBeUndefined();
    await a.close();
  });
});
