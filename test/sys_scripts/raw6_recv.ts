/**
 * Receives IPv4-in-IPv6 packets on a raw socket (next header 4) and reports them.
 * argv[2]: JSON {count, timeoutMs, connect?: IPv6, bind?: IPv6}. Prints "ready" once the
 * socket is open, then {"packets":[{src,hex}], "reasm": Ip6ReasmOKs delta, "buffers"}.
 */
import { formatIPv6, parseIPv6 } from "../../lib/net/addr.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";
import { toHex } from "../helpers/packets.ts";
import { snmp6 } from "./snmp6.ts";

const opts = JSON.parse(process.argv[2] ?? "{}") as {
  count: number;
  timeoutMs: number;
  connect?: string;
  bind?: string;
};
const sock = Raw6Socket.open({ receiveBuffer: 1 << 20, sendBuffer: 1 << 20, pollTimeoutMs: 50 });
if (opts.bind) sock.bindAddress(parseIPv6(opts.bind)!);
if (opts.connect) sock.connect(parseIPv6(opts.connect)!);
const before = snmp6();
console.log("ready");
const buf = new Uint8Array(70000);
const src = new Uint8Array(16);
const packets: { src: string; hex: string }[] = [];
const start = Date.now();
while (packets.length < opts.count && Date.now() - start < opts.timeoutMs) {
  // Connected: use the PacketDevice side (read), which only sees the peer.
  const n = opts.connect ? sock.read(buf, 0) : sock.recvFrom(buf, 0, src);
  if (n < 0) throw new Error(`recv: ${n}`);
  if (n === 0) continue;
  packets.push({
    src: opts.connect ? opts.connect : formatIPv6(src),
    hex: toHex(buf.subarray(0, n)),
  });
}
const after = snmp6();
const buffers = sock.bufferSizes();
sock.close();
console.log(
  JSON.stringify({
    packets,
    reasm: (after.Ip6ReasmOKs ?? 0) - (before.Ip6ReasmOKs ?? 0),
    buffers,
  }),
);
