/**
 * UDP over IPv6 for the control plane (DSTM messages), on Bun's native `Bun.udpSocket`
 * (https://bun.sh/docs/api/udp). Everything above this file sees only {@link UdpEndpoint}.
 *
 * @module
 */

/** Receives one datagram. `data` is owned by the callee (Bun allocates one per datagram). */
export type DatagramHandler = (data: Uint8Array, address: string, port: number) => void;

/** A bound UDP socket. */
export interface UdpEndpoint {
  /** Local address and port actually bound (the port is chosen by the kernel when 0 was asked). */
  readonly address: string;
  readonly port: number;
  /** Sends one datagram; returns false when the kernel refused it (buffer full, unreachable). */
  send(data: Uint8Array, address: string, port: number): boolean;
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
 * Binds a UDP socket to `address`:`port` (port 0 = any free port).
 *
 * @example const ep = await bindUdp("::1", 0, (data, addr, port) => ep.send(data, addr, port));
 */
export async function bindUdp(
  address: string,
  port: number,
  onDatagram: DatagramHandler,
): Promise<UdpEndpoint> {
  let socket: Bun.udp.Socket<"uint8array">;
  const errors = { count: 0 };
  try {
    socket = await Bun.udpSocket({
      hostname: address,
      port,
      binaryType: "uint8array",
      socket: {
        data(_sock, data, fromPort, fromAddress) {
          onDatagram(data, fromAddress, fromPort);
        },
        // ICMP errors for earlier sends (port unreachable: a peer went away) surface here on
        // Linux; they are not this socket's failure, so they are counted, not thrown.
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
    address: socket.hostname,
    port: socket.port,
    send: (data, toAddress, toPort) => {
      try {
        return socket.send(data, toPort, toAddress);
      } catch {
        return false;
      }
    },
    close: () => socket.close(),
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
