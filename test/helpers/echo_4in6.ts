/**
 * Hand-made 4over6 for the scripts an attacker or a marking router runs in a namespace
 * (test/e2e_scripts/send_spoofed.ts, send_4in6_ecn.ts): ICMP echo requests in IPv6 (next
 * header 4) on a raw IPv6 socket, not through dstm's tunnel send path.
 */
import { parseIPv4, parseIPv6 } from "../../lib/net/addr.ts";
import { buildEcho, IcmpType } from "../../lib/net/icmp4.ts";
import { writeIPv4HeaderChecksum } from "../../lib/net/ipv4.ts";
import * as libc from "../../lib/sys/libc.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";

const IPV6_TCLASS = 67;

/** What to send: addresses as text, `count` echoes numbered 1…count with identifier `id`. */
export interface Echoes4in6 {
  /** Outer IPv6 source (bound) and destination. */
  readonly src6: string;
  readonly dst6: string;
  /** Inner IPv4 source and destination. */
  readonly src4: string;
  readonly dst4: string;
  readonly count: number;
  readonly id: number;
  /** The inner IPv4 TOS byte (0 when absent). */
  readonly tos?: number;
  /** The outer IPv6 traffic class, set with setsockopt(IPV6_TCLASS) (the kernel's when absent). */
  readonly tclass?: number;
}

/** Sends the echoes (32-byte payload each); returns how many the socket took whole. */
export function sendEchoes4in6(o: Echoes4in6): number {
  const raw = Raw6Socket.open();
  raw.bindAddress(parseIPv6(o.src6)!);
  if (o.tclass !== undefined) {
    const r = libc.setsockoptInt(raw.fd, libc.IPPROTO_IPV6, IPV6_TCLASS, o.tclass);
    if (r < 0) throw new Error(`setsockopt IPV6_TCLASS: ${r}`);
  }
  const buf = new Uint8Array(128);
  const src4 = parseIPv4(o.src4)!;
  const dst4 = parseIPv4(o.dst4)!;
  const dst6 = parseIPv6(o.dst6)!;
  let sent = 0;
  for (let seq = 1; seq <= o.count; seq++) {
    const n = buildEcho(buf, 0, IcmpType.ECHO_REQUEST, src4, dst4, o.id, seq, 32);
    if (o.tos !== undefined) {
      buf[1] = o.tos;
      writeIPv4HeaderChecksum(buf, 0);
    }
    if (raw.sendTo(buf, 0, n, dst6, 0) === n) sent++;
  }
  raw.close();
  return sent;
}
