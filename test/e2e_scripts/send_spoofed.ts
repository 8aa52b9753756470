/**
 * Run inside a DSTM node's namespace: sends `count` ICMP echo requests with IPv4 source
 * SRC4 (not necessarily this node's lease) to DST4, encapsulated from HOST6 to TEP6 on a raw
 * IPv6 socket — what a host trying to use another host's address would do.
 *
 * usage: bun send_spoofed.ts HOST6 TEP6 SRC4 DST4 [count] [echo-id]
 */
import { sendEchoes4in6 } from "../helpers/echo_4in6.ts";

const [host6, tep6, src4, dst4, countText, idText] = process.argv.slice(2);
const sent = sendEchoes4in6({
  src6: host6!,
  dst6: tep6!,
  src4: src4!,
  dst4: dst4!,
  count: Number(countText ?? 3),
  id: Number(idText ?? 0x5bad),
});
console.log(JSON.stringify({ sent }));
