/**
 * `dstm server --dhcp4o6-identity` (lib/server/dhcp4o6_identity.ts), on the 4o6 handler with
 * an engine in memory: the lease keyed by IPv6 address (`source`, the default) or, as ISC Kea
 * does (RFC 2131 §4.2), by client identifier / chaddr, the lease then following its client to
 * a new IPv6 address (RFC 8981 temporary addresses), and two clients behind one IPv6 address
 * holding a lease each, with a TEP binding each, kept across a restart. Issue 11, items 10–11.
 */
import { describe, expect, test } from "bun:test";
import { Metrics } from "../lib/control/metrics.ts";
import type { LeaseStore } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
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
const A1 = "2001:db8:4::a1";
const A2 = "2001:db8:4::a2"; // the same host, a new temporary address

async function setup(identity?: Dhcp4o6IdentityMode, store: LeaseStore = new MemoryLeaseStore()) {
  const { engine } = await startEngine([{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }], {
    store,
  });
  const bindings: string[] = [];
  const metrics = new Metrics();
  const { log, lines } = capturedLog();
  const handler = new Dhcp4o6Handler({
    engine,
    serverId: SERVER_ID,
    log,
    metrics,
    identity,
    bindings: recordingSink(bindings) as never,
  });
  const ask = async (
    source: string,
    client: number,
    type: Dhcp4MessageType,
    options: Partial<Dhcp4Options> = {},
    ciaddr = 0,
  ) => {
    const chaddr = Uint8Array.of(2, 0, 0, 0, 0, client);
    const m = dhcp4Message(
      type,
      { clientId: Uint8Array.of(1, ...chaddr), ...options },
      { xid: 0x1d000000 + client, ciaddr, chaddr },
    );
    const raw = await handler.handle(encodeDhcp4o6({ type: 20, flags: 0, dhcp4: m }), source);
    if (!raw) return null;
    const r = decodeDhcp4o6(raw);
    if (!r.ok) throw new Error(r.error.message);
    return r.value.dhcp4;
  };
  /** DISCOVER + REQUEST: the ACK's address (0 for a NAK or no OFFER). */
  const lease = async (source: string, client: number) => {
    const offer = await ask(source, client, Dhcp4MessageType.DISCOVER);
    if (!offer) return 0;
    const ack = await ask(source, client, Dhcp4MessageType.REQUEST, {
      requestedIp: offer.yiaddr,
      serverId: SERVER_ID,
    });
    return ack?.options.messageType === Dhcp4MessageType.ACK ? ack.yiaddr : 0;
  };
  const count = (type: string, result: string) =>
    metrics.get("dstm_dhcp4o6_messages_total", { type, result });
  /** The active lease at `host6` (any holder) with `ipv4`, if any. */
  const activeAt = (host6: string) =>
    engine.leases({ state: "active" }).filter((l) => l.host6 === host6);
  return { engine, ask, lease, count, lines, bindings, activeAt };
}

