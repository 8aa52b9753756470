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

/** An engine on a {@link HeldStore}, its TepSync (wired as lib/server/server_parts.ts does) and what it sent. */
async function server() {
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
      watchedThrough: () => engine.watchedThrough(),
    },
    [],
  );
  /** The TEP's SYNC reporting `count` bindings and `digest`. */
  const report = (syncCount: number, syncDigest: number) => {
    const m: DstmMessage = { type: MessageType.SYNC, xid: 1, tep6: TEP, syncCount, syncDigest };
    sync.onTepMessage(encodeMessage(m), m, TEP, 4608);
  };
  const { promise: gate, resolve: open } = Promise.withResolvers<void>();
  const close = async () => {
    open(); // a failed check must not leave a write (and engine.close) waiting
    sync.close();
    await engine.close();
  };
  return { store, engine, sync, sent, report, gate, open, close };
}

/** A TEP's bindings (lib/tep/tep_bindings.ts) and a way to load one snapshot part into them. */
function tep() {
  const table = new RecordingTable();
  const bindings = new TepBindings(table, [], () => T0);
  const load = (part: DstmMessage) =>
    bindings.loadSnapshot(new SnapshotAssemblies({ now: () => T0 }).add(TEP, part)!);
  return { table, bindings, load };
}

const WHOLE = { offset: 0, psidLength: 0, psid: 0 };

describe("a snapshot cut while the server's own write is on its way", () => {
  test("cuts below a grant, so the grant's BIND, arriving first, survives the snapshot", async () => {
    const s = await server();
    try {
      s.report(0, 0); // the TEP is connected and in step (nothing bound)
      s.store.hold = s.gate;
      const granting = s.engine.discover(H);
      await waitUntil(() => s.store.committed > 0, { what: "the grant committed" });
      // The watch has read the grant's row; its result has not come back yet.
      s.store.watched = s.store.committed;
      s.report(1, 12345); // a SYNC that differs: a snapshot is cut now
      const part = s.sent.find((m) => m.type === MessageType.SNAPSHOT)!;
      expect(part.bindings ?? []).toEqual([]); // the grant is not in the server's view yet
      s.open();
      const granted = await granting;
      if (!granted.ok) throw new Error(granted.message);
      void s.sync.install(granted.lease, granted.generation);
      const bind = s.sent.find((m) => m.type === MessageType.BIND)!;
      expect(bind.generation).toBe(s.store.committed);
      expect(part.generation).toBeLessThan(bind.generation!);

      // At the TEP the BIND arrives first, then the snapshot's (only) part.
      const t = tep();
      t.bindings.bind({ host4: bind.host4!, host6: H, portSet: WHOLE }, bind.generation);
      t.load(part);
      expect(t.table.map.get(bind.host4!)).toBe(H);
      // Once the write's result is in, the cut is the watch's point again.
      await waitUntil(() => s.engine.watchedThrough() === s.store.committed, {
        what: "the cut back at the watch's point",
      });
    } finally {
      await s.close();
    }
  });

  test("cuts below a release, so the release's UNBIND, arriving first, is not undone", async () => {
    const s = await server();
    try {
      s.report(0, 0);
      const granted = await s.engine.discover(H);
      if (!granted.ok) throw new Error(granted.message);
      void s.sync.install(granted.lease, granted.generation);
      const bind = s.sent.find((m) => m.type === MessageType.BIND)!;
      s.store.watched = s.store.committed;
      await waitUntil(() => s.engine.watchedThrough() === s.store.committed, {
        what: "the grant taken in",
      });
      s.store.hold = s.gate;
      const releasing = s.engine.release(H, granted.lease.ipv4);
      await waitUntil(() => s.store.committed > bind.generation!, {
        what: "the release committed",
      });
      s.store.watched = s.store.committed;
      s.report(0, 0); // differs from the server's view (one binding): a snapshot is cut now
      const part = s.sent.find((m) => m.type === MessageType.SNAPSHOT)!;
      expect(part.bindings?.length).toBe(1); // the binding is still in the server's view
      s.open();
      const released = await releasing;
      if (!released.ok) throw new Error(released.message);
      s.sync.remove(released.lease, released.generation);
      const unbind = s.sent.find((m) => m.type === MessageType.UNBIND)!;
      expect(unbind.generation).toBe(s.store.committed);
      expect(part.generation).toBeLessThan(unbind.generation!);

      // At the TEP: the BIND, then the UNBIND, then the snapshot's part.
      const t = tep();
      const b = { host4: bind.host4!, host6: H, portSet: WHOLE };
      t.bindings.bind(b, bind.generation);
      t.bindings.unbind(b, unbind.generation);
      t.load(part);
      expect(t.table.map.has(bind.host4!)).toBe(false);
    } finally {
      await s.close();
    }
  });
});
