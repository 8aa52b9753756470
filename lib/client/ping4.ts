/**
 * `dstm ping4`: ICMP echo to an IPv4 host through the TEP, without a DTI. The echo requests
 * are built here with the leased source address and sent straight into a raw IPv6 socket
 * (next header 4) towards the TEP; replies come back the same way.
 *
 * DF (`-M do`, the default): ping4 is the tunnel's entry point, so a DF request larger than
 * the tunnel MTU (the path MTU towards the TEP − 40) is not sent but refused, as RFC 2473 §7.1
 * has the entry point do and as iputils ping says it ("local error: message too long,
 * mtu=1240"). Before (verification round 17), the kernel fragmented the outer IPv6 packet of
 * a DF request: behind a 1280-byte link `ping4 -s 1400 -M do` lost its first requests while
 * the path MTU was learned and then reported every later one as answered, so ping4 could not
 * find the tunnel MTU. The socket has IPV6_MTU_DISCOVER = DO for DF runs (no outer
 * fragmentation), and each DF request is checked against the kernel's path MTU first. Without
 * DF (`-M dont`) the kernel fragments the outer packet (RFC 2473 §7.2).
 *
 * @module
 */
import { formatIPv4 } from "../net/addr.ts";
import {
  buildEcho,
  IcmpType,
  icmpCode,
  icmpEchoId,
  icmpEchoSequence,
  icmpNextHopMtu,
  icmpType,
} from "../net/icmp4.ts";
import {
  IPV4_HEADER_LENGTH,
  IpProtocol,
  ipv4FragmentOffset,
  ipv4HeaderLength,
  ipv4Identification,
  ipv4MoreFragments,
  ipv4Protocol,
  ipv4Source,
  ipv4TotalLength,
  ipv4Ttl,
  validateIPv4,
  writeIPv4HeaderChecksum,
} from "../net/ipv4.ts";
import { Errno } from "../sys/libc.ts";
import { Raw6Socket, routePathMtu } from "../sys/raw6.ts";

export interface PingOptions {
  readonly target: number;
  /** The leased IPv4 address (source of the requests). */
  readonly source: number;
  /** Host IPv6 (outer source) and TEP IPv6 (outer destination), 16 bytes each. */
  readonly host6: Uint8Array;
  readonly tep6: Uint8Array;
  readonly count: number;
  readonly intervalMs: number;
  /** ICMP data bytes (default 56, as ping). */
  readonly size: number;
  /** Set DF (default true, like Linux ping's path MTU discovery). */
  readonly dontFragment: boolean;
  /** How long to wait for the last reply (ms). */
  readonly timeoutMs: number;
  readonly print: (line: string) => void;
}

export interface PingResult {
  transmitted: number;
  received: number;
  errors: number;
  rtts: number[];
}

/** What one ping run shares between sending, reading replies and the summary. */
export interface PingSession {
  readonly o: Pick<PingOptions, "target" | "print">;
  /** ICMP identifier of our requests. */
  readonly id: number;
  /** Sequence number → when it was sent (performance.now() ms), until answered. */
  readonly sent: Map<number, number>;
  readonly result: PingResult;
  /** The target as text, for the printed lines. */
  readonly target: string;
  /**
   * Fragmented echo replies being counted, by `source/IP identification`: the bytes seen,
   * the ICMP length once the last fragment came, and the first fragment's sequence and TTL.
   */
  readonly fragments: Map<string, _Fragments>;
}

interface _Fragments {
  bytes: number;
  total?: number;
  head?: { readonly seq: number; readonly ttl: number };
}

/** At most this many fragmented replies are counted at once (the oldest is dropped). */
const MAX_FRAGMENTED = 64;

/** A fresh session for `o` with ICMP identifier `id` (nothing sent yet). */
export function pingSession(o: PingSession["o"], id: number): PingSession {
  return {
    o,
    id,
    sent: new Map(),
    result: { transmitted: 0, received: 0, errors: 0, rtts: [] },
    target: formatIPv4(o.target),
    fragments: new Map(),
  };
}

/** Sends `count` echo requests `intervalMs` apart and prints ping-style lines. */
export async function ping4(o: PingOptions): Promise<PingResult> {
  const raw = Raw6Socket.open({ pollTimeoutMs: 0 });
  try {
    raw.bindAddress(o.host6);
    raw.connect(o.tep6);
    // DF: never fragment the outer packet (see the module text).
    if (o.dontFragment) raw.setDontFragment(true);
    const session = pingSession(o, (process.pid ^ (Math.random() * 0xffff)) & 0xffff);
    const { sent, result } = session;
    const out = new Uint8Array(IPV4_HEADER_LENGTH + 8 + o.size);
    const buf = new Uint8Array(65536);
    const from6 = new Uint8Array(16);
    const drain = () => {
      for (let n = raw.recvFrom(buf, 0, from6, 0); n > 0; n = raw.recvFrom(buf, 0, from6, 0)) {
        onPingPacket(session, buf, n);
      }
    };
    const poller = setInterval(drain, 2);
    const started = performance.now();
    for (let seq = 1; seq <= o.count; seq++) {
      _sendEcho(raw, o, session, out, seq);
      if (seq < o.count) await new Promise((resolve) => setTimeout(resolve, o.intervalMs));
    }
    const deadline = performance.now() + o.timeoutMs;
    while (sent.size > 0 && performance.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5));
    clearInterval(poller);
    drain();
    _printStatistics(session, Math.round(performance.now() - started));
    return result;
  } finally {
    raw.close();
  }
}

