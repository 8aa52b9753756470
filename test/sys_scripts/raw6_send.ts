/**
 * Sends IPv4 packets inside IPv6 from a raw socket (next header 4).
 * argv[2]: JSON {dst, sends: [{from?: IPv6, hex}], dontFragHex?: hex}. Prints
 * {"results": [bytes or -errno], "fragCreates": Ip6FragCreates delta, "dontFrag": result}.
 */
import { parseIPv6 } from "../../lib/net/addr.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";
import { fromHex } from "../helpers/packets.ts";
import { snmp6 } from "./snmp6.ts";

const opts = JSON.parse(process.argv[2] ?? "{}") as {
  dst: string;
  sends: { from?: string; hex: string }[];
  dontFragHex?: string;
};
const dst = parseIPv6(opts.dst)!;
const sockets = new Map<string, Raw6Socket>();
const socketFor = (from: string | undefined) => {
  const key = from ?? "";
  let sock = sockets.get(key);
  if (!sock) {
    sock = Raw6Socket.open();
    if (from) sock.bindAddress(parseIPv6(from)!);
    sockets.set(key, sock);
  }
  return sock;
};
const before = snmp6();
const results: number[] = [];
for (const send of opts.sends) {
  const packet = fromHex(send.hex);
  // Send from an offset inside a bigger buffer, as the pipelines do.
  const buf = new Uint8Array(packet.length + 40);
  buf.set(packet, 40);
  results.push(socketFor(send.from).sendTo(buf, 40, packet.length, dst));
}
const after = snmp6();
let dontFrag: number | null = null;
if (opts.dontFragHex) {
  const sock = Raw6Socket.open();
  sock.setDontFragment(true);
  const packet = fromHex(opts.dontFragHex);
  dontFrag = sock.sendTo(packet, 0, packet.length, dst);
  sock.close();
}
for (const sock of sockets.values()) sock.close();
console.log(
  JSON.stringify({
    results,
    fragCreates: (after.Ip6FragCreates ?? 0) - (before.Ip6FragCreates ?? 0),
    dontFrag,
  }),
);
