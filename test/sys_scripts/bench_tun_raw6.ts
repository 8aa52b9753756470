/**
 * TUN → raw IPv6 forwarding in a Worker (lib/sys/worker.ts), measured. Runs in namespace A:
 * TUN dti0 (192.0.2.2/32, route 198.51.100.0/24, txqueuelen 5000) and a veth towards B.
 * The main thread floods 64-byte IPv4/UDP packets into the TUN through a UDP socket for
 * `durationMs`; the Worker reads them and sends them to `dst6` inside IPv6.
 * argv[2]: JSON {durationMs, dst6, packetSize}. Prints {"sent","forwarded","pps",...}.
 */
import { readFileSync } from "node:fs";
import * as libc from "../../lib/sys/libc.ts";
import { addressAdd, linkSetTxQueueLen, linkSetUp, routeAdd } from "../../lib/sys/netlink.ts";
import { closeTun, openTun } from "../../lib/sys/tun_linux.ts";
import { startWorker } from "../../lib/sys/worker.ts";
import { eventually } from "../helpers/wait.ts";
import type { ForwardInit, ForwardStats } from "./forward_worker.ts";

const opts = JSON.parse(process.argv[2] ?? "{}") as {
  durationMs: number;
  dst6: string;
  packetSize: number;
};
const { fd, name } = openTun("dti0");
linkSetTxQueueLen(name, 5000);
addressAdd(name, "192.0.2.2/32");
linkSetUp(name);
routeAdd({ dst: "198.51.100.0/24", dev: name });

const progress = new SharedArrayBuffer(4);
const worker = startWorker<ForwardInit, ForwardStats>(
  new URL("./forward_worker.ts", import.meta.url),
  { tunFd: fd, dst6: opts.dst6, progress },
  { name: "forward" },
);
await worker.ready;

const udp = libc.socket(libc.AF_INET, libc.SOCK_DGRAM, 0);
const sa = new Uint8Array(16); // sockaddr_in 198.51.100.7:9
sa[0] = libc.AF_INET;
sa[3] = 9;
sa.set([198, 51, 100, 7], 4);
const payload = new Uint8Array(opts.packetSize - 28).fill(0x5a);
let sent = 0;
let sendErrors = 0;
const start = performance.now();
const end = start + opts.durationMs;
while (performance.now() < end) {
  for (let i = 0; i < 64; i++) {
    if (libc.sendto(udp, payload, 0, payload.length, 0, sa, 16) > 0) sent++;
    else sendErrors++;
  }
}
const elapsedMs = performance.now() - start;
libc.close(udp);
// Drain: wait until the Worker has read every packet the kernel queued on the TUN (its
// tx_packets counts what went to the TUN's reader); at most 10 s.
const queued = () => Number(readFileSync(`/sys/class/net/${name}/statistics/tx_packets`, "utf8"));
await eventually(() => Atomics.load(new Int32Array(progress), 0) >= queued(), {
  timeoutMs: 10_000,
  intervalMs: 5,
});
const t0 = performance.now();
const stopped = await worker.stop(2000);
const stopMs = performance.now() - t0;
closeTun(fd);
const stats = stopped.result;
console.log(
  JSON.stringify({
    sent,
    sendErrors,
    elapsedMs,
    stats,
    terminated: stopped.terminated,
    stopMs,
    pps: stats ? Math.round((stats.forwarded / elapsedMs) * 1000) : 0,
  }),
);
