/**
 * UDP over IPv6 for the control plane (DSTM messages), on Bun's native `Bun.udpSocket`
 * (https://bun.sh/docs/api/udp). Everything above this file sees only {@link UdpEndpoint}.
 *
 * @module
 */

import { SysError } from "./libc.ts";
import { raiseUdpReceiveBuffer } from "./udp_buffer.ts";
import { listenUdpPktinfo } from "./udp_pktinfo.ts";
import { type QueuedDatagram, UdpSendQueue } from "./udp_send_queue.ts";

/**
 * Receives one datagram. `data` is owned by the callee (Bun allocates one per datagram).
 * `local` is the address it was sent to: the bound address, or for a {@link listenUdp} on
 * `::` the destination the kernel reports (IPV6_PKTINFO).
 */
export type DatagramHandler = (
  data: Uint8Array,
  address: string,
  port: number,
  local: string,
) => void;

/** A bound UDP socket. */
export interface UdpEndpoint {
  /** Local address and port actually bound (the port is chosen by the kernel when 0 was asked). */
  readonly address: string;
  readonly port: number;
  /**
   * Sends one datagram; returns false when the kernel refused it (buffer full, unreachable).
   * `source`: the local address to send from, honoured by a {@link listenUdp} on `::` (pass
   * the `local` of the query being answered); a socket bound to one address always sends
   * from it.
   */
  send(data: Uint8Array, address: string, port: number, source?: string): boolean;
  /**
   * Queues one datagram (the same arguments as {@link send}) to leave with the others queued
   * in this turn of the event loop, in one sendmmsg(2) (./udp_send_queue.ts): what a server
   * answering many queries uses, paying per batch. `refused` is called when the kernel
   * refuses the datagram (or the endpoint is closed). Queued datagrams still go on close().
   */
  queue(
    data: Uint8Array,
    address: string,
    port: number,
    source?: string,
    refused?: () => void,
  ): void;
  close(): void;
  /** ICMP errors reported for earlier sends (e.g. port unreachable). */
  readonly asyncErrors: number;
  /** Joins multicast `group` (e.g. ff02::1:2) on interface `ifname`; false when the kernel refuses. */
  joinGroup(group: string, ifname: string): boolean;
}

/** A socket could not be opened; `message` is one line fit for the user. */
export class UdpBindError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = "UdpBindError";
  }
}

/**
 * Binds a UDP socket to `address`:`port` (port 0 = any free port). `receiveBuffer`: its
 * receive buffer in bytes (./udp_buffer.ts; beyond net.core.rmem_max as root; the kernel's
 * default stays when it refuses).
 *
 * @example const ep = await bindUdp("::1", 0, (data, addr, port) => ep.send(data, addr, port));
 */
export async function bindUdp(
  address: string,
  port: number,
  onDatagram: DatagramHandler,
  options: {
    readonly receiveBuffer?: number;
    /** Told of each ICMP error for an earlier send (as counted in `asyncErrors`); Bun gives no detail. */
    readonly onAsyncError?: () => void;
  } = {},
): Promise<UdpEndpoint> {
  let socket: Bun.udp.Socket<"uint8array">;
  const errors = { count: 0 };
  // The bound address, read once: `sock.hostname` makes a new string per call.
  let local: string | undefined;
  try {
    socket = await Bun.udpSocket({
      hostname: address,
      port,
      binaryType: "uint8array",
      socket: {
        data(sock, data, fromPort, fromAddress) {
          local ??= sock.hostname;
          onDatagram(data, fromAddress, fromPort, local);
        },
        // ICMP errors for earlier sends (port unreachable: a peer went away) surface here on
        // Linux; they are not this socket's failure, so they are counted, not thrown.
        error() {
          errors.count++;
          options.onAsyncError?.();
        },
      },
    });
  } catch (error) {
    const code = (error as { code?: string }).code ?? "EUNKNOWN";
    throw new UdpBindError(explainBindError(code, address, port), code);
  }
  if (options.receiveBuffer !== undefined) {
    try {
      // The socket's own address picks it among this process's sockets on its port number.
      raiseUdpReceiveBuffer(socket.port, options.receiveBuffer, socket.hostname);
    } catch {
      // The kernel's default stays: a smaller buffer, not a failure to listen.
    }
  }
  const send = (data: Uint8Array, toAddress: string, toPort: number): boolean => {
    try {
      return socket.send(data, toPort, toAddress);
    } catch (error) {
      if (!_earlierError(error)) return false;
      // An ICMP error of an EARLIER send (udp(7): a pending error is reported by the next
      // call, and cleared by it), not this datagram's: this one is sent again (the error is
      // still counted once, by `error` above, which Bun calls for it too). Without it, a peer
      // that went away cost the next datagram to ANOTHER peer (a TEP's SYNC to its live
      // server right after one to a dead one: red17).
      try {
        return socket.send(data, toPort, toAddress);
      } catch {
        return false;
      }
    }
  };
  const queue = new UdpSendQueue((batch) => _sendMany(socket, batch, send));
  return {
    address: socket.hostname,
    port: socket.port,
    send,
    queue: (data, toAddress, toPort, source, refused) => {
      if (!queue.push({ data, address: toAddress, port: toPort, source, refused })) refused?.();
    },
    close: () => {
      queue.close();
      socket.close();
    },
    joinGroup: (group, ifname) => {
      try {
        return socket.addMembership(group, ifname);
      } catch {
        return false;
      }
    },
    get asyncErrors() {
      return errors.count;
    },
  };
}

