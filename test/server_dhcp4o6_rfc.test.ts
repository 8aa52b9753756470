/**
 * `dstm server --dhcp4o6` by the letter of RFC 2131 and RFC 8415 (issue 11), in process on
 * ::1 without root: DECLINE (§4.3.3), INFORM (§4.3.5), relayed queries (RFC 8415 §19) and
 * the admission of relayed hosts. test/conformance_dhcp4o6.test.ts replays the same against
 * ISC Kea in namespaces.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { declinedHost, isDeclinedHost } from "../lib/alloc/engine.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import type { DstmServer, ServerConfig } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import {
  type Dhcp4o6Message,
  Dhcp6MessageType,
  decodeDhcp4o6,
  encodeDhcp4o6,
  encodeDhcp6,
} from "../lib/wire/dhcp4o6.ts";
import { type Dhcp6RelayMessage, encodeDhcp6Relay, unwrapRelays } from "../lib/wire/dhcp6_relay.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { SERVER_ID_4O6, startServer4o6 } from "./helpers/server_4o6.ts";
import { waitUntil } from "./helpers/wait.ts";

const CHADDR = Uint8Array.from([0x02, 0, 0, 0, 0, 0x0b]);
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
const lines: string[] = [];

function start(overrides: Partial<ServerConfig> = {}) {
  return startServer4o6(cleanup, overrides, (l) => lines.push(l));
}

function query(
  type: Dhcp4MessageType,
  fields: Partial<Dhcp4Message> = {},
  options: Partial<Dhcp4Options> = {},
): Dhcp4Message {
  return dhcp4Message(type, options, { xid: 0x5eed0000 + type, chaddr: CHADDR, ...fields });
}

const envelope = (dhcp4: Dhcp4Message) =>
  encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags: 0, dhcp4 });

/**
 * Sends `payload` from a fresh socket on ::1 and collects what comes back until an
 * INFORMATION-REQUEST marker sent after `handled()` is answered (datagrams arrive in order).
 */
async function send(port: number, payload: Uint8Array, handled: () => boolean) {
  const received: Uint8Array[] = [];
  const ep = await bindUdp("::1", 0, (data) => {
    received.push(data);
  });
  try {
    ep.send(payload, "::1", port);
    await waitUntil(handled, { what: "the server to handle the datagram" });
    ep.send(encodeDhcp6({ type: 11, xid: 0x6d6b72, oro: [88] }), "::1", port);
    const isMarker = (d: Uint8Array) => d[0] === Dhcp6MessageType.REPLY;
    await waitUntil(() => received.some(isMarker), { what: "the marker's REPLY" });
    return received.slice(0, received.findIndex(isMarker));
  } finally {
    ep.close();
  }
}

