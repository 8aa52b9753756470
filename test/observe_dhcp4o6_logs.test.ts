/**
 * `--log-level debug` for DHCPv4-over-DHCPv6: the server and the 4o6 client write one
 * `message-received` / `message-sent` line per DHCPv6 message (as the native protocol does,
 * test/observe_metrics.test.ts), with the DHCPv6 and DHCPv4 types, xid, client identity,
 * address and result; relayed, the relay hops and the link. Every JSON key is kebab-case and
 * no duration is text. A real server (DstmServer, real sockets on ::1) and the real
 * Dhcp4o6Client, each with its own JSON debug logger; the relay is a stand-in on ::1.
 */
import { afterEach, expect, test } from "bun:test";
import { Dhcp4o6Client } from "../lib/client/dhcp4o6_client.ts";
import { Logger } from "../lib/control/log.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import type { Dhcp4o6IdentityMode } from "../lib/server/dhcp4o6_identity.ts";
import { DstmServer } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { Dhcp6RelayType, encodeDhcp6Relay } from "../lib/wire/dhcp6_relay.ts";
import { dhcp4Message, dhcp4o6Query } from "./helpers/dhcp4.ts";
import { waitUntil } from "./helpers/wait.ts";

const SERVER_ID = parseIPv4("192.0.2.1")!;
const MAC = Uint8Array.of(0x02, 0x00, 0x5e, 0x10, 0x00, 0x07);
const KEY = /^[a-z0-9]+(-[a-z0-9]+)*$/;
const DURATION_TEXT = /^\d+(\.\d+)?(ms|s|m|h|d)$/;

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

type Line = Record<string, unknown>;
function jsonLogger(): { log: Logger; lines: () => Line[] } {
  let text = "";
  const log = new Logger({ format: "json", level: "debug", sink: (t) => (text += t) });
  return {
    log,
    lines: () =>
      text
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Line),
  };
}

/** Keys not in kebab-case and durations written as text, as "key=value in event". */
function badKeys(lines: readonly Line[]): string[] {
  const bad: string[] = [];
  for (const line of lines)
    for (const [key, value] of Object.entries(line)) {
      if (!KEY.test(key)) bad.push(`key ${key} in ${line.event}`);
      if (typeof value === "string" && DURATION_TEXT.test(value))
        bad.push(`duration as text ${key}=${value} in ${line.event}`);
    }
  return bad;
}

