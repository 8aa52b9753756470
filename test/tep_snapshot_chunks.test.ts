/**
 * Snapshots in bounded chunks (lib/server/tep_snapshot.ts) and the TEP applying the BIND /
 * UNBIND that arrive while a snapshot's parts are still coming (lib/tep/control.ts).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { sendSnapshot } from "../lib/server/tep_snapshot.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { TepControl } from "../lib/tep/control.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, type WireBinding } from "../lib/wire/dstm_types.ts";
import { RecordingTable } from "./helpers/recording_table.ts";
import { waitUntil } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const WHOLE = { offset: 0, psidLength: 0, psid: 0 };
const binding = (n: number): WireBinding => ({
  host4: 0xc6120000 + n,
  host6: `2001:db8:1::${n.toString(16)}`,
  portSet: WHOLE,
});

describe("sendSnapshot", () => {
  test("sends the parts in chunks of at most `parts` datagrams, the first chunk at once", async () => {
    const sent: DstmMessage[] = [];
    const at: number[] = [];
    const bindings = Array.from({ length: 44 * 9 + 1 }, (_, i) => binding(i)); // 10 parts
    const run = sendSnapshot(
      bindings,
      7,
      (m) => {
        sent.push(m);
        at.push(performance.now());
      },
      { parts: 3, ms: 10_000, gapMs: 1 },
    );
    expect(sent.length).toBe(3); // the first chunk, synchronously
    expect(run.running).toBe(true);
    const outcome = await run.done;
    expect(outcome).toMatchObject({ bindings: 397, parts: 10, chunks: 4, cancelled: false });
    expect(sent.map((m) => m.snapshot)).toEqual(
      Array.from({ length: 10 }, (_, part) => ({ id: 7, part, parts: 10 })),
    );
    expect(sent.flatMap((m) => m.bindings ?? [])).toEqual(bindings);
  });

  test("a table that fits in one chunk goes out at once; cancel stops a larger one", async () => {
    const sent: DstmMessage[] = [];
    const small = sendSnapshot([binding(1)], 1, (m) => sent.push(m));
    expect(small.running).toBe(false);
    expect(sent.length).toBe(1);
    expect((await small.done).chunks).toBe(1);
    sent.length = 0;
    const big = sendSnapshot(
      Array.from({ length: 44 * 20 }, (_, i) => binding(i)),
      2,
      (m) => sent.push(m),
      { parts: 2, ms: 10_000, gapMs: 1 },
    );
    big.cancel();
    expect(await big.done).toMatchObject({ parts: 20, chunks: 1, cancelled: true });
    expect(sent.length).toBe(2);
  });
});

describe("a TEP receiving a snapshot while BIND / UNBIND arrive", () => {
  test("ends with the snapshot plus the changes that came after its first part", async () => {
    const server = await bindUdp("::1", 0, () => {});
    cleanup.push(() => server.close());
    const table = new RecordingTable();
    const metrics = new Metrics();
    const tep = await TepControl.start({
      listen: { address: "::1", port: 0 },
      server: { address: "::1", port: server.port },
      tep6: "::1",
      table,
      syncIntervalMs: 60_000,
      log: new Logger({ sink: () => {} }),
      metrics,
    });
    cleanup.push(() => tep.close());
    const send = (m: DstmMessage) => server.send(encodeMessage(m), "::1", tep.port);
    const accepted = () =>
      metrics.get("dstm_tep_control_total", { kind: "snapshot", result: "ok" });
    const part = (p: number, bindings: WireBinding[]) =>
      send({
        type: MessageType.SNAPSHOT,
        xid: p,
        snapshot: { id: 5, part: p, parts: 2 },
        bindings,
      });
    const change = (type: MessageType, b: WireBinding, xid: number) =>
      send({ type, xid, host4: b.host4, host6: b.host6 });
    // Part 0 (bindings 1 and 2), then BIND 3, UNBIND 1 (the server cut the snapshot before
    // they happened), then part 1 (binding 4).
    part(0, [binding(1), binding(2)]);
    await waitUntil(() => accepted() === 1, { what: "part 0" });
    change(MessageType.BIND, binding(1), 100); // binding 1 is held now, so the UNBIND applies
    change(MessageType.BIND, binding(3), 101);
    change(MessageType.UNBIND, binding(1), 102);
    await waitUntil(
      () => metrics.get("dstm_tep_control_total", { kind: "unbind", result: "ok" }) === 1,
      {
        what: "the UNBIND",
      },
    );
    part(1, [binding(4)]);
    await waitUntil(() => accepted() === 2, { what: "part 1" });
    const expected = [2, 3, 4].map((n): [number, string] => [binding(n).host4, binding(n).host6]);
    expect([...table.map.entries()].sort((x, y) => x[0] - y[0])).toEqual(expected);
    expect(tep.count).toBe(3);
  });
});