function response(data: Uint8Array | undefined): Dhcp4o6Message {
  if (!data) throw new Error("no answer");
  const r = decodeDhcp4o6(data);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

const count = (server: DstmServer, type: string, result: string) =>
  server.metrics.get("dstm_dhcp4o6_messages_total", { type, result });

/** DISCOVER + REQUEST from ::1: the committed lease's address. */
async function lease(server: DstmServer): Promise<number> {
  const port = server.dhcp4o6Port;
  const [o] = await send(port, envelope(query(1)), () => count(server, "discover", "offer") > 0);
  const offered = response(o).dhcp4.yiaddr;
  const request = query(3, {}, { requestedIp: offered, serverId: SERVER_ID_4O6 });
  const [a] = await send(port, envelope(request), () => count(server, "request", "ack") > 0);
  expect(response(a).dhcp4.options.messageType).toBe(Dhcp4MessageType.ACK);
  return offered;
}

describe("RFC 2131 §4.3.3 DECLINE", () => {
  test("the address is taken from the host, held for the probation, never offered meanwhile, counted and logged; then free again", async () => {
    const server = await start({
      dhcp4o6: {
        address: "::1",
        port: 0,
        interfaces: [],
        serverId: SERVER_ID_4O6,
        declineProbation: 2,
      },
      sweepIntervalMs: 50,
    });
    const address = await lease(server);
    const decline = query(4, {}, { requestedIp: address, serverId: SERVER_ID_4O6 });
    const answers = await send(
      server.dhcp4o6Port,
      envelope(decline),
      () => count(server, "decline", "declined") === 1,
    );
    expect(answers).toEqual([]); // no answer to a DECLINE
    expect(server.engine.lookupHost("::1")).toBeUndefined();
    const holder = declinedHost(address, 0);
    expect(isDeclinedHost(holder)).toBe(true);
    expect(server.engine.lookupHost(holder)?.ipv4).toBe(address);
    expect(lines.some((l) => / WARN declined .*ipv4=198\.51\.100\.1 /.test(l))).toBe(true);
    // The host asks again: another address (the old code offered the same one again).
    const [o] = await send(
      server.dhcp4o6Port,
      envelope(query(1)),
      () => count(server, "discover", "offer") === 2,
    );
    expect(response(o).dhcp4.yiaddr).not.toBe(address);
    // After the probation the sweeper frees it like any lease.
    await waitUntil(() => server.engine.lookupHost(holder) === undefined, {
      what: "the probation to end",
    });
  });

  test("a host cannot decline an address it does not hold (another host's lease stays)", async () => {
    const server = await start();
    const other = await server.engine.discover("2001:db8:9::1");
    if (!other.ok) throw new Error(other.message);
    const decline = query(4, {}, { requestedIp: other.lease.ipv4, serverId: SERVER_ID_4O6 });
    await send(
      server.dhcp4o6Port,
      envelope(decline),
      () => count(server, "decline", "no-such-lease") === 1,
    );
    expect(server.engine.lookupHost("2001:db8:9::1")?.ipv4).toBe(other.lease.ipv4);
  });
});

describe("RFC 2131 §4.3.5 INFORM", () => {
  test("ACK with the parameters: no yiaddr, no lease time, ciaddr echoed; no lease made", async () => {
    const server = await start();
    const ciaddr = parseIPv4("192.0.2.77")!;
    const [a] = await send(
      server.dhcp4o6Port,
      envelope(query(8, { ciaddr })),
      () => count(server, "inform", "ack") === 1,
    );
    const ack = response(a).dhcp4;
    expect(ack.options.messageType).toBe(Dhcp4MessageType.ACK);
    expect(ack.yiaddr).toBe(0);
    expect(ack.ciaddr).toBe(ciaddr);
    expect(ack.options.leaseTime).toBeUndefined();
    expect(ack.options.serverId).toBe(SERVER_ID_4O6);
    expect(server.engine.lookupHost("::1")).toBeUndefined();
  });
});

describe("RFC 8415 §19 relayed queries", () => {
  const relay = (payload: Uint8Array, peer = "2001:db8:77::5"): Uint8Array =>
    encodeDhcp6Relay({
      type: 12,
      hopCount: 0,
      linkAddress: "2001:db8:77::1",
      peerAddress: peer,
      interfaceId: Uint8Array.of(7),
      relayMessage: payload,
    });

  test("the host is the relayed client's peer-address; the answer is a RELAY-REPL echoing the envelope", async () => {
    const server = await start();
    const [r] = await send(
      server.dhcp4o6Port,
      relay(envelope(query(1))),
      () => count(server, "discover", "offer") === 1,
    );
    const opened = unwrapRelays(r!, 13);
    if (!opened.ok) throw new Error(opened.error.message);
    expect(opened.value.relays).toEqual([
      {
        type: 13,
        hopCount: 0,
        linkAddress: "2001:db8:77::1",
        peerAddress: "2001:db8:77::5",
        interfaceId: Uint8Array.of(7),
        relayMessage: opened.value.inner,
      } as Dhcp6RelayMessage,
    ]);
    const offer = response(opened.value.inner).dhcp4;
    expect(formatIPv4(offer.yiaddr)).toBe("198.51.100.1");
    expect(server.engine.lookupHost("2001:db8:77::5")?.ipv4).toBe(offer.yiaddr);
    expect(server.engine.lookupHost("::1")).toBeUndefined();
    expect(count(server, "relay-repl", "hops-1")).toBe(1);
  });

  test("a malformed RELAY-FORW is dropped and counted by reason", async () => {
    const server = await start();
    const bad = relay(envelope(query(1))).subarray(0, 40);
    const answers = await send(
      server.dhcp4o6Port,
      bad,
      () => count(server, "relay-forw", "malformed-truncated-option") === 1,
    );
    expect(answers).toEqual([]);
    // Issue 11 item 1: a dropped query is not silent in the log either.
    expect(lines.join("")).toMatch(
      / WARN reject reason=malformed-truncated-option protocol=dhcp4o6 /,
    );
  });

  test("--dhcp4o6-allow: a relay outside the list is refused, whatever host it names", async () => {
    const server = await start({
      dhcp4o6: {
        address: "::1",
        port: 0,
        interfaces: [],
        serverId: SERVER_ID_4O6,
        allow: ["2001:db8:77::/48"], // the relay (::1) is not in it
      },
    });
    const refused = () =>
      server.metrics.get("dstm_admission_refused_total", {
        protocol: "dhcp4o6",
        reason: "not-allowed",
      });
    const ep = await bindUdp("::1", 0, () => {});
    cleanup.push(() => ep.close());
    ep.send(relay(envelope(query(1))), "::1", server.dhcp4o6Port);
    await waitUntil(() => refused() === 1, { what: "the relay to be refused" });
    expect(server.engine.lookupHost("2001:db8:77::5")).toBeUndefined();
    expect(count(server, "discover", "offer")).toBe(0);
  });

  test("--dhcp4o6-allow applies to the relayed host, and the relay must be allowed too", async () => {
    const server = await start({
      dhcp4o6: {
        address: "::1",
        port: 0,
        interfaces: [],
        serverId: SERVER_ID_4O6,
        allow: ["2001:db8:77::/48", "::1/128"],
      },
    });
    const refused = () =>
      server.metrics.get("dstm_admission_refused_total", {
        protocol: "dhcp4o6",
        reason: "not-allowed",
      });
    const out = await send(
      server.dhcp4o6Port,
      relay(envelope(query(1)), "2001:db8:99::5"),
      () => refused() === 1,
    );
    expect(out).toEqual([]);
    expect(server.engine.lookupHost("2001:db8:99::5")).toBeUndefined();
    const [ok] = await send(
      server.dhcp4o6Port,
      relay(envelope(query(1))),
      () => count(server, "discover", "offer") === 1,
    );
    expect(ok).toBeDefined();
  });
});
