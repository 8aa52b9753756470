/**
 * `dstm ping4`: ICMP echo to an IPv4 host through the TEP, without a DTI. The echo requests
 * are built here with the leased source address and sent straight into a raw IPv6 socket
 * (next header 4) towards the TEP; replies come back the same way.
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
  ipv4HeaderLength,
  ipv4Protocol,
  ipv4Source,
  ipv4Ttl,
  validateIPv4,
  writeIPv4HeaderChecksum,
} from "../net/ipv4.ts";
import { Raw6Socket } from "../sys/raw6.ts";

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
interface _Session {
  readonly o: PingOptions;
  /** ICMP identifier of our requests. */
  readonly id: number;
  /** Sequence number → when it was sent (performance.now() ms), until answered. */
  readonly sent: Map<number, number>;
  readonly result: PingResult;
  /** The target as text, for the printed lines. */
  readonly target: string;
}

/** Sends `count` echo requests `intervalMs` apart and prints ping-style lines. */
export async function ping4(o: PingOptions): Promise<PingResult> {
  const raw = Raw6Socket.open({ pollTimeoutMs: 0 });
  try {
    raw.bindAddress(o.host6);
    raw.connect(o.tep6);
    const session: _Session = {
      o,
      id: (process.pid ^ (Math.random() * 0xffff)) & 0xffff,
      sent: new Map(),
      result: { transmitted: 0, received: 0, errors: 0, rtts: [] },
      target: formatIPv4(o.target),
    };
    const { sent, result } = session;
    const out = new Uint8Array(IPV4_HEADER_LENGTH + 8 + o.size);
    const buf = new Uint8Array(65536);
    const from6 = new Uint8Array(16);
    const drain = () => {
      for (let n = raw.recvFrom(buf, 0, from6, 0); n > 0; n = raw.recvFrom(buf, 0, from6, 0)) {
        _onReply(session, buf, n);
      }
    };
    const poller = setInterval(drain, 2);
    const started = performance.now();
    for (let seq = 1; seq <= o.count; seq++) {
      _sendEcho(raw, session, out, seq);
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
function _sendEcho(raw: Raw6Socket, session: _Session, out: Uint8Array, seq: number): void {
  const { o, id, sent, result } = session;
  const length = buildEcho(out, 0, IcmpType.ECHO_REQUEST, o.source, o.target, id, seq, o.size);
  if (!o.dontFragment) {
    out[6] = 0;
    out[7] = 0;
    writeIPv4HeaderChecksum(out, 0);
  }
  sent.set(seq, performance.now());
  const w = raw.sendTo(out, 0, length, o.tep6, 0);
  result.transmitted++;
  if (w < 0) {
    sent.delete(seq);
    result.errors++;
    o.print(`ping4: sendto: ${w === -90 ? "message too long for the IPv6 path" : `error ${-w}`}`);
  }
}

/**
 * One decapsulated IPv4 packet of `n` bytes in `buf`: an echo reply to one of our requests
 * (counted, its round trip printed), or an ICMP error quoting one (counted as an error);
 * anything else is ignored.
 */
function _onReply(session: _Session, buf: Uint8Array, n: number): void {
  const { o, id, sent, result, target } = session;
  if (validateIPv4(buf, 0, n) !== 0 || ipv4Protocol(buf, 0) !== IpProtocol.ICMP) return;
  const icmp = ipv4HeaderLength(buf, 0);
  const type = icmpType(buf, icmp);
  if (
    type === IcmpType.ECHO_REPLY &&
    icmpEchoId(buf, icmp) === id &&
    ipv4Source(buf, 0) === o.target
  ) {
    const seq = icmpEchoSequence(buf, icmp);
    const at = sent.get(seq);
    if (at === undefined) return;
    sent.delete(seq);
    const rtt = performance.now() - at;
    result.received++;
    result.rtts.push(rtt);
    o.print(
      `${n - icmp} bytes from ${target}: icmp_seq=${seq} ttl=${ipv4Ttl(buf, 0)} time=${rtt.toFixed(3)} ms`,
    );
  } else if (type === IcmpType.DEST_UNREACHABLE || type === IcmpType.TIME_EXCEEDED) {
    // The quoted header is our request: match its identifier and sequence.
    const inner = icmp + 8;
    if (n < inner + IPV4_HEADER_LENGTH + 8) return;
    const innerIcmp = inner + ipv4HeaderLength(buf, inner);
    if (icmpEchoId(buf, innerIcmp) !== id) return;
    const seq = icmpEchoSequence(buf, innerIcmp);
    sent.delete(seq);
    result.errors++;
    const from = formatIPv4(ipv4Source(buf, 0));
    const what =
      type === IcmpType.TIME_EXCEEDED
        ? "Time to live exceeded"
        : icmpCode(buf, icmp) === 4
          ? `Frag needed and DF set (mtu = ${icmpNextHopMtu(buf, icmp)})`
          : `Destination unreachable (code ${icmpCode(buf, icmp)})`;
    o.print(`From ${from} icmp_seq=${seq} ${what}`);
  }
}

/** The closing lines of ping: counts, loss, time (ms) and the round-trip statistics. */
function _printStatistics(session: _Session, elapsed: number): void {
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
