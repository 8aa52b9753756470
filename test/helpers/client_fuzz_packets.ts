/**
 * Packets and fake DTIs for the client batch fuzz (test/client_batch_fuzz.test.ts): L4
 * checksums from the test's own RFC 1071 sum (test/helpers/packets.ts), a TCP SYN's MSS
 * option, and two TUNs for the out path: one that hands over what a TUN with IFF_VNET_HDR
 * gives (a super-packet cut as lib/sys/tun_vnet.ts cuts it, a single NEEDS_CSUM packet
 * finished as it finishes it), and one without offloads that hands several plain packets per
 * read.
 */
import { completeChecksum } from "../../lib/sys/tun_vnet.ts";
import { FakeBatchTun } from "./fake_devices.ts";
import { internetChecksum } from "./packets.ts";

export const hex = (p: Uint8Array) => Buffer.from(p).toString("hex");

export const v4 = (a: readonly number[]) =>
  ((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0;

export const bytes4 = (x: number) => [x >>> 24, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff];

/** Whether the packet is a fragment other than the first (no L4 header). */
export const laterFragment = (p: Uint8Array) => (((p[6]! << 8) | p[7]!) & 0x1fff) !== 0;

/** Whether the packet is any fragment. */
export const isFragment = (p: Uint8Array) => (((p[6]! << 8) | p[7]!) & 0x3fff) !== 0;

/** The TCP/UDP checksum over pseudo-header and segment, from scratch: 0 when it verifies. */
export function l4Sum(p: Uint8Array): number {
  const ihl = (p[0]! & 0x0f) * 4;
  const total = (p[2]! << 8) | p[3]!;
  const len = total - ihl;
  const q = new Uint8Array(12 + len);
  q.set(p.subarray(12, 20), 0);
  q[9] = p[9]!;
  q[10] = len >>> 8;
  q[11] = len & 0xff;
  q.set(p.subarray(ihl, total), 12);
  return internetChecksum(q, 0, q.length);
}

/** Recomputes the TCP/UDP checksum (a zero UDP sum sent as all ones, RFC 768). */
export function fixL4(p: Uint8Array): Uint8Array {
  const ihl = (p[0]! & 0x0f) * 4;
  const f = ihl + (p[9] === 6 ? 16 : 6);
  p[f] = 0;
  p[f + 1] = 0;
  let c = l4Sum(p);
  if (c === 0 && p[9] === 17) c = 0xffff;
  p[f] = c >>> 8;
  p[f + 1] = c & 0xff;
  return p;
}

/** Sets a TCP/UDP packet's ports (IHL 5) and its checksum again. */
export function withPorts(p: Uint8Array, sport: number, dport: number): Uint8Array {
  p[20] = sport >>> 8;
  p[21] = sport & 0xff;
  p[22] = dport >>> 8;
  p[23] = dport & 0xff;
  return fixL4(p);
}

/** A TCP packet of test/helpers/tcp_packets.ts (32-byte header) with an MSS option first. */
export function withMss(p: Uint8Array, mss: number): Uint8Array {
  p.set([2, 4, mss >>> 8, mss & 0xff, 1, 1, 1, 1, 1, 1, 1, 1], 40);
  return fixL4(p);
}

/** The MSS option's value of a TCP packet (IHL 5), or -1. */
export function mssOf(p: Uint8Array): number {
  const ihl = (p[0]! & 0x0f) * 4;
  const end = ihl + ((p[ihl + 12]! >>> 4) << 2);
  for (let i = ihl + 20; i < end; ) {
    const kind = p[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    if (kind === 2 && i + 4 <= end) return (p[i + 2]! << 8) | p[i + 3]!;
    i += Math.max(2, p[i + 1]!);
  }
  return -1;
}

/** What a TUN with IFF_VNET_HDR hands over: the packet, its gso size, NEEDS_CSUM. */
export interface VnetFrame {
  packet: Uint8Array;
  gsoSize: number;
  needsCsum: boolean;
}

/**
 * A DTI with offloads for the out path: a super-packet is cut by FakeBatchTun (lib/net/gso.ts,
 * udp_segment.ts, as lib/sys/tun_vnet.ts), a single packet with NEEDS_CSUM is finished with
 * tun_vnet.ts completeChecksum first (csum_start the L4 header, csum_offset its checksum).
 */
export class VnetFakeTun extends FakeBatchTun {
  readonly frames: VnetFrame[] = [];
  /** Runs at the start of the next read (the main thread acting while the loop waits in it). */
  beforeRead: (() => void) | null = null;

  override read(bufs: readonly Uint8Array[], sizes: Int32Array, offset: number): number {
    const f0 = this.beforeRead;
    this.beforeRead = null;
    f0?.();
    const f = this.frames.shift();
    if (!f) return 0;
    const p = f.packet.slice();
    if (f.gsoSize === 0 && f.needsCsum) {
      const ihl = (p[0]! & 0x0f) * 4;
      completeChecksum(p, 0, p.length, ihl, ihl + (p[9] === 6 ? 16 : 6));
    }
    this.inbox.push({ packet: p, gsoSize: f.gsoSize });
    const n = super.read(bufs, sizes, offset);
    // Not a frame the case should hold (the real device would count it in readDrops).
    if (n <= 0) throw new Error(`a frame of ${p.length} bytes (gso ${f.gsoSize}) not read`);
    return n;
  }
}

/** A DTI without offloads whose read hands over up to `perRead` plain packets (1: one per read). */
export class PlainBatchTun extends FakeBatchTun {
  /** See {@link VnetFakeTun.beforeRead}. */
  beforeRead: (() => void) | null = null;

  constructor(
    readonly perRead: number,
    headroom = 10,
  ) {
    super(true, headroom);
  }

  override read(bufs: readonly Uint8Array[], sizes: Int32Array, offset: number): number {
    const f0 = this.beforeRead;
    this.beforeRead = null;
    f0?.();
    let n = 0;
    while (n < Math.min(this.perRead, bufs.length) && this.inbox.length > 0) {
      const p = this.inbox[0]!.packet;
      if (p.length > bufs[n]!.length - offset) {
        if (n > 0) break;
        throw new Error(`${p.length} bytes do not fit the first buffer`);
      }
      this.inbox.shift();
      bufs[n]!.set(p, offset);
      sizes[n] = p.length;
      n++;
    }
    return n;
  }
}
