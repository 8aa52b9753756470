/**
 * Several DSTM servers sharing one lease database (docs/scale-out.md): a {@link LeaseClient}
 * that talks to one of them and, when it stays silent (every retransmission of one exchange
 * unanswered, with the transport's doubling timeouts), sends the same exchange to the next.
 * Any server can answer any host: they share the leases, so a REQUEST renews through
 * whichever one answers and a DISCOVER gets the host's address back (sticky).
 *
 * A refusal (NAK) is an answer and is not failed over. When every server stayed silent the
 * exchange rejects with the last {@link DstmTimeoutError}, and the caller's own backoff
 * applies (lib/client/node.ts waits 1 s, 2 s, … up to 30 s between rounds).
 *
 * @module
 */

import type { AuthKey } from "../wire/auth.ts";
import { messageTypeName } from "../wire/dstm.ts";
import {
  type ClientLease,
  DstmClient,
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
      });
      clients.push({ server, transport, client: new DstmClient(transport, opts.host6) });
    }
  } catch (error) {
    for (const c of clients) c.transport.close();
    reasons?.close();
    throw error;
  }
  let current = 0;
  const exchange = async <T>(call: (client: DstmClient) => Promise<T>): Promise<T> => {
    let last: unknown;
    for (let tried = 0; tried < clients.length; tried++) {
      const index = (current + tried) % clients.length;
      const { server, client } = clients[index] as (typeof clients)[number];
      try {
        const result = await call(client);
        current = index; // stay with the server that answers
        return result;
      } catch (error) {
        if (!(error instanceof DstmTimeoutError)) throw error;
        last = error;
        const next = clients[(index + 1) % clients.length]?.server as string;
        if (tried + 1 < clients.length) opts.onFailover?.(server, next);
      }
    }
    throw last;
  };
  return {
    host6: opts.host6,
    discover: (): Promise<ClientLease> => exchange((c) => c.discover()),
    request: (ipv4): Promise<ClientLease> => exchange((c) => c.request(ipv4)),
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
