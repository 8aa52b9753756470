/**
 * `dstm server --dhcp4o6` on two links (`--dhcp4o6-interface s0 --dhcp4o6-interface s1`), a
 * standard client on each, both with the link-local address fe80::10 (RFC 4291 §2.5.6: unique
 * on its link only), as root in namespaces (verification round 17). NOT fixed here
 * (lib/server): host A (chaddr …:01, on s0) is ACKed 198.51.100.1, then host B (chaddr …:02, on
 * s1) is OFFERed and ACKed the same 198.51.100.1 (logged as a `renew` of A's lease): the default
 * identity (`--dhcp4o6-identity source`) is the source address without its zone (the
 * receiving interface). The same fault as test/ver17_relay_link_local.test.ts, without relays.
 *
 * It failed when written (ver17); it passes since the link-local holder key (lib/server/dhcp4o6_identity.ts).
 */
import { afterAll, expect, test } from "bun:test";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { createNoDadNetns } from "./helpers/kea.ts";
import { announceSkip, e2eJson, netnsSkipReason } from "./helpers/netns.ts";
import { type DstmProcess, spawnDstm } from "./helpers/process.ts";

const skip = netnsSkipReason();
announceSkip("ver17_dhcp4o6_two_links", skip);
const made: Netns[] = [];
const procs: DstmProcess[] = [];
afterAll(async () => {
  for (const p of procs) p.proc.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
  for (const ns of made) ns.delete();
});

/** One client's lease from `host` (test/e2e_scripts/ver17_4o6_lease.ts), hardware address …:`last`. */
function lease(host: Netns, last: number): { ack: { type: string; yiaddr: string } | null } {
  return e2eJson(host, "ver17_4o6_lease.ts", ["eth0", String(last)]);
}

test.skipIf(skip !== null)(
  "two machines on the server's two links, both fe80::10: each gets its own IPv4 address",
  async () => {
    const srv = createNoDadNetns("v17l-");
    made.push(srv);
    const a = createNoDadNetns("v17l-");
    made.push(a);
    const b = createNoDadNetns("v17l-");
    made.push(b);
    vethPair(a, "eth0", srv, "s0");
    vethPair(b, "eth0", srv, "s1");
    srv.addAddress("s0", "2001:db8:5::53/64");
    srv.addAddress("s1", "2001:db8:7::53/64");
    for (const host of [a, b]) {
      host.ip("addr", "flush", "dev", "eth0", "scope", "link");
      host.addAddress("eth0", "fe80::10/64");
    }
    const server = spawnDstm(
      [
        "server",
        ...["--listen", "[::]:4607", "--pool", "198.51.100.0/28"],
        ...["--tep", "2001:db8:6::1,192.0.2.1", "--db", "memory", "--no-control", "--dhcp4o6"],
        ...["--dhcp4o6-interface", "s0", "--dhcp4o6-interface", "s1"],
      ],
      {},
      srv.name,
    );
    procs.push(server);
    await server.waitFor(/ start /, 20_000);
    const first = lease(a, 1);
    expect(first.ack?.type).toBe("ACK");
    const second = lease(b, 2);
    expect(second.ack?.yiaddr).not.toBe(first.ack!.yiaddr);
  },
  60_000,
);
