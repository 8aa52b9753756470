/**
 * Worker entry of {@link listenUdpPktinfo} (udp_pktinfo.ts): blocks in poll(2) on the
 * listener's socket, receives each datagram with recvmsg(2) and its IPV6_PKTINFO (the address
 * it was sent to), and posts them to the main thread in batches. Bun's own UDP socket cannot
 * report the destination address, and the main thread has no way to wait on a foreign fd.
 *
 * @module
 */
import { Udp6MultiSource } from "./udp6_multisource.ts";
import { runWorker } from "./worker.ts";

/** What the Worker is given. */
export interface PktinfoInit {
  fd: number;
}

/** One received datagram: payload, sender (address, port, scope), and where it was sent to. */
export interface PktinfoDatagram {
  data: Uint8Array;
  from: Uint8Array;
  port: number;
  scopeId: number;
  to: Uint8Array;
}

/** Datagrams posted per message at most (one poll wake-up drains up to this many). */
const BATCH = 64;

runWorker<PktinfoInit, { received: number }>((init, ctx) => {
  const sock = Udp6MultiSource.attach(init.fd);
  const buf = new Uint8Array(65536);
  const to = new Uint8Array(16);
  let received = 0;
  ctx.ready();
  while (!ctx.stopRequested) {
    if (!sock.wait(200)) continue;
    const batch: PktinfoDatagram[] = [];
    for (let i = 0; i < BATCH; i++) {
      const n = sock.receive(buf, to);
      if (n < 0) break;
      const from = new Uint8Array(16);
      const port = sock.receivedFrom(from);
      batch.push({
        data: buf.slice(0, n),
        from,
        port,
        scopeId: sock.receivedScopeId,
        to: to.slice(),
      });
    }
    if (batch.length === 0) continue;
    received += batch.length;
    ctx.post({ kind: "dstm-udp-datagrams", batch });
  }
  return { received };
});
