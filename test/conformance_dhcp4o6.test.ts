/**
 * RFC 7341 / RFC 2131 / RFC 8415 conformance of `dstm server --dhcp4o6`, with ISC Kea 2.2 as the
 * reference: the same crafted inputs (test/e2e_scripts/dhcp4o6_conformance.ts) go to Kea and to
 * dstm, and the answers must agree (or the test says why dstm is right by the RFC). As root, in
 * namespaces made for this run and removed afterwards, also on failure:
 *
 * ```
 *            2001:db8:2::/64                       2001:db8:3::/64
 *  ┌─────────────┐ eth0        tok ┌────────────┐ tod        eth0 ┌──────────────┐
 *  │ kea ::547   │─────────────────│ cl ::2     │─────────────────│ dstm ::547   │
 *  │ 203.0.113.67│                 │ client and │                 │ server       │
 *  └─────────────┘                 │ relay agent│                 └──────────────┘
 *                                  └────────────┘
 * ```
 *
 * Items of issue 11 covered here: (1) a query from a link-local source to ff02::1:2; (2) a
 * RELAY-FORW (two nested relays, interface-id) answered by the RELAY-REPL chain; (3) DECLINE
 * takes the address out of service; (4) INFORM gets an ACK without an address or lease time;
 * (10) with `--dhcp4o6-identity client-id` one client gets its lease from two IPv6 addresses.
 * tshark dissects the whole capture with no malformed packet and no expert warning.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stopPid } from "../lib/lab/services.ts";
import { deleteNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { createNoDadNetns, haveKea, KEA4, KEA6, netnsStarter } from "./helpers/kea.ts";
import { announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason() ??
  (haveKea() ? null : "needs ISC Kea (scripts/test-deps.sh)") ??
  (Bun.which("tshark") ? null : "needs tshark (scripts/test-deps.sh)");
announceSkip("conformance_dhcp4o6", skip);

/** dstm's pool 198.51.100.200/29 has these usable addresses; Kea gets the same range. */
const POOL = [201, 202, 203, 204, 205, 206].map((n) => `198.51.100.${n}`);
let dir = "";
const PCAP = () => join(dir, "conformance.pcapng");
const ns: Record<"cl" | "kea" | "dstm", Netns> = {} as never;
const procs = new Map<string, Bun.Subprocess>();

const start = netnsStarter(procs, () => dir);

