/**
 * Run inside a DSTM node's namespace: sends `count` ICMP echo requests with IPv4 source
 * SRC4 (not necessarily this node's lease) to DST4, encapsulated from HOST6 to TEP6 on a raw
 * IPv6 socket — what a host trying to use another host's address would do.
 *
 * usage: bun send_spoofed.ts HOST6 TEP6 SRC4 DST4 [count] [echo-id]
 */
import { parseIPv4, parseIPv6 } from "../../lib/net/addr.ts";
import { buildEcho, IcmpType } from "../../lib/net/icmp4.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";

const [host6, tep6, src4, dst4, countText, idText] = process.argv.slice(2);
const id = Number(idText ?? 0x5bad);
const raw = Raw6Socket.open();
raw.bindAddress(parseIPv6(host6!)!);
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
    id,
    seq,
    32,
  );
  if (raw.sendTo(buf, 0, n, parseIPv6(tep6!)!, 0) === n) sent++;
}
raw.close();
console.log(JSON.stringify({ sent }));
