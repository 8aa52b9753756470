/**
 * The DHCPv4-over-DHCPv6 client (RFC 7341) as a {@link LeaseClient}: DISCOVER → OFFER →
 * REQUEST → ACK in DHCPV4-QUERY / DHCPV4-RESPONSE messages over UDP/IPv6 (port 546 to 547),
 * renewing and rebinding by the RFC 2131 §4.4.5 state machine, RELEASE, and the option-88
 * server discovery of RFC 7341 §5. This file holds the exchanges and the binding; the DHCPv4
 * messages are built and matched in ./dhcp4o6_messages.ts, one query and its response in
 * ./dhcp4o6_exchange.ts, retransmission (RFC 2131 §4.1)
 * and the socket are ./dhcp4o6_transport.ts, renewing and rebinding ./dhcp4o6_renewal.ts,
 * the option-88 step ./dhcp4o6_servers.ts, where to send ./dhcp4o6_target.ts, the settings
 * ./dhcp4o6_options.ts (re-exported here).
 *
 * @module
 */
import { canonicalIPv6, formatIPv4 } from "../net/addr.ts";
import { linkLocalOf } from "../sys/ifinfo.ts";
import { bindUdp, UdpBindError, type UdpEndpoint } from "../sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType } from "../wire/dhcp4.ts";
import {
  ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
  DHCP4O6_FLAG_UNICAST,
  DHCP6_CLIENT_PORT,
  DHCP6_SERVER_PORT,
  Dhcp6MessageType,
  encodeDhcp4o6,
} from "../wire/dhcp4o6.ts";
import { Status } from "../wire/dstm_types.ts";
import { exchangeDhcp4 } from "./dhcp4o6_exchange.ts";
import {
  type Dhcp4o6Sender,
  discoverMessage,
  isAckOrNak,
  leaseOfAck,
  type Dhcp4o6Reply as Reply,
  randomXid,
  releaseMessage,
  renewalRequest,
  selectingRequest,
} from "./dhcp4o6_messages.ts";
import {
  DHCP4O6_DEFAULT_RETRY,
  type Dhcp4o6Binding,
  type Dhcp4o6ClientOptions,
} from "./dhcp4o6_options.ts";
import { renewOrRebind } from "./dhcp4o6_renewal.ts";
import { learnServers } from "./dhcp4o6_servers.ts";
import {
  type Dhcp4o6Target,
  defaultChaddr,
  discoverDestinations,
  parseServer,
  rebindDestinations,
  renewDestination,
} from "./dhcp4o6_target.ts";
import { askServers, Dhcp4o6Transport } from "./dhcp4o6_transport.ts";
import {
  type ClientLease,
  DstmRefusedError,
  DstmTimeoutError,
  type LeaseClient,
} from "./protocol.ts";

export {
  DHCP4O6_DEFAULT_RETRY,
  DHCP4O6_MAX_REPORTED_LEASE,
  DHCP4O6_PARAMETER_REQUEST_LIST,
  type Dhcp4o6Binding,
  type Dhcp4o6ClientOptions,
} from "./dhcp4o6_options.ts";

const MULTICAST = ALL_DHCP_RELAY_AGENTS_AND_SERVERS;

/**
 * One host's DHCPv4-over-DHCPv6 client on `[bind ?? host6]:546` (see the module comment). It
 * holds at most one binding (the lease's server id, responder, T1 and T2); `discover`,
 * `request` and `release` reject with {@link DstmRefusedError} (NAK, no 4o6 on the link) or
 * {@link DstmTimeoutError} (no answer after the RFC 2131 §4.1 retransmissions).
 *
 * @example
 * const client = await Dhcp4o6Client.open({ server: "ff02::1:2%eth0", host6, tep6 });
 * const lease = await client.discover(); // lease.ipv4, lease.renewAt (ms)
 */