/** A server on ::1 (4o6 with identity `identity`) logging JSON at debug. */
async function startServer(identity: Dhcp4o6IdentityMode) {
  const serverLog = jsonLogger();
  const server = await DstmServer.start({
    pools: [{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1", tep4: SERVER_ID }],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: true,
    dhcp4o6: { address: "::1", port: 0, interfaces: [], serverId: SERVER_ID, identity },
    log: serverLog.log,
  });
  cleanup.push(() => server.stop());
  return { server, serverLog };
}

const messages = (lines: readonly Line[], event: string) =>
  lines.filter((l) => l.event === event && l.level === "debug");

test("4o6 DORA + RELEASE: one debug line per message on server and client, with the fields", async () => {
  const { server, serverLog } = await startServer("chaddr");
  const clientLog = jsonLogger();
  const client = await Dhcp4o6Client.open({
    server: "::1",
    host6: "::1",
    tep6: "2001:db8::1",
    tep4: SERVER_ID,
    chaddr: MAC,
    clientPort: 0,
    serverPort: server.dhcp4o6Port,
    retry: { initialMs: 2000, maxMs: 4000, tries: 5 },
    log: clientLog.log,
  });
  cleanup.push(() => client.close());
  const lease = await client.discover();
  const ipv4 = formatIPv4(lease.ipv4);
  await client.release(lease.ipv4);
  // RELEASE has no answer: wait until the server has logged receiving it.
  await waitUntil(
    () =>
      messages(serverLog.lines(), "message-received").some((m) => m["dhcp4-type"] === "RELEASE"),
    { what: "the server's message-received line of the RELEASE" },
  );

  const s = serverLog.lines();
  const c = clientLog.lines();
  expect(badKeys(s)).toEqual([]);
  expect(badKeys(c)).toEqual([]);
  const view = (m: Line) => [m["dhcp6-type"], m["dhcp4-type"], m.result];
  // The server: each query received with the result it was counted under, each answer sent.
  expect(messages(s, "message-received").map(view)).toEqual([
    ["DHCPV4-QUERY", "DISCOVER", "offer"],
    ["DHCPV4-QUERY", "REQUEST", "ack"],
    ["DHCPV4-QUERY", "RELEASE", "released"],
  ]);
  expect(messages(s, "message-sent").map(view)).toEqual([
    ["DHCPV4-RESPONSE", "OFFER", "offer"],
    ["DHCPV4-RESPONSE", "ACK", "ack"],
  ]);
  // The client: the same four DHCPv4 messages, the other way round.
  expect(messages(c, "message-sent").map((m) => m["dhcp4-type"])).toEqual([
    "DISCOVER",
    "REQUEST",
    "RELEASE",
  ]);
  expect(messages(c, "message-received").map((m) => [m["dhcp4-type"], m.result])).toEqual([
    ["OFFER", "answer"],
    ["ACK", "answer"],
  ]);
  const xids = new Set([...s, ...c].filter((m) => m["dhcp4-type"] !== "RELEASE").map((m) => m.xid));
  const ack = messages(s, "message-sent")[1]!;
  expect(ack).toMatchObject({
    chaddr: "02005e100007",
    ipv4,
    "lease-time-s": 600,
    peer: "::1",
  });
  expect(typeof ack.xid).toBe("number");
  expect(xids.has(ack.xid)).toBe(true);
  // The client's REQUEST names the offered address and carries the same chaddr.
  expect(messages(c, "message-sent")[1]).toMatchObject({ chaddr: "02005e100007", ipv4 });
  expect(messages(c, "message-received")[1]).toMatchObject({ ipv4, "lease-time-s": 600 });
});

test("a relayed 4o6 query: relay hops, link and host in the server's debug lines; a NAK's reason", async () => {
  const { server, serverLog } = await startServer("source");
  const answers: Uint8Array[] = [];
  const relay = await bindUdp("::1", 0, (data) => answers.push(data));
  cleanup.push(() => relay.close());
  const relayed = (type: Dhcp4MessageType, options = {}, fields = {}) =>
    encodeDhcp6Relay({
      type: Dhcp6RelayType.RELAY_FORW,
      hopCount: 0,
      linkAddress: "2001:db8:9::1",
      peerAddress: "2001:db8:9::77",
      relayMessage: dhcp4o6Query(dhcp4Message(type, options, { xid: 0x77, ...fields })),
    });
  relay.send(relayed(Dhcp4MessageType.DISCOVER), "::1", server.dhcp4o6Port);
  await waitUntil(() => answers.length === 1, { what: "the RELAY-REPL of the OFFER" });
  // A renewal of an address the host does not hold: NAK, with its reason.
  relay.send(
    relayed(Dhcp4MessageType.REQUEST, {}, { ciaddr: parseIPv4("198.51.100.6")! }),
    "::1",
    server.dhcp4o6Port,
  );
  await waitUntil(() => answers.length === 2, { what: "the RELAY-REPL of the NAK" });

  const s = serverLog.lines();
  expect(badKeys(s)).toEqual([]);
  const received = messages(s, "message-received");
  const sent = messages(s, "message-sent");
  expect(received).toHaveLength(2);
  expect(sent).toHaveLength(2);
  for (const m of [...received, ...sent])
    expect(m).toMatchObject({
      "relay-hops": 1,
      link: "2001:db8:9::1",
      host6: "2001:db8:9::77",
      peer: "::1",
      xid: 0x77,
    });
  expect(received[0]).toMatchObject({ "dhcp6-type": "DHCPV4-QUERY", "dhcp4-type": "DISCOVER" });
  expect(sent[0]).toMatchObject({ "dhcp4-type": "OFFER", result: "offer" });
  expect(sent[1]).toMatchObject({ "dhcp4-type": "NAK", result: "nak" });
  expect(typeof sent[1]!.reason).toBe("string");
  expect((sent[1]!.reason as string).length).toBeGreaterThan(0);
});
