/**
 * Red team (atk17) on reclaim on allocation (lib/alloc/reclaimer.ts sliceNow, allocator.ts
 * whenExhausted) with two servers on one PostgreSQL store: a pool full of overdue leases (62,
 * granted through both), then 200 new hosts at once, half asking server A and half server B,
 * each server reclaiming on allocation through its own Reclaimer (slices of 3). Held: every
 * host answered with an address holds it in the database (active, that address, that host),
 * no address or host twice there, the other answers pool-exhausted or refused for a conflict
 * — never an address taken from another answered host — and each overdue lease told expired
 * exactly once across the two servers.
 *
 * Fault (fixed): every host should be answered while an overdue lease is left, but in about
 * one flood of four on main fewer than 62 were (39–52 seen; `ATK17_DEBUG=1` prints, per
 * refusal, the server, its free slots right after, and the slices' counts: e.g. A refused 97
 * hosts with free=3, B 54 with free=4), refused pool-exhausted while slots stood free. A
 * slice whose batch failed on a conflict with the other server (one conflicting allocation
 * fails the whole batch, and the slice's expiries roll back with it) freed 0, and every
 * DISCOVER waiting on it was refused at once. Now such a DISCOVER is decided again like any
 * write another server won (bounded retries with jitter). Four floods per run, each must
 * serve all 62 (on main one run of the test fails most of the time, not always).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Reclaimer } from "../lib/alloc/reclaimer.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { T0 } from "./helpers/engine.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";
import { waitUntil } from "./helpers/wait.ts";

const TEP6 = "2001:db8::1";
let pg: Promise<PgServer> | undefined;
const stores: PostgresLeaseStore[] = [];
afterAll(async () => {
  for (const store of stores) await store.close().catch(() => {});
  if (pg) await (await pg).stop();
});

describe.skipIf(!postgresBin())("reclaim on allocation, two servers on one PostgreSQL", () => {
  test("200 new hosts on a pool of 62 overdue leases through A and B at once, 4 floods", async () => {
    for (let round = 0; round < 4; round++) await flood();
  }, 240_000);
});

async function flood(): Promise<void> {
  {
    pg ??= startPostgres();
    const url = await (await pg).createDatabase();
    const clock = { now: T0 };
    const pools = [{ prefixes: ["198.18.0.0/26"], tep6: TEP6 }];
    const told: Lease[] = [];
    const slices: number[] = [];
    const make = async () => {
      const store = await PostgresLeaseStore.open(url);
      stores.push(store);
      let reclaimer: Reclaimer | undefined;
      const engine = new AllocationEngine({
        pools,
        store,
        leaseTime: 60,
        now: () => clock.now,
        reclaimMaxLeases: 3,
        reclaimNow: () => {
          const p = reclaimer ? reclaimer.sliceNow() : Promise.resolve(0);
          void p.then((freed) => slices.push(freed));
          return p;
        },
      });
      await engine.start();
      reclaimer = new Reclaimer({ engine, onExpired: (l) => told.push(...l) });
      return { engine, reclaimer, store };
    };
    const a = await make();
    const b = await make();
    for (let i = 0; i < 62; i++) {
      const r = await (i % 2 ? a : b).engine.discover(`2001:db8:1::${(i + 1).toString(16)}`);
      expect(r.ok).toBe(true);
    }
    // Each server has heard of the other's grants (NOTIFY) before the leases run out.
    await waitUntil(
      () =>
        a.engine.leases({ state: "active" }).length === 62 &&
        b.engine.leases({ state: "active" }).length === 62,
      { what: "both servers hold the 62 grants" },
    );
    clock.now += 61_000;
    const hosts = Array.from({ length: 200 }, (_, i) => `2001:db8:2::${(i + 1).toString(16)}`);
    const refusedState: string[] = [];
    const results = await Promise.all(
      hosts.map(async (h, i) => {
        const e = (i % 2 ? a : b).engine;
        const r = await e.discover(h);
        if (!r.ok && process.env.ATK17_DEBUG)
          refusedState.push(
            `${i % 2 ? "A" : "B"} free=${e.stats()[0]!.free} next=${(e.nextExpiry() ?? 0) - clock.now}`,
          );
        return r;
      }),
    );
    if (process.env.ATK17_DEBUG) {
      const c = new Map<string, number>();
      for (const x of refusedState) c.set(x, (c.get(x) ?? 0) + 1);
      console.log("refused at", JSON.stringify([...c]), "slices", JSON.stringify(slices));
    }
    const answered = new Map<string, number>();
    for (let i = 0; i < hosts.length; i++) {
      const r = results[i]!;
      if (r.ok) answered.set(hosts[i]!, r.lease.ipv4);
    }
    const rows = await a.store.loadAll();
    const active = rows.filter((l) => l.state === "active");
    expect(new Set(active.map((l) => l.ipv4)).size).toBe(active.length);
    expect(new Set(active.map((l) => l.host6)).size).toBe(active.length);
    const held = new Map(active.map((l) => [l.host6, l.ipv4]));
    for (const [host6, ipv4] of answered) expect(held.get(host6)).toBe(ipv4);
    expect(answered.size).toBe(62); // main: 39–52 in about one flood of four
    // Every overdue lease expired once, told by one server only.
    await a.reclaimer.run();
    await b.reclaimer.run();
    const old = told.filter((l) => l.host6.startsWith("2001:db8:1::"));
    expect(new Set(old.map((l) => l.host6)).size).toBe(old.length);
    expect(rows.filter((l) => l.state === "active" && l.host6.startsWith("2001:db8:1::"))).toEqual(
      [],
    );
    if (process.env.ATK17_DEBUG)
      console.log(
        `answered ${answered.size} of 200; active ${active.length}; told ${told.length}; refused ${
          results.filter((r) => !r.ok).length
        } (${[...new Set(results.flatMap((r) => (r.ok ? [] : [r.reason])))].join(", ")})`,
      );
    if (process.env.ATK17_DEBUG) {
      const per = (k: number) => results.filter((r, i) => i % 2 === k && r.ok).length;
      console.log("answered via B", per(0), "via A", per(1));
      console.log("A stats", JSON.stringify(a.engine.stats()), "lapsed", a.engine.expiriesLapsed());
      console.log("B stats", JSON.stringify(b.engine.stats()), "lapsed", b.engine.expiriesLapsed());
    }
    await a.reclaimer.stop();
    await b.reclaimer.stop();
    await a.engine.close();
    await b.engine.close();
  }
}