/** A UDP socket connected to one peer ({@link connectUdp}). */
export interface ConnectedUdp {
  /** The local port (chosen by the kernel). */
  readonly port: number;
  /** Sends one datagram to the peer; false when the kernel refused it. */
  send(data: Uint8Array): boolean;
  /**
   * Sends `datagrams` to the peer in one sendmmsg(2) (Bun's `sendMany`); returns how many
   * the kernel took, from the first (it stops at the first it refuses; 0 on an error).
   */
  sendMany(datagrams: readonly Uint8Array[]): number;
  close(): void;
  /** ICMP errors reported for earlier sends (e.g. port unreachable: nobody listens there). */
  readonly asyncErrors: number;
}

/**
 * A UDP socket on a free port connected to `address`:`port` (connect(2), udp(7)): it sends
 * there only and receives only what comes from there, and the kernel looks the route up once
 * rather than per datagram (about 1 µs a datagram less for bench/alloc.ts's load generator,
 * which sends to one server). Throws {@link UdpBindError} when it cannot be opened.
 */
export async function connectUdp(
  address: string,
  port: number,
  onDatagram: (data: Uint8Array) => void,
): Promise<ConnectedUdp> {
  const errors = { count: 0 };
  let socket: Bun.udp.ConnectedSocket<"uint8array">;
  try {
    socket = await Bun.udpSocket({
      hostname: address.includes(":") ? "::" : "0.0.0.0",
      port: 0,
      binaryType: "uint8array",
      connect: { hostname: address, port },
      socket: {
        data(_sock, data) {
          onDatagram(data);
        },
        error() {
          errors.count++;
        },
      },
    });
  } catch (error) {
    const code = (error as { code?: string }).code ?? "EUNKNOWN";
    throw new UdpBindError(explainBindError(code, address, port), code);
  }
  return {
    port: socket.port,
    send: (data) => {
      try {
        return socket.send(data);
      } catch (error) {
        if (!_earlierError(error)) return false;
        // The pending error of an earlier datagram (counted by `error`): send this one.
        try {
          return socket.send(data);
        } catch {
          return false;
        }
      }
    },
    sendMany: (datagrams) => {
      try {
        return socket.sendMany(datagrams as Uint8Array[]);
      } catch {
        return 0;
      }
    },
    close: () => socket.close(),
    get asyncErrors() {
      return errors.count;
    },
  };
}

/**
 * Sends `batch` through Bun's sendMany (sendmmsg(2)); what it did not send (it stops at the
 * first datagram the kernel refuses) goes one by one through `send`, so that exactly the
 * refused ones are reported.
 */
function _sendMany(
  socket: Bun.udp.Socket<"uint8array">,
  batch: readonly QueuedDatagram[],
  send: (data: Uint8Array, address: string, port: number) => boolean,
): void {
  const flat: (Uint8Array | string | number)[] = [];
  for (const d of batch) flat.push(d.data, d.port, d.address);
  let sent = 0;
  try {
    sent = socket.sendMany(flat);
  } catch {
    sent = 0;
  }
  for (let i = sent; i < batch.length; i++) {
    const d = batch[i]!;
    if (!send(d.data, d.address, d.port)) d.refused?.();
  }
}

