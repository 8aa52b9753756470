/**
 * SNAPSHOT_MISSING (docs/protocol.md): a TEP on real sockets on [::1] names the parts it lacks
 * in its SYNC and a re-sent part completes its table; the server re-sends nothing while a
 * chunked snapshot is still going out, nor just after.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { SYNC_INTERVAL_MS, TepSync } from "../lib/server/tep_sync.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { TepControl } from "../lib/tep/control.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, type WireBinding } from "../lib/wire/dstm_types.ts";
import { RecordingTable } from "./helpers/recording_table.ts";
import { waitUntil } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const binding = (n: number): WireBinding => ({
  host4: 0xc6336400 + n + 1,
  host6: `2001:db8:1::${(n + 1).toString(16)}`,
  portSet: WHOLE_ADDRESS,
});

/** A server stand-in on [::1]: records the SYNCs it gets. */
async function fakeServer() {
  const syncs: DstmMessage[] = [];
  const ep = await bindUdp("::1", 0, (data) => {
    const decoded = decodeMessage(data);
    if (decoded.ok && decoded.value.type === MessageType.SYNC) syncs.push(decoded.value);
  });
  cleanup.push(() => ep.close());
  return { ep, syncs };
}

describe("the TEP asks for the parts it lacks", () => {
  test("its SYNC names them; a re-sent part completes the table, a late copy is ignored", async () => {
    const one = await fakeServer();
    const table = new RecordingTable();
    const metrics = new Metrics();
    const tep = await TepControl.start({
      listen: { address: "::1", port: 0 },
      server: { address: "::1", port: one.ep.port },
      tep6: "::1",
      table,
      syncIntervalMs: 3_600_000, // SYNCs only when the test calls sync()
      log: new Logger({ sink: () => {} }),
      metrics,
    });
    cleanup.push(() => tep.close());
    await waitUntil(() => one.syncs.length === 1, { what: "the first SYNC" });
    expect(one.syncs[0]!.snapshotMissing).toBeUndefined();
    const parts = Array.from({ length: 5 }, (_, p) => [binding(2 * p), binding(2 * p + 1)]);
    const send = (p: number) =>
      one.ep.send(
        encodeMessage({
          type: MessageType.SNAPSHOT,
          xid: p,
          snapshot: { id: 77, part: p, parts: 5 },
          bindings: parts[p],
        }),
        "::1",
        tep.port,
      );
    const accepted = () =>
      metrics.get("dstm_tep_control_total", { kind: "snapshot", result: "ok" });
    for (const p of [0, 2, 3]) send(p); // parts 1 and 4 lost
    await waitUntil(() => accepted() === 3, { what: "three parts" });
    tep.sync();
    await waitUntil(() => one.syncs.length === 2, { what: "the second SYNC" });
    expect(one.syncs[1]!.snapshotMissing).toEqual({
      id: 77,
      parts: 5,
      ranges: [
        { first: 1, last: 1 },
        { first: 4, last: 4 },
      ],
    });
    expect(tep.count).toBe(0); // nothing applied from an incomplete snapshot
    for (const p of [1, 4]) send(p); // the server's re-send
    await waitUntil(() => tep.count === 10, { what: "the whole snapshot" });
    expect(tep.digest).toBe(bindingsDigest(parts.flat()));
    send(4); // a late copy: ignored, the SYNC asks for nothing
    await waitUntil(
      () => metrics.get("dstm_tep_control_total", { kind: "snapshot", result: "duplicate" }) === 1,
      { what: "the late copy" },
    );
    tep.sync();
    await waitUntil(() => one.syncs.length === 3, { what: "the third SYNC" });
    expect(one.syncs[2]!.snapshotMissing).toBeUndefined();
    expect(tep.count).toBe(10);
  });
});

describe("the server does not re-send while a chunked snapshot is going out", () => {
  test("a request then is busy; after the snapshot (and half a SYNC period) it is answered", async () => {
    const clock = { now: 1_700_000_000_000 };
    const sent: DstmMessage[] = [];
    const metrics = new Metrics();
    const leases: Lease[] = Array.from({ length: 44 * 6 }, (_, i) => ({
      ipv4: binding(i).host4,
      portSet: WHOLE_ADDRESS,
      host6: binding(i).host6,
      tep4: 0,
      tep6: "2001:db8::7",
      pool: "p",
      state: "active",
      grantedAt: 0,
      expiresAt: 1e15,
    }));
    const sync = new TepSync(
      {
        teps: ["2001:db8::7"],
        log: new Logger({ sink: () => {} }),
        metrics,
        now: () => clock.now,
        snapshotPacing: { parts: 2, ms: 1e9, gapMs: 1 }, // 6 parts: 3 chunks
        send: (data) => {
          const m = decodeMessage(data);
          if (m.ok && m.value.type === MessageType.SNAPSHOT) sent.push(m.value);
          return true;
        },
      },
      leases,
    );
    cleanup.push(() => sync.close());
    const report = (missing?: DstmMessage["snapshotMissing"]) => {
      const message: DstmMessage = {
        type: MessageType.SYNC,
        xid: 1,
        tep6: "2001:db8::7",
        syncCount: 0,
        syncDigest: 0,
        snapshotMissing: missing,
      };
      sync.onTepMessage(encodeMessage(message), message, "2001:db8::7", 4608);
    };
    const kind = (k: string) => metrics.get("dstm_tep_messages_total", { kind: k });
    report();
    expect(sent.length).toBe(2); // the first chunk; the rest from timers
    const id = sent[0]!.snapshot!.id;
    const ask = { id, parts: 6, ranges: [{ first: 0, last: 1 }] };
    report(ask);
    expect(kind("snapshot_busy")).toBe(1);
    await waitUntil(() => sent.length === 6 && kind("snapshot_chunk") === 3, {
      what: "the last chunk",
    });
    report(ask); // the SYNC may predate the last parts: still busy for half a period
    expect(kind("snapshot_busy")).toBe(2);
    clock.now += SYNC_INTERVAL_MS / 2;
    report(ask);
    expect(kind("snapshot_request")).toBe(1);
    expect(sent.slice(6)).toEqual(sent.slice(0, 2));
    expect(kind("snapshot")).toBe(1);
  });
});
