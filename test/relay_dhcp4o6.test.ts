/**
 * `dstm server --dhcp4o6` behind a packaged relay agent: ISC's `dhcrelay -6` (Debian
 * isc-dhcp-relay 4.4.3), which relays DHCPV4-QUERY up ("Relaying Dhcpv4-query … going up")
 * and DHCPV4-RESPONSE down. As root, in namespaces made for this run:
 *
 * ```
 *  ┌─────────────┐ eth0    low0 ┌─────────────────┐ up0      eth0 ┌──────────────────┐
 *  │ host        │──────────────│ relay dhcrelay  │───────────────│ dstm server      │
 *  │ 2001:db8:6::10             │ ::1 (6::/64)    │ 2001:db8:3::2 │ 2001:db8:3::547  │
 *  └─────────────┘              └─────────────────┘               └──────────────────┘
 * ```
 *
 * The host is on a link the server is not on: everything reaches the server as RELAY-FORW
 * from the relay, and goes back as RELAY-REPL. test/conformance_dhcp4o6.test.ts checks the
 * same framing, crafted (two nested relays, interface-id), against Kea.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { createNoDadNetns, netnsStarter, tearDown } from "./helpers/kea.ts";
import { announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const DHCRELAY = "/usr/sbin/dhcrelay";
const skip =
  netnsSkipReason() ??
  (existsSync(DHCRELAY)
    ? null
    : "needs ISC dhcrelay (apt-get install isc-dhcp-relay; scripts/test-deps.sh installs it)") ??
  (Bun.which("tshark") ? null : "needs tshark (scripts/test-deps.sh)");
announceSkip("relay_dhcp4o6", skip);

let dir = "";
const ns: Record<"host" | "relay" | "srv", Netns> = {} as never;
const procs = new Map<string, Bun.Subprocess>();

/** Starts a daemon in a namespace until its output matches (./helpers/kea.ts). */
const start = netnsStarter(procs, () => dir);

const output = (name: string) => readFileSync(join(dir, `${name}.out`), "utf8");

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), "dstm-relay-"));
  for (const role of ["host", "relay", "srv"] as const) {
    ns[role] = createNoDadNetns(`dstmt-r${role[0]}-`);
  }
  vethPair(ns.host, "eth0", ns.relay, "low0");
  vethPair(ns.relay, "up0", ns.srv, "eth0");
  ns.host.addAddress("eth0", "2001:db8:6::10/64");
  ns.relay.addAddress("low0", "2001:db8:6::1/64");
  ns.relay.addAddress("up0", "2001:db8:3::2/64");
  ns.srv.addAddress("eth0", "2001:db8:3::547/64");
  await start(
    "dstm",
    ns.srv,
    [
      BUN,
      join(ROOT, "mod.ts"),
      "server",
      ...["--pool", "198.51.100.200/29", "--tep", "2001:db8:3::1,192.0.2.1"],
      ...["--listen", "[2001:db8:3::547]:4607", "--db", "memory", "--no-control"],
      ...["--dhcp4o6", "--dhcp4o6-server-id", "203.0.113.53"],
    ],
    / dhcp4o6 /,
  );
  // -d: foreground, log to stderr; -l: the clients' link; -u: the server, through up0.
  await start(
    "dhcrelay",
    ns.relay,
    [DHCRELAY, "-6", "-d", "-l", "low0", "-u", "2001:db8:3::547%up0"],
    /Sending on +Socket\/low0/,
  );
  // The first test's 18 datagrams on both sides of the relay (9 on the host's link, the same 9
  // as RELAY-FORW / RELAY-REPL towards dstm): dumpcap stops by itself after them.
  const filter = "udp port 547 or udp port 546";
  await start(
    "dumpcap",
    ns.relay,
    [
      ...["dumpcap", "-q", "-c", "18", "-i", "low0", "-f", filter, "-i", "up0", "-f", filter],
      ...["-w", join(dir, "relay.pcapng")],
    ],
    /Capturing on/,
  );
}, 60_000);

afterAll(async () => {
  if (!skip) await tearDown(procs, Object.values(ns), dir);
}, 60_000);

