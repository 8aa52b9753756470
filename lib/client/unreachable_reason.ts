/**
 * Why the DSTM server's address answered with ICMPv6 Destination Unreachable (RFC 4443 §3.1),
 * in words, for the client's `server-unreachable-icmp` warning and its timeout error.
 *
 * Bun's UDP socket tells only that an ICMP error came (an asynchronous socket error), not its
 * code. A raw ICMPv6 socket passing only Destination Unreachable (lib/sys/icmp6_socket.ts)
 * gets a copy of each the host receives; {@link UnreachableReasons.explain} reads the queued
 * copies when Bun reports an error and picks the latest that quotes a UDP datagram from the
 * client's socket (its address and port) to the server's address and port (the invoking
 * packet, RFC 4443 §3.1: as much of it as fits; the fixed IPv6 header and the UDP ports are
 * always there). The codes:
 *
 * | code | RFC 4443 §3.1 name                                   | said as |
 * | ---- | ---------------------------------------------------- | ------- |
 * | 0    | no route to destination                              | no route to the server |
 * | 1    | communication administratively prohibited            | a firewall refuses it |
 * | 2    | beyond scope of source address                       | scope |
 * | 3    | address unreachable                                  | no host answers at that address |
 * | 4    | port unreachable                                     | nothing listens on that port there |
 * | 5    | source address failed ingress/egress policy          | the host's source refused |
 * | 6    | reject route to destination                          | a reject route |
 *
 * Without CAP_NET_RAW there is no raw socket: {@link UnreachableReasons.open} returns
 * undefined and the caller says what an unreachable most often means instead.
 *
 * Before each send the caller {@link UnreachableReasons.drain}s the socket, so copies about
 * other traffic of the host do not fill its buffer (64 KB) and crowd out the one that counts.
 *
 * @module
 */
import { equalIPv6, formatIPv6, parseIPv6 } from "../net/addr.ts";
import { ICMP6_DEST_UNREACHABLE } from "../net/icmp6.ts";
import { openIcmp6Listener } from "../sys/icmp6_socket.ts";
import type { Raw6Socket } from "../sys/raw6.ts";

/** The fixed ICMPv6 header (type, code, checksum, unused) before the invoking packet (bytes). */
const ICMP6_HEADER = 8;
/** IPv6 fixed header (bytes, RFC 8200 §3). */
const IPV6_HEADER = 40;
/** UDP's protocol number (next header). */
const UDP = 17;
/** Copies read per call at most (bounded work on a host that receives many). */
const PER_CALL = 256;

/** One ICMPv6 Destination Unreachable quoting a UDP datagram. */
export interface QuotedUnreachable {
  /** RFC 4443 §3.1 code (0–6). */
  readonly code: number;
  /** Who sent the error (16 bytes): the server's host, or a router on the way. */
  readonly from: Uint8Array;
  /** Source and destination of the quoted datagram (16 bytes each) and its UDP ports. */
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  readonly srcPort: number;
  readonly dstPort: number;
}

/**
 * Reads an ICMPv6 message `msg[0, n)` (from its type field on, as a raw ICMPv6 socket gives
 * it) sent by `from`: the Destination Unreachable's code and the quoted UDP datagram's
 * addresses and ports, or null when it is another type, too short, or quotes no UDP datagram
 * right after the fixed IPv6 header.
 */
export function parseQuotedUdp(
  msg: Uint8Array,
  n: number,
  from: Uint8Array,
): QuotedUnreachable | null {
  if (n < ICMP6_HEADER + IPV6_HEADER + 4 || msg[0] !== ICMP6_DEST_UNREACHABLE) return null;
  const ip = ICMP6_HEADER;
  if (msg[ip]! >> 4 !== 6 || msg[ip + 6] !== UDP) return null;
  const udp = ip + IPV6_HEADER;
  return {
    code: msg[1]!,
    from: from.slice(0, 16),
    src: msg.slice(ip + 8, ip + 24),
    dst: msg.slice(ip + 24, ip + 40),
    srcPort: (msg[udp]! << 8) | msg[udp + 1]!,
    dstPort: (msg[udp + 2]! << 8) | msg[udp + 3]!,
  };
}

