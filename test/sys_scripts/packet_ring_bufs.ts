/**
 * Reads a packet ring (lib/sys/packet_ring.ts) into two sets of buffers in turn: the ring looks
 * each read buffer's address up once and keeps it, so a buffer that takes another's place at
 * the same index must get the packets, not the one before it. Run as root in a namespace whose
 * loopback holds argv[2] (an IPv6 address): 8 IPv4-in-IPv6 packets to it from a raw socket
 * (each with its number in the last byte), read 4 into set A, then 4 into set B (new buffers),
 * then 4 more into A again. Prints {"a": [...], "b": [...], "a2": [...], "aAfterB": [...]}: the
 * last bytes each set held after each read.
 */
import { parseIPv6 } from "../../lib/net/addr.ts";
import { linkIndex } from "../../lib/sys/netlink.ts";
import { PacketRing } from "../../lib/sys/packet_ring.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";
import { udp } from "../helpers/udp_packets.ts";

const dst = parseIPv6(process.argv[2]!)!;
const opened = PacketRing.open(dst, linkIndex("lo"), 1);
const ring = PacketRing.attach(opened.fd, opened.geometry);
const sock = Raw6Socket.open();
const count = 12;
for (let i = 0; i < count; i++) {
  const p = udp({ payload: 16, src: [198, 51, 100, 10], dst: [203, 0, 113, 80], id: i });
  p[p.length - 1] = 100 + i;
  if (sock.sendTo(p, 0, p.length, dst) < 0) throw new Error("sendTo failed");
}
const OFFSET = 10; // a virtio_net_hdr's room, as the TEP reads
const set = () => Array.from({ length: 4 }, () => new Uint8Array(OFFSET + 2048));
const sizes = new Int32Array(4);
const addrs = new Uint8Array(16 * 4);
const tclass = new Uint8Array(4);
const lastBytes = (bufs: Uint8Array[], n: number) =>
  bufs.slice(0, n).map((b, i) => b[OFFSET + sizes[i]! - 1]!);
/** Reads `want` packets into `bufs` (one read may find fewer: the loopback delivers them in turn). */
function readInto(bufs: Uint8Array[], want: number): number[] {
  const got: number[] = [];
  const deadline = Date.now() + 5000;
  while (got.length < want && Date.now() < deadline) {
    const n = ring.read(bufs.slice(got.length, want), sizes, OFFSET, addrs, tclass);
    for (let i = 0; i < n; i++) got.push(bufs[got.length]![OFFSET + sizes[i]! - 1]!);
  }
  return got;
}
const a = set();
const b = set();
const first = readInto(a, 4);
const aBefore = lastBytes(a, 4);
const second = readInto(b, 4);
const aAfterB = a.map((x, i) => x[OFFSET + sizes[i]! - 1]!);
const third = readInto(a, 4);
sock.close();
ring.unmap();
console.log(JSON.stringify({ first, aBefore, second, aAfterB, third }));