/** Builds echo request `seq` in `out` (DF unless told otherwise) and sends it to the TEP. */
function _sendEcho(
  raw: Raw6Socket,
  o: PingOptions,
  session: PingSession,
  out: Uint8Array,
  seq: number,
): void {
  const { id, sent, result } = session;
  const length = buildEcho(out, 0, IcmpType.ECHO_REQUEST, o.source, o.target, id, seq, o.size);
  if (!o.dontFragment) {
    out[6] = 0;
    out[7] = 0;
    writeIPv4HeaderChecksum(out, 0);
  }
  result.transmitted++;
  const path = o.dontFragment ? routePathMtu(o.tep6) : -1;
  if (path > 0 && length + IPV6_HEADER > path) {
    result.errors++;
    o.print(`ping4: local error: message too long, mtu=${path - IPV6_HEADER}`);
    return;
  }
  sent.set(seq, performance.now());
  const w = raw.sendTo(out, 0, length, o.tep6, 0);
  if (w < 0) {
    sent.delete(seq);
    result.errors++;
    if (w === -Errno.EMSGSIZE) {
      const mtu = routePathMtu(o.tep6);
      o.print(
        mtu > 0
          ? `ping4: local error: message too long, mtu=${mtu - IPV6_HEADER}`
          : "ping4: sendto: message too long for the IPv6 path",
      );
    } else o.print(`ping4: sendto: error ${-w}`);
  }
}

/** The outer header the tunnel adds (RFC 2473 §6.1). */
const IPV6_HEADER = 40;

/**
 * One decapsulated IPv4 packet of `n` bytes in `buf`, received at `now` (performance.now()
 * ms): an echo reply to one of our requests (counted, its round trip printed), or an ICMP
 * error quoting one (counted as an error, printed as iputils ping does: "Frag needed and DF
 * set (mtu = 1480)", "Destination Net Unreachable", …); anything else is ignored. A
 * fragmented echo reply (the inner IPv4 is not reassembled on its way to a raw socket) is
 * printed once all its fragments came, with the ICMP size of the whole reply, like iputils
 * ping (`-s 1572` → "1580 bytes from"), and its round trip to the last fragment.
 */
export function onPingPacket(
  session: PingSession,
  buf: Uint8Array,
  n: number,
  now = performance.now(),
): void {
  if (validateIPv4(buf, 0, n) !== 0 || ipv4Protocol(buf, 0) !== IpProtocol.ICMP) return;
  const ihl = ipv4HeaderLength(buf, 0);
  const payload = Math.min(ipv4TotalLength(buf, 0), n) - ihl;
  const offset = ipv4FragmentOffset(buf, 0);
  if (offset > 0 || ipv4MoreFragments(buf, 0)) {
    _onFragment(session, buf, payload, offset, now);
    return;
  }
  // The icmp4.ts readers take the IPv4 header's offset and skip the header themselves.
  const type = icmpType(buf, 0);
  if (type === IcmpType.ECHO_REPLY) {
    if (icmpEchoId(buf, 0) === session.id && ipv4Source(buf, 0) === session.o.target)
      _echoReply(session, icmpEchoSequence(buf, 0), payload, ipv4Ttl(buf, 0), now);
  } else if (type === IcmpType.DEST_UNREACHABLE || type === IcmpType.TIME_EXCEEDED) {
    _icmpError(session, buf, n, ihl);
  }
}

