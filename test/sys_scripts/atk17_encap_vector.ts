/**
 * Raw6Batch.write with more packets than its vectors hold (run by
 * test/atk17_tep_encap_vector.test.ts): the TEP's encapsulating loop collects up to 128
 * packets per batch (the segments of one TUN super-packet; tep_batch.ts TepEncapBatch) and
 * hands them to a Raw6Batch made with its default 64 (forwarder_worker.ts tepBatched). 100
 * IPv4-in-IPv6 packets to 2001:db8:1::2 on lo, received by a second socket bound there.
 * Prints one JSON line: what write returned and the packets received, in order.
 */
import { parseIPv6 } from "../../lib/net/addr.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";
import { Raw6Batch } from "../../lib/sys/raw6_batch.ts";
import { toHex, udpPacket } from "../helpers/packets.ts";

const COUNT = 100;
const sender = Raw6Socket.open({ pollTimeoutMs: 100 });
sender.bindAddress(parseIPv6("2001:db8:1::1")!);
sender.enableTunnelOptions();
// Room for all 100 at once (the default buffer drops some before the first read).
const receiver = Raw6Socket.open({ pollTimeoutMs: 100, receiveBuffer: 4 << 20 });
receiver.bindAddress(parseIPv6("2001:db8:1::2")!);
receiver.enableTunnelOptions();
// As the TEP makes it: the default vector size.
const out = new Raw6Batch(sender.fd, { pollTimeoutMs: 100 });
const inb = new Raw6Batch(receiver.fd, { pollTimeoutMs: 100 });

const packets = Array.from({ length: COUNT }, (_, i) =>
  udpPacket("192.0.2.2", "198.51.100.7", 1000 + i, 10),
);
const bufs = packets.map((p) => {
  const b = new Uint8Array(2048);
  b.set(p, 16);
  return b;
});
const sizes = new Int32Array(packets.map((p) => p.length));
const dst = new Uint8Array(16 * COUNT);
for (let i = 0; i < COUNT; i++) dst.set(parseIPv6("2001:db8:1::2")!, 16 * i);
const sent = out.write(bufs, sizes, COUNT, 16, dst, new Uint8Array(COUNT), new Int32Array(COUNT));

const rbufs = Array.from({ length: 64 }, () => new Uint8Array(4096));
const rsizes = new Int32Array(64);
const src = new Uint8Array(16 * 64);
const rclass = new Uint8Array(64);
const received: string[] = [];
// Until every packet came or the socket stayed quiet for its poll timeout twice.
let quiet = 0;
const deadline = Date.now() + 5000;
while (received.length < COUNT && quiet < 2 && Date.now() < deadline) {
  const n = inb.read(rbufs, rsizes, 0, src, rclass);
  if (n < 0) throw new Error(`recvmmsg ${n}`);
  if (n === 0) quiet++;
  for (let i = 0; i < n; i++) received.push(toHex(rbufs[i]!.subarray(0, rsizes[i]!)));
}
console.log(JSON.stringify({ sent, received, packets: packets.map(toHex) }));