function keaConfigs(data: string): { v4: object; v6: object } {
  const loggers = (v: string) => [
    {
      name: `kea-dhcp${v}`,
      output_options: [{ output: join(data, `kea-dhcp${v}.log`) }],
      severity: "DEBUG",
      debuglevel: 99,
    },
  ];
  const leases = (v: string) => ({
    type: "memfile",
    persist: true,
    name: join(data, `kea-leases${v}.csv`),
    "lfc-interval": 0,
  });
  return {
    v4: {
      Dhcp4: {
        "interfaces-config": { interfaces: ["eth0"], "dhcp-socket-type": "udp" },
        "dhcp4o6-port": 6767,
        "lease-database": leases("4"),
        "valid-lifetime": 600,
        "decline-probation-period": 86400,
        subnet4: [
          {
            id: 1,
            subnet: "198.51.100.0/24",
            "4o6-interface": "eth0",
            pools: [{ pool: `${POOL[0]}-${POOL.at(-1)}` }],
          },
        ],
        loggers: loggers("4"),
      },
    },
    v6: {
      Dhcp6: {
        "interfaces-config": { interfaces: ["eth0/2001:db8:2::547"] },
        "dhcp4o6-port": 6767,
        "data-directory": data,
        "lease-database": leases("6"),
        subnet6: [{ id: 1, subnet: "2001:db8:2::/64", interface: "eth0" }],
        loggers: loggers("6"),
      },
    },
  };
}

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), "dstm-conf-"));
  for (const role of ["cl", "kea", "dstm"] as const) {
    ns[role] = createNoDadNetns(`dstmt-c${role[0]}-`);
  }
  vethPair(ns.cl, "tok", ns.kea, "eth0");
  vethPair(ns.cl, "tod", ns.dstm, "eth0");
  ns.cl.addAddress("tok", "2001:db8:2::2/64");
  ns.cl.addAddress("tod", "2001:db8:3::2/64");
  // Two more addresses per link: one host's RFC 8981 temporary addresses.
  for (const [ifname, net] of [
    ["tok", "2001:db8:2"],
    ["tod", "2001:db8:3"],
  ] as const) {
    ns.cl.addAddress(ifname, `${net}::a1/64`);
    ns.cl.addAddress(ifname, `${net}::a2/64`);
  }
  ns.kea.addAddress("eth0", "2001:db8:2::547/64");
  ns.kea.addAddress("eth0", "203.0.113.67/24");
  ns.dstm.addAddress("eth0", "2001:db8:3::547/64");
  const data = join(dir, "kea");
  mkdirSync(data);
  const { v4, v6 } = keaConfigs(data);
  writeFileSync(join(dir, "kea4.json"), JSON.stringify(v4));
  writeFileSync(join(dir, "kea6.json"), JSON.stringify(v6));
  const env = { KEA_PIDFILE_DIR: data, KEA_LOCKFILE_DIR: data };
  await start("kea6", ns.kea, [KEA6, "-c", join(dir, "kea6.json")], /DHCP6_STARTED/, {
    log: join(data, "kea-dhcp6.log"),
    env,
  });
  await start("kea4", ns.kea, [KEA4, "-c", join(dir, "kea4.json")], /DHCP4_STARTED/, {
    log: join(data, "kea-dhcp4.log"),
    env,
  });
  await start(
    "dstm",
    ns.dstm,
    [
      BUN,
      join(ROOT, "mod.ts"),
      "server",
      "--pool",
      "198.51.100.200/29",
      "--tep",
      "2001:db8:3::1,192.0.2.1",
      "--listen",
      "[2001:db8:3::547]:4607",
      "--db",
      "memory",
      "--no-control",
      "--dhcp4o6",
      "--dhcp4o6-interface",
      "eth0",
      "--dhcp4o6-server-id",
      "203.0.113.53",
      // Leases keyed by client identifier, as Kea keys them (item 10).
      "--dhcp4o6-identity",
      "client-id",
    ],
    / dhcp4o6 /,
  );
  // dumpcap (tshark's capture engine) stops by itself after the 42 datagrams the tests send
  // and receive (9 + 4 + 8 per server), so the file is complete when it exits: nothing is timed.
  const filter = "udp port 547 or udp port 546";
  await start(
    "dumpcap",
    ns.cl,
    [
      ...["dumpcap", "-q", "-c", "42", "-i", "tok", "-f", filter, "-i", "tod", "-f", filter],
      ...["-w", PCAP()],
    ],
    /Capturing on/,
  );
}, 90_000);

