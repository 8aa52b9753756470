/**
 * The DSTM client's out path with `--kernel-encap` (userspace checks, kernel encapsulation):
 * the outbound Worker reads what the host sends into the DTI as the kernel hands it (a 64 KiB
 * TCP super-packet stays whole: IFF_VNET_HDR + TSO), runs every check and rewrite of the
 * ordinary out path (client_batch.ts {@link checkOutbound}: NAPT for a shared lease, the
 * leased source (anti-spoofing), the port set, DF and the path MTU with "fragmentation needed"
 * back into the DTI), and instead of segmenting and encapsulating writes the checked IPv4
 * packet back into the same TUN with its virtio_net_hdr (gso_type TCPV4 / UDP_L4, gso_size
 * and NEEDS_CSUM as read). The kernel receives it from the DTI; the policy rule
 * `iif DTI lookup 4608` sends it to a seg6 encap.red route to the TEP
 * (lib/client/kernel_encap.ts), so the kernel adds the outer IPv6 header (next header 4) and
 * segments after encapsulation (GSO), as for `--dti seg6`. Linux takes no IPv4-in-IPv6
 * super-packet from userspace (virtio_net_hdr has no IPXIP6 type), hence the trip back
 * through the DTI.
 *
 * A super-packet is checked on real packets: its first segment (and its last, which carries
 * FIN / PSH, for the NAPT's TCP state), cut as the kernel would (lib/net/gso.ts), each with
 * exactly the steps of a packet read alone. A drop of either drops the whole super-packet
 * (counted once). What the checks rewrote (source address, source port) is copied into the
 * super-packet, whose IPv4 header checksum is recomputed and whose partial L4 checksum field
 * gets the pseudo-header sum of the new addresses and its own length (the kernel finishes it
 * per segment: ports need no update there). With a shared lease, a super-packet without DF
 * goes segment by segment instead (each checked, numbered from the port set as RFC 7597
 * §8.3.3 wants, and written back as a plain packet): the kernel's GSO would number the
 * segments from the super-packet's own identification, outside the set.
 *
 * TTL: left as it is. The IPv4 route of table 4608 is a seg6 lightweight tunnel, whose input
 * redirect (lwtunnel_input → seg6_input) takes the place of ip_forward: the kernel encapsulates
 * without lowering the IPv4 TTL (measured: the IPv4 server sees the TTL the userspace
 * encapsulation gives; adding 1 made it one higher, test/client_kernel_encap.test.ts), and
 * the IPv4 FORWARD netfilter hook is not crossed. The IPv6 packet it makes is then forwarded
 * (ip6_forward: the IPv6 FORWARD hook, its hop limit lowered), which needs IPv6 forwarding
 * from the DTI (lib/client/kernel_encap.ts).
 *
 * Counted: `client-kernel-encap` (packets handed back), `-segments` (what they become on the
 * wire), `-bytes` (their IPv4 lengths). `client-encap-forward` stays for what the Worker sends
 * itself (nothing here): a host firewall that drops forwarded packets (a FORWARD policy of
 * DROP that does not accept `iif DTI`) shows as kernel-encap counts with nothing at the TEP.
 *
 * Nothing is allocated per packet.
 *
 * @module
 */
import { checksumSum } from "../net/checksum.ts";
import type { BatchDevice } from "../net/device.ts";
import { tcpSegmentAt, tcpSegmentCount } from "../net/gso.ts";
import { ipv4TotalLength, writeIPv4HeaderChecksum } from "../net/ipv4.ts";
import { udpSegmentCount, writeUdpSegment } from "../net/udp_segment.ts";
import {
  completeChecksum,
  GSO_ECN,
  GSO_NONE,
  GSO_TCPV4,
  GSO_UDP_L4,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VNET_HDR_LEN,
} from "../sys/tun_vnet.ts";
import { Counter } from "../tunnel/counters.ts";
import type { ClientTranslator } from "../tunnel/napt.ts";
import { type BatchLoopStats, countFailure, countReadFailure } from "../tunnel/send_vector.ts";
import { checkOutbound, DtiReplies } from "./client_batch.ts";
import { type ClientLoopInit, ENCAP_MALFORMED, LeaseFollower, NO_LEASE } from "./client_lease.ts";

