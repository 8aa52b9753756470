/**
 * Red team on DHCPv4-over-DHCPv6 relays (lib/server/dhcp4o6.ts, lib/server/admission.ts) as a
 * host on the link, inside `--dhcp4o6-allow`, that sends only from its own IPv6 address (as
 * SAVI, RFC 7039, would force it to): it wraps its DHCPv4 message in a RELAY-FORW (RFC 8415
 * §19.1) whose peer-address names another host. The server takes a relay's peer-address as
 * the host (RFC 8415 §19.1.1) and, with only `--dhcp4o6-allow`, lets any source in the list
 * relay, so the host acted as its neighbour without spoofing anything: it ended the
 * neighbour's lease with a DHCPRELEASE, and could choose another link's pool by the
 * link-address. `--dhcp4o6-relay PREFIX` names the relays: a RELAY-FORW from anywhere else is
 * refused (`not-allowed`, logged with relay=).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { Admission } from "../lib/server/admission.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import { LinkSelector } from "../lib/server/dhcp4o6_link.ts";
import { DstmServer } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { encodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { encodeDhcp6Relay } from "../lib/wire/dhcp6_relay.ts";
import { capturedLog } from "./helpers/captured_log.ts";
import { dhcp4Message, dhcp4OfResponse, dhcp4o6Query } from "./helpers/dhcp4.ts";
import { startEngine } from "./helpers/engine.ts";
import { runDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const SERVER_ID = parseIPv4("192.0.2.1")!;
const VICTIM = "2001:db8:4::a1";
const ATTACKER = "2001:db8:4::66"; // inside --dhcp4o6-allow, sends only from its own address
const RELAY = "2001:db8:7::1"; // the operator's relay
const POOL_A = parseIPv4("198.51.100.0")!;
const POOL_B = parseIPv4("198.51.100.16")!;

async function setup(relays?: string[]) {
  const { engine } = await startEngine([
    { prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" },
    { prefixes: ["198.51.100.16/28"], tep6: "2001:db8::1" },
  ]);
  const metrics = new Metrics();
  const { log, lines } = capturedLog();
  const admission = new Admission({
    metrics,
    log,
    ratePerSecond: 0,
    dhcp4o6Allow: ["2001:db8:4::/64", "2001:db8:7::/64"],
    dhcp4o6Relays: relays,
  });
  // Pool A serves the hosts' link, pool B another link (2001:db8:20::/64).
  const selector = new LinkSelector([
    { pool: "198.51.100.0/28", links: ["2001:db8:4::/64"] },
    { pool: "198.51.100.16/28", links: ["2001:db8:20::/64"] },
  ]);
  const handler = new Dhcp4o6Handler({
    engine,
    serverId: SERVER_ID,
    log,
    metrics,
    admission,
    links: () => selector,
  });
  let xid = 0x52000000;
  /** One DHCPv4 message from `source`, wrapped in a RELAY-FORW naming `peer` when given. */
  const ask = async (
    source: string,
    type: Dhcp4MessageType,
    options: Partial<Dhcp4Options> = {},
    relay?: { peer: string; link: string },
    fields: { ciaddr?: number } = {},
  ) => {
    const chaddr = Uint8Array.of(2, 0, 0, 0, 0x52, 1);
    const m = dhcp4Message(type, options, { xid: ++xid, chaddr, ...fields });
    let raw = encodeDhcp4o6({ type: 20, flags: 0, dhcp4: m });
    if (relay)
      raw = encodeDhcp6Relay({
        type: 12,
        hopCount: 0,
        linkAddress: relay.link,
        peerAddress: relay.peer,
        relayMessage: raw,
      });
    const answer = await handler.handle(raw, source);
    if (!answer) return null;
    return dhcp4OfResponse(answer, relay !== undefined);
  };
  const lease = async (source: string, relay?: { peer: string; link: string }) => {
    const offer = await ask(source, Dhcp4MessageType.DISCOVER, {}, relay);
    if (!offer) return 0;
    const ack = await ask(
      source,
      Dhcp4MessageType.REQUEST,
      { requestedIp: offer.yiaddr, serverId: SERVER_ID },
      relay,
    );
    return ack?.options.messageType === Dhcp4MessageType.ACK ? ack.yiaddr : -1;
  };
  const active = (host6: string) =>
    engine.leases({ state: "active" }).filter((l) => l.host6 === host6);
  const refusedRelays = () =>
    metrics.get("dstm_admission_refused_total", { protocol: "dhcp4o6", reason: "not-allowed" });
  return { ask, lease, active, refusedRelays, lines };
}

/** The attacker's DHCPRELEASE of the victim's address, relayed with peer-address = victim. */
async function releaseAsVictim(s: Awaited<ReturnType<typeof setup>>, address: number) {
  await s.ask(
    ATTACKER,
    Dhcp4MessageType.RELEASE,
    { serverId: SERVER_ID },
    { peer: VICTIM, link: "2001:db8:4::1" },
    { ciaddr: address },
  );
}

