/**
 * The DHCPv4-over-DHCPv6 client's socket side: sending to the 4o6 servers, matching what comes
 * back to the exchange waiting for it, and the two ways of waiting (split from
 * ./dhcp4o6_client.ts, which decides what to send):
 *
 * - {@link Dhcp4o6Transport.transact}: RFC 2131 §4.1 retransmission for DISCOVER, the
 *   selecting REQUEST and INFORMATION-REQUEST: timeouts doubling from `initialMs` up to
 *   `maxMs`, each ± 1 s (less for short test timeouts), `tries` in all, then
 *   {@link DstmTimeoutError}.
 * - {@link Dhcp4o6Transport.sendAndWait}: one transmission and a wait until a given time, for
 *   the RFC 2131 §4.4.5 renewing / rebinding schedule the client computes (./dhcp4_timers.ts).
 * - {@link askServers}: the INFORMATION-REQUEST for option 88 (RFC 7341 §5).
 *
 * With `--log-level debug`, every datagram sent or received is a `message-sent` /
 * `message-received` line (lib/control/dhcp4o6_message_log.ts; received: `result=answer`, or
 * `ignored` when no exchange waits for it).
 *
 * @module
 */
import { logDhcp4o6Message } from "../control/dhcp4o6_message_log.ts";
import type { Logger } from "../control/log.ts";
import type { UdpEndpoint } from "../sys/udp.ts";
import {
  ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
  Dhcp6MessageType,
  Dhcp6OptionCode,
  decodeDhcp6,
  encodeDhcp6,
  peekDhcp6MessageType,
} from "../wire/dhcp4o6.ts";
import { Quiet } from "./exchange_warnings.ts";
import { DstmTimeoutError, type RetryPolicy } from "./protocol.ts";

/** Takes a datagram (true: it was the answer awaited). */
type Accept = (payload: Uint8Array, from: string) => boolean;

/**
 * Said with the first retransmission: a dstm server answers DHCPv4-QUERY only with
 * `--dhcp4o6` and, with `--dhcp4o6-allow`, only to the prefixes listed there (it counts and
 * logs the others but sends nothing, RFC 7341 has no refusal for them).
 */
export const NO_ANSWER_HINT =
  "no DHCPV4-RESPONSE yet: is the server running with --dhcp4o6 (UDP 547), and does its --dhcp4o6-allow include this host's address?";

/**
 * The same for the INFORMATION-REQUEST that asks ff02::1:2 for the 4o6 servers (RFC 7341 §5):
 * nothing on the link answered DHCPv6 (a dstm server joins ff02::1:2 only on its
 * `--dhcp4o6-interface`s; elsewhere a relay must carry it).
 */
export const NO_REPLY_HINT =
  "no REPLY yet: is a 4o6 server on this link (dstm server --dhcp4o6 --dhcp4o6-interface IFNAME, or Kea) or a DHCPv6 relay towards one, and is the interface in --server ff02::1:2%IF the one on that link?";

export interface Dhcp4o6TransportOptions {
  readonly endpoint: UdpEndpoint;
  /** UDP port of the servers: datagrams from another port are ignored. */
  readonly serverPort: number;
  readonly retry: RetryPolicy;
  /** The client's clock (ms). */
  readonly now: () => number;
  readonly log?: Logger;
  /** Sees every datagram sent (payload, destination): for tests. */
  readonly onSend?: (payload: Uint8Array, address: string) => void;
}

export class Dhcp4o6Transport {
  readonly #o: Dhcp4o6TransportOptions;
  readonly #pending = new Set<Accept>();
  readonly #closers = new Set<() => void>();
  #closed = false;
  /** Datagrams that matched nothing (wrong port, undecodable, unknown xid, other client). */
  ignored = 0;
  retransmissions = 0;
  /** `no-answer`: at warn once, then at debug until a server answers (./exchange_warnings.ts). */
  readonly #noAnswer = new Quiet();

  constructor(options: Dhcp4o6TransportOptions) {
    this.#o = options;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the socket; pending waits end at once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const close of this.#closers) close();
    this.#o.endpoint.close();
  }