afterAll(async () => {
  if (skip) return;
  for (const [name, proc] of [...procs].reverse()) {
    procs.delete(name);
    if (proc.exitCode === null) await stopPid(proc.pid, 5000);
    await proc.exited;
  }
  for (const n of Object.values(ns)) deleteNetns(n.name);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

type Answer = {
  dhcp6: number;
  type: string;
  yiaddr: string;
  ciaddr: string;
  serverId: boolean;
  leaseTime: boolean;
  clientId: boolean;
  to: number;
} | null;
interface Direct {
  from: string | null;
  offer: Answer;
  ack: Answer;
  inform: Answer;
  decline: Answer;
  afterDecline: Answer;
  sameAddressAfterDecline: boolean;
}
interface Relayed {
  offer: Answer;
  ack: Answer;
  offerChain: Record<string, unknown>[] | null;
  ackChain: Record<string, unknown>[] | null;
  outerType: number | null;
  fromPort: number | null;
}

const results: { kea?: Direct; dstm?: Direct; keaRelay?: Relayed; dstmRelay?: Relayed } = {};
const script = "../e2e_scripts/dhcp4o6_conformance.ts";

describe.skipIf(skip !== null)("4o6 conformance, Kea as the reference", () => {
  test("(1, 3, 4) link-local client to ff02::1:2: OFFER, ACK, INFORM → ACK without address, DECLINE takes the address out", async () => {
    results.kea = await runScript<Direct>(ns.cl, script, ["direct", "tok"], 30_000);
    results.dstm = await runScript<Direct>(ns.cl, script, ["direct", "tod"], 30_000);
    const { kea, dstm } = results;
    // Kea, the reference: answers the link-local client, to port 546.
    expect(kea.offer).toMatchObject({ dhcp6: 21, type: "OFFER", serverId: true, to: 547 });
    for (const r of [kea, dstm]) {
      expect(r.offer).toMatchObject({ dhcp6: 21, type: "OFFER", serverId: true, leaseTime: true });
      // RFC 6842: option 61 returned unaltered (Kea does; dstm did not before issue 11).
      expect(r.offer?.clientId).toBe(true);
      expect(r.ack?.clientId).toBe(true);
      expect(POOL).toContain(r.offer!.yiaddr);
      expect(r.ack).toMatchObject({ type: "ACK", yiaddr: r.offer!.yiaddr, leaseTime: true });
      // RFC 2131 §4.3.5: INFORM → ACK, no yiaddr, no lease time, ciaddr as sent.
      expect(r.inform).toEqual({
        dhcp6: 21,
        type: "ACK",
        yiaddr: "0.0.0.0",
        ciaddr: r.offer!.yiaddr,
        serverId: true,
        leaseTime: false,
        clientId: true,
        to: 547,
      });
      // RFC 2131 §4.3.3: no answer to DECLINE; the address is not offered again.
      expect(r.decline).toBeNull();
      expect(r.afterDecline).toMatchObject({ type: "OFFER" });
      expect(r.sameAddressAfterDecline).toBe(false);
      expect(POOL).toContain(r.afterDecline!.yiaddr);
    }
    // Both answered from the servers' link-local addresses (kea: its unicast one, see below).
    expect(dstm.from).toMatch(/^fe80::/);
  }, 70_000);

  test("(2) relayed through two nested RELAY-FORWs: the RELAY-REPL chain echoes hop-count, link/peer addresses and interface-id", async () => {
    results.keaRelay = await runScript<Relayed>(
      ns.cl,
      script,
      ["relay", "2001:db8:2::547"],
      30_000,
    );
    results.dstmRelay = await runScript<Relayed>(
      ns.cl,
      script,
      ["relay", "2001:db8:3::547"],
      30_000,
    );
    const chain = [
      { type: 13, hopCount: 1, linkAddress: "::", peerAddress: "2001:db8:6::1", interfaceId: null },
      {
        type: 13,
        hopCount: 0,
        linkAddress: "2001:db8:6::1",
        peerAddress: "fe80::200:5eff:fe10:22",
        interfaceId: "ge-0/0/7",
      },
    ];
    for (const r of [results.keaRelay, results.dstmRelay]) {
      expect(r.outerType).toBe(13);
      // RFC 8415 §19.3: the RELAY-REPL goes to the relay's port 547.
      expect(r.fromPort).toBe(547);
      expect(r.offer).toMatchObject({ dhcp6: 21, type: "OFFER", to: 547 });
      expect(POOL).toContain(r.offer!.yiaddr);
      expect(r.ack).toMatchObject({ type: "ACK", yiaddr: r.offer!.yiaddr });
      expect(r.offerChain).toEqual(chain);
      expect(r.ackChain).toEqual(chain);
    }
  }, 70_000);

  test("(10) one client, two IPv6 addresses (RFC 8981): the same lease from both, keyed by client identifier", async () => {
    type Pair = { offer: Answer; ack: Answer };
    const run = (server: string, net: string) =>
      runScript<{ first: Pair; second: Pair }>(
        ns.cl,
        script,
        ["privacy", server, `${net}::a1`, `${net}::a2`],
        30_000,
      );
    const kea = await run("2001:db8:2::547", "2001:db8:2");
    const dstm = await run("2001:db8:3::547", "2001:db8:3");
    for (const r of [kea, dstm]) {
      expect(r.first.ack).toMatchObject({ type: "ACK" });
      expect(r.second.offer?.yiaddr).toBe(r.first.ack!.yiaddr);
      expect(r.second.ack).toMatchObject({ type: "ACK", yiaddr: r.first.ack!.yiaddr });
    }
  }, 70_000);

  test("tshark dissects every capture (Kea's and dstm's, relayed or not) with no malformed packet or expert warning", async () => {
    expect(results.dstmRelay).toBeDefined();
    const proc = procs.get("dumpcap")!;
    procs.delete("dumpcap");
    await waitUntil(() => proc.exitCode !== null, {
      timeoutMs: 15_000,
      what: "dumpcap to capture the 42 datagrams (fewer came)",
    });
    const pcap = PCAP();
    const text = ns.cl.exec(["tshark", "-r", pcap, "-V"]).stdout;
    expect(text).not.toMatch(/Malformed/i);
    expect(text).not.toMatch(/Expert Info \((Warning|Error)/);
    const types = ns.cl
      .exec(["tshark", "-r", pcap, "-T", "fields", "-e", "dhcpv6.msgtype"])
      .stdout.trim()
      .split("\n");
    // Relayed datagrams show the whole chain (12,12,20 / 13,13,21).
    expect(types.filter((t) => t === "12,12,20").length).toBe(4);
    expect(types.filter((t) => t === "13,13,21").length).toBe(4);
    // direct: 5 queries and 4 answers per server; privacy: 4 and 4.
    expect(types.filter((t) => t === "20").length).toBe(18);
    expect(types.filter((t) => t === "21").length).toBe(16);
  }, 30_000);
});
