/**
 * Red team on identity-keyed DHCPv4-over-DHCPv6 leases (`--dhcp4o6-identity client-id|chaddr`,
 * lib/server/dhcp4o6_roam.ts) as a host allowed to use 4o6 that sends only from its own IPv6
 * address, in another /64 than its victim. A client identifier or chaddr is no secret (the
 * chaddr is the victim's MAC; its first queries go to ff02::1:2). Before: naming the victim's
 * identity in a REQUEST moved the victim's lease, and its TEP binding, to the attacker's
 * address (the victim's IPv4 traffic went to the attacker), and a RELEASE or DECLINE ended it.
 * Now the lease follows its client only within its host prefix.
 */
import { describe, expect, test } from "bun:test";
import { Metrics } from "../lib/control/metrics.ts";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import type { Dhcp4o6IdentityMode } from "../lib/server/dhcp4o6_identity.ts";
import { Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { decodeDhcp4o6, encodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { capturedLog } from "./helpers/captured_log.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { startEngine } from "./helpers/engine.ts";
import { recordingSink } from "./helpers/recording_sink.ts";

const SERVER_ID = parseIPv4("192.0.2.1")!;
const VICTIM = "2001:db8:4::a1";
const VICTIM_TEMP = "2001:db8:4::7e3:1"; // the victim's next temporary address (RFC 8981): same /64
const ATTACKER = "2001:db8:99::66"; // another /64

async function setup(identity: Dhcp4o6IdentityMode) {
  const { engine } = await startEngine([{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }]);
  const metrics = new Metrics();
  const { log, lines } = capturedLog();
  const tep: string[] = [];
  const handler = new Dhcp4o6Handler({
    engine,
    serverId: SERVER_ID,
    log,
    metrics,
    identity,
    bindings: recordingSink(tep) as never,
  });
  let xid = 0x1e000000;
  /** One query of the victim's client (its client-id and chaddr), sent from `source`. */
  const ask = async (
    source: string,
    type: Dhcp4MessageType,
    options: Partial<Dhcp4Options> = {},
    ciaddr = 0,
  ) => {
    const chaddr = Uint8Array.of(2, 0, 0, 0, 0x1e, 1);
    const m = dhcp4Message(
      type,
      { clientId: Uint8Array.of(1, ...chaddr), ...options },
      { xid: ++xid, ciaddr, chaddr },
    );
    const raw = await handler.handle(encodeDhcp4o6({ type: 20, flags: 0, dhcp4: m }), source);
    if (!raw) return null;
    const r = decodeDhcp4o6(raw);
    if (!r.ok) throw new Error(r.error.message);
    return r.value.dhcp4;
  };
  const lease = async (source: string) => {
    const offer = await ask(source, Dhcp4MessageType.DISCOVER);
    if (!offer) return 0;
    const ack = await ask(source, Dhcp4MessageType.REQUEST, {
      requestedIp: offer.yiaddr,
      serverId: SERVER_ID,
    });
    return ack?.options.messageType === Dhcp4MessageType.ACK ? ack.yiaddr : -1;
  };
  const holders = () =>
    engine.leases({ state: "active" }).map((l) => `${formatIPv4(l.ipv4)} ${l.host6}`);
  const otherPrefix = (type: string) =>
    metrics.get("dstm_dhcp4o6_messages_total", { type, result: "other-prefix" });
  return { ask, lease, holders, tep, otherPrefix, lines };
}

for (const mode of ["client-id", "chaddr"] as const) {
  describe(`--dhcp4o6-identity ${mode}: the victim's identity from another /64`, () => {
    test("a REQUEST for the victim's address is NAKed; the lease and its TEP binding stay", async () => {
      const s = await setup(mode);
      const address = await s.lease(VICTIM);
      expect(address).toBeGreaterThan(0);
      const at = `${formatIPv4(address)} ${VICTIM}`;
      const ack = await s.ask(ATTACKER, Dhcp4MessageType.REQUEST, {
        requestedIp: address,
        serverId: SERVER_ID,
      });
      expect(ack?.options.messageType).toBe(Dhcp4MessageType.NAK); // before: ACK, lease moved
      expect(s.holders()).toEqual([at]);
      expect(s.tep).toEqual([`+${at}`]); // before: + for the attacker's address too
      expect(s.otherPrefix("request")).toBe(1);
      expect(s.lines().join("\n")).toMatch(/reject reason=other-prefix .*held=2001:db8:4::a1/);
    });

    test("a REQUEST for another address, a DISCOVER, a RELEASE, a DECLINE: nothing changes", async () => {
      const s = await setup(mode);
      const address = await s.lease(VICTIM);
      const at = `${formatIPv4(address)} ${VICTIM}`;
      const other = parseIPv4("198.51.100.5")!;
      await s.ask(ATTACKER, Dhcp4MessageType.REQUEST, { requestedIp: other, serverId: SERVER_ID });
      expect(await s.ask(ATTACKER, Dhcp4MessageType.DISCOVER)).toBeNull();
      await s.ask(ATTACKER, Dhcp4MessageType.RELEASE, { serverId: SERVER_ID }, address);
      await s.ask(ATTACKER, Dhcp4MessageType.DECLINE, {
        requestedIp: address,
        serverId: SERVER_ID,
      });
      expect(s.holders()).toEqual([at]);
      expect(s.tep).toEqual([`+${at}`]);
      for (const type of ["request", "discover", "release", "decline"])
        expect(s.otherPrefix(type)).toBe(1);
      // The victim renews as before.
      const renew = await s.ask(VICTIM, Dhcp4MessageType.REQUEST, {}, address);
      expect(renew?.options.messageType).toBe(Dhcp4MessageType.ACK);
    });

    test("within the victim's /64 (its next temporary address) the lease still follows it", async () => {
      const s = await setup(mode);
      const address = await s.lease(VICTIM);
      const ack = await s.ask(VICTIM_TEMP, Dhcp4MessageType.REQUEST, {
        requestedIp: address,
        serverId: SERVER_ID,
      });
      expect(ack?.options.messageType).toBe(Dhcp4MessageType.ACK);
      expect(s.holders()).toEqual([`${formatIPv4(address)} ${VICTIM_TEMP}`]);
      expect(s.otherPrefix("request")).toBe(0);
    });

    test("once the lease is released at its own /64, the client may lease from anywhere", async () => {
      const s = await setup(mode);
      const address = await s.lease(VICTIM);
      await s.ask(VICTIM, Dhcp4MessageType.RELEASE, { serverId: SERVER_ID }, address);
      expect(s.holders()).toEqual([]);
      expect(await s.lease(ATTACKER)).toBeGreaterThan(0);
    });
  });
}

describe("one IPv6 source minting client identifiers (held before this change)", () => {
  test("the per-/64 cap still bounds its leases; the per-/56 cap its /64s together", async () => {
    const { engine } = await startEngine([{ prefixes: ["198.51.100.0/26"], tep6: "2001:db8::1" }], {
      maxLeasesPerPrefix: 4,
      maxLeasesPerSite: 6,
    });
    const handler = new Dhcp4o6Handler({
      engine,
      serverId: SERVER_ID,
      log: capturedLog().log,
      metrics: new Metrics(),
      identity: "client-id",
    });
    const offered = async (source: string, client: number) => {
      const chaddr = Uint8Array.of(2, 0, 0, 0, client >> 8, client & 0xff);
      const m = dhcp4Message(
        Dhcp4MessageType.DISCOVER,
        { clientId: Uint8Array.of(1, ...chaddr) },
        { xid: client, chaddr },
      );
      return (
        (await handler.handle(encodeDhcp4o6({ type: 20, flags: 0, dhcp4: m }), source)) !== null
      );
    };
    let fromOne = 0;
    for (let client = 1; client <= 50; client++) if (await offered(ATTACKER, client)) fromOne++;
    expect(fromOne).toBe(4);
    let fromSite = fromOne;
    for (let client = 51; client <= 100; client++)
      if (await offered(`2001:db8:99:${client.toString(16)}::66`, client)) fromSite++;
    expect(fromSite).toBe(6);
    expect(engine.leases({ state: "active" }).length).toBe(6);
  });
});
