/**
 * Pool selection by link (RFC 8415 §13.1, lib/server/dhcp4o6_link.ts) with ISC Kea 2.2 as the
 * reference: Kea with two subnet4 tied to two IPv6 links by `4o6-subnet`, dstm with two pools
 * tied to the same links by `--pool-link`; one namespace acts as two relays on the two links
 * (and nests them), and sends the same RELAY-FORWs to both servers
 * (test/e2e_scripts/dhcp4o6_links.ts). As root, in namespaces made for this run and removed
 * afterwards, also on failure:
 *
 * ```
 *            2001:db8:2::/64                         2001:db8:3::/64
 *  ┌─────────────┐ eth0        tok ┌──────────────┐ tod        eth0 ┌──────────────┐
 *  │ kea ::547   │─────────────────│ rl: relays   │─────────────────│ dstm ::547   │
 *  │ 203.0.113.67│                 │ 2001:db8:10::1 (link A)        │ server       │
 *  └─────────────┘                 │ 2001:db8:20::1 (link B)        └──────────────┘
 *                                  └──────────────┘
 * ```
 *
 * Where dstm and Kea agree the test says so; where they differ it is because Kea 2.2 matches
 * `4o6-subnet` against the IPv6 source of the datagram it received (for a relayed query: the
 * relay nearest to the server, Kea's CfgSubnets4::selectSubnet4o6 compares remote_address_),
 * while RFC 8415 §13.1 says the server identifies the client's link by the link-address of the
 * relay closest to the client; and because Kea matches `4o6-interface` against the interface a
 * relayed datagram came in on, where the RFC uses the receiving interface only for a client
 * that sends directly. dstm follows the RFC. Issue 11.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { createNoDadNetns, haveKea, netnsStarter, startKea4o6, tearDown } from "./helpers/kea.ts";
import { announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const skip = netnsSkipReason() ?? (haveKea() ? null : "needs ISC Kea (scripts/test-deps.sh)");
announceSkip("kea_dhcp4o6_links", skip);

const LINK_A = "2001:db8:10::/64";
const LINK_B = "2001:db8:20::/64";
const RELAY_A = "2001:db8:10::1";
const RELAY_B = "2001:db8:20::1";
/**
 * Subnet / pool A is 198.51.100.8/29, B 198.51.100.72/29, C 198.51.100.136/29 (C: the clients
 * of interface eth0, Kea's 4o6-interface; the same ranges at both servers).
 */
const subnetOf = (ip: string | null) => {
  if (ip === null) return null;
  const last = Number(ip.split(".")[3]);
  const base = last & ~7;
  return base === 8 ? "A" : base === 72 ? "B" : base === 136 ? "C" : `other ${ip}`;
};

let dir = "";
const ns: Record<"rl" | "kea" | "dstm", Netns> = {} as never;
const procs = new Map<string, Bun.Subprocess>();
const start = netnsStarter(procs, () => dir);

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), "dstm-links-"));
  for (const role of ["rl", "kea", "dstm"] as const)
    ns[role] = createNoDadNetns(`dstmt-l${role[0]}-`);
  vethPair(ns.rl, "tok", ns.kea, "eth0");
  vethPair(ns.rl, "tod", ns.dstm, "eth0");
  ns.rl.addAddress("tok", "2001:db8:2::2/64");
  ns.rl.addAddress("tod", "2001:db8:3::2/64");
  // The relays' (and a direct client's) addresses on links A, B and an unserved C.
  for (const a of [RELAY_A, RELAY_B, "2001:db8:20::77", "2001:db8:30::1", "2001:db8:99::1"])
    ns.rl.addAddress("lo", `${a}/128`);
  ns.kea.addAddress("eth0", "2001:db8:2::547/64");
  ns.kea.addAddress("eth0", "203.0.113.67/24");
  ns.dstm.addAddress("eth0", "2001:db8:3::547/64");
  for (const net of [
    "2001:db8:10::/48",
    "2001:db8:20::/48",
    "2001:db8:30::/48",
    "2001:db8:99::/48",
  ]) {
    ns.kea.addRoute(net, "via", "2001:db8:2::2");
    ns.dstm.addRoute(net, "via", "2001:db8:3::2");
  }
  await startKea4o6(start, ns.kea, dir, "2001:db8:2::547", [
    {
      id: 1,
      subnet: "198.51.100.0/26",
      "4o6-subnet": LINK_A,
      pools: [{ pool: "198.51.100.9-198.51.100.14" }],
    },
    {
      id: 2,
      subnet: "198.51.100.64/26",
      "4o6-subnet": LINK_B,
      "4o6-interface-id": "port-b",
      pools: [{ pool: "198.51.100.73-198.51.100.78" }],
    },
    {
      id: 3,
      subnet: "198.51.100.128/26",
      "4o6-interface": "eth0",
      pools: [{ pool: "198.51.100.137-198.51.100.142" }],
    },
  ]);
  const flags =
    "server --pool 198.51.100.8/29 --pool 198.51.100.72/29 --pool 198.51.100.136/29 --tep 2001:db8:3::1,192.0.2.1 " +
    "--listen [2001:db8:3::547]:4607 --db memory --no-control --dhcp4o6 " +
    "--dhcp4o6-server-id 203.0.113.53 --dhcp4o6-identity client-id";
  await start(
    "dstm",
    ns.dstm,
    [
      ...[BUN, join(ROOT, "mod.ts"), ...flags.split(" ")],
      ...["--pool-link", `198.51.100.8=${LINK_A}`, "--pool-link", `198.51.100.72=${LINK_B}`],
      ...[
        "--pool-link",
        "198.51.100.72=interface-id:port-b",
        "--pool-link",
        "198.51.100.136=%eth0",
      ],
      ...["--dhcp4o6-interface", "eth0"],
    ],
    / dhcp4o6 /,
  );
}, 90_000);

