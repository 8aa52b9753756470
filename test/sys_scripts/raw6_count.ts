/**
 * Counts IPv4-in-IPv6 packets on a raw socket. argv[2]: JSON {maxMs, targetFile?, idleMs?}.
 * Prints "ready", then {"received": n, "bytes": b}.
 *
 * With `targetFile`: once that file exists it holds how many packets the sender forwarded;
 * counting stops when that many arrived, or 5 s after the number became known (the rest were
 * lost). Without it: stops when none came for `idleMs` after the first. Always within `maxMs`.
 */
import { existsSync, readFileSync } from "node:fs";
import { Raw6Socket } from "../../lib/sys/raw6.ts";

const opts = JSON.parse(process.argv[2] ?? "{}") as {
  maxMs: number;
  targetFile?: string;
  idleMs?: number;
};
const sock = Raw6Socket.open({ receiveBuffer: 8 << 20, pollTimeoutMs: 100 });
const buf = new Uint8Array(70000);
const src = new Uint8Array(16);
console.log("ready");
let received = 0;
let bytes = 0;
const start = Date.now();
let last = 0;
let target = Number.POSITIVE_INFINITY;
let targetKnownAt = 0;
const readTarget = () => {
  if (targetKnownAt || !opts.targetFile || !existsSync(opts.targetFile)) return;
  const text = readFileSync(opts.targetFile, "utf8").trim();
  if (text === "") return;
  target = Number(text);
  targetKnownAt = Date.now();
};
while (Date.now() - start < opts.maxMs && received < target) {
  const n = sock.recvFrom(buf, 0, src);
  if (n > 0) {
    received++;
    bytes += n;
    if ((received & 1023) === 0 || last === 0) last = Date.now();
    if ((received & 4095) === 0) readTarget();
    continue;
  }
  readTarget();
  if (targetKnownAt && Date.now() - targetKnownAt > 5000) break;
  if (!opts.targetFile && received > 0 && Date.now() - last > (opts.idleMs ?? 1000)) break;
}
sock.close();
console.log(JSON.stringify({ received, bytes }));
