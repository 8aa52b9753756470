import { afterEach, describe, expect, test } from "bun:test";
import { formatIPv4 } from "../lib/net/addr.ts";
import type { ServerConfig } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import {
  type Dhcp4Message,
  Dhcp4MessageType,
  Dhcp4Op,
  type Dhcp4Options,
} from "../lib/wire/dhcp4.ts";
import {
  DHCP4O6_FLAG_UNICAST,
  type Dhcp4o6Message,
  Dhcp6MessageType,
  decodeDhcp4o6,
  encodeDhcp4o6,
  encodeDhcp6,
} from "../lib/wire/dhcp4o6.ts";
import { Dhcp6RelayType, encodeDhcp6Relay, unwrapRelays } from "../lib/wire/dhcp6_relay.ts";
import { dhcp4Message, dhcp4o6Query } from "./helpers/dhcp4.ts";
import { exchange4o6 } from "./helpers/dhcp4o6_exchange.ts";
import { SERVER_ID_4O6, startServer4o6 } from "./helpers/server_4o6.ts";
import { waitUntil } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function start(overrides: Partial<ServerConfig> = {}) {
  return startServer4o6(cleanup, overrides);
}

const exchange = exchange4o6;

/**
 * Sends a query that must get no answer; once `handled()` says the server has dealt with it,
 * sends a marker (an INFORMATION-REQUEST for option 88, always answered) from the same socket
 * and waits for its REPLY. Resolves with what arrived before the marker's REPLY: an answer to
 * the query would have been sent before the marker was, and datagrams arrive in order.
 */
async function unanswered(
  port: number,
  dhcp4: Dhcp4Message,
  handled: () => boolean,
  flags = 0,
): Promise<Uint8Array[]> {
  const received: Uint8Array[] = [];
  const ep = await bindUdp("::1", 0, (data) => {
    received.push(data);
  });
  try {
    ep.send(encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags, dhcp4 }), "::1", port);
    await waitUntil(handled, { what: "the server to handle the query" });
    const marker = encodeDhcp6({ type: 11, xid: 0x6d6b72, oro: [88], elapsedTime: 0 });
    ep.send(marker, "::1", port);
    const isMarkerReply = (d: Uint8Array) => d[0] === Dhcp6MessageType.REPLY;
    await waitUntil(() => received.some(isMarkerReply), { what: "the marker's REPLY" });
    return received.slice(0, received.findIndex(isMarkerReply));
  } finally {
    ep.close();
  }
}

const CHADDR = Uint8Array.from([0x02, 0, 0, 0, 0, 0x0a]);

/**
 * `exchange`, with ::1 as a relay (RFC 8415 §19.1) for the host 2001:db8:4::a1, its
 * peer-address: the host the server leases to is then not ::1.
 */
async function exchangeRelayed(port: number, dhcp4: Dhcp4Message): Promise<Dhcp4o6Message> {
  let answer: Uint8Array | null = null;
  const ep = await bindUdp("::1", 0, (data) => {
    answer = data;
  });
  try {
    const relayed = encodeDhcp6Relay({
      type: Dhcp6RelayType.RELAY_FORW,
      hopCount: 0,
      linkAddress: "2001:db8:4::1",
      peerAddress: "2001:db8:4::a1",
      relayMessage: dhcp4o6Query(dhcp4),
    });
    ep.send(relayed, "::1", port);
    await waitUntil(() => answer !== null, { what: "the 4o6 server's relayed answer" });
  } finally {
    ep.close();
  }
  const inner = unwrapRelays(answer!, Dhcp6RelayType.RELAY_REPL);
  if (!inner.ok) throw new Error(inner.error.message);
  const decoded = decodeDhcp4o6(inner.value.inner);
  if (!decoded.ok) throw new Error(decoded.error.message);
  return decoded.value;
}

function query(
  type: Dhcp4MessageType,
  fields: Partial<Dhcp4Message> = {},
  options: Partial<Dhcp4Options> = {},
): Dhcp4Message {
  return dhcp4Message(type, options, { xid: 0x1234abcd, chaddr: CHADDR, ...fields });
}