export class Dhcp4o6Client implements LeaseClient {
  readonly #io: Dhcp4o6Transport;
  readonly #options: Dhcp4o6ClientOptions;
  readonly #now: () => number;
  readonly #serverPort: number;
  readonly #chaddr: Uint8Array;
  /** The chaddr and client id every message carries. */
  readonly #me: Dhcp4o6Sender;
  /** The server given by the user (null for `ff02::1:2`) and the interface. */
  readonly #target: Dhcp4o6Target;
  readonly #local: { address: string; port: number };
  #servers: readonly string[];
  #binding: Dhcp4o6Binding | undefined;
  /** The option-88 list was given or learnt (RFC 7341 §5): no INFORMATION-REQUEST needed. */
  #learnt: boolean;

  private constructor(endpoint: UdpEndpoint, options: Dhcp4o6ClientOptions, target: Dhcp4o6Target) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#serverPort = options.serverPort ?? DHCP6_SERVER_PORT;
    this.#io = new Dhcp4o6Transport({
      endpoint,
      serverPort: this.#serverPort,
      retry: { ...DHCP4O6_DEFAULT_RETRY, ...options.retry },
      now: this.#now,
      log: options.log,
      onSend: options.onSend,
    });
    this.#chaddr = options.chaddr ?? defaultChaddr(options.host6, target.ifname);
    this.#me = {
      chaddr: this.#chaddr,
      clientId: options.clientId ?? Uint8Array.of(1, ...this.#chaddr),
    };
    this.#target = target;
    this.#local = { address: endpoint.address, port: endpoint.port };
    this.#servers = options.servers ?? [];
    this.#learnt = options.servers !== undefined;
  }

  /**
   * Opens the client: binds `[bind ?? host6]:546`. Throws `RangeError` on a bad address or
   * a multicast server without a known interface, `UdpBindError` when the port cannot be had.
   */
  static async open(options: Dhcp4o6ClientOptions): Promise<Dhcp4o6Client> {
    const target = parseServer(options.server, options.ifname, options.host6);
    if (canonicalIPv6(options.host6) === null)
      throw new RangeError(`host6 "${options.host6}" is not an IPv6 address`);
    if (canonicalIPv6(options.tep6) === null)
      throw new RangeError(`tep6 "${options.tep6}" is not an IPv6 address`);
    if (options.chaddr && (options.chaddr.length < 1 || options.chaddr.length > 16))
      throw new RangeError("chaddr must have 1–16 bytes");
    const bind = options.bind ?? options.host6;
    const port = options.clientPort ?? DHCP6_CLIENT_PORT;
    let client: Dhcp4o6Client | undefined;
    let endpoint: UdpEndpoint;
    try {
      endpoint = await bindUdp(bind, port, (data, address, fromPort) =>
        client?.onDatagram(data, address, fromPort),
      );
    } catch (error) {
      if (error instanceof UdpBindError && error.code === "EADDRINUSE")
        throw new UdpBindError(
          `cannot listen on [${bind}]:${port}: the port is in use (a DHCPv6 client such as dhclient -6, or another dstm client?)`,
          error.code,
        );
      throw error;
    }
    client = new Dhcp4o6Client(endpoint, options, target);
    return client;
  }

  get host6(): string {
    return this.#options.host6;
  }

  /** The client hardware address in use. */
  get chaddr(): Uint8Array {
    return this.#chaddr;
  }

  /** Local address and port of the socket. */
  get local(): { address: string; port: number } {
    return this.#local;
  }

  /** Datagrams that matched nothing (wrong port, undecodable, unknown xid, other client). */
  get ignored(): number {
    return this.#io.ignored;
  }

  /** Transmissions after the first of each message. */
  get retransmissions(): number {
    return this.#io.retransmissions;
  }

  /** The current lease's protocol state (server id, responder, T1, T2), if any. */
  get binding(): Dhcp4o6Binding | undefined {
    return this.#binding;
  }

  /**
   * DISCOVER → OFFER → REQUEST → ACK. Without a server address (`ff02::1:2`) and no option-88
   * list given or learnt yet, first asks for one (RFC 7341 §5, {@link discoverServers}): a
   * REPLY without option 88 means no 4o6 service on the link, a {@link DstmRefusedError};
   * no REPLY at all (a 4o6 server that is not a DHCPv6 server) leaves ff02::1:2, with a warn.
   */
  async discover(): Promise<ClientLease> {
    if (this.#target.unicast === null && !this.#learnt) await this.#learnServers();
    const started = this.#now();
    const to = this.#discoverTo();
    const offer = await this.#exchange(
      (xid) => discoverMessage(this.#me, xid, this.#now() - started),
      0,
      to,
      (m) =>
        m.options.messageType === Dhcp4MessageType.OFFER &&
        m.yiaddr !== 0 &&
        m.options.serverId !== undefined,
    );
    const offered = offer.dhcp4.yiaddr;
    const serverId = offer.dhcp4.options.serverId!;
    // RFC 2131 table 5: the selecting REQUEST carries the OFFER's xid.
    const requested = this.#now();
    const ack = await this.#exchange(
      () => selectingRequest(this.#me, offer.dhcp4.xid, this.#now() - started, offered, serverId),
      0,
      to,
      (m) => isAckOrNak(m) && (m.options.serverId === undefined || m.options.serverId === serverId),
      offer.dhcp4.xid,
    );
    return this.#bound(ack, "REQUEST", requested);
  }

  /**
   * Extends the lease on `ipv4` by the RFC 2131 §4.4.5 state machine (./dhcp4o6_renewal.ts):
   * before T2 a *renewing* REQUEST (`ciaddr`, U flag) unicast to the server, from T2 a
   * *rebinding* REQUEST (U clear) to the option-88 servers or `ff02::1:2`, each retransmitted
   * after half the time left in its state (at least 60 s, never past its end). Resolves with
   * the ACK's lease; rejects with {@link DstmRefusedError} on a NAK, and with
   * {@link DstmTimeoutError} the moment the lease ends unanswered: stop using the address.
   * Without a binding for `ipv4` (a lease of an earlier run) one rebinding exchange is tried.
   */
  async request(ipv4: number): Promise<ClientLease> {
    const binding = this.#binding;
    if (binding === undefined || binding.ipv4 !== ipv4) {
      const requested = this.#now();
      const reply = await this.#exchange(
        (xid) => renewalRequest(this.#me, xid, 0, ipv4),
        0,
        this.#rebindTo(),
        isAckOrNak,
      );
      return this.#bound(reply, "rebinding REQUEST", requested);
    }
    const answer = await renewOrRebind(
      {
        io: this.#io,
        me: this.#me,
        now: this.#now,
        unicastTo: this.#unicastTo(binding),
        rebindTo: () => this.#rebindTo(),
      },
      binding,
      ipv4,
    );
    if (answer) return this.#bound(answer.reply, answer.what, answer.sent);
    if (this.#binding === binding) this.#binding = undefined;
    throw new DstmTimeoutError(
      `the lease on ${formatIPv4(ipv4)} ended with no answer to renewing (unicast to [${this.#unicastTo(binding)}]:${this.#serverPort}) or rebinding (${this.#rebindTo().join(", ")}); stop using it`,
    );
  }

  /** RELEASE (ciaddr, server id), U flag, unicast to the server; no answer comes. */
  async release(ipv4: number): Promise<void> {
    const binding = this.#binding;
    if (binding === undefined || binding.ipv4 !== ipv4)
      throw new Error(`no DHCPv4-over-DHCPv6 lease on ${formatIPv4(ipv4)} to release`);
    this.#binding = undefined;
    const dhcp4 = releaseMessage(this.#me, randomXid(), ipv4, binding.serverId);
    const to = this.#unicastTo(binding);
    if (
      !this.#io.send(
        encodeDhcp4o6({ type: Dhcp6MessageType.DHCPV4_QUERY, flags: DHCP4O6_FLAG_UNICAST, dhcp4 }),
        to,
      )
    )
      throw new Error(`could not send RELEASE to [${to}]:${this.#serverPort}`);
  }

  /**
   * Asks for the 4o6 servers: INFORMATION-REQUEST with ORO 88 to `ff02::1:2` on `ifname`.
   * Resolves with the option-88 list (empty: use `ff02::1:2`), or null when the REPLY has no
   * option 88 (no 4o6 service here). The list becomes the rebinding destinations.
   */
  async discoverServers(ifname = this.#target.ifname): Promise<string[] | null> {
    if (!ifname) throw new RangeError("discoverServers needs the interface for ff02::1:2");
    const servers = await this.#askServers(ifname);
    if (servers) {
      this.#servers = servers;
      this.#learnt = true;
    }
    return servers;
  }

  /**
   * RFC 8415 §14.1: a client sends to ff02::1:2 from its link-local address; a server may
   * refuse a REPLY longer than the request to any other source (dstm's does, against
   * amplification: `answer-too-long`). So a socket bound to a global host6 asks from a second
   * one on the interface's link-local address, same port (its own when there is none yet).
   */
  async #askServers(ifname: string): Promise<string[] | null> {
    const own = () => askServers(this.#io, this.#chaddr, this.#now, ifname);
    const bound = this.#local.address.toLowerCase();
    const ll = bound === "::" || bound.startsWith("fe80") ? null : linkLocalOf(ifname);
    if (!ll) return own();
    const asker = await Dhcp4o6Client.open({
      ...this.#options,
      server: MULTICAST,
      ifname,
      bind: ll,
      clientPort: this.#local.port,
      chaddr: this.#chaddr,
    }).catch(() => null);
    if (!asker) return own();
    try {
      return await askServers(asker.#io, this.#chaddr, this.#now, ifname);
    } finally {
      asker.close();
    }
  }

  /** RFC 7341 §5 before the first DISCOVER to `ff02::1:2` (./dhcp4o6_servers.ts). */
  async #learnServers(): Promise<void> {
    const closed = () => this.#io.closed;
    await learnServers(() => this.discoverServers(), closed, this.#options.log);
    this.#learnt = true;
  }

  /** Closes the socket; pending exchanges end with DstmTimeoutError. */
  close(): void {
    this.#io.close();
  }

  /** Handles one datagram from the socket. */
  onDatagram(data: Uint8Array, address: string, port: number): void {
    this.#io.onDatagram(data, address, port);
  }

  #discoverTo(): string[] {
    return discoverDestinations(this.#target, this.#servers);
  }

  #unicastTo(binding: Dhcp4o6Binding): string {
    return renewDestination(this.#target, binding.responder);
  }

  #rebindTo(): string[] {
    return rebindDestinations(this.#target, this.#servers);
  }

  /** See ./dhcp4o6_exchange.ts. */
  #exchange(
    build: (xid: number) => Dhcp4Message,
    flags: number,
    to: readonly string[],
    accept: (reply: Dhcp4Message) => boolean,
    xid?: number,
  ): Promise<Reply> {
    const asker = { io: this.#io, chaddr: this.#chaddr, log: this.#options.log };
    return exchangeDhcp4(asker, build, flags, to, accept, xid);
  }

  /**
   * An ACK becomes the lease, counted from `sent` (ms), when the REQUEST it answers (its xid)
   * was first sent (RFC 2131 §4.4.1, §4.4.5: so the client's expiry is never after the
   * server's; T1 and T2 count from then too); a NAK a DstmRefusedError.
   */
  #bound(reply: Reply, what: string, sent: number): ClientLease {
    const m = reply.dhcp4;
    if (m.options.messageType === Dhcp4MessageType.NAK) {
      this.#binding = undefined;
      const text = m.options.message ? `: ${m.options.message}` : "";
      throw new DstmRefusedError(Status.NO_SUCH_LEASE, `DHCPNAK to ${what}${text}`);
    }
    const { binding, lease } = leaseOfAck(reply, sent, this.#binding?.serverId, this.#options);
    this.#binding = binding;
    return lease;
  }
}

/**
 * Asks `ff02::1:2` on `ifname` for the 4o6 servers (option 88) from `[bind]:546` (default
 * `::`, so the reply comes to the link-local address). See {@link Dhcp4o6Client.discoverServers}.
 */
export async function discoverServers(
  ifname: string,
  options: Pick<
    Dhcp4o6ClientOptions,
    "bind" | "clientPort" | "serverPort" | "retry" | "chaddr" | "log"
  > = {},
): Promise<string[] | null> {
  const client = await Dhcp4o6Client.open({
    ...options,
    server: MULTICAST,
    ifname,
    host6: options.bind ?? "::",
    tep6: "::",
  });
  try {
    return await client.discoverServers(ifname);
  } finally {
    client.close();
  }
}