  /** One datagram from the socket: to the first waiting exchange that takes it. */
  onDatagram(data: Uint8Array, address: string, port: number): void {
    if (port !== this.#o.serverPort) {
      this.ignored++;
      return;
    }
    let taken = false;
    for (const accept of this.#pending) {
      taken = accept(data, address);
      if (taken) break;
    }
    logDhcp4o6Message(this.#o.log, "received", data, address, {
      result: taken ? "answer" : "ignored",
    });
    if (taken) this.#noAnswer.reset();
    else this.ignored++;
  }

  /**
   * Says that try `attempt` (2, 3, …) of `message` goes to `server` because the earlier ones
   * had no answer: at warn the first time (with `detail`), then at debug until a server
   * answers or ten minutes have passed, so a silent server is not a warning per
   * retransmission. Counts the retransmission.
   */
  noAnswer(server: string, message: string, attempt: number, detail?: string): void {
    this.retransmissions++;
    const { log, now } = this.#o;
    if (!log) return;
    const fields = { server, message, attempt, ...(detail ? { detail } : {}) };
    this.#noAnswer.say(log, "no-answer", fields, now());
  }

  /** Sends one datagram to `address`; false (and a warn line) when the kernel refused it. */
  send(payload: Uint8Array, address: string): boolean {
    const { endpoint, serverPort, onSend, log } = this.#o;
    onSend?.(payload, address);
    logDhcp4o6Message(log, "sent", payload, address);
    const ok = endpoint.send(payload, address, serverPort);
    if (!ok) log?.warn("send-failed", { to: address, port: serverPort });
    return ok;
  }

  /**
   * Sends `payload` to every address of `to` once, then waits until `until` (ms on the
   * client's clock) for a datagram `accept` takes. True when one came.
   */
  async sendAndWait(
    payload: Uint8Array,
    to: readonly string[],
    accept: Accept,
    until: number,
  ): Promise<boolean> {
    if (this.#closed) return false;
    let done!: (ok: boolean) => void;
    const answered = new Promise<boolean>((resolve) => {
      done = resolve;
    });
    const pending: Accept = (data, from) => {
      if (!accept(data, from)) return false;
      done(true);
      return true;
    };
    const closer = () => done(false);
    this.#pending.add(pending);
    this.#closers.add(closer);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      for (const address of to) this.send(payload, address);
      return await Promise.race([
        answered,
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), Math.max(0, until - this.#o.now()));
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.#pending.delete(pending);
      this.#closers.delete(closer);
    }
  }

  /**
   * Sends `build()` to every address of `to` until `accept` takes a reply, retransmitting as
   * RFC 2131 §4.1. Rejects with {@link DstmTimeoutError} after the last try, or when closed.
   */
  async transact(
    what: string | (() => string),
    to: readonly string[],
    build: () => Uint8Array,
    accept: Accept,
    hint: string = NO_ANSWER_HINT,
  ): Promise<void> {
    if (this.#closed) throw new DstmTimeoutError("the DHCPv4-over-DHCPv6 client is closed");
    const { retry, serverPort } = this.#o;
    const name = () => (typeof what === "string" ? what : what());
    let timeout = retry.initialMs;
    for (let attempt = 0; attempt < retry.tries && !this.#closed; attempt++) {
      const payload = build();
      // The first time: what a server that stays silent to DHCPv4-QUERY usually lacks.
      if (attempt > 0) this.noAnswer(to.join(","), name(), attempt + 1, hint);
      // RFC 2131 §4.1: each timeout randomised by ± 1 s (less for the short test timeouts).
      const spread = Math.min(1000, timeout / 4);
      const wait = timeout + (Math.random() * 2 - 1) * spread;
      if (await this.sendAndWait(payload, to, accept, this.#o.now() + wait)) return;
      timeout = Math.min(timeout * 2, retry.maxMs);
    }
    if (this.#closed) throw new DstmTimeoutError("the DHCPv4-over-DHCPv6 client was closed");
    const where = to.map((a) => `[${a}]:${serverPort}`).join(", ");
    throw new DstmTimeoutError(
      `no DHCPv4-over-DHCPv6 answer to ${name()} from ${where} after ${retry.tries} tries; is the 4o6 server running and reachable (for Kea: kea-dhcp6 and kea-dhcp4 linked by "dhcp4o6-port")?`,
    );
  }
}

/**
 * RFC 7341 §5: asks `ff02::1:2` on `ifname` for the 4o6 servers, an INFORMATION-REQUEST whose
 * ORO lists option 88 (client id DUID-LL of `chaddr`), retransmitted as `io`'s policy says.
 * Resolves with option 88's addresses (empty: use ff02::1:2), or null when the REPLY has no
 * option 88 (no 4o6 service on the link); rejects with DstmTimeoutError when nothing answers.
 */
export async function askServers(
  io: Dhcp4o6Transport,
  chaddr: Uint8Array,
  now: () => number,
  ifname: string,
): Promise<string[] | null> {
  const xid = (Math.random() * 0x1000000) >>> 0;
  const duid = Uint8Array.of(0, 3, 0, 1, ...chaddr); // DUID-LL, Ethernet
  const started = now();
  let servers: string[] | null = null;
  await io.transact(
    "INFORMATION-REQUEST",
    [`${ALL_DHCP_RELAY_AGENTS_AND_SERVERS}%${ifname}`],
    () =>
      encodeDhcp6({
        type: Dhcp6MessageType.INFORMATION_REQUEST,
        xid,
        clientId: duid,
        oro: [Dhcp6OptionCode.DHCP4_O_DHCP6_SERVER],
        elapsedTime: Math.min(0xffff, Math.round((now() - started) / 10)),
      }),
    (payload) => {
      if (peekDhcp6MessageType(payload) !== Dhcp6MessageType.REPLY) return false;
      const r = decodeDhcp6(payload);
      if (!r.ok || r.value.xid !== xid) return false;
      servers = r.value.dhcp4o6Servers ? [...r.value.dhcp4o6Servers] : null;
      return true;
    },
    NO_REPLY_HINT,
  );
  return servers;
}