describe("dstm server --dhcp4o6", () => {
  test("DISCOVER/OFFER, REQUEST/ACK, renewal with the U flag, RELEASE — one lease with the native protocol's engine", async () => {
    const server = await start();
    const port = server.dhcp4o6Port;
    const offer = await exchange(port, query(Dhcp4MessageType.DISCOVER));
    expect(offer?.type).toBe(Dhcp6MessageType.DHCPV4_RESPONSE);
    expect(offer?.dhcp4.op).toBe(Dhcp4Op.BOOTREPLY);
    expect(offer?.dhcp4.xid).toBe(0x1234abcd);
    expect(offer?.dhcp4.options.messageType).toBe(Dhcp4MessageType.OFFER);
    expect(offer?.dhcp4.options.serverId).toBe(SERVER_ID_4O6);
    const offered = offer!.dhcp4.yiaddr;
    expect(formatIPv4(offered)).toBe("198.51.100.1");
    // Issue 11: the OFFER says what the ACK will grant (not the 60 s the offer is held).
    expect(offer?.dhcp4.options.leaseTime).toBe(600);
    const ack = await exchange(
      port,
      query(Dhcp4MessageType.REQUEST, {}, { requestedIp: offered, serverId: SERVER_ID_4O6 }),
    );
    expect(ack?.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
    expect(ack?.dhcp4.yiaddr).toBe(offered);
    expect(ack?.dhcp4.options.leaseTime).toBe(600);
    expect(ack?.dhcp4.options.renewalTime).toBe(300);
    expect(ack?.dhcp4.options.rebindingTime).toBe(525);
    // The host is the query's source: the same lease table as the native protocol.
    expect(server.engine.lookupHost("::1")?.ipv4).toBe(offered);
    const renewed = await exchange(
      port,
      query(Dhcp4MessageType.REQUEST, { ciaddr: offered }),
      DHCP4O6_FLAG_UNICAST,
    );
    expect(renewed?.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
    expect(renewed?.dhcp4.yiaddr).toBe(offered);
    const released = () =>
      server.metrics.get("dstm_dhcp4o6_messages_total", { type: "release", result: "released" });
    expect(
      await unanswered(
        port,
        query(Dhcp4MessageType.RELEASE, { ciaddr: offered }, { serverId: SERVER_ID_4O6 }),
        () => released() === 1,
      ),
    ).toEqual([]);
    expect(server.engine.lookupHost("::1")).toBeUndefined();
  });

  test("a REQUEST for an address held by another host gets a NAK", async () => {
    const server = await start();
    const lease = await server.engine.discover("2001:db8:9::1");
    expect(lease.ok).toBe(true);
    const ipv4 = lease.ok ? lease.lease.ipv4 : 0;
    const nak = await exchange(
      server.dhcp4o6Port,
      query(Dhcp4MessageType.REQUEST, {}, { requestedIp: ipv4 }),
    );
    expect(nak?.dhcp4.options.messageType).toBe(Dhcp4MessageType.NAK);
    expect(nak?.dhcp4.yiaddr).toBe(0);
  });

  test("a lease from a shared pool carries OPTION_V4_PORTPARAMS (159)", async () => {
    const server = await start({
      pools: [
        { prefixes: ["198.51.100.0/30"], share: 4, tep6: "2001:db8::1", tep4: SERVER_ID_4O6 },
      ],
    });
    const offer = await exchange(server.dhcp4o6Port, query(Dhcp4MessageType.DISCOVER));
    expect(offer?.dhcp4.options.portParams?.psidLength).toBe(2);
    expect(offer?.dhcp4.options.portParams?.offset).toBe(6);
  });

  test("garbage and DHCPV4-RESPONSE messages sent to the server are dropped and counted", async () => {
    const server = await start();
    const ep = await bindUdp("::1", 0, () => {});
    ep.send(new Uint8Array([20, 0, 0, 0, 0, 87, 0, 1, 1]), "::1", server.dhcp4o6Port);
    const counted = () =>
      server.metrics
        .snapshot()
        .filter((s) => s.name === "dstm_dhcp4o6_messages_total" && s.labels.includes("malformed"));
    await waitUntil(() => counted().length > 0, { what: "the malformed query to be counted" });
    ep.close();
    expect(counted().length).toBe(1);
  });
});

describe("dstm's DHCPv4-over-DHCPv6 client against dstm's server", () => {
  test("lease, renewal, shared address with option 159, release", async () => {
    const { Dhcp4o6Client } = await import("../lib/client/dhcp4o6_client.ts");
    const server = await start({
      pools: [{ prefixes: ["203.0.113.0/30"], share: 4, tep6: "2001:db8::1", tep4: SERVER_ID_4O6 }],
    });
    const client = await Dhcp4o6Client.open({
      server: "::1",
      host6: "::1",
      tep6: "2001:db8::1",
      clientPort: 0,
      serverPort: server.dhcp4o6Port,
      retry: { initialMs: 200, tries: 3 },
    });
    cleanup.push(() => client.close());
    const lease = await client.discover();
    expect(formatIPv4(lease.ipv4)).toBe("203.0.113.1");
    expect(lease.portSet).toEqual({ offset: 6, psidLength: 2, psid: 0 });
    expect(lease.leaseTime).toBe(600);
    expect(server.engine.lookupHost("::1")?.portSet.psidLength).toBe(2);
    const renewed = await client.request(lease.ipv4);
    expect(renewed.ipv4).toBe(lease.ipv4);
    await client.release(lease.ipv4);
    await waitUntil(() => server.engine.lookupHost("::1") === undefined, {
      what: "the release to reach the engine",
    });
  });
});

describe("4o6 and the TEP", () => {
  test("the binding is installed with the ACK, not for an offer", async () => {
    const { MessageType } = await import("../lib/wire/dstm_types.ts");
    const { decodeMessage, encodeMessage } = await import("../lib/wire/dstm.ts");
    const { bindingsDigest } = await import("../lib/wire/digest.ts");
    const binds: number[] = [];
    const tep = await bindUdp("::1", 0, (data, address, port) => {
      const m = decodeMessage(data);
      if (m.ok && m.value.type === MessageType.BIND) {
        binds.push(m.value.host4!);
        tep.send(
          encodeMessage({ type: MessageType.BIND_ACK, xid: m.value.xid, host4: m.value.host4! }),
          address,
          port,
        );
      }
    });
    cleanup.push(() => tep.close());
    const server = await start({
      pools: [{ prefixes: ["198.51.100.0/29"], tep6: "::1", tep4: SERVER_ID_4O6 }],
      tepPort: tep.port,
    });
    // The TEP says hello (empty table), so the server waits for its BIND_ACKs from now on.
    // Like a real TEP, say it again until the server has it (a loaded machine may drop one).
    const hello = encodeMessage({
      type: MessageType.SYNC,
      xid: 1,
      tep6: "::1",
      syncCount: 0,
      syncDigest: bindingsDigest([]),
    });
    let polls = 0;
    await waitUntil(
      () => {
        if (polls++ % 25 === 0) tep.send(hello, "::1", server.listening.port);
        return server.tepSync!.view("::1").connected;
      },
      { what: "the TEP's SYNC", timeoutMs: 20_000 },
    );
    // The host is not the TEP (::1, which gets no lease: host6-is-tep): ::1 relays for it.
    const offer = await exchangeRelayed(server.dhcp4o6Port, query(Dhcp4MessageType.DISCOVER));
    expect(offer?.dhcp4.options.messageType).toBe(Dhcp4MessageType.OFFER);
    expect(binds).toEqual([]);
    const ack = await exchangeRelayed(
      server.dhcp4o6Port,
      query(
        Dhcp4MessageType.REQUEST,
        {},
        { requestedIp: offer!.dhcp4.yiaddr, serverId: SERVER_ID_4O6 },
      ),
    );
    expect(ack?.dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
    expect(binds).toEqual([offer!.dhcp4.yiaddr]);
  });
});
