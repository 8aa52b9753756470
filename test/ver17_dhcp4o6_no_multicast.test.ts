/**
 * `dstm server --dhcp4o6` listening on any address but joining ff02::1:2 on no interface
 * (no `--dhcp4o6-interface`), as root in namespaces (verification round 17): a server with
 * two interfaces, a standard DHCPv4-over-DHCPv6 client on each link (link-local source, port
 * 546, to ff02::1:2 only, RFC 7341 §5 / RFC 8415 §7.1).:
 *
 * Neither client gets any answer (no OFFER in 3 s, the server logs nothing about them), and the
 * server says nothing either: its start line reads `dhcp4o6 listen=[::]:547 … allow=any`, as if
 * it served the links (measured with a server on two links and test/e2e_scripts/
 * dhcp4o6_conformance.ts `direct` on each). By its code (not run here), its option 88 answer
 * to a unicast INFORMATION-REQUEST is then the empty list, "use ff02::1:2, where we listen
 * too" (lib/server/dhcp4o6.ts #information) — where it does not listen. Kea in the same case warns
 * (DHCPSRV_NO_SOCKETS_OPEN). Expected: a warning at start naming `--dhcp4o6-interface` (or
 * joining ff02::1:2 on every interface with IPv6); the test asks for the warning.
 *
 * Fixed: lib/server/listeners.ts warns `dhcp4o6-no-multicast` (not when --dhcp4o6-relay names the relays).
 */
import { afterAll, expect, test } from "bun:test";
import { createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { type DstmProcess, spawnDstm } from "./helpers/process.ts";

const skip = netnsSkipReason();
announceSkip("ver17_dhcp4o6_no_multicast", skip);
const made: Netns[] = [];
const procs: DstmProcess[] = [];
afterAll(async () => {
  for (const p of procs) p.proc.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
  for (const ns of made) ns.delete();
});

test.skipIf(skip !== null)(
  "--dhcp4o6 on [::] without --dhcp4o6-interface: the server warns that no link's clients can reach it",
  async () => {
    const srv = createNetns("v17m-");
    made.push(srv);
    const host = createNetns("v17m-");
    made.push(host);
    vethPair(host, "c0", srv, "s0");
    srv.addAddress("s0", "2001:db8:5::53/64");
    host.addAddress("c0", "2001:db8:5::10/64");
    const server = spawnDstm(
      [
        "server",
        ...["--listen", "[::]:4607", "--pool", "198.51.100.0/28"],
        ...["--tep", "2001:db8:6::1,192.0.2.1", "--db", "memory", "--no-control", "--dhcp4o6"],
      ],
      {},
      srv.name,
    );
    procs.push(server);
    await server.waitFor(/ start /, 20_000);
    const said = server.lines.filter((l) => / WARN /.test(l) && /dhcp4o6-interface/.test(l));
    expect(said.length).toBeGreaterThan(0);
  },
  60_000,
);
