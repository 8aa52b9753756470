/**
 * Inside a fresh namespace (test/ver17_dti_path_mtu_follow.test.ts): a persistent TUN `t0`
 * standing in for the DTI, a route through it kept by lib/client/dti_routes.ts with `pathMtu`
 * (DTI MTU 1460), the kernel's path MTU towards the TEP given by the script. Calls
 * followPathMtu after each change and prints, as JSON, what it returned and what `ip route`
 * showed each time.
 */
import { DtiRouteKeeper, type KeptRoute } from "../../lib/client/dti_routes.ts";
import { parseIPv6 } from "../../lib/net/addr.ts";
import { routeAdd } from "../../lib/sys/netlink.ts";

const ip = (...args: string[]): string => {
  const r = Bun.spawnSync(["ip", ...args]);
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.toString();
};
ip("tuntap", "add", "dev", "t0", "mode", "tun");
ip("addr", "add", "198.51.100.5/32", "dev", "t0");
ip("link", "set", "t0", "up");
const routes = (m: number): KeptRoute[] => [
  {
    route: { dst: "192.0.2.0/24", dev: "t0", src: "198.51.100.5", mtu: m < 1460 ? m : undefined },
    event: "dti-route-restored",
  },
];
for (const { route } of routes(1460)) routeAdd(route);
let path = 1500;
const keeper = DtiRouteKeeper.start({
  ifname: "t0",
  routes: routes(1460),
  events: false,
  intervalMs: 3_600_000, // the script calls followPathMtu itself
  pathMtu: {
    tep6: parseIPv6("2001:db8:7::1")!,
    mtu: 1460,
    routes,
    readPathMtu: () => path,
  },
});
const shown = () => ip("route", "show", "192.0.2.0/24").trim();
const steps: { path: number; mtu: number; route: string }[] = [];
const step = (p: number) => {
  path = p;
  steps.push({ path: p, mtu: keeper.followPathMtu(), route: shown() });
};
// The link's MTU; a narrower path; no route to the TEP now (-ENETUNREACH); narrower still;
// the estimate expired; narrower again.
for (const p of [1500, 1400, -101, 1280, 1500, 1400]) step(p);
// Set down and up by hand (the kernel deletes the route): the restore puts back the one in force.
ip("link", "set", "t0", "down");
ip("link", "set", "t0", "up");
const restored = keeper.restore();
keeper.stop();
console.log(JSON.stringify({ steps, restored, afterRestore: shown() }));
