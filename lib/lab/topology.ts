/**
 * The paper's test network (its figure 5) in network namespaces, with documentation
 * prefixes in place of the paper's private ones:
 *
 * ```
 *   IPv6-only DSTM domain 2001:db8:1::/64 (bridge in "sw6")        IPv4 domain 192.0.2.0/24 (bridge in "sw4")
 *   ┌────────┐ ┌────────┐ ┌─────────────┐       ┌──────────────────┐       ┌───────────────┐ ┌───────────────┐
 *   │ node A │ │ node B │ │ DSTM server │ ─sw6─ │ TEP ::1 / .0.2.1 │ ─sw4─ │ web 192.0.2.80│ │ ftp 192.0.2.21│
 *   │ ::a    │ │ ::b    │ │ ::53        │       └──────────────────┘       └───────────────┘ └───────────────┘
 *   └────────┘ └────────┘ └─────────────┘
 *   DSTM pool 198.51.100.0/24 (the paper's 192.168.20.0/24), routed by the IPv4 domain to the TEP.
 *
 *   A remote DSTM node behind a narrow link (path MTU discovery, RFC 2473 §7–8, RFC 8201):
 *   sw6 ─ r1 (2001:db8:1::71) ══ MTU 1400, 2001:db8:7::/64 ══ r2 ─ node E 2001:db8:2::e (2001:db8:2::/64)
 * ```
 *
 * The IPv6 side keeps an MTU of 1500 (tunnel MTU 1460); the IPv4 side uses 9000, so that a
 * 1,600-byte packet with DF reaches the TEP and gets "fragmentation needed" from it with the
 * tunnel MTU rather than from a router on the way.
 *
 * Every namespace is named `dstm-<lab>-<role>`; nothing touches the machine's own namespace.
 *
 * @module
 */

import { createPersistentNetns, deleteNetns, listNetns, Netns, vethPair } from "../sys/netns.ts";
import { LabError } from "./services.ts";

export const LAB = {
  prefix6: "2001:db8:1::/64",
  nodeA6: "2001:db8:1::a",
  nodeB6: "2001:db8:1::b",
  /** Nodes C and D exist for the address-sharing tests; the lab starts clients on A and B only. */
  nodeC6: "2001:db8:1::c",
  nodeD6: "2001:db8:1::d",
  server6: "2001:db8:1::53",
  tep6: "2001:db8:1::1",
  tep4: "192.0.2.1",
  ipv4Net: "192.0.2.0/24",
  web4: "192.0.2.80",
  ftp4: "192.0.2.21",
  pool: "198.51.100.0/24",
  ipv6Mtu: 1500,
  ipv4Mtu: 9000,
  /** Node E's network, reached through r1 and r2 with a narrow link between them. */
  remote6: "2001:db8:2::/64",
  nodeE6: "2001:db8:2::e",
  r1Lan6: "2001:db8:1::71",
  narrow6: "2001:db8:7::/64",
  r1Narrow6: "2001:db8:7::1",
  r2Narrow6: "2001:db8:7::2",
  r2Remote6: "2001:db8:2::1",
  /** MTU of the link between r1 and r2: path MTU between the TEP and node E. */
  narrowMtu: 1400,
} as const;

export const ROLES = [
  "sw6",
  "sw4",
  "a",
  "b",
  "c",
  "d",
  "server",
  "tep",
  "web",
  "ftp",
  "r1",
  "r2",
  "e",
] as const;
export type Role = (typeof ROLES)[number];

/** Namespace name of `role` in lab `lab`. */
export function nsName(lab: string, role: Role): string {
  return `dstm-${lab}-${role}`;
}

export type LabNamespaces = Record<Role, Netns>;

