/**
 * Run inside a namespace: sends `count` ICMP echo requests SRC4 → DST4 whose IPv4 TOS byte is
 * INNER_TOS, encapsulated from SRC6 to DST6 with outer traffic class TCLASS — what an IPv6
 * router with an ECN-marking queue (outer CE) would hand on. The outer traffic class is set
 * with a plain setsockopt(IPV6_TCLASS), not through dstm's tunnel send path.
 *
 * usage: bun send_4in6_ecn.ts SRC6 DST6 SRC4 DST4 TCLASS INNER_TOS [count] [echo-id]
 */
import { parseIPv4, parseIPv6 } from "../../lib/net/addr.ts";
import { buildEcho, IcmpType } from "../../lib/net/icmp4.ts";
import { writeIPv4HeaderChecksum } from "../../lib/net/ipv4.ts";
import * as libc from "../../lib/sys/libc.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";

const IPV6_TCLASS = 67;
const [src6, dst6, src4, dst4, tclassText, tosText, countText, idText] = process.argv.slice(2);
const raw = Raw6Socket.open();
raw.bindAddress(parseIPv6(src6!)!);
const r = libc.setsockoptInt(raw.fd, libc.IPPROTO_IPV6, IPV6_TCLASS, Number(tclassText));
if (r < 0) throw new Error(`setsockopt IPV6_TCLASS: ${r}`);
const buf = new Uint8Array(128);
const count = Number(countText ?? 3);
let sent = 0;
for (let seq = 1; seq <= count; seq++) {
  const n = buildEcho(
    buf,
    0,
    IcmpType.ECHO_REQUEST,
    parseIPv4(src4!)!,
    parseIPv4(dst4!)!,
    Number(idText ?? 0x6040),
    seq,
    32,
  );
  buf[1] = Number(tosText);
  writeIPv4HeaderChecksum(buf, 0);
  if (raw.sendTo(buf, 0, n, parseIPv6(dst6!)!, 0) === n) sent++;
}
raw.close();
console.log(JSON.stringify({ sent }));
