/**
 * The two sides of the `--kernel-encap` fuzz's oracle (kencap_fuzz_run.ts) that stand for the
 * kernel: what the userspace DTI (lib/sys/tun_vnet.ts VnetTunDevice.read) hands ClientOutBatch
 * for a frame, and what the kernel makes of a frame the Worker writes back into the DTI
 * (tun_get_user → virtio_net_hdr_to_skb → ip_rcv → seg6 encap → GSO after encapsulation),
 * cut with the test's cutting helpers (tcp_packets.ts segmentsOf, udp_packets.ts udpCut).
 */
import { tcpSegmentAt, tcpSegmentCount } from "../../lib/net/gso.ts";
import { writeTcpSegment } from "../../lib/net/tcp_segment.ts";
import { udpSegmentCount, writeUdpSegment } from "../../lib/net/udp_segment.ts";
import { completeChecksum } from "../../lib/sys/tun_vnet.ts";
import { SEGMENT_BYTES } from "../../lib/tunnel/send_vector.ts";
import { H } from "./kencap_fuzz_gen.ts";
import { internetChecksum } from "./packets.ts";
import { segmentsOf } from "./tcp_packets.ts";
import { udpCut } from "./udp_packets.ts";

const le16 = (f: Uint8Array, i: number) => f[i]! | (f[i + 1]! << 8);

/**
 * The packets the userspace DTI's read gives for `frame` (VnetTunDevice.read: a plain packet
 * with NEEDS_CSUM finished, a super-packet cut by its gso type into at most `slots` segments
 * that fit SEGMENT_BYTES), or null when it drops the frame (`readDrops`).
 */
export function userspaceRead(frame: Uint8Array, slots: number): Uint8Array[] | null {
  const len = frame.length - H;
  if (len <= 0) return [];
  const stage = frame.slice();
  const gsoType = frame[1]! & 0x7f;
  if (gsoType === 0) {
    if (frame[0]! & 1) {
      const start = le16(frame, 6);
      if (!completeChecksum(stage, H, len, start, start + le16(frame, 8))) return null;
    }
    return [stage.slice(H)];
  }
  const gso = le16(frame, 4);
  const udp = gsoType === 5;
  const count =
    gsoType === 1
      ? tcpSegmentCount(stage, H, len, gso)
      : udp
        ? udpSegmentCount(stage, H, len, gso)
        : -1;
  const ihl = (stage[H]! & 0x0f) << 2;
  if (count < 0 || count > slots || (count > 1 && ihl + 60 + gso > SEGMENT_BYTES)) return null;
  const out = new Uint8Array(70000);
  return Array.from({ length: count }, (_, i) =>
    out.slice(
      0,
      udp ? writeUdpSegment(stage, H, gso, i, out, 0) : tcpSegmentAt(stage, H, gso, i, out, 0),
    ),
  );
}

/** The segments (more than one) of the super-packet `q`, checksums computed afresh. */
function cut(q: Uint8Array, udp: boolean, gso: number): Uint8Array[] {
  const total = (q[2]! << 8) | q[3]!;
  if (udp) return udpCut(q, gso);
  const ihl = (q[0]! & 0x0f) << 2;
  const headers = ihl + ((q[ihl + 12]! >>> 4) << 2);
  if (headers + gso <= 2048 && total - headers <= 64 * gso) return segmentsOf(q, gso);
  // Beyond segmentsOf's 2 KiB stride: the TEP's TSO cut (lib/net/tcp_segment.ts) by MTU.
  const out = new Uint8Array(headers + gso);
  return Array.from({ length: Math.ceil((total - headers) / gso) }, (_, i) =>
    out.slice(0, writeTcpSegment(q, 0, total, headers + gso, i, out, 0)),
  );
}

/**
 * What the kernel puts on the wire (inner IPv4 packets, before the outer IPv6 header) for a
 * frame written back into the DTI, or a string saying why it refuses it. Linux ≥ 6.11
 * (virtio_net_hdr_to_skb, "drop bad gso csum_start and offset"): a GSO frame must have
 * NEEDS_CSUM with csum_start at the L4 header and csum_offset at the L4 checksum, its gso type
 * matching the protocol; ip_rcv: a right IPv4 header, the total length within the frame (bytes
 * after it trimmed). A frame no bigger than one segment is not GSO (its checksum finished).
 */
export function kernelCut(frame: Uint8Array): Uint8Array[] | string {
  const p = frame.subarray(H);
  if (p.length < 20 || p[0]! >>> 4 !== 4) return "not IPv4";
  const ihl = (p[0]! & 0x0f) << 2;
  const total = (p[2]! << 8) | p[3]!;
  if (ihl < 20 || total < ihl || total > p.length) return "IPv4 lengths";
  if (internetChecksum(p, 0, ihl) !== 0) return "IPv4 header checksum";
  const q = p.slice(0, total);
  const gsoType = frame[1]! & 0x7f;
  const needs = (frame[0]! & 1) !== 0;
  const start = le16(frame, 6);
  const offset = le16(frame, 8);
  if (needs && start + offset + 2 > total) return "csum_start/csum_offset outside the packet";
  if (gsoType === 0) {
    if (needs) completeChecksum(q, 0, total, start, start + offset);
    return [q];
  }
  const udp = gsoType === 5;
  if (gsoType !== 1 && !udp) return `gso type ${gsoType}`;
  if (q[9] !== (udp ? 17 : 6)) return `gso type ${gsoType} for protocol ${q[9]}`;
  if (!needs || start !== ihl || offset !== (udp ? 6 : 16))
    return `NEEDS_CSUM ${needs} csum_start ${start} csum_offset ${offset}`;
  const gso = le16(frame, 4);
  if (gso < 1) return "gso_size 0";
  // The kernel finishes every checksum from the field (tcp_gso_segment, __udp_gso_segment:
  // the pseudo-header sum there, adjusted per segment); the cutting helpers compute them
  // afresh, so a field other than the pseudo-header sum skews each segment's checksum by the
  // difference, as it would on the wire.
  const field = ihl + offset;
  const headers = udp ? ihl + 8 : ihl + ((q[ihl + 12]! >>> 4) << 2);
  if (total - headers <= gso) {
    completeChecksum(q, 0, total, start, field); // not GSO (virtio_net_hdr_to_skb)
    return [q];
  }
  const f = (q[field]! << 8) | q[field + 1]!;
  const pseudo = pseudoSum(q);
  if (f === pseudo) return cut(q, udp, gso);
  const skew = f + (~pseudo & 0xffff);
  return cut(q, udp, gso).map((x) => {
    const c = (x[field]! << 8) | x[field + 1]!;
    // A UDP sum of 0 goes as all ones (RFC 768; CSUM_MANGLED_0).
    const v = ~fold((~c & 0xffff) + skew) & 0xffff || (udp ? 0xffff : 0);
    x[field] = v >>> 8;
    x[field + 1] = v & 0xff;
    return x;
  });
}

const fold = (x: number) => {
  let y = x;
  while (y > 0xffff) y = (y & 0xffff) + (y >>> 16);
  return y;
};

/** The folded TCP/UDP pseudo-header sum of the IPv4 packet `p` (RFC 768, RFC 9293 §3.1). */
function pseudoSum(p: Uint8Array): number {
  const ihl = (p[0]! & 0x0f) << 2;
  let sum = p[9]! + (((p[2]! << 8) | p[3]!) - ihl);
  for (let i = 12; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  return fold(sum);
}
