/**
 * Cases of the `--kernel-encap` out-loop fuzz (test/client_kernel_encap_fuzz.test.ts): the
 * traffic of the client batch fuzz (client_fuzz_out.ts outCase: TCP/UDP super-packets and
 * plain packets of many flows, leased and spoofed sources, whole and shared leases with small
 * port sets, DF around the path MTU, SYN with MSS, FIN/RST, IPv4 options, fragments in any
 * order, truncated packets, lease and path MTU changes) as the frames a TUN with IFF_VNET_HDR
 * hands over (a 10-byte virtio_net_hdr, then the packet), plus what the kernel never writes but
 * a frame forwarded from an attacker's own TUN (SKB_GSO_DODGY) may carry: a gso_size that makes
 * the last segment different, a gso type not matching the protocol (or with GSO_ECN), no
 * NEEDS_CSUM, csum_start or csum_offset elsewhere, garbage in the partial checksum field, a
 * total length shorter or longer than the frame, a SYN, RST or CWR super-packet, a super-packet
 * with IPv4 options; and plain frames whose NEEDS_CSUM points elsewhere or out of the packet.
 */
import { type OutCase, type OutEvent, outCase } from "./client_fuzz_out.ts";
import { prng } from "./fuzz.ts";
import { fixIPv4 } from "./tep_fuzz_packets.ts";

export const H = 10;
const GSO_TCPV4 = 1;
const GSO_UDP_L4 = 5;

/** A frame of the DTI: virtio_net_hdr + packet. `what`: the attacker's change, "" none. */
export type KencapEvent =
  | { kind: "frame"; frame: Uint8Array; what: string }
  | Exclude<OutEvent, { kind: "read" }>;

export interface KencapCase extends Omit<OutCase, "events" | "onDemand"> {
  events: KencapEvent[];
}

/** Generator switches: shapes that found bugs, all on since their fixes (test/client_kernel_encap_fuzz.test.ts). */
export const KENCAP_SHAPES = {
  /** Super-packets the kernel never makes (see the module text). */
  dodgy: true,
  /** A csum_offset other than the L4 checksum's on a super-packet. */
  csumOffset: true,
  /** A SYN super-packet carrying an MSS option (its segments are all SYNs). */
  synSuper: true,
  /** Later fragments before their first with a shared lease. */
  fragmentsBeforeFirst: true,
};

/** The frame of a packet: `gsoSize` 0 a plain one, `needsCsum` its L4 checksum partial. */
export function frameOf(p: Uint8Array, gsoSize: number, needsCsum: boolean): Uint8Array {
  const f = new Uint8Array(H + p.length);
  f.set(p, H);
  const ihl = (p[0]! & 0x0f) * 4;
  const udp = p[9] === 17;
  if (needsCsum) {
    f[0] = 1;
    f[6] = ihl;
    f[8] = udp ? 6 : 16;
  }
  if (gsoSize > 0) {
    const headers = udp ? ihl + 8 : ihl + ((p[ihl + 12]! >>> 4) << 2);
    f[1] = udp ? GSO_UDP_L4 : GSO_TCPV4;
    f[2] = headers & 0xff;
    f[3] = headers >>> 8;
    f[4] = gsoSize & 0xff;
    f[5] = gsoSize >>> 8;
  }
  return f;
}

/** The case of `seed`: outCase's traffic (never on demand: --kernel-encap refuses it) as frames. */
export function kencapCase(seed: number): KencapCase {
  const base = outCase(seed);
  const r = prng(seed ^ 0x6b656e63);
  const int = (n: number) => Math.floor(r() * n);
  const events: KencapEvent[] = [];
  const shared = () => {
    for (let i = events.length - 1; i >= 0; i--) {
      const e = events[i]!;
      if (e.kind === "lease") return e.portSet.psidLength > 0;
    }
    return false;
  };
  for (const e of base.events) {
    if (e.kind !== "read") {
      events.push(e.kind === "lease" ? { ...e, inRead: false } : e);
      continue;
    }
    const p = e.frame.packet;
    if (
      !KENCAP_SHAPES.fragmentsBeforeFirst &&
      shared() &&
      p.length >= 20 &&
      ((p[6]! << 8) | p[7]!) & 0x1fff
    ) {
      // A later fragment: goes only after its datagram's first (the generator keeps order).
      const prev = events[events.length - 1];
      if (!(prev?.kind === "frame" && sameDatagram(prev.frame, p))) continue;
    }
    const f = frameOf(p, e.frame.gsoSize, e.frame.needsCsum);
    if (e.frame.gsoSize > 0 && KENCAP_SHAPES.dodgy && r() < 0.35) {
      const x = dodgy(f, r, int);
      if (x) {
        events.push(x);
        continue;
      }
    }
    if (e.frame.gsoSize === 0 && e.frame.needsCsum && KENCAP_SHAPES.dodgy && r() < 0.1) {
      // NEEDS_CSUM elsewhere than the L4 checksum (finished there before any check), or out of
      // the packet (dropped).
      const ihl = (p[0]! & 0x0f) * 4;
      f[6] = [0, ihl, ihl + 4, p.length][int(4)]! & 0xff;
      f[8] = [0, 6, 16, 1000][int(4)]! & 0xff;
      events.push({ kind: "frame", frame: f, what: "plain-csum" });
      continue;
    }
    events.push({ kind: "frame", frame: f, what: "" });
  }
  const { events: _, onDemand: __, ...rest } = base;
  return { ...rest, events };
}