describe("4o6 host identity", () => {
  test("source (default): a new IPv6 address is a new host with a second lease; two clients behind one address share one", async () => {
    const { engine, lease } = await setup();
    const first = await lease(A1, 1);
    const second = await lease(A2, 1);
    expect(first).not.toBe(0);
    expect(second).not.toBe(first);
    expect(engine.leases({ state: "active" }).length).toBe(2);
    expect(await lease(A1, 2)).toBe(first); // another client behind A1: A1's lease
  });

  test("client-id: the client's lease follows it to its new address (one lease, the binding moved), as Kea keys it", async () => {
    const { engine, lease, ask, count, lines, bindings, activeAt } = await setup("client-id");
    const first = await lease(A1, 1);
    expect(first).not.toBe(0);
    // From A2 the client is offered its own lease, not a new one …
    const offer = await ask(A2, 1, Dhcp4MessageType.DISCOVER);
    expect(offer?.yiaddr).toBe(first);
    // … and its REQUEST moves the lease to A2.
    const ack = await ask(A2, 1, Dhcp4MessageType.REQUEST, {
      requestedIp: first,
      serverId: SERVER_ID,
    });
    expect(ack?.options.messageType).toBe(Dhcp4MessageType.ACK);
    expect(ack?.yiaddr).toBe(first);
    expect(activeAt(A1)).toEqual([]);
    expect(activeAt(A2).map((l) => l.ipv4)).toEqual([first]);
    expect(engine.leases({ state: "active" }).length).toBe(1);
    // The TEP binding moved with it: installed for A2 (a BIND replaces the binding of the address).
    expect(bindings).toEqual([`+${formatIPv4(first)} ${A1}`, `+${formatIPv4(first)} ${A2}`]);
    expect(count("request", "moved")).toBe(1);
    expect(
      lines().some((l) =>
        / move protocol=dhcp4o6 ipv4=198\.51\.100\.1 host6=2001:db8:4::a1 /.test(l),
      ),
    ).toBe(true);
    // Renewing from A2 (ciaddr) keeps it there.
    const renew = await ask(A2, 1, Dhcp4MessageType.REQUEST, {}, first);
    expect(renew?.options.messageType).toBe(Dhcp4MessageType.ACK);
  });

  test("client-id: two clients behind one IPv6 address hold a lease each, bound at the TEP each; releasing one leaves the other", async () => {
    const { engine, lease, ask, count, bindings, activeAt } = await setup("client-id");
    const first = await lease(A1, 1);
    const second = await lease(A1, 2);
    expect(first).not.toBe(0);
    expect(second).not.toBe(0);
    expect(second).not.toBe(first);
    expect(activeAt(A1).map((l) => [l.ipv4, l.identity])).toEqual([
      [first, "id:01020000000001"],
      [second, "id:01020000000002"],
    ]);
    expect(count("discover", "identity-conflict")).toBe(0);
    // Each renews its own (ciaddr), neither takes the other's.
    const renew = await ask(A1, 2, Dhcp4MessageType.REQUEST, {}, second);
    expect(renew?.options.messageType).toBe(Dhcp4MessageType.ACK);
    const steal = await ask(A1, 2, Dhcp4MessageType.REQUEST, {}, first);
    expect(steal?.options.messageType).toBe(Dhcp4MessageType.NAK);
    expect(await ask(A1, 1, Dhcp4MessageType.RELEASE, { serverId: SERVER_ID }, first)).toBeNull();
    expect(count("release", "released")).toBe(1);
    expect(activeAt(A1).map((l) => l.ipv4)).toEqual([second]);
    expect(engine.lookupHost(A1, { identity: "id:01020000000002" })?.ipv4).toBe(second);
    expect(bindings).toEqual([
      `+${formatIPv4(first)} ${A1}`,
      `+${formatIPv4(second)} ${A1}`,
      `-${formatIPv4(first)} ${A1}`,
    ]);
  });

  test("client-id: the identities are stored with the leases, so after a restart each client renews its own and is offered it again", async () => {
    const store = new MemoryLeaseStore();
    const before = await setup("client-id", store);
    const first = await before.lease(A1, 1);
    const second = await before.lease(A1, 2);
    await before.engine.close();
    // A new engine and handler over the same store: nothing in memory survived.
    const after = await setup("client-id", store);
    const offer1 = await after.ask(A1, 1, Dhcp4MessageType.DISCOVER);
    const offer2 = await after.ask(A1, 2, Dhcp4MessageType.DISCOVER);
    expect([offer1?.yiaddr, offer2?.yiaddr]).toEqual([first, second]);
    const renew = await after.ask(A1, 2, Dhcp4MessageType.REQUEST, {}, second);
    expect(renew?.options.messageType).toBe(Dhcp4MessageType.ACK);
    expect(after.engine.leases({ state: "active" }).length).toBe(2);
  });

  test("chaddr: the same with the hardware address, whatever the client identifier says", async () => {
    const { engine, ask, lease } = await setup("chaddr");
    const first = await lease(A1, 1);
    const offer = await ask(A2, 1, Dhcp4MessageType.DISCOVER, { clientId: Uint8Array.of(0, 9) });
    expect(offer?.yiaddr).toBe(first);
    const ack = await ask(A2, 1, Dhcp4MessageType.REQUEST, {
      requestedIp: first,
      clientId: Uint8Array.of(0, 9),
    });
    expect(ack?.yiaddr).toBe(first);
    expect(engine.lookupHost(A2, { identity: "hw:1:020000000001" })?.ipv4).toBe(first);
    expect(engine.lookupHost(A2)).toBeUndefined(); // A2 itself (source) holds nothing
  });
});
