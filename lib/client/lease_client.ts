/**
 * The allocation protocol a DSTM client service leases with: the one the configuration names
 * (`NodeConfig.leaseClient`, e.g. DHCPv4-over-DHCPv6 in ./dhcp4o6_client.ts) or, by default,
 * the native DSTM protocol (DSTM_DISCOVER / DSTM_REQUEST / DSTM_RELEASE on UDP 4607,
 * docs/protocol.md) from the host's IPv6 address. Each message is logged at debug, and a
 * retransmission at warn at once, so a silent server is visible. Rejects when the UDP socket
 * cannot be bound to `host6`.
 *
 * @module
 */
import { logMessage } from "../control/message_log.ts";
import { messageTypeName } from "../wire/dstm.ts";
import type { NodeConfig } from "./node_config.ts";
import { DstmClient, DstmTransport, type LeaseClient } from "./protocol.ts";

/** The configured allocation protocol's client for `host6`. */
export function leaseClientFor(
  config: NodeConfig,
  port: number,
  host6: string,
): Promise<LeaseClient> {
  return config.leaseClient ? config.leaseClient(host6) : nativeLeaseClient(config, port, host6);
}

/** The native DSTM protocol as a LeaseClient, telling the user at once when the server is silent. */
async function nativeLeaseClient(
  config: NodeConfig,
  port: number,
  host6: string,
): Promise<LeaseClient> {
  const transport = await DstmTransport.open({
    server: config.server,
    port,
    key: config.key,
    bind: host6,
    onMessage: (direction, message, peer) => logMessage(config.log, direction, message, peer),
    onRetransmit: (attempt, type) =>
      config.log.warn("no-answer", {
        server: config.server,
        message: messageTypeName(type),
        attempt,
      }),
  });
  const client = new DstmClient(transport, host6);
  return {
    host6,
    discover: () => client.discover(),
    request: (ipv4) => client.request(ipv4),
    release: (ipv4) => client.release(ipv4),
    close: () => transport.close(),
    rotateKey: (key, overlapMs) => void transport.rotateKey(key, overlapMs),
  };
}
