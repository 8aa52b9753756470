/**
 * A UDP/IPv6 listener on the wildcard address that answers from the address each query was
 * sent to (RFC 8085 §5.2 / RFC 1122 §4.1.3.5: a reply to a unicast datagram comes from the
 * address it was sent to). On a host with several IPv6 addresses, a socket bound to `[::]`
 * that lets the kernel pick the source answers a query sent to one address from another,
 * and the asker (who checks who answers) discards it.
 *
 * How: recvmsg(2) with IPV6_RECVPKTINFO reports each datagram's destination; sendmsg(2) with
 * an IPV6_PKTINFO control message sets the source of the answer (ipv6(7)). Bun's UDP socket
 * offers neither, and the main thread cannot wait on a socket of its own, so a Worker
 * (udp_pktinfo_worker.ts) blocks in poll + recvmsg and posts the datagrams; sending happens
 * on the main thread (non-blocking sendmsg, through the same fd).
 *
 * @module
 */
import { formatIPv6, parseIPv6 } from "../net/addr.ts";
import * as libc from "./libc.ts";
import type { DatagramHandler, UdpEndpoint } from "./udp.ts";
import type { PktinfoDatagram, PktinfoInit } from "./udp_pktinfo_worker.ts";
import { Udp6MultiSource } from "./udp6_multisource.ts";
import { startWorker } from "./worker.ts";

// In a `bun build --compile` executable the Worker is an extra entry point (see compile.sh).
const WORKER_URL = import.meta.url.includes("$bunfs")
  ? "/$bunfs/root/lib/sys/udp_pktinfo_worker.ts"
  : new URL("./udp_pktinfo_worker.ts", import.meta.url).href;

const ANY = new Uint8Array(16);

/**
 * Listens on `[::]:port` (0: a free port). `onDatagram` gets, as its 4th argument, the local
 * address the datagram was sent to; `send(…, source)` sends from `source` (an address of
 * this host; a multicast or absent source lets the kernel choose). A link-local peer is
 * named `fe80::…%IFINDEX`. Throws a SysError when the socket cannot be bound (see
 * `listenUdp` in udp.ts, which turns it into a one-line message).
 *
 * @example
 * const ep = await listenUdpPktinfo(4607, (data, from, port, local) => ep.send(answer, from, port, local));
 */
export async function listenUdpPktinfo(
  port: number,
  onDatagram: DatagramHandler,
): Promise<UdpEndpoint> {
  const sock = Udp6MultiSource.open({ port });
  const boundPort = sock.localPort();
  const worker = startWorker<PktinfoInit, { received: number }>(
    WORKER_URL,
    { fd: sock.fd },
    { name: `dstm-udp-${boundPort}` },
  );
  let closed = false;
  worker.worker.addEventListener("message", (event: MessageEvent) => {
    const message = event.data as { kind?: string; batch?: PktinfoDatagram[] };
    if (message?.kind !== "dstm-udp-datagrams" || closed) return;
    for (const d of message.batch ?? []) {
      const from = formatIPv6(d.from) + (d.scopeId ? `%${d.scopeId}` : "");
      onDatagram(d.data, from, d.port, formatIPv6(d.to));
    }
  });
  try {
    await worker.ready;
  } catch (error) {
    sock.close();
    throw error;
  }
  let sendErrors = 0;
  return {
    address: "::",
    port: boundPort,
    send(data, address, toPort, source) {
      const percent = address.indexOf("%");
      const dest = parseIPv6(percent < 0 ? address : address.slice(0, percent));
      if (!dest || closed) return false;
      let scope = 0;
      if (percent >= 0) {
        const zone = address.slice(percent + 1);
        scope = /^\d+$/.test(zone) ? Number(zone) : Math.max(0, libc.ifNameToIndex(zone));
      }
      const src = source === undefined ? ANY : (parseIPv6(source) ?? ANY);
      sock.setDestination(dest, toPort, scope);
      // A multicast destination address of the query is no source for the answer.
      const n = sock.send(data, 0, data.length, src[0] === 0xff ? ANY : src);
      if (n < 0) sendErrors++;
      return n >= 0;
    },
    close() {
      if (closed) return;
      closed = true;
      void worker.stop(1000).finally(() => sock.close());
    },
    joinGroup(group, ifname) {
      const g = parseIPv6(group);
      const index = libc.ifNameToIndex(ifname);
      return g !== null && index > 0 && sock.joinGroup(g, index) === 0;
    },
    get asyncErrors() {
      return sendErrors;
    },
  };
}
