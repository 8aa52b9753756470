/**
 * Netlink round trips inside a fresh namespace holding a veth pair v0/v1: applies changes
 * with lib/sys/netlink.ts and reports `ip -j` views after each phase, plus error cases and
 * a sysctl write. Prints one JSON object.
 */
import { SysError } from "../../lib/sys/libc.ts";
import {
  addressAdd,
  addressDel,
  linkDelete,
  linkIndex,
  linkSetDown,
  linkSetMtu,
  linkSetTxQueueLen,
  linkSetUp,
  routeAdd,
  routeDel,
} from "../../lib/sys/netlink.ts";
import { readSysctl, writeSysctl } from "../../lib/sys/sysctl.ts";

const ip = (...args: string[]) =>
  JSON.parse(Bun.spawnSync(["ip", "-j", ...args]).stdout.toString() || "[]");
const snapshot = () => ({
  link: ip("link", "show", "dev", "v0")[0],
  addr: ip("addr", "show", "dev", "v0")[0]?.addr_info ?? [],
  routes4: ip("-4", "route", "show", "table", "all"),
  routes6: ip("-6", "route", "show", "table", "all"),
});
function attempt(f: () => unknown) {
  try {
    return { ok: true, value: f() };
  } catch (error) {
    const e = error as SysError;
    return { ok: false, isSysError: e instanceof SysError, code: e.code, message: e.message };
  }
}

const index = linkIndex("v0");
linkSetMtu("v0", 1400);
linkSetTxQueueLen("v0", 5000);
linkSetUp("v0");
linkSetUp("v1");
addressAdd("v0", "192.0.2.1/24");
addressAdd("v0", "2001:db8:1::1/64", { noDad: true });
addressAdd("v0", "2001:db8:1::5/64"); // with DAD: tentative for a while
routeAdd({ dst: "198.51.100.0/24", via: "192.0.2.254" });
routeAdd({ dst: "203.0.113.0/24", dev: "v0", src: "192.0.2.1", metric: 50 });
routeAdd({ dst: "0.0.0.0/0", dev: "v0", table: 100 });
routeAdd({ dst: "default", dev: "v0", table: 1000 });
routeAdd({ dst: "2001:db8:2::/48", dev: "v0" });
routeAdd({ dst: "::/0", via: "2001:db8:1::fe", dev: "v0", table: 100 });
const applied = snapshot();

const errors = {
  addrTwice: attempt(() => addressAdd("v0", "192.0.2.1/24")),
  routeTwice: attempt(() => routeAdd({ dst: "198.51.100.0/24", via: "192.0.2.254" })),
  routeMissing: attempt(() => routeDel({ dst: "198.18.0.0/15", dev: "v0" })),
  viaOffLink: attempt(() => routeAdd({ dst: "2001:db8:4::/48", via: "2001:db8:9::1" })),
  mtuMissing: attempt(() => linkSetMtu("nosuch0", 1400)),
  badCidr: attempt(() => addressAdd("v0", "192.0.2.300/24")),
  mixedFamilies: attempt(() => routeAdd({ dst: "2001:db8:3::/48", via: "192.0.2.254" })),
  noDevNoVia: attempt(() => routeAdd({ dst: "198.51.100.0/24" })),
  addrMissing: attempt(() => addressDel("v0", "192.0.2.77/24")),
};

routeDel({ dst: "198.51.100.0/24", via: "192.0.2.254" });
routeDel({ dst: "203.0.113.0/24", dev: "v0" });
routeDel({ dst: "0.0.0.0/0", dev: "v0", table: 100 });
routeDel({ dst: "default", table: 1000, dev: "v0" });
routeDel({ dst: "2001:db8:2::/48", dev: "v0" });
routeDel({ dst: "::/0", via: "2001:db8:1::fe", table: 100 });
addressDel("v0", "2001:db8:1::1/64");
addressDel("v0", "192.0.2.1/24");
linkSetDown("v0");
const removed = snapshot();

const forwardBefore = readSysctl("net.ipv4.ip_forward");
writeSysctl("net.ipv4.ip_forward", 1);
writeSysctl("net/ipv4/conf/v0/rp_filter", 2);
const sysctl = {
  forwardBefore,
  forwardAfter: readSysctl("net.ipv4.ip_forward"),
  rpFilter: readSysctl("net.ipv4.conf.v0.rp_filter"),
  missing: attempt(() => readSysctl("net.ipv4.conf.nosuch0.rp_filter")),
  badValue: attempt(() => writeSysctl("net.ipv4.ip_forward", "yes")),
  badKey: attempt(() => readSysctl("net/../../etc/passwd")),
};

linkDelete("v0");
const deleted = { v0: ip("link", "show").map((l: { ifname: string }) => l.ifname) };
console.log(JSON.stringify({ index, applied, errors, removed, sysctl, deleted }));
