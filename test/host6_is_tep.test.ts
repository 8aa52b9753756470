/**
 * A host whose IPv6 address is a TEP's own gets no lease (lib/alloc/allocator.ts hostIsTep):
 * its binding would make that TEP tunnel to itself. Refused on every way a host IPv6 reaches
 * the server — native DISCOVER, REQUEST (INIT-REBOOT) and renewal, DHCPv4-over-DHCPv6 from the
 * TEP's address and relayed with the TEP's address as peer-address — for the TEPs of the
 * configuration and of a reload; counted `dstm_admission_refused_total{reason="host6-is-tep"}`
 * and logged at warn, rate-limited. Before the fix every one of these got an address.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { PoolConfig } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { Admission } from "../lib/server/admission.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import { DstmHandler } from "../lib/server/handler.ts";
import { LeaseAdmin } from "../lib/server/lease_admin.ts";
import { DstmServer } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { decodeDhcp4o6, encodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { encodeDhcp6Relay } from "../lib/wire/dhcp6_relay.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, Status } from "../lib/wire/dstm_types.ts";
import { capturedLog } from "./helpers/captured_log.ts";
import { dhcp4Message, dhcp4OfResponse, dhcp4o6Query } from "./helpers/dhcp4.ts";
import { startEngine } from "./helpers/engine.ts";
import { waitUntil } from "./helpers/wait.ts";

const SERVER_ID = parseIPv4("192.0.2.1")!;
const TEP_A = "2001:db8:1::1";
const TEP_B = "2001:db8:2::1";
const HOST = "2001:db8:4::a1";
const RELAY = "2001:db8:7::1";
const POOLS: PoolConfig[] = [
  { prefixes: ["198.51.100.0/28"], tep6: TEP_A },
  { prefixes: ["198.51.100.16/28"], tep6: TEP_B },
];

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** The engine, both handlers over it with one Admission (no rate limit), and what they count and log. */
async function setup() {
  const { engine } = await startEngine(POOLS.map((p) => ({ ...p })));
  const metrics = new Metrics();
  const { log, lines } = capturedLog();
  const admission = new Admission({ metrics, log, ratePerSecond: 0 });
  const native = new DstmHandler({ engine, log, metrics, admission });
  const dhcp = new Dhcp4o6Handler({ engine, serverId: SERVER_ID, log, metrics, admission });
  let xid = 0x61000000;
  /** One native request from `host6` (the datagram's source too), decoded answer. */
  const ask = async (type: MessageType, host6: string, host4?: number): Promise<DstmMessage> => {
    const raw = encodeMessage({ type, xid: ++xid, host6, host4 });
    const answer = await native.handle(raw, host6, 4607);
    if (!answer) throw new Error("no answer");
    const decoded = decodeMessage(answer);
    if (!decoded.ok) throw new Error(decoded.error.message);
    return decoded.value;
  };
  /** One DHCPv4 message from `source`, wrapped in a RELAY-FORW naming `peer` when given. */
  const ask4o6 = async (
    source: string,
    type: Dhcp4MessageType,
    options: Partial<Dhcp4Options> = {},
    peer?: string,
  ): Promise<Dhcp4Message | null> => {
    const chaddr = Uint8Array.of(2, 0, 0, 0, 0x61, 1);
    let raw = encodeDhcp4o6({
      type: 20,
      flags: 0,
      dhcp4: dhcp4Message(type, options, { xid: ++xid, chaddr }),
    });
    if (peer)
      raw = encodeDhcp6Relay({
        type: 12,
        hopCount: 0,
        linkAddress: "2001:db8:4::1",
        peerAddress: peer,
        relayMessage: raw,
      });
    const answer = await dhcp.handle(raw, source);
    if (!answer) return null;
    return dhcp4OfResponse(answer, Boolean(peer));
  };
  const refused = (protocol: string) =>
    metrics.get("dstm_admission_refused_total", { protocol, reason: "host6-is-tep" }) ?? 0;
  const warnLines = () =>
    lines().filter((l) => / WARN reject /.test(l) && /reason=host6-is-tep/.test(l));
  const leasesOf = (host6: string) =>
    engine.leases({ state: "active" }).filter((l) => l.host6 === host6);
  return { engine, ask, ask4o6, refused, warnLines, leasesOf };
}