function sameDatagram(f: Uint8Array, p: Uint8Array): boolean {
  for (const i of [4, 5, 9, 12, 13, 14, 15, 16, 17, 18, 19]) if (f[H + i] !== p[i]) return false;
  return true;
}

/** A super-packet's frame changed as only an attacker's frame would be, or null. */
function dodgy(
  f: Uint8Array,
  r: () => number,
  int: (n: number) => number,
): Extract<KencapEvent, { kind: "frame" }> | null {
  const p = f.subarray(H);
  const ihl = (p[0]! & 0x0f) * 4;
  const total = (p[2]! << 8) | p[3]!;
  const tcp = p[9] === 6;
  const headers = tcp ? ihl + ((p[ihl + 12]! >>> 4) << 2) : ihl + 8;
  const payload = total - headers;
  const x = int(10);
  const setGso = (g: number) => {
    f[4] = g & 0xff;
    f[5] = g >>> 8;
  };
  if (x === 0) {
    // A gso_size that cuts elsewhere: the last segment longer or shorter than before (at most
    // 31 segments: the userspace DTI takes no more than its batch, 32 at least).
    const g = Math.max(Math.ceil(payload / 31), 1 + int(Math.max(1, payload)));
    setGso(Math.min(g, 8000));
    return { kind: "frame", frame: f, what: "gso-size" };
  }
  if (x === 1) {
    f[1] = tcp ? GSO_UDP_L4 : GSO_TCPV4;
    return { kind: "frame", frame: f, what: "gso-type" };
  }
  if (x === 2) {
    f[0] = 0;
    return { kind: "frame", frame: f, what: "no-needs-csum" };
  }
  if (x === 3) {
    f[6] = (ihl + (r() < 0.5 ? 4 : -4)) & 0xff;
    return { kind: "frame", frame: f, what: "csum-start" };
  }
  if (x === 4 && KENCAP_SHAPES.csumOffset) {
    f[8] = [0, 2, 4, 12, 14, 18][int(6)]!;
    return { kind: "frame", frame: f, what: "csum-offset" };
  }
  if (x === 5) {
    // Bytes after the packet: the frame is longer than the IPv4 total length says.
    const g = new Uint8Array(f.length + 1 + int(40));
    g.set(f);
    for (let i = f.length; i < g.length; i++) g[i] = int(256);
    return { kind: "frame", frame: g, what: "trailing" };
  }
  if (x === 6) {
    // The IPv4 total length above the frame, or below the headers.
    const t = r() < 0.5 ? total + 1 + int(100) : headers - 1 - int(4);
    p[2] = (t >>> 8) & 0xff;
    p[3] = t & 0xff;
    fixIPv4(p);
    return { kind: "frame", frame: f, what: "total-length" };
  }
  if (tcp && x === 7) {
    // RST on every segment, or a SYN super-packet with an MSS option (the kernel never makes one).
    if (r() < 0.5 || !KENCAP_SHAPES.synSuper || p[ihl + 12]! >>> 4 < 8) {
      p[ihl + 13] = (p[ihl + 13]! & ~0x03) | 0x04;
      return { kind: "frame", frame: f, what: "rst-super" };
    }
    p[ihl + 13] = 0x02;
    p.set([2, 4, 0x23, 0x28], ihl + 20); // MSS 9000
    return { kind: "frame", frame: f, what: "syn-super" };
  }
  if (x === 9) {
    // The partial checksum field not the pseudo-header sum (the loop must write its own).
    const at = ihl + (tcp ? 16 : 6);
    p[at] = int(256);
    p[at + 1] = int(256);
    return { kind: "frame", frame: f, what: "csum-field" };
  }
  if (x === 8 && r() < 0.3) {
    f[1]! |= 0x80; // VIRTIO_NET_HDR_GSO_ECN
    return { kind: "frame", frame: f, what: "gso-ecn" };
  }
  if (tcp && x === 8) {
    p[ihl + 13]! |= 0x80 | 0x40; // CWR, ECE: CWR only on the first segment
    return { kind: "frame", frame: f, what: "cwr" };
  }
  return null;
}