/**
 * Receive buffer of a server's listener (bytes, {@link listenUdp}): 4 MiB holds about 5,000
 * queries of the native protocol or of DHCPv4 over DHCPv6 with the kernel's bookkeeping
 * (about 768 bytes each), against about 270 in the default 208 KiB (net.core.rmem_default).
 * A burst of hosts — every host retransmitting at once after a restart or a failover, or
 * simply more than 270 in flight — would otherwise overflow it whenever the main thread is
 * busy for a millisecond (one group commit of 100 leases), and each lost query costs its host
 * a retransmission timeout (1 s or more). The kernel's default stays when it refuses.
 */
export const LISTEN_RECEIVE_BUFFER = 4 << 20;

/**
 * Opens a listener that answers from the address each query was sent to: on a wildcard
 * address (`::`) through IPV6_PKTINFO (udp_pktinfo.ts), so a host with several IPv6
 * addresses answers a query to any of them from that address; on one address, a socket bound
 * to it ({@link bindUdp}). Reply with `endpoint.send(answer, address, port, local)`.
 *
 * @example
 * const ep = await listenUdp("::", 4607, (q, from, port, local) => ep.send(answer(q), from, port, local));
 */
export async function listenUdp(
  address: string,
  port: number,
  onDatagram: DatagramHandler,
): Promise<UdpEndpoint> {
  if (address !== "::" && address !== "::0" && address !== "0:0:0:0:0:0:0:0")
    return bindUdp(address, port, onDatagram, { receiveBuffer: LISTEN_RECEIVE_BUFFER });
  try {
    return await listenUdpPktinfo(port, onDatagram, LISTEN_RECEIVE_BUFFER);
  } catch (error) {
    if (!(error instanceof SysError)) throw error;
    throw new UdpBindError(explainBindError(error.code, "::", port), error.code);
  }
}

function explainBindError(code: string, address: string, port: number): string {
  const where = address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
  switch (code) {
    case "EADDRINUSE":
      return `cannot listen on ${where}: the port is in use (another dstm server?); choose another with --listen`;
    case "EADDRNOTAVAIL":
      return `cannot listen on ${where}: no interface has this address; check --listen and that IPv6 is configured`;
    case "EAFNOSUPPORT":
      return `cannot listen on ${where}: IPv6 is not available on this host`;
    case "EACCES":
    case "EPERM":
      return `cannot listen on ${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`;
    default:
      return `cannot listen on ${where}: ${code}`;
  }
}

/**
 * The source address the kernel would use to reach `address`:`port` (a connected UDP socket
 * sends nothing; connect() only runs the route lookup).
 */
export async function sourceAddressFor(address: string, port: number): Promise<string> {
  try {
    const socket = await Bun.udpSocket({
      hostname: "::",
      port: 0,
      connect: { hostname: address, port },
    });
    const local = socket.address.address;
    socket.close();
    return local;
  } catch (error) {
    const code = (error as { code?: string }).code ?? (error as Error).message;
    throw new UdpBindError(
      `no route to [${address}]:${port} (${code}); check the address and the IPv6 routes`,
      code,
    );
  }
}

/**
 * Whether `address` (IPv4 or IPv6 text) is an address of this host (this network
 * namespace): a UDP socket can be bound to it (bind(2) fails with EADDRNOTAVAIL otherwise;
 * nothing is sent). False as well when the socket cannot be made at all.
 */
export async function isLocalAddress(address: string): Promise<boolean> {
  try {
    const socket = await Bun.udpSocket({ hostname: address, port: 0 });
    socket.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * True for the errors a send(2) on an unconnected UDP socket reports on behalf of an earlier
 * datagram: ICMP port / host / network unreachable queued as the socket's pending error
 * (udp(7), "ERROR HANDLING"; ECONNREFUSED, EHOSTUNREACH, ENETUNREACH), which the failed call
 * clears. Other errors (ENOBUFS, EPERM, EMSGSIZE, …) are this datagram's own.
 */
function _earlierError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ECONNREFUSED" || code === "EHOSTUNREACH" || code === "ENETUNREACH";
}
