/**
 * Extending a DHCPv4-over-DHCPv6 lease (RFC 7341 over RFC 2131 §4.4.5), for
 * ./dhcp4o6_client.ts: before T2 a *renewing* REQUEST (`ciaddr`, the U flag of RFC 7341 §6)
 * unicast to the server, from T2 a *rebinding* REQUEST (U clear) to the option-88 servers or
 * `ff02::1:2`, each retransmitted after half the time left in its state (at least 60 s, never
 * past its end: ./dhcp4_timers.ts), until an ACK or NAK comes or the lease ends.
 *
 * @module
 */
import { DHCP4O6_FLAG_UNICAST, Dhcp6MessageType, encodeDhcp4o6 } from "../wire/dhcp4o6.ts";
import { dhcp4NextTransmission, dhcp4StateAt } from "./dhcp4_timers.ts";
import {
  type Dhcp4o6Sender,
  isAckOrNak,
  matchResponse,
  type Dhcp4o6Reply as Reply,
  randomXid,
  renewalRequest,
} from "./dhcp4o6_messages.ts";
import type { Dhcp4o6Binding } from "./dhcp4o6_options.ts";
import type { Dhcp4o6Transport } from "./dhcp4o6_transport.ts";

/** What a renewal needs of its client. */
export interface RenewalContext {
  readonly io: Dhcp4o6Transport;
  /** The chaddr and client id every message carries. */
  readonly me: Dhcp4o6Sender;
  readonly now: () => number;
  /** The server's unicast address for renewing (RFC 7341 §6). */
  readonly unicastTo: string;
  /** Where a rebinding REQUEST goes. */
  readonly rebindTo: () => string[];
}

/**
 * Renews, then rebinds, the lease `binding` on `ipv4`: the ACK or NAK that came, with what it
 * answered ("renewing REQUEST" or "rebinding REQUEST"); undefined when the lease ended (or the
 * transport closed) unanswered.
 */
export async function renewOrRebind(
  c: RenewalContext,
  binding: Dhcp4o6Binding,
  ipv4: number,
): Promise<{ reply: Reply; what: string } | undefined> {
  const started = c.now();
  const xid = randomXid();
  for (let attempt = 0; ; attempt++) {
    const now = c.now();
    const state = dhcp4StateAt(binding, now);
    if (state === "EXPIRED" || c.io.closed) return undefined;
    const renewing = state !== "REBINDING";
    const payload = encodeDhcp4o6({
      type: Dhcp6MessageType.DHCPV4_QUERY,
      flags: renewing ? DHCP4O6_FLAG_UNICAST : 0,
      dhcp4: renewalRequest(c.me, xid, c.now() - started, ipv4),
    });
    const to = renewing ? [c.unicastTo] : c.rebindTo();
    const what = renewing ? "renewing REQUEST" : "rebinding REQUEST";
    if (attempt > 0) c.io.noAnswer(to.join(","), what, attempt + 1);
    let reply: Reply | undefined;
    const accept = (data: Uint8Array, from: string) => {
      const m = matchResponse(data, xid, c.me.chaddr, isAckOrNak);
      if (m) reply = { dhcp4: m, from };
      return m !== null;
    };
    await c.io.sendAndWait(payload, to, accept, dhcp4NextTransmission(binding, now));
    if (reply) return { reply, what };
  }
}
