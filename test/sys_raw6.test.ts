/**
 * The raw IPv6 socket for next header 4, between two namespaces joined by a veth (root only).
 * Verifies what the kernel does: a receiver gets the inner IPv4 packet only, with the outer
 * source in the sockaddr; packets above the path MTU are fragmented and reassembled.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cleanupNetns, createNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, startScript } from "./helpers/netns.ts";
import { ipv4Packet, toHex, udpPacket } from "./helpers/packets.ts";

const skip = netnsSkipReason();
announceSkip("sys_raw6", skip);

afterAll(() => cleanupNetns());

interface Received {
  packets: { src: string; hex: string }[];
  reasm: number;
  buffers: { receive: number; send: number };
}
interface Sent {
  results: number[];
  fragCreates: number;
  dontFrag: number | null;
}

/** Two namespaces, A (2001:db8:1::1 and ::3) and B (2001:db8:1::2), veth MTU 1500. */
function twoHosts(): { a: Netns; b: Netns } {
  const a = createNetns();
  const b = createNetns();
  vethPair(a, "a0", b, "b0", { mtu: 1500 });
  a.addAddress("a0", "2001:db8:1::1/64");
  a.addAddress("a0", "2001:db8:1::3/64");
  b.addAddress("b0", "2001:db8:1::2/64");
  return { a, b };
}

describe.skipIf(skip !== null)("raw IPv6 socket, next header 4 (namespaces)", () => {
  test("recvFrom gets exactly the IPv4 bytes and the sender's IPv6; 3000 bytes arrive whole", async () => {
    let hosts: { a: Netns; b: Netns } | undefined;
    try {
      hosts = twoHosts();
      const small = udpPacket("192.0.2.2", "198.51.100.7", 12, 3);
      const icmp = ipv4Packet(
        "192.0.2.2",
        "203.0.113.9",
        1,
        new Uint8Array([8, 0, 0xf7, 0xff, 0, 0, 0, 0]),
      );
      const big = udpPacket("192.0.2.2", "198.51.100.7", 3000, 5); // 3028 bytes > MTU 1500
      const receiver = startScript<Received>(hosts.b, "raw6_recv.ts", [
        JSON.stringify({ count: 3, timeoutMs: 8000 }),
      ]);
      await receiver.waitFor(/^ready$/);
      const sent = await startScript<Sent>(hosts.a, "raw6_send.ts", [
        JSON.stringify({
          dst: "2001:db8:1::2",
          sends: [small, icmp, big].map((p) => ({ from: "2001:db8:1::1", hex: toHex(p) })),
          dontFragHex: toHex(big),
        }),
      ]).result;
      const got = await receiver.result;

      expect(sent.results).toEqual([small.length, icmp.length, big.length]);
      // The kernel built the IPv6 header and split the 3068-byte IPv6 packet for the veth.
      expect(sent.fragCreates).toBeGreaterThanOrEqual(3);
      // setDontFragment (IPV6_PMTUDISC_DO): refused locally with EMSGSIZE, not fragmented.
      expect(sent.dontFrag).toBe(-90);

      expect(got.packets.map((p) => p.src)).toEqual(Array(3).fill("2001:db8:1::1"));
      // Payload only (no IPv6 header), byte for byte, reassembled before delivery.
      expect(got.packets.map((p) => p.hex)).toEqual([toHex(small), toHex(icmp), toHex(big)]);
      expect(got.reasm).toBe(1);
      // SO_RCVBUFFORCE as root: the kernel reports twice the size asked for.
      expect(got.buffers.receive).toBe(2 << 20);
    } finally {
      hosts?.a.delete();
      hosts?.b.delete();
    }
  });

  test("a connected socket reads (PacketDevice) only packets from its peer", async () => {
    let hosts: { a: Netns; b: Netns } | undefined;
    try {
      hosts = twoHosts();
      const fromOther = udpPacket("192.0.2.3", "198.51.100.7", 20, 1);
      const fromPeer = udpPacket("192.0.2.2", "198.51.100.7", 20, 2);
      const receiver = startScript<Received>(hosts.b, "raw6_recv.ts", [
        JSON.stringify({ count: 1, timeoutMs: 5000, connect: "2001:db8:1::1" }),
      ]);
      await receiver.waitFor(/^ready$/);
      await startScript<Sent>(hosts.a, "raw6_send.ts", [
        JSON.stringify({
          dst: "2001:db8:1::2",
          sends: [
            { from: "2001:db8:1::3", hex: toHex(fromOther) },
            { from: "2001:db8:1::1", hex: toHex(fromPeer) },
          ],
        }),
      ]).result;
      const got = await receiver.result;
      expect(got.packets.map((p) => p.hex)).toEqual([toHex(fromPeer)]);
    } finally {
      hosts?.a.delete();
      hosts?.b.delete();
    }
  });
});