describe.skipIf(skip !== null)("4o6 through ISC dhcrelay -6", () => {
  test("a link-local client's DISCOVER, REQUEST, INFORM and DECLINE reach dstm as RELAY-FORW, the answers come back", async () => {
    const r = await runScript<{
      offer: { type: string; yiaddr: string } | null;
      ack: { type: string; yiaddr: string } | null;
      inform: { type: string; yiaddr: string; leaseTime: boolean } | null;
      decline: unknown;
      afterDecline: { type: string; yiaddr: string } | null;
      sameAddressAfterDecline: boolean;
      from: string | null;
    }>(ns.host, "../e2e_scripts/dhcp4o6_conformance.ts", ["direct", "eth0"], 30_000);
    expect(r.offer?.type).toBe("OFFER");
    expect(r.ack).toMatchObject({ type: "ACK", yiaddr: r.offer!.yiaddr });
    expect(r.inform).toMatchObject({ type: "ACK", yiaddr: "0.0.0.0", leaseTime: false });
    expect(r.decline).toBeNull();
    expect(r.afterDecline?.type).toBe("OFFER");
    expect(r.sameAddressAfterDecline).toBe(false);
    // The answers come from the relay (its link-local address on the host's link).
    expect(r.from).toMatch(/^fe80::/);
    const relayLog = output("dhcrelay");
    expect(relayLog).toMatch(/Relaying Dhcpv4-query from fe80::\S+ port 546 going up/);
    expect(relayLog).toMatch(/Relaying Dhcpv4-response to fe80::\S+ port 546 down/);
    // dstm saw the relay's RELAY-FORW; the lease is the client's (the relay's peer-address).
    expect(output("dstm")).toMatch(/ allocate protocol=dhcp4o6 ipv4=\S+ host6=fe80::/);
    // tshark dissects what dhcrelay and dstm sent, without a malformed packet or a warning.
    const dumpcap = procs.get("dumpcap")!;
    // It stops by itself after the exchange's 18 datagrams; on a loaded machine (or one
    // datagram fewer) stop it after a while: what it wrote is still dissected below.
    await waitUntil(() => dumpcap.exitCode !== null, {
      what: "dumpcap's 18 datagrams",
      timeoutMs: 20_000,
    }).catch(async () => {
      dumpcap.kill("SIGINT");
      await dumpcap.exited;
    });
    const pcap = join(dir, "relay.pcapng");
    const text = ns.relay.exec(["tshark", "-r", pcap, "-V"]).stdout;
    expect(text).not.toMatch(/Malformed/i);
    expect(text).not.toMatch(/Expert Info \((Warning|Error)/);
    const types = ns.relay
      .exec(["tshark", "-r", pcap, "-T", "fields", "-e", "dhcpv6.msgtype"])
      .stdout.trim()
      .split("\n");
    expect(types.filter((t) => t === "12,20").length).toBe(5);
    expect(types.filter((t) => t === "13,21").length).toBe(4);
    expect(types.filter((t) => t === "20").length).toBe(5);
    expect(types.filter((t) => t === "21").length).toBe(4);
  }, 40_000);

  test("dstm's own client through the relay: option 88, lease via ff02::1:2, renewal, release", async () => {
    const s = await runScript<{
      servers: string[] | null;
      lease: { ipv4: string };
      renewed: { ipv4: string };
      sent: { message: string; u: boolean; to: string }[];
    }>(
      ns.host,
      "../e2e_scripts/dhcp4o6_session.ts",
      ["multicast", "eth0", "2001:db8:6::10", "2001:db8:3::1"],
      30_000,
    );
    // dstm listens on any address: option 88 is the empty list ("use ff02::1:2").
    expect(s.servers).toEqual([]);
    expect(s.renewed.ipv4).toBe(s.lease.ipv4);
    expect(s.sent.map((m) => [m.message, m.u])).toEqual([
      ["DISCOVER", false],
      ["REQUEST", false],
      ["REQUEST", true],
      ["RELEASE", true],
    ]);
    await waitUntil(() => / release protocol=dhcp4o6 /.test(output("dstm")), {
      what: "dstm to release the lease",
    });
    expect(output("dstm")).toMatch(/ allocate protocol=dhcp4o6 ipv4=\S+ host6=2001:db8:6::10 /);
  }, 40_000);
});