afterAll(async () => {
  if (!skip) await tearDown(procs, Object.values(ns), dir);
}, 60_000);

/** The same inputs to both servers: a relay on link A, one on link B, nested relays, a direct client. */
const CASES = [
  {
    name: "relayA",
    source: RELAY_A,
    client: 1,
    relays: [{ linkAddress: RELAY_A, peerAddress: "fe80::a" }],
  },
  {
    name: "relayB",
    source: RELAY_B,
    client: 2,
    relays: [{ linkAddress: RELAY_B, peerAddress: "fe80::b" }],
  },
  {
    // The relay on link A heard the client; a second relay (sending from its link-B address)
    // forwards to the server with link-address :: (RFC 8415 §19.1.2).
    name: "nested",
    source: RELAY_B,
    client: 3,
    relays: [
      { linkAddress: "::", peerAddress: RELAY_A },
      { linkAddress: RELAY_A, peerAddress: "fe80::c" },
    ],
  },
  {
    // The relay that heard the client gives link-address :: (RFC 8415 §19.1.1) and an
    // interface-id; the next relay names link B; the datagram comes from link A's relay.
    name: "innerUnspecified",
    source: RELAY_A,
    client: 4,
    relays: [
      { linkAddress: RELAY_B, peerAddress: "2001:db8:99::1" },
      { linkAddress: "::", peerAddress: "fe80::d", interfaceId: "port-7" },
    ],
  },
  { name: "direct", source: "2001:db8:20::77", client: 5, relays: [] },
  {
    // A relay with no address of the client's link (link-address ::) naming its interface.
    name: "interfaceId",
    source: "2001:db8:99::1",
    client: 7,
    relays: [{ linkAddress: "::", peerAddress: "fe80::9", interfaceId: "port-b" }],
  },
  {
    name: "unserved",
    source: "2001:db8:30::1",
    client: 6,
    relays: [{ linkAddress: "2001:db8:30::1", peerAddress: "fe80::e" }],
  },
];

type Seen = Record<string, { offer: string | null; ack: string | null }>;

describe.skipIf(skip !== null)("4o6 pool per link, Kea's 4o6-subnet as the reference", () => {
  test("two relays on two links, nested relays, an interface-id, a direct client and an unserved link: dstm and Kea choose alike, or dstm follows RFC 8415 §13.1", async () => {
    const script = "../e2e_scripts/dhcp4o6_links.ts";
    const json = JSON.stringify(CASES);
    const kea = await runScript<Seen>(ns.rl, script, ["2001:db8:2::547", json], 60_000);
    const dstm = await runScript<Seen>(ns.rl, script, ["2001:db8:3::547", json], 60_000);
    const chosen = (seen: Seen) =>
      Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, subnetOf(v.ack)]));
    // Each answer an OFFER then an ACK of the same address, or nothing at all.
    for (const seen of [kea, dstm])
      for (const v of Object.values(seen)) expect(v.ack === null ? null : v.offer).toBe(v.ack);
    // Agreement: a relay's link (the relay sends from an address of that link), a relay's
    // interface-id (Kea's 4o6-interface-id), a direct client by its source, and no address for
    // a link no subnet / pool serves.
    for (const [name, subnet] of [
      ["relayA", "A"],
      ["relayB", "B"],
      ["direct", "B"],
      ["interfaceId", "B"],
    ] as const) {
      expect([name, chosen(kea)[name]]).toEqual([name, subnet]);
      expect([name, chosen(dstm)[name]]).toEqual([name, subnet]);
    }
    // Difference, dstm right by RFC 8415 §13.1 (the link-address of the relay closest to the
    // client names the client's link; §19.1.1 lets that relay send ::, then the next relay's
    // link-address is the nearest one naming a link): Kea 2.2 matches 4o6-subnet against the
    // datagram's source, the relay next to the server.
    expect(chosen(dstm).nested).toBe("A"); // the relay that heard the client is on link A
    expect(chosen(kea).nested).toBe("B"); // the datagram came from link B's relay
    expect(chosen(dstm).innerUnspecified).toBe("B");
    expect(chosen(kea).innerUnspecified).toBe("A");
    // A relayed query from a link no pool names: dstm refuses it (no-pool-for-link); Kea 2.2
    // gives it subnet C, whose 4o6-interface is the interface the relay's datagram came in on.
    // RFC 8415 §13.1 uses the receiving interface only for a client that sends directly: a
    // relayed client's link is named by the relay, and no pool serves the one it named.
    expect(chosen(dstm).unserved).toBeNull();
    expect(chosen(kea).unserved).toBe("C");
  }, 150_000);

  test("a direct client from a link-local address to ff02::1:2: the receiving interface chooses (dstm %eth0, Kea 4o6-interface)", async () => {
    const script = "../e2e_scripts/dhcp4o6_links.ts";
    const json = JSON.stringify([{ name: "linkLocal", source: "::", client: 8, relays: [] }]);
    const kea = await runScript<Seen>(ns.rl, script, ["ff02::1:2%tok", json], 60_000);
    const dstm = await runScript<Seen>(ns.rl, script, ["ff02::1:2%tod", json], 60_000);
    expect(subnetOf(kea.linkLocal?.ack ?? null)).toBe("C");
    expect(subnetOf(dstm.linkLocal?.ack ?? null)).toBe("C");
  }, 150_000);
});
