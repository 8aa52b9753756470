/**
 * Test helpers: a UDP datagram cut into IPv4 fragments (RFC 791 §3.2), with valid header
 * checksums and a valid UDP checksum over the whole datagram.
 */
import { checksumSum } from "../../lib/net/checksum.ts";
import { IPV4_MF, IpProtocol, writeIPv4Header } from "../../lib/net/ipv4.ts";

export interface UdpDatagram {
  src: number;
  dst: number;
  sport: number;
  dport: number;
  /** UDP payload bytes. */
  payload: number;
  /** IPv4 identification. */
  id: number;
  /** Largest fragment (bytes, IPv4 header included); its payload is rounded down to 8 bytes. */
  mtu: number;
}

/** The fragments in order, first fragment first. */
export function fragmentedUdp(d: UdpDatagram): Uint8Array[] {
  const udpLength = 8 + d.payload;
  const udp = new Uint8Array(udpLength);
  udp[0] = d.sport >>> 8;
  udp[1] = d.sport;
  udp[2] = d.dport >>> 8;
  udp[3] = d.dport;
  udp[4] = udpLength >>> 8;
  udp[5] = udpLength;
  for (let i = 8; i < udpLength; i++) udp[i] = (i * 31 + 7) & 255;
  const pseudo = new Uint8Array(12);
  new DataView(pseudo.buffer).setUint32(0, d.src);
  new DataView(pseudo.buffer).setUint32(4, d.dst);
  pseudo[9] = IpProtocol.UDP;
  pseudo[10] = udpLength >>> 8;
  pseudo[11] = udpLength;
  const sum = ~checksumSum(udp, 0, udpLength, checksumSum(pseudo, 0, 12)) & 0xffff;
  udp[6] = sum >>> 8;
  udp[7] = sum;
  const step = Math.floor((d.mtu - 20) / 8) * 8;
  const out: Uint8Array[] = [];
  for (let at = 0; at < udpLength; at += step) {
    const n = Math.min(step, udpLength - at);
    const p = new Uint8Array(20 + n);
    const more = at + n < udpLength ? IPV4_MF : 0;
    writeIPv4Header(p, 0, p.length, d.id, more | (at / 8), 64, IpProtocol.UDP, d.src, d.dst);
    p.set(udp.subarray(at, at + n), 20);
    out.push(p);
  }
  return out;
}

/** Source or destination port of a first fragment / whole UDP or TCP packet. */
export const portAt = (p: Uint8Array, at: number) => (p[at]! << 8) | p[at + 1]!;
