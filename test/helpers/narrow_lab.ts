/**
 * A narrow IPv6 path between a client host and the lab's core (test/helpers/dti_lab.ts: server
 * 2001:db8:7::53, TEP 2001:db8:7::1 / 192.0.2.1, web server 192.0.2.80), as root:
 *
 *   host c0 2001:db8:17:1::10 ── r1 ══ r2 ── core k0 (2001:db8:7::53, ::1) k1 ── web w0
 *
 * Two routers forward IPv6 (Packet Too Big intact); the r1 ⇄ r2 link has the narrow MTU.
 * Used by test/ver17_narrow_kernel_dti.test.ts and test/ver17_ping4_df.test.ts.
 */
import { createNetns, type Netns, vethPair } from "../../lib/sys/netns.ts";

/**
 * Makes the five namespaces (see the module text; pushed onto `made`, which the caller
 * deletes, also on failure); the r1 ⇄ r2 link has MTU `narrow`. Returns the host, the core
 * (for the lab's server and TEP, test/helpers/dti_lab.ts startLabCore) and the web server.
 */
export function narrowLab(made: Netns[], narrow: number) {
  const host = createNetns("v17n-");
  made.push(host);
  const r1 = createNetns("v17n-");
  made.push(r1);
  const r2 = createNetns("v17n-");
  made.push(r2);
  const core = createNetns("v17n-");
  made.push(core);
  const web = createNetns("v17n-");
  made.push(web);
  vethPair(host, "c0", r1, "a0");
  vethPair(r1, "a1", r2, "b0", { mtu: narrow });
  vethPair(r2, "b1", core, "k0");
  vethPair(core, "k1", web, "w0");
  host.addAddress("c0", "2001:db8:17:1::10/64");
  r1.addAddress("a0", "2001:db8:17:1::1/64");
  r1.addAddress("a1", "2001:db8:17:2::1/64");
  r2.addAddress("b0", "2001:db8:17:2::2/64");
  r2.addAddress("b1", "2001:db8:7::2/64");
  core.addAddress("k0", "2001:db8:7::53/64");
  core.addAddress("k0", "2001:db8:7::1/64");
  core.addAddress("k1", "192.0.2.1/24");
  web.addAddress("w0", "192.0.2.80/24");
  for (const r of [r1, r2]) r.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  host.addRoute("default", "via", "2001:db8:17:1::1");
  r1.addRoute("2001:db8:7::/64", "via", "2001:db8:17:2::2");
  r2.addRoute("2001:db8:17:1::/64", "via", "2001:db8:17:2::1");
  core.addRoute("default", "via", "2001:db8:7::2");
  web.addRoute("default", "via", "192.0.2.1");
  return { host, core, web };
}
