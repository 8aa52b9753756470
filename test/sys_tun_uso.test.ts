/**
 * A TUN with UDP segmentation offload (TUN_F_USO4/6, Linux ≥ 6.2) against the kernel, as root
 * in a namespace: a UDP super-datagram that lib/tunnel/gro_udp.ts coalesced and
 * lib/sys/tun_vnet.ts wrote reaches a local UDP socket as the separate datagrams, in order,
 * byte for byte; a local UDP_SEGMENT sender's super-datagram is handed to dstm whole and cut
 * into its datagrams with finished checksums.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cleanupNetns, createNetns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, startScript } from "./helpers/netns.ts";
import { fromHex, internetChecksum } from "./helpers/packets.ts";
import { kernelHasTunUso, udpChecksumOf } from "./helpers/udp_packets.ts";

const skip = netnsSkipReason({ tun: true }) ?? (Bun.which("python3") ? null : "needs python3");
announceSkip("sys_tun_uso", skip);
afterAll(() => cleanupNetns());

interface Result {
  gsoUdp: boolean;
  fallback: boolean;
  writes: number;
  written: number;
  sent: string[];
  received: string[];
  read: string[];
  gsoReads: number;
}

describe.skipIf(skip !== null)("TUN with UDP segmentation offload (namespace)", () => {
  test("one UDP_L4 write arrives as its six datagrams; a UDP_SEGMENT send is read as five", async () => {
    const ns = createNetns();
    try {
      ns.up("lo");
      const r = await startScript<Result>(ns, "tun_uso.ts").result;
      expect(r.fallback).toBe(false); // asked without USO: TCP offloads only
      expect(r.gsoUdp).toBe(kernelHasTunUso());
      if (!r.gsoUdp) {
        console.log(
          "sys_tun_uso: this kernel refused TUN_F_USO4/6 (before 6.2): write side not run",
        );
        return;
      }
      expect(r.writes).toBe(1);
      expect(r.written).toBe(28 + 6 * 100);
      expect(r.received).toEqual(r.sent);
      // Read: five datagrams of 200 bytes, each with its own finished checksums and ids.
      expect(r.read.length).toBe(5);
      expect(r.gsoReads).toBeGreaterThanOrEqual(1);
      const ids = new Set<number>();
      for (const h of r.read) {
        const p = fromHex(h);
        expect(p.length).toBe(228);
        expect(internetChecksum(p, 0, 20)).toBe(0);
        expect(udpChecksumOf(p)).toBe(0);
        expect([...p.subarray(28)]).toEqual([...Array(200).keys()]);
        ids.add((p[4]! << 8) | p[5]!);
      }
      expect(ids.size).toBe(5);
    } finally {
      ns.delete();
    }
  });
});
