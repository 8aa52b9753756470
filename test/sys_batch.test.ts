/**
 * The batched devices of lib/sys against the kernel (root, one namespace): Raw6Batch's
 * sendmmsg/recvmmsg carry every packet of successive vectors of different lengths with its
 * traffic class, and a TUN with IFF_VNET_HDR and offloads hands over packets whose checksums
 * VnetTunDevice has finished. (The TSO and GRO paths run end to end in lab_pmtu / lab_e2e:
 * downloads and uploads through the TEP.)
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cleanupNetns, createNetns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, startScript } from "./helpers/netns.ts";
import { fromHex, internetChecksum } from "./helpers/packets.ts";

const skip = netnsSkipReason();
announceSkip("sys_batch", skip);
afterAll(() => cleanupNetns());

interface Result {
  sent1: number;
  sent2: number;
  reads: number;
  received: { hex: string; src: string; trafficClass: number }[];
  tunPacket: string;
  packets: string[];
}

describe.skipIf(skip !== null)("batched devices (namespace)", () => {
  test("sendmmsg of 1 then 5 packets: all 6 arrive, in order, with their traffic classes", async () => {
    const ns = createNetns();
    try {
      ns.up("lo");
      ns.addAddress("lo", "2001:db8:1::1/128");
      ns.addAddress("lo", "2001:db8:1::2/128");
      const r = await startScript<Result>(ns, "batch_devices.ts").result;
      expect(r.sent1).toBe(1);
      expect(r.sent2).toBe(5);
      expect(r.received.map((p) => p.hex)).toEqual(r.packets);
      expect(r.received.map((p) => p.trafficClass)).toEqual([0x00, 0x04, 0x08, 0x0c, 0x10, 0x14]);
      for (const p of r.received) expect(p.src).toBe("2001:db8:1::1");
      expect(r.reads).toBeLessThanOrEqual(6);
      // The TUN: a UDP datagram with a finished checksum (RFC 768 over the pseudo-header).
      expect(r.tunPacket).not.toBe("");
      const p = fromHex(r.tunPacket);
      const pseudo = new Uint8Array(12 + p.length - 20);
      pseudo.set(p.subarray(12, 20), 0);
      pseudo[9] = 17;
      pseudo[10] = (p.length - 20) >>> 8;
      pseudo[11] = (p.length - 20) & 0xff;
      pseudo.set(p.subarray(20), 12);
      expect(internetChecksum(pseudo, 0, pseudo.length)).toBe(0);
      expect(p.length).toBe(20 + 8 + 300);
    } finally {
      ns.delete();
    }
  });
});