/** Creates the namespaces, bridges, links, addresses and routes. Undoes everything on failure. */
export function buildTopology(lab: string): LabNamespaces {
  if (!/^[a-z0-9]{1,8}$/.test(lab))
    throw new LabError(`lab name "${lab}" must be 1–8 lower-case letters or digits`);
  const existing = listNetns(`dstm-${lab}-`);
  if (existing.length > 0)
    throw new LabError(
      `lab "${lab}" is already up (${existing.join(", ")}); run \`dstm lab down --name ${lab}\` first`,
    );
  const created: string[] = [];
  try {
    const ns = {} as LabNamespaces;
    for (const role of ROLES) {
      ns[role] = createPersistentNetns(nsName(lab, role));
      created.push(ns[role].name);
    }
    for (const sw of [ns.sw6, ns.sw4]) {
      sw.ip("link", "add", "br0", "type", "bridge");
      sw.up("br0");
    }
    // IPv6 side: each member gets eth0, its peer joins sw6's bridge.
    const v6Members: [Role, string][] = [
      ["a", LAB.nodeA6],
      ["b", LAB.nodeB6],
      ["c", LAB.nodeC6],
      ["d", LAB.nodeD6],
      ["server", LAB.server6],
      ["tep", LAB.tep6],
    ];
    for (const [role, address] of v6Members) {
      const port = `p-${role}`;
      vethPair(ns.sw6, port, ns[role], role === "tep" ? "eth6" : "eth0", { mtu: LAB.ipv6Mtu });
      ns.sw6.ip("link", "set", port, "master", "br0");
      ns[role].addAddress(role === "tep" ? "eth6" : "eth0", `${address}/64`);
    }
    const v4Members: [Role, string][] = [
      ["tep", LAB.tep4],
      ["web", LAB.web4],
      ["ftp", LAB.ftp4],
    ];
    for (const [role, address] of v4Members) {
      const port = `p-${role}`;
      vethPair(ns.sw4, port, ns[role], role === "tep" ? "eth4" : "eth0", { mtu: LAB.ipv4Mtu });
      ns.sw4.ip("link", "set", port, "master", "br0");
      ns[role].addAddress(role === "tep" ? "eth4" : "eth0", `${address}/24`);
    }
    // The IPv4 domain reaches the DSTM pool through the TEP.
    for (const role of ["web", "ftp"] as const) ns[role].addRoute(LAB.pool, "via", LAB.tep4);
    // The DSTM nodes are IPv6-only: no IPv4 address but the one the DTI gets.
    for (const role of ["a", "b", "c", "d", "server", "tep", "r1", "r2", "e"] as const) {
      ns[role].exec(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
    }
    buildNarrowPath(ns);
    return ns;
  } catch (error) {
    for (const name of created) deleteNetns(name);
    throw error;
  }
}

/**
 * r1 on the DSTM domain's switch, a 1400-byte link to r2, node E behind r2. The routers send
 * ICMPv6 errors without rate limit (Packet Too Big never is limited; RFC 4443 §2.4(f) lets
 * the others be, which would make the lab's results depend on timing).
 */
function buildNarrowPath(ns: LabNamespaces): void {
  vethPair(ns.sw6, "p-r1", ns.r1, "eth0", { mtu: LAB.ipv6Mtu });
  ns.sw6.ip("link", "set", "p-r1", "master", "br0");
  ns.r1.addAddress("eth0", `${LAB.r1Lan6}/64`);
  vethPair(ns.r1, "eth1", ns.r2, "eth0", { mtu: LAB.narrowMtu });
  ns.r1.addAddress("eth1", `${LAB.r1Narrow6}/64`);
  ns.r2.addAddress("eth0", `${LAB.r2Narrow6}/64`);
  vethPair(ns.r2, "eth1", ns.e, "eth0", { mtu: LAB.ipv6Mtu });
  ns.r2.addAddress("eth1", `${LAB.r2Remote6}/64`);
  ns.e.addAddress("eth0", `${LAB.nodeE6}/64`);
  for (const router of [ns.r1, ns.r2]) {
    router.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    router.exec(["sysctl", "-qw", "net.ipv6.icmp.ratelimit=0"]);
  }
  ns.r1.addRoute(LAB.remote6, "via", LAB.r2Narrow6);
  ns.r2.addRoute("default", "via", LAB.r1Narrow6);
  ns.e.addRoute("default", "via", LAB.r2Remote6);
  for (const role of ["server", "tep"] as const) ns[role].addRoute(LAB.remote6, "via", LAB.r1Lan6);
}

/** The lab's namespaces as they exist now (possibly none, or a partial set after a crash). */
export function labNamespaces(lab: string): string[] {
  return listNetns(`dstm-${lab}-`);
}

/** Deletes every namespace of the lab (whatever runs inside loses its interfaces). */
export function destroyTopology(lab: string): string[] {
  const names = labNamespaces(lab);
  for (const name of names) deleteNetns(name);
  return names;
}

/** The Netns handles of an existing lab. */
export function openTopology(lab: string): LabNamespaces {
  const ns = {} as LabNamespaces;
  for (const role of ROLES) ns[role] = new Netns(nsName(lab, role));
  return ns;
}
