/**
 * IPv4 TCP and UDP packets with valid checksums for the client NAPT tests
 * (test/tunnel_napt.test.ts, test/tunnel_napt_state.test.ts), and the check that a translated
 * packet's checksums are still valid (RFC 1624: NAPT must fix them up).
 */
import { checksumSum, internetChecksum } from "../../lib/net/checksum.ts";
import { IpProtocol, ipv4HeaderChecksumValid, writeIPv4Header } from "../../lib/net/ipv4.ts";

/**
 * A TCP (20-byte header, `flags`, sequence number `seq`) or UDP packet from `src`:`sport` to
 * `dst`:`dport` (IPv4 numbers) with `payload` bytes (i × 13), DF set, identification 1, TTL 64,
 * valid IPv4 and L4 checksums.
 */
export function l4Packet(
  protocol: number,
  src: number,
  dst: number,
  sport: number,
  dport: number,
  payload = 16,
  flags = 0,
  seq = 0,
): Uint8Array {
  const l4len = (protocol === IpProtocol.TCP ? 20 : 8) + payload;
  const p = new Uint8Array(20 + l4len);
  writeIPv4Header(p, 0, p.length, 1, 0x4000, 64, protocol, src, dst);
  p[20] = sport >>> 8;
  p[21] = sport;
  p[22] = dport >>> 8;
  p[23] = dport;
  if (protocol === IpProtocol.TCP) {
    new DataView(p.buffer).setUint32(24, seq);
    p[32] = 0x50;
    p[33] = flags;
  } else {
    p[24] = l4len >>> 8;
    p[25] = l4len;
  }
  for (let i = 0; i < payload; i++) p[p.length - payload + i] = i * 13;
  const at = protocol === IpProtocol.TCP ? 36 : 26;
  const sum = l4Checksum(p);
  p[at] = sum >>> 8;
  p[at + 1] = sum;
  return p;
}

/** The TCP/UDP checksum the packet should carry (computed with its checksum field zero). */
export function l4Checksum(p: Uint8Array): number {
  const copy = p.slice();
  const at = copy[9] === IpProtocol.TCP ? 36 : 26;
  copy[at] = 0;
  copy[at + 1] = 0;
  const pseudo = new Uint8Array(12);
  pseudo.set(copy.subarray(12, 20), 0);
  pseudo[9] = copy[9]!;
  pseudo[10] = (copy.length - 20) >>> 8;
  pseudo[11] = copy.length - 20;
  return ~checksumSum(copy, 20, copy.length - 20, checksumSum(pseudo, 0, 12)) & 0xffff;
}

/** True when the IPv4 header checksum and the ICMP, TCP or UDP checksum are valid. */
export function checksumsValid(p: Uint8Array): boolean {
  if (!ipv4HeaderChecksumValid(p, 0)) return false;
  if (p[9] === IpProtocol.ICMP) return internetChecksum(p, 20, p.length - 20) === 0;
  const at = p[9] === IpProtocol.TCP ? 36 : 26;
  return ((p[at]! << 8) | p[at + 1]!) === l4Checksum(p);
}