/**
 * What code `code` from `from` says about `server`:`port`, and what to check (one sentence,
 * for a log line or an error). RFC 4443 §3.1 names the codes.
 */
export function unreachableText(code: number, from: string, server: string, port: number): string {
  const by = from === server ? "" : ` (said by ${from}, on the way)`;
  switch (code) {
    case 0:
      return `ICMPv6 no route to destination${by}: no route to ${server}; check the IPv6 routes towards the server`;
    case 1:
      return `ICMPv6 administratively prohibited${by}: a firewall refuses UDP ${port} to ${server}; open it on the server (or on the way)`;
    case 2:
      return `ICMPv6 beyond scope of source address${by}: the host's source address cannot reach ${server} (link-local to a global address?)`;
    case 3:
      return `ICMPv6 address unreachable${by}: no host answers at ${server} (neighbour discovery failed); is the address right and the server up?`;
    case 4:
      return `ICMPv6 port unreachable: nothing listens on UDP ${port} at ${server}; is --server the DSTM server's address (not the TEP's), and is the server running?`;
    case 5:
      return `ICMPv6 source address failed ingress/egress policy${by}: ${server}'s network refuses this host's source address`;
    case 6:
      return `ICMPv6 reject route to destination${by}: a reject route towards ${server}`;
    default:
      return `ICMPv6 destination unreachable, code ${code}${by}`;
  }
}

/** What a transport asks of {@link UnreachableReasons} (an interface: tests give their own). */
export interface UnreachableExplainer {
  drain(): void;
  explain(
    local: { address: string; port: number },
    server: string,
    port: number,
  ): string | undefined;
}

/** See the module comment. */
export class UnreachableReasons implements UnreachableExplainer {
  readonly #sock: Raw6Socket;
  readonly #buf = new Uint8Array(1280);
  readonly #from = new Uint8Array(16);
  #closed = false;

  constructor(sock: Raw6Socket) {
    this.#sock = sock;
  }

  /** A raw ICMPv6 listener, or undefined when it cannot be opened (no CAP_NET_RAW). */
  static open(): UnreachableReasons | undefined {
    try {
      return new UnreachableReasons(openIcmp6Listener(ICMP6_DEST_UNREACHABLE));
    } catch {
      return undefined;
    }
  }

  /** Throws away the copies queued so far (call before each send). */
  drain(): void {
    if (this.#closed) return;
    for (let i = 0; i < PER_CALL && this.#sock.recvFrom(this.#buf, 0, this.#from) > 0; i++);
  }

  /**
   * The words for the latest queued Destination Unreachable about a UDP datagram from
   * `local` (address text, port) to `server`:`port`; undefined when none is queued.
   */
  explain(
    local: { address: string; port: number },
    server: string,
    port: number,
  ): string | undefined {
    if (this.#closed) return undefined;
    let found: QuotedUnreachable | undefined;
    for (let i = 0; i < PER_CALL; i++) {
      const n = this.#sock.recvFrom(this.#buf, 0, this.#from);
      if (n <= 0) break;
      const q = parseQuotedUdp(this.#buf, n, this.#from);
      if (!q || q.dstPort !== port || q.srcPort !== local.port) continue;
      if (!sameAddress(q.dst, server)) continue;
      if (local.address !== "::" && !sameAddress(q.src, local.address)) continue;
      found = q;
    }
    if (!found) return undefined;
    return unreachableText(found.code, formatIPv6(found.from), formatIPv6(found.dst), port);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sock.close();
  }
}

function sameAddress(bytes: Uint8Array, text: string): boolean {
  const other = parseIPv6Loose(text);
  return other !== null && equalIPv6(bytes, 0, other, 0);
}

/** `text` as 16 bytes (a bracketless IPv6 address), null when it is none. */
function parseIPv6Loose(text: string): Uint8Array | null {
  return parseIPv6(text.startsWith("[") ? text.slice(1, -1) : text);
}
