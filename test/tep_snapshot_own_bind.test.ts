/**
 * A server's own BIND that overtakes its snapshot's first part survives it (docs/protocol.md,
 * "Generations"; lib/lease/group_commit.ts `watchedThrough`).
 *
 * The snapshot's cut is the point up to which every committed change is in the server's view
 * of the TEP. The server's own grant reaches that view only when it BINDs it, once the write's
 * result has come back; the store's watch, reading the table on another connection, may
 * deliver rows past the grant's `seq` before that result does. A snapshot cut in between,
 * at the watch's point, claimed the grant (at or below its cut) and yet lacked its binding:
 * when the network delivered the BIND before the snapshot's first part, the TEP dropped the
 * binding of an acknowledged lease until the next SYNC. The cut now stays below every write
 * of this server whose result has not been taken in (the watch's point when the write was
 * handed to the store), so the BIND's generation is above it and the TEP keeps the binding.
 *
 * The store here is a shared memory store whose write commits (and numbers) at once but whose
 * result the test holds back, and whose watch point the test sets past the write.
 */
import { describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import type { Lease, LeaseOp, LeaseStore, WriteOutcome } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { SnapshotAssemblies } from "../lib/tep/snapshot_assembly.ts";
import { TepBindings } from "../lib/tep/tep_bindings.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";
import { T0 } from "./helpers/engine.ts";
import { RecordingTable } from "./helpers/recording_table.ts";
import { waitUntil } from "./helpers/wait.ts";

const TEP = "2001:db8::7";
const H = "2001:db8:2::1";

/** A shared store whose write commits at once and resolves when `hold` does. */
class HeldStore implements LeaseStore {
  readonly kind = "memory";
  readonly shared = true;
  readonly inner = new MemoryLeaseStore({ shared: true });
  hold: Promise<unknown> = Promise.resolve();
  /** The highest generation committed so far. */
  committed = 0;
  /** What watchedThrough says: the test moves it. */
  watched = 0;
  loadAll(): Promise<Lease[]> {
    return this.inner.loadAll();
  }
  async write(ops: readonly LeaseOp[]): Promise<WriteOutcome | undefined> {
    const outcome = await this.inner.write(ops);
    for (const g of outcome?.generations ?? []) if (g !== undefined) this.committed = g;
    await this.hold;
    return outcome;
  }
  watch(onRows: (rows: Lease[]) => void): () => Promise<void> {
    return this.inner.watch(onRows);
  }
  watchedThrough(): number | undefined {
    return this.watched;
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe("a snapshot cut while the server's own grant is being written", () => {
  test("cuts below the grant, so the grant's BIND, arriving first, survives the snapshot", async () => {
    const store = new HeldStore();
    const engine = new AllocationEngine({
      pools: [{ prefixes: ["198.18.0.0/29"], tep6: TEP }],
      store,
      leaseTime: 600,
      now: () => T0,
    });
    await engine.start();
    const sent: DstmMessage[] = [];
    const sync = new TepSync(
      {
        teps: [TEP],
        log: new Logger({ sink: () => {} }),
        metrics: new Metrics(),
        send: (data) => {
          const m = decodeMessage(data);
          if (m.ok) sent.push(m.value);
          return true;
        },
        // As lib/server/server_parts.ts wires it for a shared store.
        watchedThrough: () => engine.watchedThrough(),
      },
      [],
    );
    const report = (syncCount: number, syncDigest: number) => {
      const m: DstmMessage = { type: MessageType.SYNC, xid: 1, tep6: TEP, syncCount, syncDigest };
      sync.onTepMessage(encodeMessage(m), m, TEP, 4608);
    };
    const { promise: gate, resolve: open } = Promise.withResolvers<void>();
    try {
      report(0, 0); // the TEP is connected and in step (nothing bound)
      store.watched = store.committed;
      store.hold = gate;
      const granting = engine.discover(H);
      await waitUntil(() => store.committed > 0, { what: "the grant committed" });
      // The watch has read the grant's row; its result has not come back yet.
      store.watched = store.committed;
      report(1, 12345); // a SYNC that differs: a snapshot is cut now
      const part = sent.find((m) => m.type === MessageType.SNAPSHOT)!;
      expect(part.bindings ?? []).toEqual([]); // the grant is not in the server's view yet
      open();
      const granted = await granting;
      if (!granted.ok) throw new Error(granted.message);
      void sync.install(granted.lease, granted.generation);
      const bind = sent.find((m) => m.type === MessageType.BIND)!;
      expect(bind.generation).toBe(store.committed);
      expect(part.generation).toBeLessThan(bind.generation!);

      // At the TEP the BIND arrives first, then the snapshot's (only) part.
      const table = new RecordingTable();
      const bindings = new TepBindings(table, [], () => T0);
      bindings.bind(
        { host4: bind.host4!, host6: H, portSet: { offset: 0, psidLength: 0, psid: 0 } },
        bind.generation,
      );
      const whole = new SnapshotAssemblies({ now: () => T0 }).add(TEP, part);
      bindings.loadSnapshot(whole!);
      expect(table.map.get(bind.host4!)).toBe(H);
      // Once the write's result is in, the cut is the watch's point again.
      await waitUntil(() => engine.watchedThrough() === store.committed, {
        what: "the cut back at the watch's point",
      });
    } finally {
      open(); // a failed check must not leave the write (and engine.close) waiting
      sync.close();
      await engine.close();
    }
  });
});
