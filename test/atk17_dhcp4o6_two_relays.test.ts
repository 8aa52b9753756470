/**
 * Red team (atk17) on the link-local holder key of DHCPv4-over-DHCPv6 in `source` mode
 * (lib/server/dhcp4o6_identity.ts linkLocalHolder): the key of a relayed link-local host must
 * name the host's *link*, not the path its message took to the server. One machine fe80::10 on
 * the link 2001:db8:4::/64, heard by two relays of that link (two relays per link for
 * redundancy are common; each puts its own address on the link into link-address, RFC 8415
 * §19.1.1), or by one relay that comes back from a restart sending from another address:
 *
 * - On main, the key held the whole path (the relay's source address, its link-address and
 *   Interface-ID), so the two copies of one DISCOVER were two clients: two OFFERs of two
 *   addresses, and the copy of the REQUEST through the other relay was NAKed — the client gets
 *   ACK and NAK for one REQUEST; after a relay's restart from another address its RENEW was
 *   NAKed and its lease left to expire beside a new one (two leases for one machine).
 * - Now a global link-address names the link by its /64 (RFC 8415 §19.1.1: a relay puts there
 *   an address from a prefix assigned to the client's link; RFC 4291 §2.5.4: a 64-bit
 *   interface ID), so both relays' copies are one client; two links still differ, also two
 *   links one relay names by one link-address and two Interface-IDs (with an Interface-ID the
 *   key is that relay's link-address and Interface-ID, unless the prefix is declared a link's:
 *   test/id18_dhcp4o6_one_link.test.ts).
 */
import { describe, expect, test } from "bun:test";
import { Metrics } from "../lib/control/metrics.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import { Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { encodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { encodeDhcp6Relay } from "../lib/wire/dhcp6_relay.ts";
import { capturedLog } from "./helpers/captured_log.ts";
import { dhcp4Message, dhcp4OfResponse } from "./helpers/dhcp4.ts";
import { startEngine } from "./helpers/engine.ts";

const SERVER_ID = parseIPv4("192.0.2.1")!;
const HOST = "fe80::10";
interface Relay {
  readonly source: string;
  readonly link: string;
  readonly interfaceId?: string;
}
// As ISC dhcrelay -6 with one -l sends: its address on the link, no Interface-ID.
const R1: Relay = { source: "2001:db8:7::1", link: "2001:db8:4::1" };
const R2: Relay = { source: "2001:db8:7::2", link: "2001:db8:4::2" };

async function setup() {
  const { engine } = await startEngine([{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" }]);
  const { log } = capturedLog();
  const handler = new Dhcp4o6Handler({ engine, serverId: SERVER_ID, log, metrics: new Metrics() });
  let xid = 0x17000000;
  const chaddr = Uint8Array.of(2, 0, 0, 0, 0x17, 1);
  /** One DHCPv4 message of fe80::10 as `relay` forwards it; the DHCPv4 answer or null. */
  const ask = async (
    relay: Relay,
    type: Dhcp4MessageType,
    options: Partial<Dhcp4Options> = {},
    fields: { ciaddr?: number; xid?: number } = {},
  ) => {
    const m = dhcp4Message(type, options, { xid: fields.xid ?? ++xid, chaddr, ...fields });
    const raw = encodeDhcp6Relay({
      type: 12,
      hopCount: 0,
      linkAddress: relay.link,
      peerAddress: HOST,
      ...(relay.interfaceId ? { interfaceId: new TextEncoder().encode(relay.interfaceId) } : {}),
      relayMessage: encodeDhcp4o6({ type: 20, flags: 0, dhcp4: m }),
    });
    const answer = await handler.handle(raw, relay.source);
    if (!answer) return null;
    return dhcp4OfResponse(answer, true);
  };
  const leasesOfHost = () =>
    engine.leases({}).filter((l) => l.host6 === HOST && l.state === "active");
  return { ask, leasesOfHost, nextXid: () => ++xid };
}

describe("a link-local client heard by two relays of its link", () => {
  test("one DISCOVER through both relays: one address offered, the REQUEST ACKed by both", async () => {
    const s = await setup();
    const xid = s.nextXid();
    const o1 = await s.ask(R1, Dhcp4MessageType.DISCOVER, {}, { xid });
    const o2 = await s.ask(R2, Dhcp4MessageType.DISCOVER, {}, { xid });
    expect(o1?.options.messageType).toBe(Dhcp4MessageType.OFFER);
    expect(o2?.options.messageType).toBe(Dhcp4MessageType.OFFER);
    expect(o2!.yiaddr).toBe(o1!.yiaddr); // main: two addresses for one machine
    const req = { requestedIp: o1!.yiaddr, serverId: SERVER_ID };
    const rxid = s.nextXid();
    const a1 = await s.ask(R1, Dhcp4MessageType.REQUEST, req, { xid: rxid });
    const a2 = await s.ask(R2, Dhcp4MessageType.REQUEST, req, { xid: rxid });
    expect(a1?.options.messageType).toBe(Dhcp4MessageType.ACK);
    expect(a2?.options.messageType).toBe(Dhcp4MessageType.ACK); // main: NAK
    expect(s.leasesOfHost().map((l) => l.ipv4)).toEqual([o1!.yiaddr]);
  });

  test("a relay restarted with another source address: the RENEW is ACKed, one lease", async () => {
    const s = await setup();
    const offer = await s.ask(R1, Dhcp4MessageType.DISCOVER);
    const ack = await s.ask(R1, Dhcp4MessageType.REQUEST, {
      requestedIp: offer!.yiaddr,
      serverId: SERVER_ID,
    });
    expect(ack?.options.messageType).toBe(Dhcp4MessageType.ACK);
    const restarted: Relay = { ...R1, source: "2001:db8:7::99" };
    const renew = await s.ask(restarted, Dhcp4MessageType.REQUEST, {}, { ciaddr: ack!.yiaddr });
    expect(renew?.options.messageType).toBe(Dhcp4MessageType.ACK); // main: NAK
    expect(renew!.yiaddr).toBe(ack!.yiaddr);
    expect(s.leasesOfHost().map((l) => l.ipv4)).toEqual([ack!.yiaddr]);
  });

  for (const [name, mine, other] of [
    ["two link-address prefixes", R1, { source: "2001:db8:7::1", link: "2001:db8:5::1" }],
    [
      "one link-address, two Interface-IDs",
      { source: "2001:db8:7::1", link: "2001:db8:7::1", interfaceId: "la0" },
      { source: "2001:db8:7::1", link: "2001:db8:7::1", interfaceId: "lb0" },
    ],
  ] as [string, Relay, Relay][])
    test(`two links (${name}) still hold a lease each`, async () => {
      const s = await setup();
      const got: number[] = [];
      for (const r of [mine, other]) {
        const o = await s.ask(r, Dhcp4MessageType.DISCOVER);
        const a = await s.ask(r, Dhcp4MessageType.REQUEST, {
          requestedIp: o!.yiaddr,
          serverId: SERVER_ID,
        });
        expect(a?.options.messageType).toBe(Dhcp4MessageType.ACK);
        got.push(a!.yiaddr);
      }
      expect(got[0]).not.toBe(got[1]);
      // The other link's machine cannot release this one's lease.
      await s.ask(other, Dhcp4MessageType.RELEASE, { serverId: SERVER_ID }, { ciaddr: got[0] });
      expect(
        s
          .leasesOfHost()
          .filter((l) => l.state === "active")
          .map((l) => l.ipv4),
      ).toContain(got[0]!);
    });
});
