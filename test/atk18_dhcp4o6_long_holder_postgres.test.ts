/**
 * Red team (atk18): the holder key of a relayed link-local DHCPv4-over-DHCPv6 client
 * (lib/server/dhcp4o6_identity.ts linkLocalHolder) holds the relay's Interface-ID in hex
 * (`ll:ADDR@at:LINK-ADDRESS#IFID`, and the relay path for a link-address `::`), and an
 * Interface-ID is any length a datagram holds (RFC 8415 §21.18: opaque). The lease store keys
 * active leases by it in a UNIQUE index (lib/lease/postgres_schema.ts
 * dstm_leases_active_holder), and a PostgreSQL btree index row is at most 2704 bytes.
 *
 * On 9593fea, a relay (or anyone the server takes RELAY-FORWs from) sending a 4000-byte
 * Interface-ID made the REQUEST's lease write fail ("index row size 8040 exceeds btree version 4
 * maximum 2704 for index dstm_leases_active_holder"), and with it the whole batch it was
 * written in: an innocent client whose REQUEST came at the same time was not answered either
 * (`reject reason=store-failed`, logged once: rate-limited). Now a key longer than 1024 characters is
 * `ll:ADDR@sha256:HEX` of it.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Metrics } from "../lib/control/metrics.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { Dhcp4o6Handler } from "../lib/server/dhcp4o6.ts";
import { HOLDER_MAX_LENGTH, linkLocalHolder } from "../lib/server/dhcp4o6_identity.ts";
import { Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { encodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { type Dhcp6RelayMessage, encodeDhcp6Relay } from "../lib/wire/dhcp6_relay.ts";
import { capturedLog } from "./helpers/captured_log.ts";
import { dhcp4Message, dhcp4OfResponse } from "./helpers/dhcp4.ts";
import { startEngine } from "./helpers/engine.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";

const SERVER_ID = parseIPv4("192.0.2.1")!;
let pg: PgServer | undefined;
let store: PostgresLeaseStore | undefined;
afterAll(async () => {
  await store?.close().catch(() => {});
  await pg?.stop();
});

describe.skipIf(!postgresBin())(
  "atk18: a relay's long Interface-ID and the PostgreSQL store",
  () => {
    test("a 4000-byte Interface-ID: its client and one asking at once are both ACKed", async () => {
      pg = await startPostgres();
      store = await PostgresLeaseStore.open(await pg.createDatabase());
      const pools = [{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" }];
      const { engine } = await startEngine(pools, { store });
      const { log, lines } = capturedLog();
      const handler = new Dhcp4o6Handler({
        engine,
        serverId: SERVER_ID,
        log,
        metrics: new Metrics(),
      });
      /** fe80::LAST through a relay sending `ifid`: the DHCPv4 answer's type, or null. */
      const ask = async (
        ifid: Uint8Array,
        last: number,
        type: Dhcp4MessageType,
        o: Partial<Dhcp4Options> = {},
      ) => {
        const chaddr = Uint8Array.of(2, 0, 0x5e, 0x18, 0, last);
        const dhcp4 = dhcp4Message(type, o, { xid: 0x1800 + last, chaddr });
        const raw = encodeDhcp6Relay({
          type: 12,
          hopCount: 0,
          linkAddress: "2001:db8:4::1",
          peerAddress: `fe80::${last}`,
          interfaceId: ifid,
          relayMessage: encodeDhcp4o6({ type: 20, flags: 0, dhcp4 }),
        });
        const answer = await handler.handle(raw, "2001:db8:7::1");
        if (!answer) return null;
        return dhcp4OfResponse(answer, true);
      };
      const long = crypto.getRandomValues(new Uint8Array(4000));
      const short = Uint8Array.of(0, 0, 0, 1);
      const [o1, o2] = await Promise.all([
        ask(long, 1, Dhcp4MessageType.DISCOVER),
        ask(short, 2, Dhcp4MessageType.DISCOVER),
      ]);
      const request = (o: typeof o1) => ({ requestedIp: o?.yiaddr, serverId: SERVER_ID });
      const [a1, a2] = await Promise.all([
        ask(long, 1, Dhcp4MessageType.REQUEST, request(o1)),
        ask(short, 2, Dhcp4MessageType.REQUEST, request(o2)),
      ]);
      const failed = lines().filter((l) => l.includes("store-failed"));
      expect(failed).toEqual([]); // before: index row size 8040 exceeds … 2704
      expect([a1?.options.messageType, a2?.options.messageType]).toEqual([
        Dhcp4MessageType.ACK,
        Dhcp4MessageType.ACK,
      ]);
      // The long one is held by a digest of its key; one key per Interface-ID still.
      const holders = engine.leases({}).map((l) => l.identity ?? "");
      expect(holders.every((h) => h.length <= 1024)).toBe(true);
      expect(holders.some((h) => /^ll:fe80::1@sha256:[0-9a-f]{64}$/.test(h))).toBe(true);
      expect((await ask(long, 1, Dhcp4MessageType.DISCOVER))?.yiaddr).toBe(a1?.yiaddr);
      const other = Uint8Array.from(long);
      other[3999] = (other[3999] as number) ^ 1;
      expect((await ask(other, 1, Dhcp4MessageType.DISCOVER))?.yiaddr).not.toBe(a1?.yiaddr);
    }, 60_000);
  },
);

describe("atk18: long holder keys", () => {
  test("32 nested relays with link-address :: and 255-byte Interface-IDs: bounded, and one byte apart is another key", () => {
    const relay = (i: number, last = 0): Dhcp6RelayMessage => ({
      type: 12,
      hopCount: 31 - i,
      linkAddress: "::",
      peerAddress: i === 31 ? "fe80::10" : `2001:db8:ffff:ffff:ffff:ffff:ffff:${i.toString(16)}`,
      relayMessage: new Uint8Array(0),
      interfaceId: Uint8Array.from({ length: 255 }, (_, j) => (i === 31 && j === 0 ? last : j)),
    });
    const chain = (last: number) => Array.from({ length: 32 }, (_, i) => relay(i, last));
    const a = linkLocalHolder("fe80::10", chain(0), "2001:db8:7::1") as string;
    const b = linkLocalHolder("fe80::10", chain(1), "2001:db8:7::1") as string;
    expect(a).toMatch(/^ll:fe80::10@sha256:[0-9a-f]{64}$/);
    expect(b).not.toBe(a);
    expect(linkLocalHolder("fe80::10", chain(0), "2001:db8:7::1")).toBe(a);
    // A short key stays readable.
    const one = linkLocalHolder("fe80::10", [relay(31)], "2001:db8:7::1") as string;
    expect(one.length).toBeLessThanOrEqual(HOLDER_MAX_LENGTH);
    expect(one.startsWith("ll:fe80::10@2001:db8:7::1|::#00010203")).toBe(true);
  });
});
