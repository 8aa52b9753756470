/**
 * A SNAPSHOT the TEP's table cannot hold (full, or a port-set layout that clashes) is refused
 * whole, and the TEP says so: `snapshot-refused` with the reason, counted
 * `dstm_tep_control_total{kind="snapshot",result="refused-table"}`, and never the info
 * `snapshot` line that says a snapshot was applied. Nothing changes: the table, the count and
 * the digest its SYNC reports stay what they were, so the server still sees the drift (before,
 * the TEP logged `snapshot` as if applied, took the snapshot's digest and reported in sync).
 */
import { afterEach, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { TepControl } from "../lib/tep/control.ts";
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

/** A table of `capacity` bindings: a larger replaceAll throws and changes nothing. */
class SmallTable extends RecordingTable {
  constructor(readonly capacity: number) {
    super();
  }
  override replaceAll(entries: readonly { ipv4: number; host6: Uint8Array }[]) {
    if (entries.length > this.capacity)
      throw new Error(`binding table full (${this.capacity} entries)`);
    super.replaceAll(entries);
  }
}

test("a snapshot the table cannot hold: snapshot-refused with the reason, counted, nothing changed, SYNC still shows the drift", async () => {
  const syncs: DstmMessage[] = [];
  const server = await bindUdp("::1", 0, (data) => {
    const decoded = decodeMessage(data);
    if (decoded.ok && decoded.value.type === MessageType.SYNC) syncs.push(decoded.value);
  });
  cleanup.push(() => server.close());
  const lines: string[] = [];
  const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
  const metrics = new Metrics();
  const table = new SmallTable(2);
  let inSync = 0;
  const tep = await TepControl.start({
    listen: { address: "::1", port: 0 },
    server: { address: "::1", port: server.port },
    tep6: "::1",
    table,
    syncIntervalMs: 3_600_000, // SYNCs only when the test calls sync()
    log,
    metrics,
    onInSync: () => inSync++,
  });
  cleanup.push(() => tep.close());
  const snapshot = (id: number, bindings: WireBinding[]) =>
    server.send(
      encodeMessage({
        type: MessageType.SNAPSHOT,
        xid: id,
        snapshot: { id, part: 0, parts: 1 },
        bindings,
      }),
      "::1",
      tep.port,
    );
  const said = (event: string) => {
    log.flush();
    return lines.filter((l) => l.includes(` ${event} `) || l.endsWith(` ${event}`));
  };
  // Two bindings fit: applied.
  snapshot(1, [binding(0), binding(1)]);
  await waitUntil(() => said("snapshot").length === 1, { what: "the first snapshot applied" });
  expect(tep.count).toBe(2);
  const digest = tep.digest;
  expect(inSync).toBe(1);
  // Three do not: refused whole.
  const refusedTable = () =>
    metrics.get("dstm_tep_control_total", { kind: "snapshot", result: "refused-table" });
  snapshot(2, [binding(0), binding(1), binding(2)]);
  await waitUntil(() => refusedTable() === 1, { what: "the refusal counted" });
  const refusal = said("snapshot-refused");
  expect(refusal).toHaveLength(1);
  expect(refusal[0]).toMatch(/ ERROR snapshot-refused .*reason=table .*binding table full/);
  expect(said("snapshot")).toHaveLength(1); // still only the first one's
  expect(inSync).toBe(1);
  expect(tep.count).toBe(2);
  expect(tep.digest).toBe(digest);
  expect([...table.map.keys()]).toEqual([binding(0).host4, binding(1).host4]);
  // The next SYNC reports what the table holds, not the refused snapshot.
  const before = syncs.length;
  tep.sync();
  await waitUntil(() => syncs.length > before, { what: "a SYNC" });
  expect([syncs.at(-1)?.syncCount, syncs.at(-1)?.syncDigest]).toEqual([2, digest]);
});
