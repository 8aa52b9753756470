import { afterEach, describe, expect, test } from "bun:test";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { DstmServer } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { TepControl } from "../lib/tep/control.ts";
import type { AuthKey } from "../lib/wire/auth.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, Status, type WireBinding } from "../lib/wire/dstm_types.ts";
import { RecordingTable } from "./helpers/recording_table.ts";
import { eventually } from "./helpers/wait.ts";

const KEY: AuthKey = { id: 3, secret: new Uint8Array(32).fill(9) };
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const quiet = () => new Logger({ sink: () => {} });

async function startServer(tepPort: number, key?: AuthKey) {
  const server = await DstmServer.start({
    pools: [{ prefixes: ["198.51.100.0/28"], tep6: "::1" }],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    tepPort,
    tepKeys: key ? [key] : undefined,
    log: quiet(),
  });
  cleanup.push(() => server.stop());
  const transport = await DstmTransport.open({ server: "::1", port: server.listening.port });
  cleanup.push(() => transport.close());
  return { server, transport };
}

async function startTep(
  serverPort: number,
  port: number,
  key?: AuthKey,
  table: RecordingTable = new RecordingTable(),
  staticBindings: WireBinding[] = [],
) {
  const metrics = new Metrics();
  const tep = await TepControl.start({
    listen: { address: "::1", port },
    server: { address: "::1", port: serverPort },
    tep6: "::1",
    key,
    table,
    staticBindings,
    syncIntervalMs: 200,
    log: quiet(),
    metrics,
  });
  cleanup.push(() => tep.close());
  return { tep, table, metrics };
}

/** Polls `check` for up to `ms`; whether it held (./helpers/wait.ts). */
const until = (check: () => boolean, ms = 2000) => eventually(check, { timeoutMs: ms });

/** A free UDP port on ::1 (bind, read, close). */
async function freePort() {
  const ep = await bindUdp("::1", 0, () => {});
  const port = ep.port;
  ep.close();
  return port;
}

describe("TEP control plane against a real server", () => {
  for (const key of [undefined, KEY]) {
    test(`a TEP gets the table at start, BINDs before ACKs, UNBIND on release, full table after restart (${key ? "signed" : "unsigned"})`, async () => {
      const tepPort = await freePort();
      const { server, transport } = await startServer(tepPort, key);
      const early = await Promise.all(
        ["a", "b", "c"].map((h) => new DstmClient(transport, `2001:db8:1::${h}`).discover()),
      );
      const first = await startTep(server.listening.port, tepPort, key);
      expect(await until(() => first.table.map.size === 3, 1000)).toBe(true);
      for (const lease of early) expect(first.table.map.get(lease.ipv4)).toBe(lease.host6);
      await until(() => server.tepSync!.view("::1").connected);
      const d = await new DstmClient(transport, "2001:db8:1::d").discover();
      expect(first.table.map.get(d.ipv4)).toBe("2001:db8:1::d"); // installed before the ACK arrived
      await new DstmClient(transport, "2001:db8:1::a").release(early[0]!.ipv4);
      expect(await until(() => !first.table.map.has(early[0]!.ipv4))).toBe(true);
      expect(first.tep.digest).toBe(server.tepSync!.view("::1").digest);
      first.tep.close();
      // Restart: a new TEP with an empty table has the whole table again within a second.
      const leasesBefore = server.engine.leases({ state: "active" }).length;
      const second = await startTep(server.listening.port, tepPort, key);
      expect(await until(() => second.table.map.size === 3, 1000)).toBe(true);
      expect(server.engine.leases({ state: "active" }).length).toBe(leasesBefore);
    });
  }

  test("BIND from the server's address but another port is dropped and counted", async () => {
    const tepPort = await freePort();
    const { server } = await startServer(tepPort, KEY);
    const { table, metrics } = await startTep(server.listening.port, tepPort, KEY);
    const intruder = await bindUdp("::1", 0, () => {});
    cleanup.push(() => intruder.close());
    // From ::1 (the server's address) but a port of another program: a local user.
    intruder.send(
      encodeMessage({ type: MessageType.BIND, xid: 1, host4: 0xc6336407, host6: "2001:db8:66::1" }),
      "::1",
      tepPort,
    );
    expect(
      await until(
        () =>
          metrics.get("dstm_tep_control_total", {
            kind: "any",
            result: "drop-not-server-port",
          }) === 1,
      ),
    ).toBe(true);
    expect(table.map.has(0xc6336407)).toBe(false);
  });

  test("a TEP with the wrong key gets nothing", async () => {
    const tepPort = await freePort();
    const { server, transport } = await startServer(tepPort, KEY);
    await new DstmClient(transport, "2001:db8:1::e").discover();
    const { table } = await startTep(server.listening.port, tepPort, {
      id: 3,
      secret: new Uint8Array(32).fill(1),
    });
    // The server refuses the TEP's SYNC (counted), so it never answers with a SNAPSHOT.
    expect(
      await until(
        () => server.metrics.get("dstm_tep_refused_total", { reason: "auth-bad-mac" }) > 0,
        10_000,
      ),
    ).toBe(true);
    expect(server.metrics.get("dstm_tep_messages_total", { kind: "snapshot" })).toBe(0);
    expect(table.map.size).toBe(0);
  });

  test("a BIND for a statically bound address is refused (NAK), the static binding stays, the host gets TEP_UNAVAILABLE", async () => {
    const tepPort = await freePort();
    const { server, transport } = await startServer(tepPort);
    const pinned: WireBinding = {
      host4: 0xc6336401,
      host6: "2001:db8:77::1",
      portSet: { offset: 0, psidLength: 0, psid: 0 },
    };
    const { table, metrics } = await startTep(
      server.listening.port,
      tepPort,
      undefined,
      new RecordingTable(),
      [pinned],
    );
    await until(() => server.tepSync!.view("::1").connected);
    const refused = await new DstmClient(transport, "2001:db8:1::f")
      .discover()
      .catch((e: unknown) => e);
    expect((refused as { status?: number }).status).toBe(Status.TEP_UNAVAILABLE);
    expect(table.map.get(0xc6336401)).toBe("2001:db8:77::1");
    expect(
      metrics.get("dstm_tep_control_total", { kind: "bind", result: "refused-static" }),
    ).toBeGreaterThan(0);
  });

  test("a table that cannot take a binding makes the TEP refuse it, not crash", async () => {
    const tepPort = await freePort();
    const { server, transport } = await startServer(tepPort);
    class FullTable extends RecordingTable {
      override set(): void {
        throw new Error("binding table full (1 entries)");
      }
    }
    const { tep, metrics } = await startTep(
      server.listening.port,
      tepPort,
      undefined,
      new FullTable(),
    );
    await until(() => server.tepSync!.view("::1").connected);
    const refused = await new DstmClient(transport, "2001:db8:1::e")
      .discover()
      .catch((e: unknown) => e);
    expect((refused as { status?: number }).status).toBe(Status.TEP_UNAVAILABLE);
    expect(
      metrics.get("dstm_tep_control_total", { kind: "bind", result: "refused-table" }),
    ).toBeGreaterThan(0);
    expect(tep.count).toBe(0);
  });
});
