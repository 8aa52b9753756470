/**
 * Inside a fresh namespace: creates TUN dti0, configures it over netlink (192.0.2.2/32,
 * MTU 1460, txqueuelen 5000, up, default route), starts icmp_ping.ts towards 192.0.2.99,
 * reads the echo request from the TUN, writes the crafted reply back, and reports.
 */
import { join } from "node:path";
import {
  addressAdd,
  linkSetMtu,
  linkSetTxQueueLen,
  linkSetUp,
  routeAdd,
} from "../../lib/sys/netlink.ts";
import { openTun, TunDevice } from "../../lib/sys/tun_linux.ts";
import { echoRequestToReply, formatV4, toHex } from "../helpers/packets.ts";

const { fd, name } = openTun("dti0");
linkSetMtu(name, 1460);
linkSetTxQueueLen(name, 5000);
addressAdd(name, "192.0.2.2/32");
linkSetUp(name);
routeAdd({ dst: "0.0.0.0/0", dev: name });
const ip = (...args: string[]) =>
  JSON.parse(Bun.spawnSync(["ip", "-j", ...args]).stdout.toString() || "[]");
const link = ip("link", "show", "dev", name);
const addr = ip("-4", "addr", "show", "dev", name);
const routes = ip("-4", "route", "show");

const ping = Bun.spawn([process.execPath, join(import.meta.dir, "icmp_ping.ts"), "192.0.2.99"], {
  stdout: "pipe",
  stderr: "inherit",
});
const dev = new TunDevice(fd, { pollTimeoutMs: 100 });
const buf = new Uint8Array(65535 + 40);
const OFFSET = 40;
const seen: { length: number; src: string; dst: string; proto: number }[] = [];
let request = "";
let wrote = 0;
let timeouts = 0;
const start = Date.now();
while (Date.now() - start < 3000 && wrote === 0) {
  const n = dev.read(buf, OFFSET);
  if (n === 0) {
    timeouts++;
    continue;
  }
  if (n < 0) throw new Error(`read: ${n}`);
  const p = buf.subarray(OFFSET, OFFSET + n);
  if (p[0]! >> 4 !== 4) continue; // IPv6 chatter (router solicitations, MLD)
  seen.push({ length: n, src: formatV4(p, 12), dst: formatV4(p, 16), proto: p[9]! });
  if (formatV4(p, 16) === "192.0.2.99" && p[9] === 1) {
    request = toHex(p);
    if (echoRequestToReply(p, n)) wrote = dev.write(buf, OFFSET, n);
  }
}
const pingResult = JSON.parse((await new Response(ping.stdout).text()).trim() || "{}");
await ping.exited;
// Nothing is queued now: a read must come back empty after the poll timeout.
const t0 = performance.now();
const idle = dev.read(buf, OFFSET);
const idleMs = performance.now() - t0;
dev.close();
console.log(
  JSON.stringify({
    name,
    link,
    addr,
    routes,
    seen,
    request,
    wrote,
    timeouts,
    pingResult,
    idle,
    idleMs,
  }),
);
