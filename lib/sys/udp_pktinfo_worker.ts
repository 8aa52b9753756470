/**
 * Worker entry of {@link listenUdpPktinfo} (udp_pktinfo.ts): blocks in poll(2) on the
 * listener's socket, receives each datagram with recvmsg(2) and its IPV6_PKTINFO (the address
 * it was sent to), and posts them to the main thread in batches. Bun's own UDP socket cannot
 * report the destination address, and the main thread has no way to wait on a foreign fd.
 *
 * A batch is one buffer, moved (not copied) to the main thread: records of
 * `RECORD_HEADER` (40) bytes — length u16, sender port u16, sender scope id u32 (all
 * little-endian), sender address (16), destination address (16) — each followed by the
 * datagram.
 *
 * @module
 */

import { RECORD_HEADER } from "./udp_pktinfo.ts";
import { Udp6MultiSource } from "./udp6_multisource.ts";
import { runWorker } from "./worker.ts";

/** What the Worker is given. */
export interface PktinfoInit {
  fd: number;
}

/** Bytes of one batch buffer: a wake-up drains what fits (at least one largest datagram). */
const BATCH_BYTES = 256 * 1024;
const MAX_DATAGRAM = 65535;

runWorker<PktinfoInit, { received: number }>((init, ctx) => {
  const sock = Udp6MultiSource.attach(init.fd);
  let received = 0;
  ctx.ready();
  // Records are gathered in one staging buffer and posted as an exact-size copy (moved).
  const staging = new Uint8Array(BATCH_BYTES);
  const view = new DataView(staging.buffer);
  while (!ctx.stopRequested) {
    if (!sock.wait(200)) continue;
    let at = 0;
    let count = 0;
    while (at + RECORD_HEADER + MAX_DATAGRAM <= BATCH_BYTES) {
      const data = staging.subarray(at + RECORD_HEADER, at + RECORD_HEADER + MAX_DATAGRAM);
      const n = sock.receive(data, staging, at + 24);
      if (n < 0) break;
      view.setUint16(at, n, true);
      view.setUint16(at + 2, sock.receivedFrom(staging, at + 8), true);
      view.setUint32(at + 4, sock.receivedScopeId, true);
      at += RECORD_HEADER + n;
      count++;
    }
    if (count === 0) continue;
    received += count;
    const batch = staging.slice(0, at);
    ctx.post({ kind: "dstm-udp-datagrams", batch: batch.buffer, bytes: at }, [batch.buffer]);
  }
  return { received };
});
