/**
 * The allocation protocol a DSTM client service leases with: the one the configuration names
 * (`NodeConfig.leaseClient`, e.g. DHCPv4-over-DHCPv6 in ./dhcp4o6_client.ts) or, by default,
 * the native DSTM protocol (DSTM_DISCOVER / DSTM_REQUEST / DSTM_RELEASE on UDP 4607,
 * docs/protocol.md) from the host's IPv6 address. Each message is logged at debug, and a
 * retransmission or an ICMPv6 destination unreachable at warn at once (then at debug until
 * the server answers: ./exchange_warnings.ts), so a silent or absent server is visible. Rejects when the UDP socket
 * cannot be bound to `host6`.
 *
 * @module
 */
import { logMessage } from "../control/message_log.ts";
import { ExchangeWarnings } from "./exchange_warnings.ts";
import type { NodeConfig } from "./node_config.ts";
import { DstmClient, DstmTransport, type LeaseClient } from "./protocol.ts";
import { UnreachableReasons } from "./unreachable_reason.ts";

/** The configured allocation protocol's client for `host6`. */
export function leaseClientFor(
  config: NodeConfig,
  port: number,
  host6: string,
  warnings: ExchangeWarnings = new ExchangeWarnings(config.log, config.server),
): Promise<LeaseClient> {
  return config.leaseClient
    ? config.leaseClient(host6, warnings)
    : nativeLeaseClient(config, port, host6, warnings);
}

/** The native DSTM protocol as a LeaseClient, telling the user at once when the server is silent. */
async function nativeLeaseClient(
  config: NodeConfig,
  port: number,
  host6: string,
  warnings: ExchangeWarnings,
): Promise<LeaseClient> {
  // The ICMPv6 code of an unreachable, in words (none without CAP_NET_RAW).
  const reasons = UnreachableReasons.open();
  const transport = await DstmTransport.open({
    server: config.server,
    port,
    key: config.key,
    bind: host6,
    explainUnreachable: reasons,
    onMessage: (direction, message, peer) => {
      if (direction === "received") warnings.answered();
      logMessage(config.log, direction, message, peer);
    },
    onRetransmit: (attempt, type) => warnings.retransmit(attempt, type),
    onUnreachable: (type, detail) => warnings.unreachable(type, undefined, detail),
  }).catch((error: unknown) => {
    reasons?.close();
    throw error;
  });
  const client = new DstmClient(transport, host6);
  return {
    host6,
    discover: () => client.discover(),
    request: (ipv4, options) => client.request(ipv4, options),
    release: (ipv4, options) => client.release(ipv4, options),
    close: () => {
      transport.close();
      reasons?.close();
    },
    rotateKey: (key, overlapMs) => void transport.rotateKey(key, overlapMs),
  };
}
