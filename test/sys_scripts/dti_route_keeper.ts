/**
 * Inside a fresh namespace: a TUN device `t0` (persistent, `ip tuntap`) with a /32, a route
 * through it and a seg6 encap.red route in table 4608 (what a --kernel-encap DTI has), kept by
 * lib/client/dti_routes.ts (`argv[2]`: "events" or "fallback", the periodic check only, every
 * 8 × 20 ms). Sets t0 down (the kernel deletes both routes) and up, polls with a deadline
 * until both routes are there again, and prints as JSON what it saw: the routes after `down`
 * and at the end, the counter, the log lines.
 */
import { DtiRouteKeeper } from "../../lib/client/dti_routes.ts";
import { Logger } from "../../lib/control/log.ts";
import { type RouteSpec, routeAdd } from "../../lib/sys/netlink.ts";
import { Counters } from "../../lib/tunnel/counters.ts";
import { eventually } from "../helpers/wait.ts";

const ip = (...args: string[]): string => {
  const r = Bun.spawnSync(["ip", ...args]);
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.toString();
};
const events = process.argv[2] !== "fallback";
ip("tuntap", "add", "dev", "t0", "mode", "tun");
ip("addr", "add", "198.51.100.5/32", "dev", "t0");
ip("link", "set", "t0", "up");
const main: RouteSpec = { dst: "192.0.2.0/24", dev: "t0", src: "198.51.100.5" };
const encap: RouteSpec = {
  dst: "0.0.0.0/0",
  dev: "t0",
  table: 4608,
  mtu: 1524,
  encap: { kind: "seg6-encap-red", segment: "2001:db8:7::1" },
};
routeAdd(main);
routeAdd(encap);
const lines: string[] = [];
const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
const counters = Counters.create({ slices: 2 });
const keeper = DtiRouteKeeper.start({
  ifname: "t0",
  routes: [
    { route: encap, event: "kernel-encap-route-restored" },
    { route: main, event: "dti-route-restored" },
  ],
  log,
  counters,
  intervalMs: 20,
  events,
});
const routes = () => ip("-4", "route", "show", "table", "all", "dev", "t0");
const both = (text: string) => text.includes("192.0.2.0/24") && text.includes("table 4608");
ip("link", "set", "t0", "down");
const afterDown = routes();
ip("link", "set", "t0", "up");
const back = await eventually(() => both(routes()), { timeoutMs: 10_000, intervalMs: 20 });
// The log is written in batches (a microtask later): wait for both lines.
await eventually(() => lines.length >= 2, { timeoutMs: 2000, intervalMs: 10 });
keeper.stop();
console.log(
  JSON.stringify({
    afterDown,
    back,
    end: routes(),
    restored: counters.get("client-dti-route-restored"),
    lines,
  }),
);
