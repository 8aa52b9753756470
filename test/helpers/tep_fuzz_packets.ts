/**
 * IPv4 packet changes for the TEP batch fuzz (tep_fuzz_gen.ts, tep_fuzz_encap.ts), checksums
 * from the test's own RFC 1071 sum (test/helpers/packets.ts).
 */
import { internetChecksum } from "./packets.ts";

export function fixIPv4(p: Uint8Array): Uint8Array {
  const ihl = (p[0]! & 0x0f) * 4;
  p[10] = 0;
  p[11] = 0;
  const c = internetChecksum(p, 0, ihl);
  p[10] = c >>> 8;
  p[11] = c & 0xff;
  return p;
}

/** The packet with 4 bytes of IPv4 options (NOP NOP NOP EOL): IHL 6, L4 checksum still right. */
export function withOptions(p: Uint8Array): Uint8Array {
  const q = new Uint8Array(p.length + 4);
  q.set(p.subarray(0, 20));
  q.set([1, 1, 1, 0], 20);
  q.set(p.subarray(20), 24);
  q[0] = 0x46;
  const total = ((p[2]! << 8) | p[3]!) + 4;
  q[2] = total >>> 8;
  q[3] = total & 0xff;
  return fixIPv4(q);
}

/** The L4 checksum field set to the folded pseudo-header sum: a sender's CHECKSUM_PARTIAL. */
export function partial(p: Uint8Array): Uint8Array {
  const ihl = (p[0]! & 0x0f) * 4;
  const proto = p[9]!;
  let sum = proto + (((p[2]! << 8) | p[3]!) - ihl);
  for (let i = 12; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const f = ihl + (proto === 6 ? 16 : 6);
  p[f] = sum >>> 8;
  p[f + 1] = sum & 0xff;
  return p;
}

/** An ICMP echo request (identifier `id`) from `src` to `dst`. */
export function echo(
  src: readonly number[],
  dst: readonly number[],
  id: number,
  n: number,
): Uint8Array {
  const p = new Uint8Array(28 + n);
  p[0] = 0x45;
  p[2] = (28 + n) >>> 8;
  p[3] = (28 + n) & 0xff;
  p[8] = 64;
  p[9] = 1;
  p.set(src, 12);
  p.set(dst, 16);
  p[20] = 8;
  p[24] = id >>> 8;
  p[25] = id & 0xff;
  for (let i = 28; i < p.length; i++) p[i] = i & 0xff;
  const c = internetChecksum(p, 20, p.length);
  p[22] = c >>> 8;
  p[23] = c & 0xff;
  return fixIPv4(p);
}

/** RFC 791 fragments of a whole datagram (`cut`: bytes of IP payload in the first, a multiple of 8). */
export function fragments(p: Uint8Array, cut: number): Uint8Array[] {
  const data = p.subarray(20);
  const out: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += cut) {
    const piece = data.subarray(at, Math.min(at + cut, data.length));
    const f = new Uint8Array(20 + piece.length);
    f.set(p.subarray(0, 20));
    f.set(piece, 20);
    f[2] = f.length >>> 8;
    f[3] = f.length & 0xff;
    const mf = at + cut < data.length ? 0x2000 : 0;
    const fo = mf | (at >>> 3);
    f[6] = fo >>> 8;
    f[7] = fo & 0xff;
    out.push(fixIPv4(f));
  }
  return out;
}