describe("a host whose IPv6 address is a TEP's gets no lease", () => {
  test("native DISCOVER and REQUEST from either configured TEP: NAK NOT_AUTHORISED, counted, one warn line", async () => {
    const s = await setup();
    const A1 = parseIPv4("198.51.100.1")!;
    for (const tep of [TEP_A, TEP_B]) {
      const discover = await s.ask(MessageType.DISCOVER, tep);
      expect(discover.type).toBe(MessageType.NAK);
      expect(discover.status).toBe(Status.NOT_AUTHORISED);
      expect(discover.statusText).toContain("TEP");
      const request = await s.ask(MessageType.REQUEST, tep, A1);
      expect(request.type).toBe(MessageType.NAK);
      expect(request.status).toBe(Status.NOT_AUTHORISED);
      expect(s.leasesOf(tep)).toEqual([]);
    }
    expect(s.refused("native")).toBe(4);
    // Logged at warn, rate-limited: one line for the four within the interval.
    expect(s.warnLines().length).toBe(1);
    expect(s.warnLines()[0]).toContain("protocol=native");
    // Without the source check HOST_IPV6 names the host: a TEP's, from another source, too.
    const { engine } = await startEngine(POOLS.map((p) => ({ ...p })));
    const loose = new DstmHandler({
      engine,
      log: new Logger({ sink: () => {} }),
      metrics: new Metrics(),
      sourceCheck: false,
    });
    const named = await loose.handle(
      encodeMessage({ type: MessageType.DISCOVER, xid: 1, host6: TEP_A }),
      HOST,
      4607,
    );
    const decoded = named ? decodeMessage(named) : undefined;
    expect(decoded?.ok && decoded.value.status).toBe(Status.NOT_AUTHORISED);
    expect(engine.leases()).toEqual([]);
    // Any other host still gets its address.
    const ack = await s.ask(MessageType.DISCOVER, HOST);
    expect(ack.type).toBe(MessageType.DISCOVER_ACK);
    expect(s.leasesOf(HOST).length).toBe(1);
  });

  test("a TEP address learnt by a reload: the host's renewal is refused, its lease untouched, its RELEASE still works", async () => {
    const s = await setup();
    const ack = await s.ask(MessageType.DISCOVER, HOST);
    expect(ack.type).toBe(MessageType.DISCOVER_ACK);
    const held = s.leasesOf(HOST)[0]!;
    // The operator moves pool 2's TEP to the host's address.
    s.engine.reconfigure({
      pools: [POOLS[0]!, { ...POOLS[1]!, tep6: HOST }],
      leaseTime: 600,
    });
    const renew = await s.ask(MessageType.REQUEST, HOST, held.ipv4);
    expect(renew.type).toBe(MessageType.NAK);
    expect(renew.status).toBe(Status.NOT_AUTHORISED);
    const again = await s.ask(MessageType.DISCOVER, HOST);
    expect(again.status).toBe(Status.NOT_AUTHORISED);
    expect(s.leasesOf(HOST)[0]?.expiresAt).toBe(held.expiresAt);
    expect(s.refused("native")).toBe(2);
    const release = await s.ask(MessageType.RELEASE, HOST, held.ipv4);
    expect(release.type).toBe(MessageType.RELEASE_ACK);
    expect(s.leasesOf(HOST)).toEqual([]);
  });

  test("DHCPv4-over-DHCPv6 from a TEP's address: no OFFER, a DHCPNAK to a REQUEST, counted", async () => {
    const s = await setup();
    expect(await s.ask4o6(TEP_A, Dhcp4MessageType.DISCOVER)).toBeNull();
    const nak = await s.ask4o6(TEP_B, Dhcp4MessageType.REQUEST, {
      requestedIp: parseIPv4("198.51.100.17")!,
    });
    expect(nak?.options.messageType).toBe(Dhcp4MessageType.NAK);
    expect(s.leasesOf(TEP_A)).toEqual([]);
    expect(s.leasesOf(TEP_B)).toEqual([]);
    expect(s.refused("dhcp4o6")).toBe(2);
    expect(s.warnLines().some((l) => l.includes("protocol=dhcp4o6"))).toBe(true);
  });

  test("DHCPv4-over-DHCPv6 relayed with a TEP's address as peer-address: refused; another peer leases", async () => {
    const s = await setup();
    expect(await s.ask4o6(RELAY, Dhcp4MessageType.DISCOVER, {}, TEP_A)).toBeNull();
    const nak = await s.ask4o6(
      RELAY,
      Dhcp4MessageType.REQUEST,
      { requestedIp: parseIPv4("198.51.100.1")! },
      TEP_A,
    );
    expect(nak?.options.messageType).toBe(Dhcp4MessageType.NAK);
    expect(s.leasesOf(TEP_A)).toEqual([]);
    expect(s.refused("dhcp4o6")).toBe(2);
    // The relay itself is no TEP: a host it relays for gets an offer.
    const offer = await s.ask4o6(RELAY, Dhcp4MessageType.DISCOVER, {}, HOST);
    expect(offer?.options.messageType).toBe(Dhcp4MessageType.OFFER);
  });

  test("an administrator cannot give a TEP's address a lease or a reservation (409, counted)", async () => {
    const { engine } = await startEngine(POOLS.map((p) => ({ ...p })));
    const metrics = new Metrics();
    const { log, lines } = capturedLog();
    const admin = new LeaseAdmin({
      engine,
      bindings: () => undefined,
      leaseTime: () => 600,
      log,
      metrics,
    });
    const ipv4 = parseIPv4("198.51.100.2")!;
    for (const reserve of [false, true]) {
      const reply = await admin.add({ host6: TEP_B, ipv4, psid: 0, reserve });
      expect(reply.status).toBe(409);
      expect(JSON.stringify(reply.body)).toContain("TEP of pool");
      const action = reserve ? "reserve" : "add";
      expect(
        metrics.get("dstm_lease_admin_refused_total", { action, reason: "host6-is-tep" }),
      ).toBe(1);
    }
    expect(engine.leases()).toEqual([]);
    expect(engine.reservations()).toEqual([]);
    expect(lines().some((l) => / WARN lease-admin-refused .*reason=host6-is-tep/.test(l))).toBe(
      true,
    );
    // Another host may have that slot.
    expect((await admin.add({ host6: HOST, ipv4, psid: 0, reserve: false })).status).toBe(201);
  });

  test("a running server whose pool's TEP is ::1: a host on ::1 is refused on both protocols", async () => {
    const server = await DstmServer.start({
      pools: [{ prefixes: ["198.51.100.0/28"], tep6: "::1" }],
      leaseTime: 3600,
      listen: { address: "::1", port: 0 },
      sourceCheck: true,
      dhcp4o6: { address: "::1", port: 0, interfaces: [], serverId: SERVER_ID },
      log: new Logger({ sink: () => {} }),
    });
    cleanup.push(() => server.stop());
    const answers: Uint8Array[] = [];
    const ep = await bindUdp("::1", 0, (data) => answers.push(new Uint8Array(data)));
    cleanup.push(() => ep.close());
    ep.send(
      encodeMessage({ type: MessageType.DISCOVER, xid: 9, host6: "::1" }),
      "::1",
      server.listening.port,
    );
    await waitUntil(() => answers.length === 1, { what: "the native answer" });
    const nak = decodeMessage(answers[0]!);
    expect(nak.ok && nak.value.type).toBe(MessageType.NAK);
    expect(nak.ok && nak.value.status).toBe(Status.NOT_AUTHORISED);
    ep.send(
      dhcp4o6Query(
        dhcp4Message(Dhcp4MessageType.REQUEST, { requestedIp: parseIPv4("198.51.100.1")! }),
      ),
      "::1",
      server.dhcp4o6Port,
    );
    await waitUntil(() => answers.length === 2, { what: "the 4o6 answer" });
    const dhcp = decodeDhcp4o6(answers[1]!);
    expect(dhcp.ok && dhcp.value.dhcp4.options.messageType).toBe(Dhcp4MessageType.NAK);
    expect(server.engine.leases({ state: "active" })).toEqual([]);
    const count = (protocol: string) =>
      server.metrics.get("dstm_admission_refused_total", { protocol, reason: "host6-is-tep" });
    expect([count("native"), count("dhcp4o6")]).toEqual([1, 1]);
  });
});
