/**
 * Red team (atk17) on `snapshot-refused` (lib/tep/control.ts, ops17): a server whose snapshot
 * the TEP's table cannot hold sends it again after every SYNC (the TEP's SYNC keeps showing
 * the drift, every 2 s), and each refusal was an ERROR line: 1,800 an hour for as long as it
 * lasts (the server side's `tep-reject` was brought to one a minute for the same cadence).
 * Now one line a minute per server, the next saying how many were left out; the counter
 * counts every refusal.
 */
import { afterEach, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { TepControl } from "../lib/tep/control.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, type WireBinding } from "../lib/wire/dstm_types.ts";
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

class SmallTable extends RecordingTable {
  override replaceAll(entries: readonly { ipv4: number; host6: Uint8Array }[]) {
    if (entries.length > 2) throw new Error("binding table full (2 entries)");
    super.replaceAll(entries);
  }
}

test("a snapshot refused again and again: one snapshot-refused line a minute, every one counted", async () => {
  const server = await bindUdp("::1", 0, () => {});
  cleanup.push(() => server.close());
  const lines: string[] = [];
  const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
  const metrics = new Metrics();
  const clock = { now: Date.now() };
  const tep = await TepControl.start({
    listen: { address: "::1", port: 0 },
    server: { address: "::1", port: server.port },
    tep6: "::1",
    table: new SmallTable(),
    syncIntervalMs: 3_600_000,
    log,
    metrics,
    now: () => clock.now,
  });
  cleanup.push(() => tep.close());
  const refusals = () =>
    metrics.get("dstm_tep_control_total", { kind: "snapshot", result: "refused-table" });
  const said = () => {
    log.flush();
    return lines.filter((l) => l.includes(" snapshot-refused "));
  };
  const tooBig = [binding(0), binding(1), binding(2)];
  for (let id = 1; id <= 10; id++) {
    server.send(
      encodeMessage({
        type: MessageType.SNAPSHOT,
        xid: id,
        snapshot: { id, part: 0, parts: 1 },
        bindings: tooBig,
      }),
      "::1",
      tep.port,
    );
    await waitUntil(() => refusals() === id, { what: `refusal ${id} counted` });
    clock.now += 2_000; // the server's next try after the next SYNC
  }
  expect(said()).toHaveLength(1); // main: 10
  clock.now += 60_000;
  server.send(
    encodeMessage({
      type: MessageType.SNAPSHOT,
      xid: 11,
      snapshot: { id: 11, part: 0, parts: 1 },
      bindings: tooBig,
    }),
    "::1",
    tep.port,
  );
  await waitUntil(() => refusals() === 11, { what: "refusal 11 counted" });
  const out = said();
  expect(out).toHaveLength(2);
  expect(out[1]).toMatch(/suppressed-repeats=9/);
});
