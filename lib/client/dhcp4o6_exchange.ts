/**
 * One DHCPv4 exchange of the DHCPv4-over-DHCPv6 client (./dhcp4o6_client.ts): a DHCPv4
 * message carried in DHCPV4-QUERY (RFC 7341 §6), retransmitted by ./dhcp4o6_transport.ts,
 * until a DHCPV4-RESPONSE arrives whose DHCPv4 message has our xid and chaddr (RFC 2131 §4.1)
 * and passes the caller's check.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { formatIPv4 } from "../net/addr.ts";
import { type Dhcp4Message, dhcp4MessageTypeName } from "../wire/dhcp4.ts";
import { Dhcp6MessageType, encodeDhcp4o6 } from "../wire/dhcp4o6.ts";
import { type Dhcp4o6Reply, matchResponse, randomXid } from "./dhcp4o6_messages.ts";
import type { Dhcp4o6Transport } from "./dhcp4o6_transport.ts";

/** Who asks: the socket, the client's chaddr (16 bytes) and where to log replies (debug). */
export interface Dhcp4o6Asker {
  readonly io: Dhcp4o6Transport;
  readonly chaddr: Uint8Array;
  readonly log?: Logger;
}

/**
 * Sends the DHCPv4 message `build(xid)` (a fresh `xid` unless given) in DHCPV4-QUERYs with
 * `flags` to `to`, retransmitting, until a DHCPV4-RESPONSE with that xid and our chaddr passes
 * `accept`; resolves to it and the server it came from. Rejects with DstmTimeoutError when
 * the tries run out or the socket closes (./dhcp4o6_transport.ts).
 */
export async function exchangeDhcp4(
  asker: Dhcp4o6Asker,
  build: (xid: number) => Dhcp4Message,
  flags: number,
  to: readonly string[],
  accept: (reply: Dhcp4Message) => boolean,
  xid = randomXid(),
): Promise<Dhcp4o6Reply> {
  let first: Dhcp4Message | undefined;
  let reply: Dhcp4o6Reply | undefined;
  const what = () => dhcp4MessageTypeName(first?.options.messageType ?? 0);
  await asker.io.transact(
    () => what(),
    to,
    () => {
      const dhcp4 = build(xid);
      first ??= dhcp4;
      return encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags, dhcp4 });
    },
    (payload, from) => {
      const m = matchResponse(payload, xid, asker.chaddr, accept);
      if (!m) return false;
      asker.log?.debug("dhcp4o6-reply", {
        message: dhcp4MessageTypeName(m.options.messageType),
        from,
        yiaddr: m.yiaddr ? formatIPv4(m.yiaddr) : undefined,
      });
      reply = { dhcp4: m, from };
      return true;
    },
  );
  return reply!;
}
