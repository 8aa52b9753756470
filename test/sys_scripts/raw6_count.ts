/**
 * Counts IPv4-in-IPv6 packets on a raw socket until none came for `idleMs` after the first
 * (or `maxMs` in all). argv[2]: JSON {idleMs, maxMs}. Prints "ready", then {"received": n}.
 */
import { Raw6Socket } from "../../lib/sys/raw6.ts";

const opts = JSON.parse(process.argv[2] ?? "{}") as { idleMs: number; maxMs: number };
const sock = Raw6Socket.open({ receiveBuffer: 8 << 20, pollTimeoutMs: 100 });
const buf = new Uint8Array(70000);
const src = new Uint8Array(16);
console.log("ready");
let received = 0;
let bytes = 0;
const start = Date.now();
let last = 0;
while (Date.now() - start < opts.maxMs) {
  const n = sock.recvFrom(buf, 0, src);
  if (n > 0) {
    received++;
    bytes += n;
    if ((received & 1023) === 0 || last === 0) last = Date.now();
  } else if (received > 0 && Date.now() - last > opts.idleMs) break;
}
sock.close();
console.log(JSON.stringify({ received, bytes }));