/** A fragment of an IPv4 packet (`payload` bytes at `offset` 8-byte units): see {@link onPingPacket}. */
function _onFragment(
  session: PingSession,
  buf: Uint8Array,
  payload: number,
  offset: number,
  now: number,
): void {
  const key = `${ipv4Source(buf, 0)}/${ipv4Identification(buf, 0)}`;
  let entry = session.fragments.get(key);
  if (offset === 0) {
    // The first fragment holds the ICMP header: only our echo replies are counted.
    const type = icmpType(buf, 0);
    if (type === IcmpType.DEST_UNREACHABLE || type === IcmpType.TIME_EXCEEDED) {
      const ihl = ipv4HeaderLength(buf, 0);
      _icmpError(session, buf, ihl + payload, ihl);
      return;
    }
    if (
      type !== IcmpType.ECHO_REPLY ||
      icmpEchoId(buf, 0) !== session.id ||
      ipv4Source(buf, 0) !== session.o.target
    ) {
      session.fragments.delete(key);
      return;
    }
  }
  if (!entry) {
    if (session.fragments.size >= MAX_FRAGMENTED) {
      const oldest = session.fragments.keys().next().value;
      if (oldest !== undefined) session.fragments.delete(oldest);
    }
    entry = { bytes: 0 };
    session.fragments.set(key, entry);
  }
  entry.bytes += payload;
  if (offset === 0) entry.head = { seq: icmpEchoSequence(buf, 0), ttl: ipv4Ttl(buf, 0) };
  if (!ipv4MoreFragments(buf, 0)) entry.total = offset * 8 + payload;
  if (entry.head && entry.total !== undefined && entry.bytes >= entry.total) {
    session.fragments.delete(key);
    _echoReply(session, entry.head.seq, entry.total, entry.head.ttl, now);
  }
}

/** Echo reply `seq`, `bytes` of ICMP: counted and printed if it answers a request in flight. */
function _echoReply(
  session: PingSession,
  seq: number,
  bytes: number,
  ttl: number,
  now: number,
): void {
  const { sent, result, target, o } = session;
  const at = sent.get(seq);
  if (at === undefined) return;
  sent.delete(seq);
  const rtt = now - at;
  result.received++;
  result.rtts.push(rtt);
  o.print(`${bytes} bytes from ${target}: icmp_seq=${seq} ttl=${ttl} time=${rtt.toFixed(3)} ms`);
}

/** iputils ping's words for the codes of a destination unreachable (RFC 792, RFC 1812 §5.2.7.1). */
const UNREACHABLE_WORDS: readonly string[] = [
  "Destination Net Unreachable",
  "Destination Host Unreachable",
  "Destination Protocol Unreachable",
  "Destination Port Unreachable",
  "Frag needed and DF set",
  "Source Route Failed",
  "Destination Net Unknown",
  "Destination Host Unknown",
  "Source Host Isolated",
  "Destination Net Prohibited",
  "Destination Host Prohibited",
  "Destination Net Unreachable for Type of Service",
  "Destination Host Unreachable for Type of Service",
  "Packet filtered",
  "Precedence Violation",
  "Precedence Cutoff",
];

/** An ICMP error (IPv4 header at 0, `ihl` long) quoting one of our requests: counted and printed. */
function _icmpError(session: PingSession, buf: Uint8Array, n: number, ihl: number): void {
  const { id, sent, result, o } = session;
  // The quoted IPv4 header of our request follows the 8-byte ICMP header.
  const inner = ihl + 8;
  if (n < inner + IPV4_HEADER_LENGTH || n < inner + ipv4HeaderLength(buf, inner) + 8) return;
  if (ipv4Protocol(buf, inner) !== IpProtocol.ICMP) return;
  if (icmpType(buf, inner) !== IcmpType.ECHO_REQUEST || icmpEchoId(buf, inner) !== id) return;
  const seq = icmpEchoSequence(buf, inner);
  sent.delete(seq);
  result.errors++;
  const from = formatIPv4(ipv4Source(buf, 0));
  const type = icmpType(buf, 0);
  const code = icmpCode(buf, 0);
  const what =
    type === IcmpType.TIME_EXCEEDED
      ? "Time to live exceeded"
      : code === 4
        ? `Frag needed and DF set (mtu = ${icmpNextHopMtu(buf, 0)})`
        : (UNREACHABLE_WORDS[code] ?? `Dest Unreachable, Bad Code: ${code}`);
  o.print(`From ${from} icmp_seq=${seq} ${what}`);
}

/** The closing lines of ping: counts, loss, time (ms) and the round-trip statistics. */
function _printStatistics(session: PingSession, elapsed: number): void {
  const { o, result, target } = session;
  const loss = result.transmitted
    ? Math.round((100 * (result.transmitted - result.received)) / result.transmitted)
    : 0;
  o.print("");
  o.print(`--- ${target} ping statistics ---`);
  o.print(
    `${result.transmitted} packets transmitted, ${result.received} received, ${result.errors ? `+${result.errors} errors, ` : ""}${loss}% packet loss, time ${elapsed}ms`,
  );
  if (result.rtts.length > 0) {
    const min = Math.min(...result.rtts);
    const max = Math.max(...result.rtts);
    const avg = result.rtts.reduce((a, b) => a + b, 0) / result.rtts.length;
    const mdev = Math.sqrt(
      result.rtts.reduce((a, b) => a + (b - avg) ** 2, 0) / result.rtts.length,
    );
    o.print(
      `rtt min/avg/max/mdev = ${min.toFixed(3)}/${avg.toFixed(3)}/${max.toFixed(3)}/${mdev.toFixed(3)} ms`,
    );
  }
}
