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
// Types only: importing the Worker module would run its body on this thread.
import type { PktinfoInit } from "./udp_pktinfo_worker.ts";
import { type QueuedDatagram, UdpSendQueue } from "./udp_send_queue.ts";
import { Udp6MultiSource } from "./udp6_multisource.ts";
import { type Udp6Datagram, Udp6SendVector } from "./udp6_send_vector.ts";
import { startWorker } from "./worker.ts";

// In a `bun build --compile` executable the Worker is an extra entry point (see compile.sh).
const WORKER_URL = import.meta.url.includes("$bunfs")
  ? "/$bunfs/root/lib/sys/udp_pktinfo_worker.ts"
  : new URL("./udp_pktinfo_worker.ts", import.meta.url).href;

const ANY = new Uint8Array(16);

/**
 * Bytes in front of each datagram in a batch from the Worker: length u16, sender port u16,
 * sender scope id u32 (little-endian), sender address (16), destination address (16).
 */
export const RECORD_HEADER = 40;

/**
 * Listens on `[::]:port` (0: a free port). `onDatagram` gets, as its 4th argument, the local
 * address the datagram was sent to; `send(…, source)` sends from `source` (an address of
 * this host; a multicast or absent source lets the kernel choose). A link-local peer is
 * named `fe80::…%IFINDEX`. `receiveBuffer`: the socket's receive buffer in bytes
 * (SO_RCVBUFFORCE as root, else SO_RCVBUF up to net.core.rmem_max; absent: the kernel's
 * default). Throws a SysError when the socket cannot be bound (see `listenUdp` in udp.ts,
 * which turns it into a one-line message).
 *
 * @example
 * const ep = await listenUdpPktinfo(4607, (data, from, port, local) => ep.send(answer, from, port, local));
 */
export async function listenUdpPktinfo(
  port: number,
  onDatagram: DatagramHandler,
  receiveBuffer?: number,
): Promise<UdpEndpoint> {
  const sock = Udp6MultiSource.open(
    receiveBuffer === undefined ? { port } : { port, receiveBuffer },
  );
  const boundPort = sock.localPort();
  const names = new AddressCache();
  const worker = startWorker<PktinfoInit, { received: number }>(
    WORKER_URL,
    { fd: sock.fd },
    { name: `dstm-udp-${boundPort}` },
  );
  let closed = false;
  worker.worker.addEventListener("message", (event: MessageEvent) => {
    const message = event.data as { kind?: string; batch?: ArrayBuffer; bytes?: number };
    if (message?.kind !== "dstm-udp-datagrams" || !message.batch || closed) return;
    const batch = new Uint8Array(message.batch);
    const view = new DataView(message.batch);
    const end = message.bytes ?? 0;
    for (let at = 0; at + RECORD_HEADER <= end; ) {
      const n = view.getUint16(at, true);
      const port = view.getUint16(at + 2, true);
      const scope = view.getUint32(at + 4, true);
      const from = names.format(batch, at + 8) + (scope ? `%${scope}` : "");
      const to = names.format(batch, at + 24);
      onDatagram(batch.subarray(at + RECORD_HEADER, at + RECORD_HEADER + n), from, port, to);
      at += RECORD_HEADER + n;
    }
  });
  try {
    await worker.ready;
  } catch (error) {
    sock.close();
    throw error;
  }
  let sendErrors = 0;
  // Where a datagram goes and from which source, as bytes; null when `address` is no IPv6.
  const resolve = (address: string, source: string | undefined) => {
    const percent = address.indexOf("%");
    const dest = names.parse(percent < 0 ? address : address.slice(0, percent));
    if (!dest) return null;
    let scopeId = 0;
    if (percent >= 0) {
      const zone = address.slice(percent + 1);
      scopeId = /^\d+$/.test(zone) ? Number(zone) : Math.max(0, libc.ifNameToIndex(zone));
    }
    const src = source === undefined ? ANY : (names.parse(source) ?? ANY);
    // A multicast destination address of the query is no source for the answer.
    return { dest, scopeId, source: src[0] === 0xff ? ANY : src };
  };
  const vector = new Udp6SendVector(sock.fd);
  const queue = new UdpSendQueue((batch) => {
    const datagrams: Udp6Datagram[] = [];
    const owners: QueuedDatagram[] = [];
    for (const d of batch) {
      const to = resolve(d.address, d.source);
      if (!to) {
        sendErrors++;
        d.refused?.();
        continue;
      }
      datagrams.push({
        data: d.data,
        dest: to.dest,
        port: d.port,
        scopeId: to.scopeId,
        source: to.source,
      });
      owners.push(d);
    }
    vector.send(datagrams, (i) => {
      sendErrors++;
      owners[i]!.refused?.();
    });
  });
  return {
    address: "::",
    port: boundPort,
    send(data, address, toPort, source) {
      const to = closed ? null : resolve(address, source);
      if (!to) return false;
      sock.setDestination(to.dest, toPort, to.scopeId);
      const n = sock.send(data, 0, data.length, to.source);
      if (n < 0) sendErrors++;
      return n >= 0;
    },
    queue(data, address, toPort, source, refused) {
      if (closed || !queue.push({ data, address, port: toPort, source, refused })) refused?.();
    },
    close() {
      if (closed) return;
      queue.close();
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

/**
 * Text forms of the few addresses seen most (the server's own, frequent peers), so that a
 * busy listener does not format and parse the same 16 bytes over and over. Bounded.
 */
class AddressCache {
  readonly #text = new Map<string, string>();
  readonly #bytes = new Map<string, Uint8Array | null>();
  readonly #key = new Uint8Array(16);
  readonly #decoder = new TextDecoder("latin1");

  format(buf: Uint8Array, at: number): string {
    this.#key.set(buf.subarray(at, at + 16));
    const key = this.#decoder.decode(this.#key);
    let text = this.#text.get(key);
    if (text === undefined) {
      if (this.#text.size >= 1024) this.#text.clear();
      text = formatIPv6(buf, at);
      this.#text.set(key, text);
    }
    return text;
  }

  parse(text: string): Uint8Array | null {
    let bytes = this.#bytes.get(text);
    if (bytes === undefined) {
      if (this.#bytes.size >= 1024) this.#bytes.clear();
      bytes = parseIPv6(text);
      this.#bytes.set(text, bytes);
    }
    return bytes;
  }
}
