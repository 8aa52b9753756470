/**
 * Run inside a namespace: sends `count` ICMP echo requests SRC4 → DST4 whose IPv4 TOS byte is
 * INNER_TOS, encapsulated from SRC6 to DST6 with outer traffic class TCLASS — what an IPv6
 * router with an ECN-marking queue (outer CE) would hand on. The outer traffic class is set
 * with a plain setsockopt(IPV6_TCLASS), not through dstm's tunnel send path.
 *
 * usage: bun send_4in6_ecn.ts SRC6 DST6 SRC4 DST4 TCLASS INNER_TOS [count] [echo-id]
 */
import { sendEchoes4in6 } from "../helpers/echo_4in6.ts";

const [src6, dst6, src4, dst4, tclassText, tosText, countText, idText] = process.argv.slice(2);
const sent = sendEchoes4in6({
  src6: src6!,
  dst6: dst6!,
  src4: src4!,
  dst4: dst4!,
  count: Number(countText ?? 3),
  id: Number(idText ?? 0x6040),
  tos: Number(tosText),
  tclass: Number(tclassText),
});
console.log(JSON.stringify({ sent }));