const KERNEL_ENCAP = Counter["client-kernel-encap"];
const KERNEL_ENCAP_SEGMENTS = Counter["client-kernel-encap-segments"];
const KERNEL_ENCAP_BYTES = Counter["client-kernel-encap-bytes"];
const H = VNET_HDR_LEN;

/**
 * What the loop needs of the DTI (lib/sys/tun_vnet.ts VnetTunDevice; fakes in tests): whole
 * frames (a virtio_net_hdr, then the packet) both ways, and the BatchDevice's `write` for the
 * replies made here (ICMPv4 errors, RSTs).
 */
export interface FrameDevice extends BatchDevice {
  /** Reads one frame into `frame`: its length with the header, 0 (nothing), or -errno. */
  readFrame(frame: Uint8Array): number;
  /** Writes `frame[0, length)` as it is: the bytes written, or -errno. */
  writeFrame(frame: Uint8Array, length: number): number;
}
const FRAME_BYTES = H + 65536;

/** DTI → checks → back into the DTI for the kernel's encapsulation. One per Worker. */
export class ClientKernelEncapOut {
  readonly stats: BatchLoopStats = { readErrors: 0, writeErrors: 0, lastError: 0 };
  readonly translator: ClientTranslator;
  readonly #init: ClientLoopInit;
  readonly #follower: LeaseFollower;
  readonly #tun: FrameDevice;
  readonly #replies: DtiReplies;
  readonly #frame = new Uint8Array(FRAME_BYTES);
  /** The first and the last segment of a super-packet, checked for it. */
  readonly #first = new Uint8Array(FRAME_BYTES);
  readonly #last = new Uint8Array(FRAME_BYTES);
  #now = 0;
  #nowMs = 0;

  constructor(init: ClientLoopInit, tun: FrameDevice) {
    this.#init = init;
    this.#follower = new LeaseFollower(init, true);
    this.translator = this.#follower.translator;
    this.#tun = tun;
    this.#replies = new DtiReplies(tun, this.stats);
  }

