/**
 * A TUN with IFF_VNET_HDR and UDP segmentation offload against the kernel, in one namespace
 * (run by test/sys_tun_uso.test.ts). Prints one JSON line:
 * - `gsoUdp`: whether the kernel took TUN_F_USO4/6 (and `fallback`: a device asked without);
 * - write: six datagrams of one flow coalesced by lib/tunnel/gro_udp.ts, written as one
 *   UDP_L4 super-datagram to a local address: what a UDP socket there received;
 * - read: a local sender with UDP_SEGMENT (python3, 1,000 bytes cut at 200) routed into the
 *   TUN: the packets VnetTunDevice.read gave, and how many super-datagrams it cut.
 */
import { openTun } from "../../lib/sys/tun_linux.ts";
import { VnetTunDevice } from "../../lib/sys/tun_vnet.ts";
import { UdpCoalescer } from "../../lib/tunnel/gro_udp.ts";
import { toHex } from "../helpers/packets.ts";
import { udpTrain } from "../helpers/udp_packets.ts";
import { eventually } from "../helpers/wait.ts";

const ip = (...args: string[]) => Bun.spawnSync(["ip", ...args]);
const tun = openTun("ut0", { vnetHeader: true });
const dev = VnetTunDevice.attach(tun.fd, { pollTimeoutMs: 100 });
const other = openTun("ut1", { vnetHeader: true });
const fallback = VnetTunDevice.attach(other.fd, { pollTimeoutMs: 100, uso: false });
ip("link", "set", "ut0", "up");
ip("addr", "add", "192.0.2.1/24", "dev", "ut0");
ip("route", "add", "198.51.100.0/24", "dev", "ut0");
Bun.spawnSync(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.ut0.rp_filter=0"]);

// Write: six datagrams 192.0.2.2:40000 → 192.0.2.1:9000, coalesced, one write.
const received: string[] = [];
const sock = await Bun.udpSocket({
  hostname: "192.0.2.1",
  port: 9000,
  socket: { data: (_s, data) => void received.push(toHex(new Uint8Array(data))) },
});
const sent = udpTrain(6, {
  payload: 100,
  src: [192, 0, 2, 2],
  dst: [192, 0, 2, 1],
  dstPort: 9000,
});
let writes = 0;
let written = -1;
const gro = new UdpCoalescer(
  (buf, off, len, gsoSize, _segments, partial) => {
    writes++;
    written = dev.write(buf, off, len, gsoSize, partial);
  },
  { headroom: 10 },
);
for (const p of sent) gro.add(p, 0, p.length);
gro.flush();
// Poll with a deadline (the test compares what came; a shortfall shows there, not here).
await eventually(() => received.length >= sent.length, { timeoutMs: 2000 });
sock.close();

// Read: 1,000 bytes sent with UDP_SEGMENT 200 (five datagrams) to 198.51.100.7:9, into the TUN.
const py = [
  "import socket",
  "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
  "s.setsockopt(socket.SOL_UDP, 103, 200)",
  "s.sendto(bytes(range(200)) * 5, ('198.51.100.7', 9))",
].join("\n");
const bufs = Array.from({ length: 8 }, () => new Uint8Array(70000));
const sizes = new Int32Array(8);
const read: string[] = [];
for (let tries = 0; tries < 10 && read.length < 5; tries++) {
  const r = Bun.spawnSync(["python3", "-c", py], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`python3: ${r.stderr.toString()}`);
  for (let k = 0; k < 10 && read.length < 5; k++) {
    const n = dev.read(bufs, sizes, 10);
    for (let i = 0; i < n; i++)
      if (bufs[i]![10] === 0x45 && bufs[i]![10 + 9] === 17)
        read.push(toHex(bufs[i]!.subarray(10, 10 + sizes[i]!)));
  }
}
console.log(
  JSON.stringify({
    gsoUdp: dev.gsoUdp,
    fallback: fallback.gsoUdp,
    writes,
    written,
    sent: sent.map((p) => toHex(p.subarray(28))),
    received,
    read,
    gsoReads: dev.stats.gsoReads,
  }),
);
