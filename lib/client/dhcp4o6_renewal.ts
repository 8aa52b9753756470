/**
 * Extending a DHCPv4-over-DHCPv6 lease (RFC 7341 over RFC 2131 §4.4.5), for
 * ./dhcp4o6_client.ts: before T2 a *renewing* REQUEST (`ciaddr`, the U flag of RFC 7341 §6)
 * unicast to the server, from T2 a *rebinding* REQUEST (U clear) to the option-88 servers or
 * `ff02::1:2`, each retransmitted after half the time left in its state (at least 60 s, never
 * past its end: ./dhcp4_timers.ts), until an ACK or NAK comes or the lease ends. Each state
 * has its own xid, and the new lease counts from the first REQUEST of the one answered.
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

/** One state's transaction: its xid, what it sends, and when its first REQUEST went (ms). */
interface Transaction {
  readonly xid: number;
  readonly what: string;
  readonly sent: number;
}

/**
 * Renews, then rebinds, the lease `binding` on `ipv4`: the ACK or NAK that came, with what it
 * answered ("renewing REQUEST" or "rebinding REQUEST") and when the first REQUEST of that
 * transaction was sent (`sent`, ms: the new lease counts from then, RFC 2131 §4.4.5: "the sum
 * of the time at which the client sent the DHCPREQUEST message and the duration of the lease";
 * an ACK to a retransmission counts from the first try); undefined when the lease ended (or
 * the transport closed) unanswered.
 *
 * RENEWING and REBINDING each have their own xid, so that an ACK says which REQUEST it
 * answers: with one xid for both, an ACK to the rebinding REQUEST sent at T2 could only be
 * counted from the renewing one sent at T1, T2 − T1 too early (the new lease's T1 could then
 * already be past when it came). In REBINDING a late ACK to the renewing REQUEST is still
 * taken, counted from that REQUEST.
 */
export async function renewOrRebind(
  c: RenewalContext,
  binding: Dhcp4o6Binding,
  ipv4: number,
): Promise<{ reply: Reply; what: string; sent: number } | undefined> {
  const started = c.now();
  const transactions: Transaction[] = [];
  for (let attempt = 0; ; attempt++) {
    const now = c.now();
    const state = dhcp4StateAt(binding, now);
    if (state === "EXPIRED" || c.io.closed) return undefined;
    const renewing = state !== "REBINDING";
    const what = renewing ? "renewing REQUEST" : "rebinding REQUEST";
    let current = transactions.at(-1);
    if (current?.what !== what) {
      current = { xid: randomXid(), what, sent: now };
      transactions.push(current);
    }
    const payload = encodeDhcp4o6({
      type: Dhcp6MessageType.DHCPV4_QUERY,
      flags: renewing ? DHCP4O6_FLAG_UNICAST : 0,
      // secs: since the renewal began (RFC 2131 §2, table 1), not since this state's xid.
      dhcp4: renewalRequest(c.me, current.xid, c.now() - started, ipv4),
    });
    const to = renewing ? [c.unicastTo] : c.rebindTo();
    if (attempt > 0) c.io.noAnswer(to.join(","), what, attempt + 1);
    let answer: { reply: Reply; what: string; sent: number } | undefined;
    const accept = (data: Uint8Array, from: string) => {
      for (const t of transactions) {
        const m = matchResponse(data, t.xid, c.me.chaddr, isAckOrNak);
        if (m) {
          answer = { reply: { dhcp4: m, from }, what: t.what, sent: t.sent };
          return true;
        }
      }
      return false;
    };
    await c.io.sendAndWait(payload, to, accept, dhcp4NextTransmission(binding, now));
    if (answer) return answer;
  }
}