  /** One read: check and hand back. Returns 1, 0 after the poll timeout, or -errno. */
  step(): number {
    this.#follower.follow();
    const frame = this.#frame;
    const n = this.#tun.readFrame(frame);
    if (n <= 0) return n < 0 ? countReadFailure(this.stats, n) : n;
    // The lease may have changed while we were blocked in read().
    this.#follower.follow();
    const c = this.#init.counters;
    if (!this.#follower.lease.context) {
      c[NO_LEASE]! += 1;
      return 1;
    }
    this.#nowMs = Date.now();
    this.#now = (this.#nowMs / 1000) | 0;
    if (this.#handOver(frame, n)) this.#init.state.touch(this.#now);
    // Fragments of a shared lease that came before their first fragment were held by the
    // NAPT (lib/tunnel/fragments.ts); once it decided, they go now, after it, each checked
    // as a packet read alone, as the userspace DTI sends them (client_batch.ts).
    const fragments = this.translator.outFragments;
    const spare = this.#last;
    for (let m = fragments.popReleased(spare, H, null, 0); m > 0; ) {
      if (this.#check(spare, m)) {
        spare.fill(0, 0, H); // a plain packet, its checksums complete
        if (this.#write(spare, this.#follower.lease.context!.length, 1))
          this.#init.state.touch(this.#now);
      }
      m = fragments.popReleased(spare, H, null, 0);
    }
    return 1;
  }

  /** Checks the frame's packet and writes it back; true when it went. */
  #handOver(frame: Uint8Array, n: number): boolean {
    const c = this.#init.counters;
    const len = n - H;
    const flags = frame[0]!;
    const gsoType = frame[1]! & ~GSO_ECN;
    const csumStart = frame[6]! | (frame[7]! << 8);
    const csumField = csumStart + (frame[8]! | (frame[9]! << 8));
    if (gsoType === GSO_NONE) {
      if (
        flags & VIRTIO_NET_HDR_F_NEEDS_CSUM &&
        !completeChecksum(frame, H, len, csumStart, csumField)
      ) {
        c[ENCAP_MALFORMED]! += 1;
        return false;
      }
      if (!this.#check(frame, len)) return false;
      const total = this.#follower.lease.context!.length;
      frame.fill(0, 0, H); // checksums finished: a plain packet
      return this.#write(frame, total, 1);
    }
    const gsoSize = frame[4]! | (frame[5]! << 8);
    const udp = gsoType === GSO_UDP_L4;
    const count = udp
      ? udpSegmentCount(frame, H, len, gsoSize)
      : gsoType === GSO_TCPV4
        ? tcpSegmentCount(frame, H, len, gsoSize)
        : -1;
    const ihl = (frame[H]! & 0x0f) << 2;
    // The partial checksum must be the L4 checksum field (TCP: byte 16 of its header, UDP:
    // byte 6), or the pseudo-header sum written below would land on the checked ports (a
    // kernel since 6.11 refuses such a frame, an older one sends it; virtio spec 5.1.6.2).
    if (
      count < 1 ||
      !(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ||
      csumStart !== ihl ||
      csumField - csumStart !== (udp ? 6 : 16)
    ) {
      c[ENCAP_MALFORMED]! += 1;
      return false;
    }
    // A shared lease numbers each datagram that may be fragmented (DF clear) from its port set
    // (RFC 7597 §8.3.3, napt.ts), so that the hosts sharing the address never send the same
    // identification; the kernel's GSO would number the segments id, id + 1, … from the
    // super-packet's own, outside the set. Such a super-packet goes segment by segment.
    if (this.translator.ports !== null && !(frame[H + 6]! & 0x40))
      return this.#bySegment(frame, udp, gsoSize, count);
    const first = this.#first;
    const m = udp
      ? writeUdpSegment(frame, H, gsoSize, 0, first, H)
      : tcpSegmentAt(frame, H, gsoSize, 0, first, H);
    if (!this.#check(first, m)) return false;
    if (count > 1) {
      const last = this.#last;
      const k = udp
        ? writeUdpSegment(frame, H, gsoSize, count - 1, last, H)
        : tcpSegmentAt(frame, H, gsoSize, count - 1, last, H);
      if (!this.#check(last, k)) return false;
    }
    // What the checks rewrote: the addresses (NAPT's placeholder) and the ports (port set).
    for (let i = 12; i < 20; i++) frame[H + i] = first[H + i]!;
    for (let i = 0; i < 4; i++) frame[H + ihl + i] = first[H + ihl + i]!;
    // And the TCP options (the MSS clamp rewrites a SYN's; the kernel copies the header's
    // options into every segment, so the first segment's are the super-packet's).
    if (!udp) {
      const tcpLen = (frame[H + ihl + 12]! >>> 4) << 2;
      for (let i = 20; i < tcpLen; i++) frame[H + ihl + i] = first[H + ihl + i]!;
    }
    const total = ipv4TotalLength(frame, H);
    writeIPv4HeaderChecksum(frame, H);
    // NEEDS_CSUM: the field holds the pseudo-header sum (not complemented), over the whole
    // length; the kernel adjusts it per segment (tcp_gso_segment, __udp_gso_segment).
    const pseudo = checksumSum(frame, H + 12, 8, frame[H + 9]! + (total - ihl));
    frame[H + csumField] = pseudo >>> 8;
    frame[H + csumField + 1] = pseudo;
    return this.#write(frame, total, count);
  }

  /**
   * Each segment of the super-packet `frame` checked (and translated) as a packet read alone,
   * then written back as a plain packet (its checksums complete); true when any went.
   */
  #bySegment(frame: Uint8Array, udp: boolean, gsoSize: number, count: number): boolean {
    const seg = this.#first;
    let went = false;
    for (let i = 0; i < count; i++) {
      const m = udp
        ? writeUdpSegment(frame, H, gsoSize, i, seg, H)
        : tcpSegmentAt(frame, H, gsoSize, i, seg, H);
      if (!this.#check(seg, m)) continue;
      seg.fill(0, 0, H);
      if (this.#write(seg, this.#follower.lease.context!.length, 1)) went = true;
    }
    return went;
  }

  #check(buf: Uint8Array, n: number): boolean {
    return checkOutbound(
      this.#follower.lease,
      this.translator,
      this.#init.counters,
      this.#replies,
      buf,
      H,
      n,
      this.#now,
      this.#nowMs,
      false,
    );
  }

  #write(frame: Uint8Array, total: number, segments: number): boolean {
    const w = this.#tun.writeFrame(frame, H + total);
    if (w < 0) {
      countFailure(this.stats, w);
      return false;
    }
    const c = this.#init.counters;
    c[KERNEL_ENCAP]! += 1;
    c[KERNEL_ENCAP_SEGMENTS]! += segments;
    c[KERNEL_ENCAP_BYTES]! += total;
    return true;
  }
}
