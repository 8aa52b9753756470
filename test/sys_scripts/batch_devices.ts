/**
 * The batched devices against the kernel, in one namespace (run by test/sys_batch.test.ts):
 * - Raw6Batch: sendmmsg of a vector of 1, then of 5 IPv4-in-IPv6 packets with their traffic
 *   classes, to 2001:db8:1::2 on lo; recvmmsg of them on a second socket bound there.
 * - VnetTunDevice: a UDP datagram routed into a TUN opened with IFF_VNET_HDR and TSO4/CSUM
 *   offloads is read back as one packet with a finished checksum.
 * Prints one JSON line.
 */
import { formatIPv6, parseIPv6 } from "../../lib/net/addr.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";
import { Raw6Batch } from "../../lib/sys/raw6_batch.ts";
import { openTun } from "../../lib/sys/tun_linux.ts";
import { VnetTunDevice } from "../../lib/sys/tun_vnet.ts";
import { toHex, udpPacket } from "../helpers/packets.ts";

const sender = Raw6Socket.open({ pollTimeoutMs: 100 });
sender.bindAddress(parseIPv6("2001:db8:1::1")!);
sender.enableTunnelOptions();
const receiver = Raw6Socket.open({ pollTimeoutMs: 100 });
receiver.bindAddress(parseIPv6("2001:db8:1::2")!);
receiver.enableTunnelOptions();
const out = new Raw6Batch(sender.fd, { batchSize: 8, pollTimeoutMs: 100 });
const inb = new Raw6Batch(receiver.fd, { batchSize: 8, pollTimeoutMs: 100 });

const packets = [1, 2, 3, 4, 5, 6].map((i) => udpPacket("192.0.2.2", "198.51.100.7", 10 + i, i));
const bufs = packets.map((p) => {
  const b = new Uint8Array(2048);
  b.set(p, 16);
  return b;
});
const sizes = new Int32Array(packets.map((p) => p.length));
const dst = new Uint8Array(16 * 8);
for (let i = 0; i < 8; i++) dst.set(parseIPv6("2001:db8:1::2")!, 16 * i);
const tclass = new Uint8Array([0x00, 0x04, 0x08, 0x0c, 0x10, 0x14, 0, 0]);
const flow = new Int32Array(8);
const sent1 = out.write(bufs.slice(0, 1), sizes.subarray(0, 1), 1, 16, dst, tclass, flow);
const sent2 = out.write(bufs.slice(1), sizes.subarray(1), 5, 16, dst, tclass.subarray(1), flow);

const rbufs = Array.from({ length: 8 }, () => new Uint8Array(70000));
const rsizes = new Int32Array(8);
const src = new Uint8Array(16 * 8);
const rclass = new Uint8Array(8);
const received: { hex: string; src: string; trafficClass: number }[] = [];
const deadline = Date.now() + 5000;
let reads = 0;
while (received.length < 6 && Date.now() < deadline) {
  const n = inb.read(rbufs, rsizes, 0, src, rclass);
  if (n < 0) throw new Error(`recvmmsg ${n}`);
  if (n > 0) reads++;
  for (let i = 0; i < n; i++)
    received.push({
      hex: toHex(rbufs[i]!.subarray(0, rsizes[i]!)),
      src: formatIPv6(src.subarray(16 * i, 16 * i + 16)),
      trafficClass: rclass[i]!,
    });
}

// The TUN with offloads: a UDP datagram from a local socket, routed into it.
const tun = openTun("vt0", { vnetHeader: true });
const dev = VnetTunDevice.attach(tun.fd, { pollTimeoutMs: 100 });
const ip = (...args: string[]) => Bun.spawnSync(["ip", ...args]);
ip("link", "set", "vt0", "up");
ip("addr", "add", "192.0.2.1/32", "dev", "vt0");
ip("route", "add", "198.51.100.0/24", "dev", "vt0");
const udp = await Bun.udpSocket({});
const tbufs = Array.from({ length: 4 }, () => new Uint8Array(70000));
const tsizes = new Int32Array(4);
let tunPacket = "";
for (let tries = 0; tries < 20 && tunPacket === ""; tries++) {
  udp.send(new Uint8Array(300).fill(0xab), 9, "198.51.100.7");
  for (let k = 0; k < 5 && tunPacket === ""; k++) {
    const n = dev.read(tbufs, tsizes, 10);
    // The first packets may be the kernel's own (IPv6 is off? router solicitations): take UDP.
    for (let i = 0; i < n; i++)
      if (tbufs[i]![10] === 0x45 && tbufs[i]![10 + 9] === 17)
        tunPacket = toHex(tbufs[i]!.subarray(10, 10 + tsizes[i]!));
  }
}
udp.close();
console.log(
  JSON.stringify({ sent1, sent2, reads, received, tunPacket, packets: packets.map(toHex) }),
);
