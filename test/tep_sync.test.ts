import { afterEach, describe, expect, test } from "bun:test";
import { DstmClient, type DstmRefusedError, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { bindUdp, type UdpEndpoint } from "../lib/sys/udp.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, Status, type WireBinding } from "../lib/wire/dstm_types.ts";
import { eventually } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** A TEP stand-in on ::1: records what the server sends, answers BIND/UNBIND unless muted. */
async function fakeTep() {
  const received: DstmMessage[] = [];
  const state = { mute: false };
  const ep: UdpEndpoint = await bindUdp("::1", 0, (data, address, port) => {
    const decoded = decodeMessage(data);
    if (!decoded.ok) throw new Error(decoded.error.message);
    received.push(decoded.value);
    const m = decoded.value;
    if ((m.type === MessageType.BIND || m.type === MessageType.UNBIND) && !state.mute) {
      ep.send(
        encodeMessage({ type: MessageType.BIND_ACK, xid: m.xid, host4: m.host4! }),
        address,
        port,
      );
    }
  });
  cleanup.push(() => ep.close());
  return { ep, received, state };
}

async function start(tepPort: number, overrides: Partial<ServerConfig> = {}) {
  const server = await DstmServer.start({
    pools: [{ prefixes: ["198.51.100.0/29"], tep6: "::1" }],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    tepPort,
    log: new Logger({ sink: () => {} }),
    ...overrides,
  });
  cleanup.push(() => server.stop());
  const transport = await DstmTransport.open({
    server: "::1",
    port: server.listening.port,
    retry: { initialMs: 300, tries: 4 },
  });
  cleanup.push(() => transport.close());
  return { server, transport };
}

function sync(tep: { ep: UdpEndpoint }, serverPort: number, bindings: WireBinding[]) {
  tep.ep.send(
    encodeMessage({
      type: MessageType.SYNC,
      xid: 1,
      tep6: "::1",
      syncCount: bindings.length,
      syncDigest: bindingsDigest(bindings),
    }),
    "::1",
    serverPort,
  );
}

/** Polls `check` for up to `ms`; whether it held (./helpers/wait.ts). */
const until = (check: () => boolean, ms = 2000) => eventually(check, { timeoutMs: ms });

describe("server ⇄ TEP synchronisation", () => {
  test("a TEP that syncs empty gets the full table; new leases are BIND-ed before the ACK; releases UNBIND", async () => {
    const tep = await fakeTep();
    const { server, transport } = await start(tep.ep.port);
    const a = await new DstmClient(transport, "2001:db8:1::a").discover(); // TEP not connected yet: no BIND
    expect(tep.received.length).toBe(0);
    sync(tep, server.listening.port, []);
    expect(await until(() => tep.received.some((m) => m.type === MessageType.SNAPSHOT))).toBe(true);
    const snapshot = tep.received.find((m) => m.type === MessageType.SNAPSHOT)!;
    expect(snapshot.snapshot).toEqual({ id: snapshot.snapshot!.id, part: 0, parts: 1 });
    expect(snapshot.bindings).toEqual([
      { host4: a.ipv4, host6: "2001:db8:1::a", portSet: { offset: 0, psidLength: 0, psid: 0 } },
    ]);
    const b = await new DstmClient(transport, "2001:db8:1::b").discover();
    const bind = tep.received.find((m) => m.type === MessageType.BIND);
    expect(bind?.host4).toBe(b.ipv4);
    expect(bind?.host6).toBe("2001:db8:1::b");
    // In step: the same SYNC as the server's view gets no answer.
    const count = tep.received.length;
    const handled = (kind: string) => server.metrics.get("dstm_tep_messages_total", { kind });
    const [syncs, snapshots] = [handled("sync"), handled("snapshot")];
    sync(tep, server.listening.port, [
      { host4: a.ipv4, host6: "2001:db8:1::a", portSet: { offset: 0, psidLength: 0, psid: 0 } },
      { host4: b.ipv4, host6: "2001:db8:1::b", portSet: { offset: 0, psidLength: 0, psid: 0 } },
    ]);
    // Then an out-of-step SYNC (count 0) as a marker. Once the server has handled both (its
    // sync counter says so; SNAPSHOTs are sent while a SYNC is handled), exactly one SNAPSHOT
    // has been sent: the marker's.
    sync(tep, server.listening.port, []);
    expect(await until(() => handled("sync") === syncs + 2)).toBe(true);
    expect(handled("snapshot")).toBe(snapshots + 1);
    expect(await until(() => tep.received.length > count)).toBe(true);
    expect(tep.received.slice(count).map((m) => m.type)).toEqual([MessageType.SNAPSHOT]);
    expect(tep.received[count]!.bindings?.length).toBe(2);
    await new DstmClient(transport, "2001:db8:1::b").release(b.ipv4);
    expect(
      await until(() =>
        tep.received.some((m) => m.type === MessageType.UNBIND && m.host4 === b.ipv4),
      ),
    ).toBe(true);
    expect(server.tepSync?.view("::1").count).toBe(1);
  });

  test("a lease ended because its slot left the pools is UNBIND-ed when its holder moves", async () => {
    const tep = await fakeTep();
    const { server, transport } = await start(tep.ep.port);
    const old = await new DstmClient(transport, "2001:db8:1::a").discover();
    expect(formatIPv4(old.ipv4)).toBe("198.51.100.1");
    sync(tep, server.listening.port, []); // behind: the server sends its table
    expect(await until(() => tep.received.some((m) => m.type === MessageType.SNAPSHOT))).toBe(true);
    const base = {
      leaseTime: 600,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      tepPort: tep.ep.port,
      log: new Logger({ sink: () => {} }),
    };
    server.onReload(() => ({ ...base, pools: [{ prefixes: ["203.0.113.0/29"], tep6: "::1" }] }));
    expect(await server.reload("test")).toMatchObject({ ok: true, changed: ["pool"] });
    const moved = await new DstmClient(transport, "2001:db8:1::a").discover();
    expect(formatIPv4(moved.ipv4)).toBe("203.0.113.1");
    // The old binding goes: without it the TEP would carry 198.51.100.1 for the host until
    // the old lease's end, and hand its traffic to it after a reload took the address away.
    expect(
      await until(() =>
        tep.received.some((m) => m.type === MessageType.UNBIND && m.host4 === old.ipv4),
      ),
    ).toBe(true);
    expect(server.tepSync?.view("::1").count).toBe(1);
  });

  test("a connected TEP that does not confirm: NAK TEP_UNAVAILABLE and the address goes back to the pool", async () => {
    const tep = await fakeTep();
    const { server, transport } = await start(tep.ep.port);
    sync(tep, server.listening.port, []);
    await until(() => tep.received.length > 0);
    tep.state.mute = true;
    const refused = await new DstmClient(transport, "2001:db8:1::c")
      .discover()
      .catch((e: unknown) => e);
    expect((refused as DstmRefusedError).status).toBe(Status.TEP_UNAVAILABLE);
    expect(tep.received.filter((m) => m.type === MessageType.BIND).length).toBe(3); // three tries
    expect(server.engine.lookupHost("2001:db8:1::c")).toBeUndefined();
    tep.state.mute = false;
    const lease = await new DstmClient(transport, "2001:db8:1::c").discover();
    expect(formatIPv4(lease.ipv4)).toBe("198.51.100.1");
  });

  test("with --require-tep, a TEP that never synced means TEP_UNAVAILABLE", async () => {
    const tep = await fakeTep();
    const { transport } = await start(tep.ep.port, { requireTep: true });
    const refused = await new DstmClient(transport, "2001:db8:1::d")
      .discover()
      .catch((e: unknown) => e);
    expect((refused as DstmRefusedError).status).toBe(Status.TEP_UNAVAILABLE);
  });

  test("a table larger than one SNAPSHOT goes in several parts", async () => {
    const tep = await fakeTep();
    const { server, transport } = await start(tep.ep.port, {
      pools: [{ prefixes: ["198.51.100.0/24"], tep6: "::1" }],
      // 100 hosts of one /64, sent from ::1: no lease cap per prefix, no rate limit.
      admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
    });
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        new DstmClient(transport, `2001:db8:2::${i + 1}`).discover(),
      ),
    );
    sync(tep, server.listening.port, []);
    expect(
      await until(() => tep.received.filter((m) => m.type === MessageType.SNAPSHOT).length === 3),
    ).toBe(true);
    const parts = tep.received.filter((m) => m.type === MessageType.SNAPSHOT);
    expect(parts.map((p) => p.snapshot!.part).sort()).toEqual([0, 1, 2]);
    const all = parts.flatMap((p) => p.bindings ?? []);
    expect(all.length).toBe(100);
    expect(bindingsDigest(all)).toBe(server.tepSync!.view("::1").digest);
  });
});

