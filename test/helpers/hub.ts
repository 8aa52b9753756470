/**
 * One IPv6 link through a hub: a bridge in `sw` that floods every frame (ageing_time 0, as a
 * hub or a mirrored port), so an attacker on it sees everyone's traffic. Shared by
 * test/redteam_tep.test.ts and test/tep_attack.test.ts.
 */
import { type Netns, vethPair } from "../../lib/sys/netns.ts";

/** A member of the link: its namespace, its bridge port name suffix, its interface, its /64 address. */
export type HubMember = readonly [role: string, ns: Netns, ifname: string, address: string];

/**
 * Adds bridge br0 (a hub) to `sw` and joins each member to it with a veth pair (`p-ROLE` on the
 * hub, `ifname` in the member) carrying `address`/64.
 */
export function hubLink(sw: Netns, members: readonly HubMember[]): void {
  sw.ip("link", "add", "br0", "type", "bridge", "ageing_time", "0");
  sw.up("br0");
  for (const [role, ns, ifname, address] of members) {
    vethPair(sw, `p-${role}`, ns, ifname);
    sw.ip("link", "set", `p-${role}`, "master", "br0");
    ns.addAddress(ifname, `${address}/64`);
  }
}
