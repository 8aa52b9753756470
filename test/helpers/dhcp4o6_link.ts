/**
 * One IPv6 link for the DHCPv4-over-DHCPv6 tests over ff02::1:2, as root: a host namespace
 * (2001:db8:4::10) and a server namespace (2001:db8:4::53), joined by a veth pair whose ends
 * are both `eth0`. Shared by test/client_dhcp4o6_multicast_cli.test.ts and
 * test/server_dhcp4o6_multicast.test.ts.
 */
import { createNetns, type Netns, vethPair } from "../../lib/sys/netns.ts";
import { waitUntil } from "./wait.ts";

/** The two ends of the link; the caller deletes them. */
export interface Dhcp4o6Link {
  readonly host: Netns;
  readonly srv: Netns;
}

/** Makes the two namespaces (names `dstmt-`…) and the link; pushes them onto `made` for deletion. */
export function createDhcp4o6Link(made: Netns[]): Dhcp4o6Link {
  const host = createNetns("dstmt-");
  const srv = createNetns("dstmt-");
  made.push(host, srv);
  vethPair(host, "eth0", srv, "eth0");
  host.addAddress("eth0", "2001:db8:4::10/64");
  srv.addAddress("eth0", "2001:db8:4::53/64");
  return { host, srv };
}

type Addr = { addr_info: { scope: string; tentative?: boolean }[] };

/** Whether `ns`'s eth0 has a link-local address that is no longer tentative (past DAD). */
function linkLocalReady(ns: Netns): boolean {
  const info = ns.ipJson<Addr[]>("-6", "addr", "show", "dev", "eth0")[0]?.addr_info ?? [];
  return info.some((a) => a.scope === "link") && !info.some((a) => a.tentative);
}

/**
 * Link-local addresses go through DAD after the link comes up (the globals skip it): waits (up
 * to 10,000 ms) until both ends have one that is no longer tentative; throws past that.
 */
export async function waitLinkLocal(link: Dhcp4o6Link): Promise<void> {
  await waitUntil(() => linkLocalReady(link.host) && linkLocalReady(link.srv), {
    timeoutMs: 10_000,
    intervalMs: 50,
    what: "link-local addresses past DAD",
  });
}