describe("several TEPs, each with its own pool", () => {
  test("a TEP's snapshot holds only the bindings of its own pools", async () => {
    const tep = await fakeTep();
    const { server, transport } = await start(tep.ep.port, {
      pools: [
        // The first TEP never connects (nothing is ever sent to it); the second is the fake on ::1.
        { prefixes: ["198.51.100.0/30"], tep6: "2001:db8:ffff::1" },
        { prefixes: ["203.0.113.0/29"], tep6: "::1" },
      ],
    });
    const leases = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        new DstmClient(transport, `2001:db8:3::${i + 1}`).discover(),
      ),
    );
    const first = leases.filter((l) => l.tep6 === "2001:db8:ffff::1");
    const second = leases.filter((l) => l.tep6 === "::1");
    expect(first.length).toBe(2); // a /30 has two usable addresses
    expect(second.length).toBe(3);
    sync(tep, server.listening.port, []);
    expect(await until(() => tep.received.some((m) => m.type === MessageType.SNAPSHOT))).toBe(true);
    const snapshot = tep.received.find((m) => m.type === MessageType.SNAPSHOT)!;
    expect(new Set(snapshot.bindings!.map((b) => b.host4))).toEqual(
      new Set(second.map((l) => l.ipv4)),
    );
    expect(server.tepSync!.view("2001:db8:ffff::1").count).toBe(2);
    expect(server.tepSync!.view("2001:db8:ffff::1").connected).toBe(false);
  });
});
