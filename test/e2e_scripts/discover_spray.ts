/**
 * Run inside an attacker's namespace (with an AnyIP route for the sources, e.g.
 * `ip -6 route add local 2001:db8:100::/48 dev lo`): one DSTM DISCOVER (HOST_IPV6 = source)
 * from each of PREFIXES × PER sources `BASE:p::1000+i` (p < PREFIXES, i < PER), fire and
 * forget: nothing is awaited. Bounded: at most 4096 datagrams. Prints `{"sent":N}`.
 *
 *   bun discover_spray.ts SERVER PORT BASE PREFIXES PER
 *   e.g. bun discover_spray.ts 2001:db8:8::53 4607 2001:db8:100 17 16
 */
import { bindUdp } from "../../lib/sys/udp.ts";
import { encodeMessage } from "../../lib/wire/dstm.ts";
import { MessageType } from "../../lib/wire/dstm_types.ts";

const [server, portText, base, prefixesText, perText] = process.argv.slice(2);
const prefixes = Number(prefixesText);
const per = Number(perText);
if (!server || !base || !(prefixes * per > 0) || prefixes * per > 4096) {
  console.error("usage: discover_spray.ts SERVER PORT BASE PREFIXES PER (PREFIXES×PER ≤ 4096)");
  process.exit(2);
}
let sent = 0;
for (let p = 0; p < prefixes; p++) {
  for (let i = 0; i < per; i++) {
    const host6 = `${base}:${p.toString(16)}::${(0x1000 + i).toString(16)}`;
    const socket = await bindUdp(host6, 0, () => {});
    const discover = encodeMessage({ type: MessageType.DISCOVER, xid: sent + 1, host6 });
    if (socket.send(discover, server, Number(portText))) sent++;
    socket.close();
  }
}
console.log(JSON.stringify({ sent }));
