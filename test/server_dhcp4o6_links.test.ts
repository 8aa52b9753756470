/**
 * Pool selection by the client's IPv6 link (lib/server/dhcp4o6_link.ts, RFC 8415 §13.1 and
 * §19.1.1), on the 4o6 handler with an engine in memory: crafted RELAY-FORWs from two relays
 * on two links (and nested relays), direct queries from global and link-local sources, and
 * the refusal of a link no pool serves. test/kea_dhcp4o6_links.test.ts replays the relayed
 * cases against ISC Kea in namespaces. Issue 11.
 */
import { describe, expect, test } from "bun:test";
import { Metrics } from "../lib/control/metrics.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import { LinkSelector, type PoolLinks } from "../lib/server/dhcp4o6_link.ts";
import { Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { encodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { type Dhcp6RelayMessage, encodeDhcp6Relay } from "../lib/wire/dhcp6_relay.ts";
import { capturedLog } from "./helpers/captured_log.ts";
import { dhcp4Message, dhcp4OfResponse } from "./helpers/dhcp4.ts";
import { startEngine } from "./helpers/engine.ts";

const SERVER_ID = parseIPv4("192.0.2.1")!;
/** Pool A serves link 2001:db8:10::/64, pool B link 2001:db8:20::/64 (and interface-id "port-b"). */
const POOLS = [
  { prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" },
  { prefixes: ["198.51.100.16/28"], tep6: "2001:db8::1" },
  { prefixes: ["198.51.100.32/28"], tep6: "2001:db8::1" },
];
const LINKED: PoolLinks[] = [
  { pool: "198.51.100.0/28", links: ["2001:db8:10::/64", "%eth1"] },
  { pool: "198.51.100.16/28", links: ["2001:db8:20::/64", "interface-id:port-b"] },
];
const inPool = (ipv4: number, base: number) => ipv4 >= base && ipv4 < base + 16;
const A = parseIPv4("198.51.100.0")!;
const B = parseIPv4("198.51.100.16")!;
const C = parseIPv4("198.51.100.32")!;

async function setup(links: PoolLinks[]) {
  const { engine } = await startEngine(POOLS);
  const metrics = new Metrics();
  const { log, lines } = capturedLog();
  const selector = new LinkSelector(links, (name) => (name === "eth1" ? 7 : 0));
  const handler = new Dhcp4o6Handler({
    engine,
    serverId: SERVER_ID,
    log,
    metrics,
    identity: "client-id",
    links: () => selector,
  });
  let xid = 0x4c000000;
  /** One DHCPv4 message of `client`, through `relays` (innermost last; none: direct) from `source`. */
  const ask = async (
    source: string,
    relays: Omit<Dhcp6RelayMessage, "type" | "relayMessage" | "hopCount">[],
    client: number,
    type: Dhcp4MessageType,
    options: Partial<Dhcp4Options> = {},
  ) => {
    const chaddr = Uint8Array.of(2, 0, 0, 0, 0x4c, client);
    const m = dhcp4Message(
      type,
      { clientId: Uint8Array.of(1, ...chaddr), ...options },
      { xid: ++xid, chaddr },
    );
    let raw = encodeDhcp4o6({ type: 20, flags: 0, dhcp4: m });
    for (let i = relays.length - 1; i >= 0; i--)
      raw = encodeDhcp6Relay({
        type: 12,
        hopCount: relays.length - 1 - i,
        ...relays[i]!,
        relayMessage: raw,
      });
    const answer = await handler.handle(raw, source);
    if (!answer) return null;
    return dhcp4OfResponse(answer, true);
  };
  /** DISCOVER + REQUEST; the ACK's address, 0 when there was no OFFER, -1 for a NAK. */
  const lease = async (source: string, relays: Parameters<typeof ask>[1], client: number) => {
    const offer = await ask(source, relays, client, Dhcp4MessageType.DISCOVER);
    if (!offer) return 0;
    const ack = await ask(source, relays, client, Dhcp4MessageType.REQUEST, {
      requestedIp: offer.yiaddr,
      serverId: SERVER_ID,
    });
    return ack?.options.messageType === Dhcp4MessageType.ACK ? ack.yiaddr : -1;
  };
  const count = (type: string, result: string) =>
    metrics.get("dstm_dhcp4o6_messages_total", { type, result });
  return { engine, ask, lease, count, lines };
}

/** A relay on link `net` (its link-address `net::1`) that heard client `peer`. */
const relay = (link: string, peer: string, interfaceId?: string) => ({
  linkAddress: link,
  peerAddress: peer,
  ...(interfaceId ? { interfaceId: new TextEncoder().encode(interfaceId) } : {}),
});
const RELAY_A = "2001:db8:10::1";
const RELAY_B = "2001:db8:20::1";

describe("4o6 pool selection by link (RFC 8415 §13.1)", () => {
  test("two relays on two links: each link's clients get addresses of its own pool", async () => {
    const { lease } = await setup(LINKED);
    const a = await lease(RELAY_A, [relay(RELAY_A, "fe80::a")], 1);
    const b = await lease(RELAY_B, [relay(RELAY_B, "fe80::b")], 2);
    expect(inPool(a, A)).toBe(true);
    expect(inPool(b, B)).toBe(true);
  });

  test("nested relays: the innermost relay's link-address decides, not the outer relay's nor the datagram's source", async () => {
    const { lease } = await setup(LINKED);
    // The outer relay sits on link B; the relay that heard the client is on link A.
    const ip = await lease(RELAY_B, [relay(RELAY_B, RELAY_A), relay(RELAY_A, "fe80::c")], 3);
    expect(inPool(ip, A)).toBe(true);
  });

  test("an innermost link-address of :: (RFC 8415 §19.1.1) falls to the next relay's; link-local ones are skipped too", async () => {
    const { lease } = await setup(LINKED);
    const viaB = await lease(
      RELAY_A,
      [relay(RELAY_B, "2001:db8:99::1"), relay("::", "fe80::d")],
      4,
    );
    expect(inPool(viaB, B)).toBe(true);
    const ll = await lease(RELAY_A, [relay(RELAY_A, "fe80::9"), relay("fe80::1", "fe80::e")], 5);
    expect(inPool(ll, A)).toBe(true);
  });

  test("interface-id: a relay with link-address :: naming interface port-b is on pool B's link", async () => {
    const { lease } = await setup(LINKED);
    const ip = await lease("2001:db8:99::1", [relay("::", "fe80::f", "port-b")], 6);
    expect(inPool(ip, B)).toBe(true);
  });

  test("direct queries: a global source by its prefix, a link-local one by the interface it came in on", async () => {
    const { lease } = await setup(LINKED);
    expect(inPool(await lease("2001:db8:20::77", [], 7), B)).toBe(true);
    expect(inPool(await lease("fe80::1:7%7", [], 8), A)).toBe(true); // ifindex 7 is eth1
  });

  test("a link no pool serves: no answer, counted no-pool-for-link, logged at warn once per 10 s", async () => {
    const { ask, count, lines, engine } = await setup(LINKED);
    expect(await ask("2001:db8:30::1", [relay("2001:db8:30::1", "fe80::1")], 9, 1)).toBeNull();
    expect(await ask("2001:db8:30::1", [], 9, Dhcp4MessageType.DISCOVER)).toBeNull();
    const request = await ask("2001:db8:30::1", [], 9, Dhcp4MessageType.REQUEST, {
      requestedIp: A + 2,
    });
    expect(request).toBeNull();
    expect(count("discover", "no-pool-for-link")).toBe(2);
    expect(count("request", "no-pool-for-link")).toBe(1);
    const warned = lines().filter((l) => / WARN reject reason=no-pool-for-link /.test(l));
    expect(warned.length).toBe(1);
    expect(warned[0]).toContain("link=2001:db8:30::1");
    expect(engine.leases().length).toBe(0);
  });

  test("pools without links serve the links no other pool names", async () => {
    const { lease } = await setup([...LINKED, { pool: "198.51.100.32/28" }]);
    expect(inPool(await lease("2001:db8:30::1", [], 10), C)).toBe(true);
    expect(inPool(await lease(RELAY_A, [relay(RELAY_A, "fe80::a")], 11), A)).toBe(true);
  });

  test("a REQUEST for another link's address is NAKed; a client that moved links gets a lease of its new link", async () => {
    const { ask, lease, engine } = await setup(LINKED);
    const a = await lease(RELAY_A, [relay(RELAY_A, "fe80::a")], 12);
    expect(inPool(a, A)).toBe(true);
    // INIT-REBOOT on link B for its link-A address: NAK (start again with DISCOVER).
    const nak = await ask(RELAY_B, [relay(RELAY_B, "fe80::a")], 12, Dhcp4MessageType.REQUEST, {
      requestedIp: a,
    });
    expect(nak?.options.messageType).toBe(Dhcp4MessageType.NAK);
    const b = await lease(RELAY_B, [relay(RELAY_B, "fe80::a")], 12);
    expect(inPool(b, B)).toBe(true);
    // One lease for the client: the link-A one was ended.
    const active = engine.leases({ state: "active" }).map((l) => formatIPv4(l.ipv4));
    expect(active).toEqual([formatIPv4(b)]);
  });

  test("no pool naming links: every pool serves every link, as before", async () => {
    const { lease } = await setup([]);
    expect(inPool(await lease("2001:db8:30::1", [], 13), A)).toBe(true);
  });
});