describe("a host in --dhcp4o6-allow posing as a relay", () => {
  test("without --dhcp4o6-relay (as before): it releases its neighbour's lease", async () => {
    const s = await setup();
    const address = await s.lease(VICTIM);
    expect(address).toBeGreaterThan(0);
    await releaseAsVictim(s, address);
    expect(s.active(VICTIM)).toEqual([]); // the documented exposure without a relay list
  });

  test("with --dhcp4o6-relay: its RELAY-FORW is refused, the neighbour's lease stays", async () => {
    const s = await setup(["2001:db8:7::/64"]);
    const address = await s.lease(VICTIM);
    expect(address).toBeGreaterThan(0);
    await releaseAsVictim(s, address);
    expect(s.active(VICTIM).map((l) => l.ipv4)).toEqual([address]);
    expect(s.refusedRelays()).toBe(1);
    expect(s.lines().join("\n")).toMatch(/reject.*reason=not-allowed.*relay=2001:db8:4::66/);
  });

  test("with --dhcp4o6-relay: it cannot pick another link's pool by link-address", async () => {
    const s = await setup(["2001:db8:7::/64"]);
    expect(await s.lease(ATTACKER, { peer: ATTACKER, link: "2001:db8:20::1" })).toBe(0);
    const own = await s.lease(ATTACKER);
    expect(own >= POOL_A && own < POOL_A + 16).toBe(true);
  });

  test("with --dhcp4o6-relay: the listed relay still serves hosts on its link", async () => {
    const s = await setup(["2001:db8:7::/64"]);
    const address = await s.lease(RELAY, { peer: "2001:db8:4::b", link: "2001:db8:20::1" });
    expect(address >= POOL_B && address < POOL_B + 16).toBe(true);
    expect(s.refusedRelays()).toBe(0);
  });
});

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe("dstm server --dhcp4o6-relay", () => {
  /** A server on ::1 whose 4o6 relays are `relays`; answers to one RELAY-FORW from ::1. */
  async function relayedDiscover(relays: string[]) {
    const lines: string[] = [];
    const log = new Logger({ sink: (t) => lines.push(t) });
    const server = await DstmServer.start({
      pools: [{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }],
      leaseTime: 600,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
      dhcp4o6: {
        address: "::1",
        port: 0,
        interfaces: [],
        serverId: SERVER_ID,
        allow: ["::1/128", "2001:db8:4::/64"],
        relays,
      },
      log,
    });
    cleanup.push(() => server.stop());
    let answers = 0;
    const ep = await bindUdp("::1", 0, () => {
      answers++;
    });
    cleanup.push(() => ep.close());
    const discover = dhcp4Message(
      Dhcp4MessageType.DISCOVER,
      {},
      { xid: 7, chaddr: Uint8Array.of(2, 0, 0, 0, 0, 7) },
    );
    const forw = encodeDhcp6Relay({
      type: 12,
      hopCount: 0,
      linkAddress: "2001:db8:4::1",
      peerAddress: VICTIM,
      relayMessage: dhcp4o6Query(discover),
    });
    const refused = () =>
      server.metrics.get("dstm_admission_refused_total", {
        protocol: "dhcp4o6",
        reason: "not-allowed",
      });
    // Polled with a deadline: an answer, or the refusal counted (the query sent again every
    // 50 looks, as a relay would retransmit).
    let looks = 0;
    await eventually(
      () => {
        if (looks++ % 50 === 0) ep.send(forw, "::1", server.dhcp4o6Port);
        return answers > 0 || refused() > 0;
      },
      { timeoutMs: 2000, intervalMs: 10 },
    );
    log.flush();
    return { answers, refused: refused(), log: lines.join("") };
  }

  test("a RELAY-FORW from a source outside the relay list gets nothing and is counted", async () => {
    const r = await relayedDiscover(["2001:db8:7::/64"]);
    expect(r.refused).toBeGreaterThan(0);
    expect(r.answers).toBe(0);
    expect(r.log).toMatch(/dhcp4o6 .*relays=2001:db8:7::\/64/);
  });

  test("a RELAY-FORW from a listed relay is answered", async () => {
    const r = await relayedDiscover(["::1/128"]);
    expect(r.answers).toBe(1);
    expect(r.refused).toBe(0);
  });

  test("a --dhcp4o6-relay that is not an IPv6 prefix: exit 2, one line", async () => {
    const r = await runDstm([
      "server",
      "--pool",
      "198.51.100.0/28",
      "--tep",
      "2001:db8::1",
      "--db",
      "memory",
      "--dhcp4o6",
      "--dhcp4o6-server-id",
      "192.0.2.1",
      "--dhcp4o6-relay",
      "nope",
      "--check",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--dhcp4o6-relay: "nope" is not an IPv6 prefix');
  });
});
