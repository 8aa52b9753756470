/**
 * UDP/IPv4 datagrams for the UDP GRO tests, built byte by byte with the test's own checksum
 * (test/helpers/packets.ts), and the kernel's cut of a super-datagram (lib/net/udp_segment.ts)
 * as a list.
 */
import { expect } from "bun:test";
import { release as osRelease } from "node:os";
import { udpSegmentCount, writeUdpSegment } from "../../lib/net/udp_segment.ts";
import { internetChecksum } from "./packets.ts";

export interface UdpSpec {
  /** Payload bytes (a pattern from `seed`). */
  payload: number;
  id?: number;
  tos?: number;
  ttl?: number;
  /** DF set (default true). */
  df?: boolean;
  /** More fragments set (a first fragment). */
  mf?: boolean;
  seed?: number;
  srcPort?: number;
  dstPort?: number;
  src?: readonly number[];
  dst?: readonly number[];
  /** "ok" (default), "zero" (no checksum, RFC 768), "bad" (off by one). */
  checksum?: "ok" | "zero" | "bad";
}

/** A UDP/IPv4 datagram with its IPv4 and UDP checksums as asked. */
export function udp(spec: UdpSpec): Uint8Array {
  const total = 28 + spec.payload;
  const p = new Uint8Array(total);
  p[0] = 0x45;
  p[1] = spec.tos ?? 0;
  p[2] = total >>> 8;
  p[3] = total & 0xff;
  const id = spec.id ?? 0x2000;
  p[4] = (id >>> 8) & 0xff;
  p[5] = id & 0xff;
  p[6] = (spec.df === false ? 0 : 0x40) | (spec.mf ? 0x20 : 0);
  p[8] = spec.ttl ?? 64;
  p[9] = 17;
  p.set(spec.src ?? [198, 51, 100, 10], 12);
  p.set(spec.dst ?? [203, 0, 113, 80], 16);
  const sport = spec.srcPort ?? 40000;
  const dport = spec.dstPort ?? 5201;
  p[20] = sport >>> 8;
  p[21] = sport & 0xff;
  p[22] = dport >>> 8;
  p[23] = dport & 0xff;
  p[24] = (total - 20) >>> 8;
  p[25] = (total - 20) & 0xff;
  let x = spec.seed ?? 3;
  for (let i = 28; i < total; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    p[i] = x >>> 24;
  }
  const ipSum = internetChecksum(p, 0, 20);
  p[10] = ipSum >>> 8;
  p[11] = ipSum & 0xff;
  if (spec.checksum !== "zero") {
    let c = udpChecksumOf(p) || 0xffff;
    if (spec.checksum === "bad") c = c === 1 ? 2 : c - 1;
    p[26] = c >>> 8;
    p[27] = c & 0xff;
  }
  return p;
}

/**
 * A copy of the datagram `p` (20-byte IPv4 header) with its UDP checksum as a CHECKSUM_PARTIAL
 * sender leaves it (a veth peer, lib/net/csum_partial.ts): the pseudo-header sum, folded, not
 * complemented.
 */
export function partialUdp(p: Uint8Array): Uint8Array {
  const q = p.slice();
  let s = 17 + (q.length - 20);
  for (let k = 12; k < 20; k += 2) s += (q[k]! << 8) | q[k + 1]!;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  q[26] = s >>> 8;
  q[27] = s & 0xff;
  return q;
}

/** The UDP checksum over the pseudo-header and the datagram: 0 when the datagram's verifies. */
export function udpChecksumOf(p: Uint8Array): number {
  const len = p.length - 20;
  const pseudo = new Uint8Array(12 + len);
  pseudo.set(p.subarray(12, 20), 0);
  pseudo[9] = 17;
  pseudo[10] = len >>> 8;
  pseudo[11] = len & 0xff;
  pseudo.set(p.subarray(20), 12);
  return internetChecksum(pseudo, 0, pseudo.length);
}

/** A train of `count` datagrams of one flow, ids counting up from `id`. */
export function udpTrain(count: number, spec: UdpSpec): Uint8Array[] {
  const id = spec.id ?? 0x2000;
  return Array.from({ length: count }, (_, i) =>
    udp({ ...spec, id: id + i, seed: (spec.seed ?? 3) + i }),
  );
}

/** The datagrams the kernel cuts a super-datagram written with `gsoSize` into. */
export function udpCut(p: Uint8Array, gsoSize: number): Uint8Array[] {
  const n = udpSegmentCount(p, 0, p.length, gsoSize);
  if (n <= 0) throw new Error(`udpSegmentCount: ${n}`);
  const out = new Uint8Array(70000);
  return Array.from({ length: n }, (_, i) =>
    out.slice(0, writeUdpSegment(p, 0, gsoSize, i, out, 0)),
  );
}

/**
 * Whether the running kernel has TUN UDP segmentation offload (TUN_F_USO4/6, Linux ≥ 6.2), from
 * its release (`uname -r`): where it has, a TUN without it is a fault, not a fallback.
 */
export function kernelHasTunUso(release = osRelease()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const major = Number(m[1]);
  return major > 6 || (major === 6 && Number(m[2]) >= 2);
}

/** What the kernel hands the stack for TUN writes: each super-datagram cut as it cuts it (udpCut). */
export function deliveredDatagrams(
  written: readonly { packet: Uint8Array; gsoSize: number }[],
): Uint8Array[] {
  return written.flatMap((w) => (w.gsoSize > 0 ? udpCut(w.packet, w.gsoSize) : [w.packet]));
}

/** Hex of each packet, in order. */
export const hexOf = (ps: readonly Uint8Array[]): string[] =>
  ps.map((p) => Buffer.from(p).toString("hex"));

/** An IPv4 packet's identification field. */
export const ipId = (p: Uint8Array): number => (p[4]! << 8) | p[5]!;

/**
 * Hex of each packet grouped by flow (addresses and ports, bytes 12–24), in order within a
 * flow: coalescing may interleave flows differently, never reorder one.
 */
export function datagramsByFlow(ps: readonly Uint8Array[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of ps) {
    const key = Buffer.from(p.subarray(12, 24)).toString("hex");
    out[key] = [...(out[key] ?? []), Buffer.from(p).toString("hex")];
  }
  return out;
}

/**
 * Checks that writes into a TUN with UDP GSO (`uso`) deliver, cut as the kernel cuts them,
 * the same datagrams flow by flow as the writes into one without offloads (`plain`), that
 * they did coalesce (fewer writes, at least `minSupers` super-datagrams, each marked partial
 * for the kernel), and returns the delivered datagrams.
 */
export function expectCoalescedAsPlain(
  uso: readonly { packet: Uint8Array; gsoSize: number; partialChecksum: boolean }[],
  plain: readonly { packet: Uint8Array }[],
  minSupers = 3,
): Uint8Array[] {
  const out = deliveredDatagrams(uso);
  // Flow by flow (addresses and ports), the same datagrams in the same order; flows may
  // interleave differently (a held train goes out at the end of the batch).
  expect(datagramsByFlow(out)).toEqual(datagramsByFlow(plain.map((w) => w.packet)));
  expect(out.length).toBe(plain.length);
  const supers = uso.filter((w) => w.gsoSize > 0);
  expect(supers.length).toBeGreaterThanOrEqual(minSupers);
  expect(uso.length).toBeLessThan(plain.length);
  for (const w of supers) expect(w.partialChecksum).toBe(true);
  return out;
}
