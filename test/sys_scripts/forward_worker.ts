/**
 * A test forwarding loop for lib/sys/worker.ts: TUN → raw IPv6 (next header 4), blocking
 * FFI calls in a Worker. The Worker dlopens libc itself (by importing lib/sys) and opens its
 * own raw socket; the TUN fd comes from the main thread.
 */
import { parseIPv6 } from "../../lib/net/addr.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";
import { attachTun } from "../../lib/sys/tun_linux.ts";
import { runWorker } from "../../lib/sys/worker.ts";

export interface ForwardInit {
  tunFd: number;
  dst6: string;
  /** Int32 [0]: packets read from the TUN so far (forwarded or not), for a caller draining it. */
  progress?: SharedArrayBuffer;
}
export interface ForwardStats {
  forwarded: number;
  readErrors: number;
  sendErrors: number;
  lastError: number;
}

runWorker<ForwardInit, ForwardStats>((init, ctx) => {
  const tun = attachTun(init.tunFd, { pollTimeoutMs: 50 });
  const raw = Raw6Socket.open({ sendBuffer: 4 << 20 });
  const dst = parseIPv6(init.dst6)!;
  const buf = new Uint8Array(65535 + 40);
  const stats: ForwardStats = { forwarded: 0, readErrors: 0, sendErrors: 0, lastError: 0 };
  const progress = init.progress ? new Int32Array(init.progress) : undefined;
  ctx.ready();
  while (!ctx.stopRequested) {
    const n = tun.read(buf, 40);
    if (n === 0) continue;
    if (n > 0 && progress) Atomics.add(progress, 0, 1);
    if (n < 0) {
      stats.readErrors++;
      stats.lastError = n;
      continue;
    }
    if (buf[40]! >> 4 !== 4) continue; // only IPv4 goes into the tunnel
    const sent = raw.sendTo(buf, 40, n, dst);
    if (sent < 0) {
      stats.sendErrors++;
      stats.lastError = sent;
    } else stats.forwarded++;
  }
  raw.close();
  return stats;
});
