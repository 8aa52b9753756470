/**
 * Several DSTM servers sharing one lease database (docs/scale-out.md): a {@link LeaseClient}
 * that talks to one of them and, when it stays silent (every retransmission of one exchange
 * unanswered, with the transport's doubling timeouts), sends the same exchange to the next.
 * Any server can answer any host: they share the leases, so a REQUEST renews through
 * whichever one answers and a DISCOVER gets the host's address back (sticky).
 *
 * A server that answers, even with a refusal (NAK, e.g. POOL_EXHAUSTED), is alive: it becomes
 * the one the next exchange goes to first, so a dead server earlier in the list is not waited
 * on again every time. A refusal is an answer and is not failed over. With more than one
 * server, an ICMPv6 destination unreachable from a server (RFC 4443 §3.1: nothing listens
 * there) ends its exchange at once: it is down, and the next one is tried without waiting
 * out the retransmissions. When every server stayed silent the exchange rejects with the
 * last {@link DstmTimeoutError}, and the caller's own backoff applies (lib/client/node.ts
 * waits 1 s, 2 s, … up to 30 s between rounds). A REQUEST's `withinMs` bounds the whole
 * exchange, over every server (the lease's expiry: RFC 2131 §4.4.5).
 *
 * @module
 */

import type { AuthKey } from "../wire/auth.ts";
import { messageTypeName } from "../wire/dstm.ts";
import {
  type ClientLease,
  DstmClient,
  DstmRefusedError,
  DstmTimeoutError,
  DstmTransport,
  type LeaseClient,
  type RetryPolicy,
  type TransportOptions,
} from "./protocol.ts";
import { UnreachableReasons } from "./unreachable_reason.ts";

export interface FailoverOptions {
  /** The servers (IPv6 address and UDP port), in order of preference. */
  readonly servers: readonly { readonly address: string; readonly port: number }[];
  /** The host's IPv6 address: the tunnel source, and the source of the queries. */
  readonly host6: string;
  readonly key?: AuthKey;
  readonly retry?: Partial<RetryPolicy>;
  /** Told when a server stays silent and the next one is tried (servers as `[address]:port`). */
  readonly onFailover?: (from: string, to: string) => void;
  /** Told before each retransmission to a server. */
  readonly onRetransmit?: (server: string, attempt: number, message: string) => void;
  /** Told of each message sent and each answer accepted (lib/client/protocol.ts). */
  readonly onMessage?: TransportOptions["onMessage"];
  /**
   * Told of an ICMPv6 destination unreachable for a message (`type`) sent to `server`,
   * `detail` its code in words (./unreachable_reason.ts, opened here when it can be).
   */
  readonly onUnreachable?: (server: string, type: number, detail: string) => void;
}

/** A lease client over several servers; see the module doc. Throws RangeError on no server. */
export async function failoverLeaseClient(opts: FailoverOptions): Promise<LeaseClient> {
  if (opts.servers.length === 0) throw new RangeError("no DSTM server given");
  const clients: { server: string; client: DstmClient; transport: DstmTransport }[] = [];
  // One raw ICMPv6 listener for every server's transport (none without CAP_NET_RAW).
  const reasons = UnreachableReasons.open();
  try {
    for (const { address, port } of opts.servers) {
      const server = `[${address}]:${port}`;
      const transport = await DstmTransport.open({
        server: address,
        port,
        key: opts.key,
        bind: opts.host6,
        retry: opts.retry,
        onRetransmit: (attempt, type) =>
          opts.onRetransmit?.(server, attempt, messageTypeName(type)),
        onMessage: opts.onMessage,
        onUnreachable: (type, detail) => opts.onUnreachable?.(server, type, detail),
        explainUnreachable: reasons,
        unreachableEnds: opts.servers.length > 1,
      });
      clients.push({ server, transport, client: new DstmClient(transport, opts.host6) });
    }
  } catch (error) {
    for (const c of clients) c.transport.close();
    reasons?.close();
    throw error;
  }
  let current = 0;
  /** `call` (given the ms left of `withinMs`, if any) to each server in turn from the current one. */
  const exchange = async <T>(
    call: (client: DstmClient, withinMs: number | undefined) => Promise<T>,
    withinMs?: number,
  ): Promise<T> => {
    const endAt = withinMs === undefined ? undefined : performance.now() + withinMs;
    let last: unknown;
    for (let tried = 0; tried < clients.length; tried++) {
      const left = endAt === undefined ? undefined : endAt - performance.now();
      // Under 1 ms left (timers fire a little early) is no time for another server.
      if (left !== undefined && left < 1 && last !== undefined) break;
      const index = (current + tried) % clients.length;
      const { server, client } = clients[index] as (typeof clients)[number];
      try {
        const result = await call(client, left);
        current = index; // stay with the server that answers
        return result;
      } catch (error) {
        if (!(error instanceof DstmTimeoutError)) {
          // A refusal is an answer: that server is alive, the next exchange starts there.
          if (error instanceof DstmRefusedError) current = index;
          throw error;
        }
        last = error;
        const next = clients[(index + 1) % clients.length]?.server as string;
        const timeLeft = endAt === undefined || endAt - performance.now() >= 1;
        if (tried + 1 < clients.length && timeLeft) opts.onFailover?.(server, next);
      }
    }
    throw last;
  };
  return {
    host6: opts.host6,
    discover: (): Promise<ClientLease> => exchange((c) => c.discover()),
    request: (ipv4, options): Promise<ClientLease> =>
      exchange((c, withinMs) => c.request(ipv4, { withinMs }), options?.withinMs),
    release: (ipv4, options): Promise<void> => exchange((c) => c.release(ipv4, options)),
    close: () => {
      for (const c of clients) c.transport.close();
      reasons?.close();
    },
    rotateKey: (key, overlapMs) => {
      for (const c of clients) c.transport.rotateKey(key, overlapMs);
    },
  };
}
