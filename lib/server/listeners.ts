/**
 * The server's two UDP listeners: the native DSTM protocol (UDP 4607, DSTM_DISCOVER /
 * DSTM_REQUEST / DSTM_RELEASE) and DHCPv4-over-DHCPv6 (UDP 547, RFC 7341 §5), which also
 * joins All_DHCP_Relay_Agents_and_Servers (ff02::1:2, RFC 8415 §7.1) on the named interfaces.
 *
 * Each datagram is handed to its handler; the answer leaves from the address the query was
 * sent to (IPV6_PKTINFO on `::`), queued with the other answers of the same turn of the event
 * loop so that they leave in one sendmmsg(2) (lib/sys/udp_send_queue.ts). The {@link AnswerGate} lets the server refuse new work while
 * it stops and wait for answers still being made durable.
 *
 * Errors: a bind failure or a group that cannot be joined throws {@link UdpBindError} (the
 * endpoint is closed first). A handler that throws is logged at error and counted
 * (`dstm_dropped_total{reason="internal-error"}` for the native protocol), never a crash.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import { formatIPv4 } from "../net/addr.ts";
import { type DatagramHandler, listenUdp, UdpBindError, type UdpEndpoint } from "../sys/udp.ts";
import type { Dhcp4o6Handler } from "./dhcp4o6.ts";
import type { DstmHandler } from "./handler.ts";

/** The server's side of each answer: `begin` false while stopping (drop), `end` when done. */
export interface AnswerGate {
  begin(): boolean;
  end(): void;
}

/**
 * Opens a listener's endpoint: lib/sys/udp.ts `listenUdp` (a UDP socket), or for the warm-up's
 * twin servers (./warm_up.ts) an endpoint of no socket that hands `onDatagram` to the warm-up.
 */
export type ListenUdp = (
  address: string,
  port: number,
  onDatagram: DatagramHandler,
) => Promise<UdpEndpoint>;

/**
 * Listens for the native protocol on `address`:`port`, answering with `handler`; `open` makes
 * the endpoint (default a UDP socket).
 */
export async function listenDstm(
  address: string,
  port: number,
  handler: DstmHandler,
  gate: AnswerGate,
  metrics: Metrics,
  log: Logger,
  open: ListenUdp = listenUdp,
): Promise<UdpEndpoint> {
  let udp: UdpEndpoint | undefined;
  const sendFailed = () => metrics.inc("dstm_dropped_total", { reason: "send-failed" });
  udp = await open(address, port, (data, from, fromPort, local) => {
    if (!gate.begin()) return;
    handler.handle(data, from, fromPort, local).then(
      (answer) => {
        gate.end();
        // Queued: the answers of one turn leave in one sendmmsg(2) (lib/sys/udp_send_queue.ts).
        if (answer && udp) udp.queue(answer, from, fromPort, local, sendFailed);
      },
      (error: unknown) => {
        gate.end();
        metrics.inc("dstm_dropped_total", { reason: "internal-error" });
        log.error("internal-error", { detail: (error as Error).message, from });
      },
    );
  });
  return udp;
}

/** DHCPv4-over-DHCPv6 settings of the listener (ServerConfig["dhcp4o6"]). */
export interface Dhcp4o6Listen {
  readonly address: string;
  readonly port: number;
  readonly interfaces: readonly string[];
  readonly serverId: number;
  readonly allow?: readonly string[];
  readonly relays?: readonly string[];
}

/**
 * Listens for DHCPv4-over-DHCPv6 on `c.address`:`c.port`, joins ff02::1:2 on each of
 * `c.interfaces` (throws UdpBindError "EJOIN" when one cannot), and logs where it listens;
 * warns (`dhcp4o6-no-multicast`) when it joins no interface and no relays are named. `open`
 * makes the endpoint (default a UDP socket).
 */
export async function listenDhcp4o6(
  c: Dhcp4o6Listen,
  handler: Dhcp4o6Handler,
  gate: AnswerGate,
  log: Logger,
  open: ListenUdp = listenUdp,
): Promise<UdpEndpoint> {
  let endpoint: UdpEndpoint | undefined;
  endpoint = await open(c.address, c.port, (data, address, port, local) => {
    if (!gate.begin()) return;
    handler.handle(data, address).then(
      (answer) => {
        gate.end();
        if (answer) endpoint?.queue(answer, address, port, local);
      },
      (error: unknown) => {
        gate.end();
        log.error("internal-error", {
          protocol: "dhcp4o6",
          detail: (error as Error).message,
        });
      },
    );
  });
  for (const ifname of c.interfaces) {
    if (!endpoint.joinGroup("ff02::1:2", ifname)) {
      endpoint.close();
      throw new UdpBindError(
        `cannot join ff02::1:2 on ${ifname}: is it an interface with IPv6?`,
        "EJOIN",
      );
    }
  }
  if (c.interfaces.length === 0 && c.relays === undefined) {
    // RFC 8415 §7.1 / RFC 7341 §5: a client on a link sends to ff02::1:2 from its link-local
    // address; joined nowhere, only relays and unicast clients reach this server (Kea warns
    // the same way). A server told its relays (--dhcp4o6-relay) is relay-only by design.
    log.warn("dhcp4o6-no-multicast", {
      detail:
        "ff02::1:2 joined on no interface: DHCPv4-over-DHCPv6 clients on this server's links get no answer (only relays and unicast clients reach it); name each link with --dhcp4o6-interface IFNAME (TOML dhcp4o6-interface), or say the relays with --dhcp4o6-relay",
    });
  }
  log.info("dhcp4o6", {
    listen: `[${endpoint.address}]:${endpoint.port}`,
    multicast: c.interfaces.length ? c.interfaces.join(",") : undefined,
    "server-id": formatIPv4(c.serverId),
    // RFC 7341 has no authentication: who may lease over it is the allow list.
    allow: c.allow?.join(",") ?? "any",
    relays: c.relays?.join(",") ?? (c.allow ? "any allowed" : "any"),
  });
  return endpoint;
}
