/**
 * Red team of the holder hash handed from the engine to the SQLite store (LeaseOp.holderHash,
 * lib/alloc/lease_writer.ts put → lib/lease/sqlite_holders.ts): an engine on a SQLite file,
 * an address pool shared by PSID, native hosts and DHCPv4-over-DHCPv6 identities (one identity
 * seen from several IPv6 addresses, one of them also a native host's: two holders of one
 * host6), bursts of concurrent DISCOVERs, renewals and releases with retransmissions of each
 * (the copies fall in one group commit), expiry, and restarts of engine and store. After each
 * burst the file must hold no holder with two active rows and exactly the engine's active
 * leases; every holder finds at most its one lease. Held: the engine's hash is the store's.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { leaseHolder } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { prng } from "./helpers/fuzz.ts";
import { activeOf, doubleHolders, storedActive } from "./helpers/rt20_guard_fuzz.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Holder {
  /** The addresses it asks from (one for a native host). */
  host6s: string[];
  identity?: string;
}

describe("atk21: one active lease per holder, engine on SQLite", () => {
  test("bursts with retransmissions, identities, expiry and restarts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "atk21-holder-"));
    dirs.push(dir);
    const path = join(dir, "leases.db");
    let now = 5_000_000;
    let store: SqliteLeaseStore | undefined;
    const open = async () => {
      store = SqliteLeaseStore.open(path);
      const engine = new AllocationEngine({
        pools: [{ prefixes: ["198.18.0.0/28"], tep6: "2001:db8::1", share: 4 }],
        store,
        leaseTime: 120,
        now: () => now,
      });
      await engine.start();
      return engine;
    };
    const random = prng(2021);
    const holders: Holder[] = [];
    for (let i = 0; i < 50; i++) holders.push({ host6s: [`2001:db8:5::${(i + 1).toString(16)}`] });
    for (let i = 0; i < 20; i++) {
      holders.push({
        identity: `id:01${i.toString(16).padStart(4, "0")}`,
        // The first address is also a native host's (holders[i]), the others its own.
        host6s: [
          `2001:db8:5::${(i + 1).toString(16)}`,
          `2001:db8:6::${i + 1}`,
          `2001:db8:6::${i + 100}`,
        ],
      });
    }
    let engine = await open();
    const db = new Database(path, { readonly: true });
    let granted = 0;
    for (let round = 0; round < 60; round++) {
      const ops: Promise<unknown>[] = [];
      for (let n = 0; n < 40; n++) {
        const h = holders[(random() * holders.length) | 0]!;
        const host6 = h.host6s[(random() * h.host6s.length) | 0]!;
        const scope = h.identity === undefined ? undefined : { identity: h.identity };
        const held = engine.lookupHost(host6, scope);
        const copies = 1 + ((random() * 3) | 0); // retransmissions of the same request
        const r = random();
        for (let c = 0; c < copies; c++) {
          if (held === undefined || held.state !== "active" || r < 0.4)
            ops.push(
              engine.discover(host6, scope).then((x) => {
                if (x.ok) granted++;
              }),
            );
          else if (r < 0.8) ops.push(engine.request(host6, held.ipv4, scope ?? {}));
          else ops.push(engine.release(host6, held.ipv4, scope));
        }
      }
      await Promise.all(ops);
      expect(doubleHolders(db)).toEqual([]);
      const active = engine.leases({ state: "active" });
      expect(storedActive(db)).toEqual(activeOf(active));
      const byHolder = new Map<string, number>();
      for (const l of active) byHolder.set(leaseHolder(l), (byHolder.get(leaseHolder(l)) ?? 0) + 1);
      expect([...byHolder.values()].every((n) => n === 1)).toBe(true);
      if (round % 10 === 4) {
        now += 121_000; // all lapse; the sweep expires them
        await engine.sweep();
      }
      if (round % 10 === 9) {
        await engine.close();
        await store?.close();
        engine = await open();
        expect(activeOf(engine.leases({ state: "active" }))).toEqual(storedActive(db));
      }
    }
    expect(granted).toBeGreaterThan(200);
    await engine.close();
    await store?.close();
    db.close();
  });
});
