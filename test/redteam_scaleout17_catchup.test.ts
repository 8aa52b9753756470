/**
 * Red team, issue 12 §3: the catch-up with the shared store before a TEP's differing SYNC is
 * judged (lib/server/tep_sync.ts, docs/scale-out.md "A full snapshot from any server").
 *
 * - A row another server committed and this one takes in during the catch-up is in the
 *   snapshot: the SYNC that reported it is not answered from the stale view.
 * - Forged SYNCs (an unauthenticated channel: anyone who can send from the TEP's address)
 *   cause at most one catch-up (one database read) per CATCH_UP_GAP_MS, however many come.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { CATCH_UP_GAP_MS, TepSync } from "../lib/server/tep_sync.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, type WireBinding } from "../lib/wire/dstm_types.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";
import { waitUntil } from "./helpers/wait.ts";

const A4 = 0xc6120000; // 198.18.0.0
const lease = (i: number): Lease => ({
  ipv4: A4 + i,
  portSet: WHOLE_ADDRESS,
  host6: `2001:db8:1::${i + 1}`,
  tep4: 0,
  tep6: "::1",
  pool: "198.18.0.0/24",
  state: "active",
  grantedAt: 0,
  expiresAt: 1e13,
});
const wire = (l: Lease): WireBinding => ({ host4: l.ipv4, host6: l.host6, portSet: l.portSet });

const closing: (() => void)[] = [];
afterEach(() => {
  for (const close of closing.splice(0)) close();
});

/** A TepSync whose catch-up is `catchUp`; what it sends, decoded. */
function tepSync(catchUp: () => Promise<void>, leases: Lease[]) {
  const sent: DstmMessage[] = [];
  const sync = new TepSync(
    {
      teps: ["::1"],
      tepPort: 4608,
      log: new Logger({ sink: () => {} }),
      metrics: new Metrics(),
      catchUp,
      send: (data) => {
        const decoded = decodeMessage(data);
        if (!decoded.ok) throw new Error(decoded.error.message);
        sent.push(decoded.value);
        return true;
      },
    },
    leases,
  );
  closing.push(() => sync.close());
  const syncFromTep = (bindings: WireBinding[]) => {
    const raw = encodeMessage({
      type: MessageType.SYNC,
      xid: 1,
      tep6: "::1",
      syncCount: bindings.length,
      syncDigest: bindingsDigest(bindings),
    });
    const decoded = decodeMessage(raw);
    if (!decoded.ok) throw new Error("bad SYNC");
    sync.onTepMessage(raw, decoded.value, "::1", 4608);
  };
  const snapshots = () => sent.filter((m) => m.type === MessageType.SNAPSHOT);
  return { sync, sent, syncFromTep, snapshots };
}

describe("a SYNC that differs from a shared store's view", () => {
  test("is judged after the rows committed so far are in: the other server's grant is in the snapshot", async () => {
    const mine = lease(0);
    const theirs = lease(1); // granted and BIND-ed by the other server; not yet heard of here
    let calls = 0;
    const t = tepSync(async () => {
      calls++;
      t.sync.adopt(theirs); // what the catch-up's read brings in
    }, [mine]);
    // The TEP holds both (it had the other server's BIND): its SYNC differs from this view.
    t.syncFromTep([wire(mine), wire(theirs)]);
    await waitUntil(() => calls === 1, { what: "the catch-up" });
    // Once caught up the view equals the TEP's table: nothing to send (one turn of the event
    // loop lets the judgement after the catch-up run; it is not a wait for time).
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(t.snapshots()).toEqual([]);
    expect(t.sync.view("::1").count).toBe(2);
  });

  test("a TEP that does differ after the catch-up gets a snapshot with every binding", async () => {
    const t = tepSync(async () => {}, [lease(0), lease(1)]);
    t.syncFromTep([]); // a restarted TEP
    await waitUntil(() => t.snapshots().length > 0, { what: "the snapshot" });
    const bound = t.snapshots().flatMap((m) => m.bindings ?? []);
    expect(bound.map((b) => b.host4).sort()).toEqual([A4, A4 + 1]);
  });

  test("forged SYNCs cause at most one catch-up per CATCH_UP_GAP_MS", async () => {
    let calls = 0;
    const t = tepSync(async () => {
      calls++;
    }, [lease(0)]);
    const started = performance.now();
    // A flood for a little over two gaps, SYNCs that never match.
    while (performance.now() - started < 2.5 * CATCH_UP_GAP_MS) {
      for (let i = 0; i < 100; i++) t.syncFromTep([]);
      await Bun.sleep(5);
    }
    const elapsed = performance.now() - started;
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThanOrEqual(Math.floor(elapsed / CATCH_UP_GAP_MS) + 1);
  });
});

let pg: PgServer | undefined;
const stores: PostgresLeaseStore[] = [];
afterAll(async () => {
  for (const store of stores) await store.close().catch(() => {});
  await pg?.stop();
});

describe.skipIf(!postgresBin())("PostgresLeaseStore.caughtUp", () => {
  test("resolves with every row another writer committed before the call taken in", async () => {
    pg = await startPostgres();
    const url = await pg.createDatabase();
    const mine = await PostgresLeaseStore.open(url);
    const other = await PostgresLeaseStore.open(url);
    stores.push(mine, other);
    const seen: string[] = [];
    const stop = mine.watch((rows) => seen.push(...rows.map((r) => r.host6)));
    await mine.caughtUp(); // the watch's first read (the starting sequence number) is in
    for (let round = 0; round < 20; round++) {
      const row = lease(round);
      await other.write([{ op: "put", lease: row }]);
      // No waiting for NOTIFY or the poll: the row is in as soon as caughtUp resolves.
      await mine.caughtUp();
      expect(seen).toContain(row.host6);
    }
    await stop();
    // A stopped watch holds nobody up.
    await mine.caughtUp();
  });
});
