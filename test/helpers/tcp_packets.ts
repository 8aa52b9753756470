/**
 * TCP/IPv4 packets for the GSO/GRO tests, with both checksums computed from scratch (RFC 1071
 * sum of test/helpers/packets.ts, not the library's).
 */
import { tcpSegmentIPv4 } from "../../lib/net/gso.ts";
import { internetChecksum } from "./packets.ts";

export const ACK = 0x10;
export const PSH = 0x08;
export const FIN = 0x01;
export const CWR = 0x80;
export const SYN = 0x02;

/** The TCP checksum over the pseudo-header and segment, from scratch (0 when it verifies). */
export function tcpChecksumOf(p: Uint8Array): number {
  const ihl = (p[0]! & 0x0f) * 4;
  const total = (p[2]! << 8) | p[3]!;
  const tcpLength = total - ihl;
  const pseudo = new Uint8Array(12 + tcpLength);
  pseudo.set(p.subarray(12, 20), 0);
  pseudo[9] = 6;
  pseudo[10] = tcpLength >>> 8;
  pseudo[11] = tcpLength & 0xff;
  pseudo.set(p.subarray(ihl, total), 12);
  return internetChecksum(pseudo, 0, pseudo.length);
}

export interface TcpSpec {
  payload: number;
  seq?: number;
  id?: number;
  flags?: number;
  tos?: number;
  df?: boolean;
  seed?: number;
  /** 12 bytes of options (NOP NOP timestamp) when true. */
  timestamps?: boolean;
  srcPort?: number;
  /** Addresses as 4 bytes each (default 198.51.100.1 → 192.0.2.80). */
  src?: readonly number[];
  dst?: readonly number[];
}

/** A valid IPv4 TCP packet with both checksums right. */
export function tcp(spec: TcpSpec): Uint8Array {
  const tcpLen = spec.timestamps === false ? 20 : 32;
  const total = 20 + tcpLen + spec.payload;
  const p = new Uint8Array(total);
  p[0] = 0x45;
  p[1] = spec.tos ?? 0;
  p[2] = total >>> 8;
  p[3] = total & 0xff;
  const id = spec.id ?? 0x1234;
  p[4] = id >>> 8;
  p[5] = id & 0xff;
  p[6] = spec.df === false ? 0 : 0x40;
  p[8] = 64;
  p[9] = 6;
  p.set(spec.src ?? [198, 51, 100, 1], 12);
  p.set(spec.dst ?? [192, 0, 2, 80], 16);
  const sport = spec.srcPort ?? 40000;
  const t = 20;
  p[t] = sport >>> 8;
  p[t + 1] = sport & 0xff;
  p[t + 2] = 0x14;
  p[t + 3] = 0x51; // port 5201
  const seq = spec.seq ?? 0xfffff000; // wraps within the test's payloads
  p[t + 4] = seq >>> 24;
  p[t + 5] = (seq >>> 16) & 0xff;
  p[t + 6] = (seq >>> 8) & 0xff;
  p[t + 7] = seq & 0xff;
  p.set([0x01, 0x02, 0x03, 0x04], t + 8); // ack
  p[t + 12] = (tcpLen / 4) << 4;
  p[t + 13] = spec.flags ?? ACK;
  p[t + 14] = 0x01;
  p[t + 15] = 0xf5; // window
  if (tcpLen === 32) p.set([1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9], t + 20);
  let x = spec.seed ?? 7;
  for (let i = t + tcpLen; i < total; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    p[i] = x >>> 24;
  }
  const ipSum = internetChecksum(p, 0, 20);
  p[10] = ipSum >>> 8;
  p[11] = ipSum & 0xff;
  const c = tcpChecksumOf(p);
  p[t + 16] = c >>> 8;
  p[t + 17] = c & 0xff;
  return p;
}

export const u32 = (p: Uint8Array, o: number) =>
  ((p[o]! << 24) | (p[o + 1]! << 16) | (p[o + 2]! << 8) | p[o + 3]!) >>> 0;

/** The segments of at most `mss` payload bytes that GSO (lib/net/gso.ts) cuts `p` into. */
export function segmentsOf(p: Uint8Array, mss: number): Uint8Array[] {
  const out = new Uint8Array(64 * 2048);
  const sizes = new Int32Array(64);
  const n = tcpSegmentIPv4(p, 0, p.length, mss, out, 0, 2048, sizes);
  if (n <= 0) throw new Error(`tcpSegmentIPv4: ${n}`);
  return Array.from({ length: n }, (_, i) => out.slice(i * 2048, i * 2048 + sizes[i]!));
}
