/**
 * An AF_PACKET receive ring for the TEP's IPv4-in-IPv6 packets (issue 14, batched I/O on the
 * IPv6 side): packet(7) with PACKET_RX_RING, TPACKET_V2 (include/uapi/linux/if_packet.h;
 * https://docs.kernel.org/networking/packet_mmap.html).
 *
 * The raw IPv6 socket of next header 4 costs the TEP's decapsulating Worker a system call,
 * a copy to user space, a control message and the free of a cloned skb per packet (recvmmsg
 * was 47 % of that Worker's time at 64-byte UDP, perf). A packet ring moves each packet's copy
 * into the receiving softirq, as the kernel's own TEP works, and the Worker reads the ring's
 * frames from memory: no system call while packets are queued, one poll(2) when it is empty.
 *
 * What the ring takes, by a classic BPF filter run in the kernel: packets for this host
 * (PACKET_HOST) of EtherType IPv6 whose IPv6 header says next header 4 directly (no extension
 * header, not a fragment) to `dst6` — and that ip6_rcv_core would accept (version 6, a
 * source neither multicast nor loopback, the payload length within the packet). Everything else (outer fragments, extension headers)
 * stays with the raw socket, which sees it after reassembly. So that the kernel neither hands
 * the ring's packets to the raw socket as well nor answers them with an ICMPv6 Parameter
 * Problem, the same set is dropped at prerouting by an nftables rule (lib/sys/nft_ring.ts) —
 * AF_PACKET taps see a packet before netfilter does.
 *
 * Outer fragments to `dst6` (next header 44) also leave a frame, of their first 48 bytes: a
 * place mark, never forwarded. The kernel hands a packet to the IPv6 stack (a protocol
 * handler of every device, ptype_base) before the ring's tap (bound to one device,
 * ptype_specific: net/core/dev.c `__netif_receive_skb_core`), so when the last fragment's
 * mark is in the ring, the packet it completed is already queued on the raw socket. The
 * reader stops at such a mark ({@link PacketRing.rawDue}) so that the packet is read there
 * (./ring_raw_socket.ts), in the order the fragments came, not after the whole packets that
 * came after it.
 *
 * Frames are 2 KiB. A packet longer than a frame (a local sender's 64 KiB TSO packet, a NIC's
 * GRO) is not cut: with PACKET_COPY_THRESH the kernel puts its first bytes in the frame, marked
 * TP_STATUS_COPY, and queues the whole packet on the socket, in ring order (af_packet.c,
 * tpacket_rcv). The reader takes it from there with recvmsg(2) when it reaches that frame, so
 * the packets of a flow leave in the order they came, whatever their sizes. A long packet the
 * queue had no room for arrives truncated without the mark: dropped, counted by the caller.
 *
 * A frame: struct tpacket2_hdr (status u32, len u32, snaplen u32, mac u16, net u16, …) and the
 * packet from `net` on (SOCK_DGRAM: no link-layer header). The kernel owns a frame while its
 * status is TP_STATUS_KERNEL (0); it sets TP_STATUS_USER when the frame holds a packet, and
 * the reader hands it back by writing 0.
 *
 * @module
 */
import type { TunnelBatchSocket } from "../net/device.ts";
import * as libc from "./libc.ts";
import { SysError } from "./libc.ts";
import {
  IOVEC_SIZE,
  MSG_DONTWAIT,
  MSG_IOV,
  MSG_IOVLEN,
  MSGHDR_SIZE,
  putPointer,
} from "./socket_abi.ts";

const AF_PACKET = 17;
const ETH_P_IPV6_BE = 0xdd86; // htons(0x86dd)
const SOL_PACKET = 263;
const PACKET_RX_RING = 5;
const PACKET_STATISTICS = 6;
const PACKET_VERSION = 10;
const TPACKET_V2 = 1;
const SO_ATTACH_FILTER = 26;
const TP_STATUS_USER = 1;
const TP_STATUS_COPY = 2;

/**
 * Bytes per frame: the tpacket2_hdr and sockaddr_ll, then (SOCK_DGRAM: at
 * TPACKET_ALIGN(52 + 16) = 80) a packet of up to 1,968 bytes; a longer one is queued whole.
 */
const FRAME_BYTES = 2048;
const BLOCK_BYTES = 128 * 1024;
const PACKET_COPY_THRESH = 7;
/** The queue for packets longer than a frame: room for about 64 TSO packets of 64 KiB. */
const COPY_QUEUE_BYTES = 8 << 20;
/** What a fragment's mark keeps: the IPv6 header and the fragment header (RFC 8200 §4.5). */
const MARK_BYTES = 48;
const NEXT_HEADER_FRAGMENT = 44;

/** The ring's size, to map it in the Worker ({@link PacketRing.attach}). */
export interface RingGeometry {
  readonly frames: number;
  readonly frameBytes: number;
}

/**
 * The BPF program: see the module comment. `dst6`: the TEP's IPv6 address (16 bytes). The
 * ring sees packets before ip6_rcv_core (net/ipv6/ip6_input.c) has checked them, so the filter
 * also refuses what that function drops and the raw socket would never see: a version other
 * than 6, a multicast source (RFC 4291 §2.7), the loopback source (§2.5.3) but on loopback
 * (where the stack takes it, and the nftables rule keeps it from the raw socket), and a
 * payload length beyond the packet (RFC 8200 §3; the kernel counts it in
 * Ip6InTruncatedPkts). A payload length short of the packet is the kernel's trim, done by
 * the reader.
 */
function filterProgram(dst6: Uint8Array): Uint8Array {
  const LDH = 0x28;
  const LDB = 0x30;
  const LDW = 0x20;
  const LD_LEN = 0x80;
  const AND = 0x54;
  const SUB = 0x14;
  const TAX = 0x07;
  const JEQ = 0x15;
  const JGE_X = 0x3d;
  const RET = 0x06;
  const SKF_AD_PKTTYPE = 0xfffff000 + 4;
  const SKF_AD_IFINDEX = 0xfffff000 + 8;
  const d = new DataView(dst6.buffer, dst6.byteOffset, 16);
  // [code, jt, jf, k]: a jump is a count of instructions to skip (0: the next) or a label below.
  type Jump = number | "drop" | "accept" | "length" | "mark";
  const prog: [number, Jump, Jump, number][] = [
    [LDH, 0, 0, SKF_AD_PKTTYPE],
    [JEQ, 0, "drop", 0], // PACKET_HOST
    [LDB, 0, 0, 0],
    [AND, 0, 0, 0xf0],
    [JEQ, 0, "drop", 0x60], // version 6
    [LDB, 0, 0, 6],
    [JEQ, 1, 0, 4], // next header 4: IPv4 directly
    [JEQ, 0, "drop", 44], // or a fragment header: a mark (see the module comment)
    [LDW, 0, 0, 24],
    [JEQ, 0, "drop", d.getUint32(0)],
    [LDW, 0, 0, 28],
    [JEQ, 0, "drop", d.getUint32(4)],
    [LDW, 0, 0, 32],
    [JEQ, 0, "drop", d.getUint32(8)],
    [LDW, 0, 0, 36],
    [JEQ, 0, "drop", d.getUint32(12)],
    [LDB, 0, 0, 6],
    [JEQ, "mark", 0, 44],
    [LDB, 0, 0, 8],
    [JEQ, "drop", 0, 0xff], // a multicast source
    [LDW, 0, 0, 8],
    [JEQ, 0, "length", 0],
    [LDW, 0, 0, 12],
    [JEQ, 0, "length", 0],
    [LDW, 0, 0, 16],
    [JEQ, 0, "length", 0],
    [LDW, 0, 0, 20],
    [JEQ, 0, "length", 1], // ::1: only on loopback, ifindex 1 (LOOPBACK_IFINDEX)
    [LDW, 0, 0, SKF_AD_IFINDEX],
    [JEQ, "length", "drop", 1],
    // "length": payload length + 40 ≤ the packet's length.
    [LDH, 0, 0, 4],
    [TAX, 0, 0, 0],
    [LD_LEN, 0, 0, 0],
    [SUB, 0, 0, 40],
    [JGE_X, "accept", "drop", 0],
    [RET, 0, 0, MARK_BYTES], // "mark"
    [RET, 0, 0, 0x40000], // "accept"
    [RET, 0, 0, 0], // "drop"
  ];
  const labels = {
    drop: prog.length - 1,
    accept: prog.length - 2,
    mark: prog.length - 3,
    length: prog.length - 8,
  };
  const out = new Uint8Array(8 * prog.length);
  const v = new DataView(out.buffer);
  prog.forEach(([code, jt, jf, k], i) => {
    v.setUint16(8 * i, code, true);
    v.setUint8(8 * i + 2, typeof jt === "number" ? jt : labels[jt] - i - 1);
    v.setUint8(8 * i + 3, typeof jf === "number" ? jf : labels[jf] - i - 1);
    v.setUint32(8 * i + 4, k >>> 0, true);
  });
  return out;
}

/** A filter that takes nothing: `ret #0`. */
const DROP_ALL = new Uint8Array([0x06, 0, 0, 0, 0, 0, 0, 0]);

/** SO_ATTACH_FILTER of the classic BPF program `prog` (8 bytes per instruction). 0 or -errno. */
function attachFilter(fd: number, prog: Uint8Array): number {
  // struct sock_fprog: len u16, (padding), filter pointer.
  const fprog = new Uint8Array(16);
  const fv = new DataView(fprog.buffer);
  fv.setUint16(0, prog.length / 8, true);
  fv.setBigUint64(8, BigInt(libc.addressOf(prog)), true);
  return libc.setsockoptBytes(fd, libc.SOL_SOCKET, SO_ATTACH_FILTER, fprog);
}

/** Binds the packet socket to IPv6 on `ifindex`. 0 or -errno. */
function bindTo(fd: number, ifindex: number): number {
  // struct sockaddr_ll: family u16, protocol u16 (network order), ifindex i32, …
  const sll = new Uint8Array(20);
  const sv = new DataView(sll.buffer);
  sv.setUint16(0, AF_PACKET, true);
  sv.setUint16(2, ETH_P_IPV6_BE, true);
  sv.setInt32(4, ifindex, true);
  return libc.bind(fd, sll, sll.length);
}

function check(r: number, what: string, fd: number): void {
  if (r < 0) {
    libc.close(fd);
    throw new SysError(what, r);
  }
}

/** See the module comment. Opened on the main thread, mapped and read in a Worker. */
export class PacketRing implements TunnelBatchSocket {
  readonly fd: number;
  readonly #mapping: libc.SharedMapping;
  readonly #view: DataView;
  readonly #status: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #frames: number;
  readonly #frameBytes: number;
  #next = 0;
  /** Packets read from the ring so far (long ones included). */
  packets = 0;
  /** Of {@link packets}, those longer than a frame, read from the socket's queue. */
  long = 0;
  /** Frames whose long packet was not queued (truncated without TP_STATUS_COPY), or lost. */
  truncated = 0;
  /** Marks of outer fragments read (see the module comment). */
  marks = 0;
  /**
   * Set by {@link read} when it stopped at the mark of a last fragment (More Fragments clear,
   * RFC 8200 §4.5): the packet it completed, if any, is the raw socket's next, before this
   * ring's next frame. The reader clears it.
   */
  rawDue = false;
  /** recvmsg of a long packet: the IPv6 header into #header, the rest into the caller's buffer. */
  readonly #msg = new Uint8Array(MSGHDR_SIZE);
  readonly #msgView = new DataView(this.#msg.buffer);
  readonly #iov = new Uint8Array(2 * IOVEC_SIZE);
  readonly #iovView = new DataView(this.#iov.buffer);
  readonly #header = new Uint8Array(40);
  readonly #stats = new Uint8Array(12);
  /** The last `addrs` of {@link read} as 32-bit words (null: not 4-aligned), made once. */
  #addrsSeen: Uint8Array | null = null;
  #addrWords: Int32Array | null = null;
  readonly #statsLength = new Uint32Array(1);
  /** The read buffers seen at each index, and their addresses (looked up once per buffer). */
  readonly #bufsSeen: (Uint8Array | undefined)[] = [];
  #bufAddrs = new Float64Array(0);

  private constructor(fd: number, geometry: RingGeometry) {
    const m = libc.mapShared(fd, geometry.frames * geometry.frameBytes);
    if (typeof m === "number") throw new SysError("mmap packet ring", m);
    this.fd = fd;
    this.#mapping = m;
    this.#view = new DataView(m.memory);
    this.#status = new Int32Array(m.memory);
    this.#bytes = new Uint8Array(m.memory);
    this.#frames = geometry.frames;
    this.#frameBytes = geometry.frameBytes;
    putPointer(this.#msgView, MSG_IOV, libc.addressOf(this.#iov));
    putPointer(this.#msgView, MSG_IOVLEN, 2);
    putPointer(this.#iovView, 0, libc.addressOf(this.#header));
    putPointer(this.#iovView, 8, 40);
  }

  /**
   * Opens the ring for packets to `dst6` (16 bytes) arriving on the interface `ifindex` (the
   * one that holds the address) of the calling thread's network namespace: socket, filter,
   * ring, then bind (so nothing unfiltered is queued). `blocks` of 128 KiB (64 frames each;
   * default 64: 4,096 packets, 8 MiB). Returns the fd and the geometry to pass to the Worker.
   * Throws a {@link SysError} (EPERM without CAP_NET_RAW).
   */
  static open(
    dst6: Uint8Array,
    ifindex: number,
    blocks = 64,
  ): { fd: number; geometry: RingGeometry } {
    const fd = libc.socket(AF_PACKET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
    if (fd < 0) throw new SysError("packet socket", fd);
    check(attachFilter(fd, filterProgram(dst6)), "SO_ATTACH_FILTER", fd);
    check(libc.setsockoptInt(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2), "PACKET_VERSION", fd);
    check(libc.setsockoptInt(fd, SOL_PACKET, PACKET_COPY_THRESH, 1), "PACKET_COPY_THRESH", fd);
    // SO_RCVBUFFORCE as root (beyond net.core.rmem_max), else what the plain one allows.
    if (libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_RCVBUFFORCE, COPY_QUEUE_BYTES) < 0)
      libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_RCVBUF, COPY_QUEUE_BYTES);
    const framesPerBlock = BLOCK_BYTES / FRAME_BYTES;
    const req = new Uint8Array(16);
    const rv = new DataView(req.buffer);
    rv.setUint32(0, BLOCK_BYTES, true);
    rv.setUint32(4, blocks, true);
    rv.setUint32(8, FRAME_BYTES, true);
    rv.setUint32(12, blocks * framesPerBlock, true);
    check(libc.setsockoptBytes(fd, SOL_PACKET, PACKET_RX_RING, req), "PACKET_RX_RING", fd);
    check(bindTo(fd, ifindex), "bind packet socket", fd);
    return { fd, geometry: { frames: blocks * framesPerBlock, frameBytes: FRAME_BYTES } };
  }

  /**
   * Main thread, on the ring `fd` the Worker reads: takes nothing more (a filter that drops
   * every packet), e.g. while the TEP's address is not on the host. 0 or -errno.
   */
  static pause(fd: number): number {
    return attachFilter(fd, DROP_ALL);
  }

  /**
   * Main thread: takes packets to `dst6` from the interface `ifindex` again (after
   * {@link pause}, or the address moved to another interface): bound there, then the filter.
   * 0 or -errno.
   */
  static resume(fd: number, dst6: Uint8Array, ifindex: number): number {
    const r = bindTo(fd, ifindex);
    return r < 0 ? r : attachFilter(fd, filterProgram(dst6));
  }

  /** Maps the ring of `fd` (opened by {@link open} in this process) in the calling thread. */
  static attach(fd: number, geometry: RingGeometry): PacketRing {
    return new PacketRing(fd, geometry);
  }

  /** True when the next frame holds a packet (one memory read, no system call). */
  get ready(): boolean {
    return (
      (Atomics.load(this.#status, (this.#next * this.#frameBytes) >>> 2) & TP_STATUS_USER) !== 0
    );
  }

  /**
   * True when a mark of a last fragment waits in the ring (memory reads up to the first frame
   * the kernel still owns, no system call): the raw socket may then hold the packet it
   * completed, which must not go before the ring's frames in front of that mark.
   */
  get markAhead(): boolean {
    const b = this.#bytes;
    const v = this.#view;
    for (let i = 0, k = this.#next; i < this.#frames; i++) {
      const frame = k * this.#frameBytes;
      if ((Atomics.load(this.#status, frame >>> 2) & TP_STATUS_USER) === 0) return false;
      const p = frame + v.getUint16(frame + 14, true);
      if (b[p + 6] === NEXT_HEADER_FRAGMENT && this.#lastFragmentMark(frame, p)) return true;
      k = k + 1 === this.#frames ? 0 : k + 1;
    }
    return false;
  }

  /**
   * {@link TunnelBatchSocket.read} without waiting: the packets queued in the ring, at most
   * `bufs.length`, each handed back to the kernel once copied. 0 when none is queued.
   */
  read(
    bufs: readonly Uint8Array[],
    sizes: Int32Array,
    offset: number,
    addrs: Uint8Array,
    trafficClass: Uint8Array,
  ): number {
    const b = this.#bytes;
    const v = this.#view;
    const max = bufs.length;
    if (addrs !== this.#addrsSeen) {
      this.#addrsSeen = addrs;
      this.#addrWords =
        (addrs.byteOffset & 3) === 0
          ? new Int32Array(addrs.buffer, addrs.byteOffset, addrs.length >>> 2)
          : null;
    }
    const words = this.#addrWords;
    const ring = this.#status;
    let n = 0;
    while (n < max) {
      const frame = this.#next * this.#frameBytes;
      const status = Atomics.load(this.#status, frame >>> 2);
      if ((status & TP_STATUS_USER) === 0) break;
      const length = v.getUint32(frame + 4, true);
      const snap = v.getUint32(frame + 8, true);
      const p = frame + v.getUint16(frame + 14, true);
      if (b[p + 6] === NEXT_HEADER_FRAGMENT) {
        // A mark (the filter takes no other next header 44): stop after a last fragment's.
        this.marks++;
        const last = this.#lastFragmentMark(frame, p);
        Atomics.store(this.#status, frame >>> 2, 0);
        this.#next = this.#next + 1 === this.#frames ? 0 : this.#next + 1;
        if (last) {
          this.rawDue = true;
          break;
        }
        continue;
      }
      const buf = bufs[n]!;
      let payload = Math.min((b[p + 4]! << 8) | b[p + 5]!, snap - 40);
      if ((status & TP_STATUS_COPY) !== 0) payload = this.#takeQueued(buf, offset);
      else if (snap < length) payload = -1; // long, and the queue had no room: lost
      // An empty payload (payload length 0) too: the raw socket hands it over, the
      // decapsulator counts it malformed.
      if (payload >= 0 && offset + payload <= buf.length) {
        if ((status & TP_STATUS_COPY) === 0)
          libc.copyBetween(
            this.#addressOf(n, buf) + offset,
            this.#mapping.address + p + 40,
            payload,
          );
        sizes[n] = payload;
        if (words !== null && (p & 3) === 0) {
          // The outer source, 4 words (the frame's packet starts 16-byte aligned).
          const w = (p + 8) >>> 2;
          words[4 * n] = ring[w]!;
          words[4 * n + 1] = ring[w + 1]!;
          words[4 * n + 2] = ring[w + 2]!;
          words[4 * n + 3] = ring[w + 3]!;
        } else for (let k = 0; k < 16; k++) addrs[16 * n + k] = b[p + 8 + k]!;
        trafficClass[n] = ((b[p]! & 0x0f) << 4) | (b[p + 1]! >>> 4);
        if ((status & TP_STATUS_COPY) !== 0) this.long++;
        n++;
      } else if (payload < 0) this.truncated++;
      Atomics.store(this.#status, frame >>> 2, 0);
      this.#next = this.#next + 1 === this.#frames ? 0 : this.#next + 1;
    }
    this.packets += n;
    return n;
  }

  /**
   * Whether the mark in `frame` (its packet at `p`) is a last fragment's: More Fragments clear in
   * the fragment header's last byte (RFC 8200 §4.5); a frame too short for the header is not.
   */
  #lastFragmentMark(frame: number, p: number): boolean {
    return this.#view.getUint32(frame + 8, true) >= MARK_BYTES && (this.#bytes[p + 43]! & 1) === 0;
  }

  /** The address of `buf`, the read buffer at index `n`: looked up when that buffer is new there. */
  #addressOf(n: number, buf: Uint8Array): number {
    if (this.#bufsSeen[n] === buf) return this.#bufAddrs[n]!;
    if (n >= this.#bufAddrs.length) {
      const grown = new Float64Array(Math.max(2 * this.#bufAddrs.length, n + 1, 64));
      grown.set(this.#bufAddrs);
      this.#bufAddrs = grown;
    }
    this.#bufsSeen[n] = buf;
    this.#bufAddrs[n] = libc.addressOf(buf);
    return this.#bufAddrs[n]!;
  }

  /**
   * The long packet of a TP_STATUS_COPY frame, from the socket's queue: its IPv6 payload into
   * `buf[offset …]`; the payload's length, or -1 when it is not there (then counted lost).
   */
  #takeQueued(buf: Uint8Array, offset: number): number {
    putPointer(this.#iovView, IOVEC_SIZE, libc.addressOf(buf, offset));
    putPointer(this.#iovView, IOVEC_SIZE + 8, buf.length - offset);
    const r = libc.recvmsg(this.fd, this.#msg, MSG_DONTWAIT);
    if (r < 40) return -1;
    const h = this.#header;
    return Math.min((h[4]! << 8) | h[5]!, r - 40);
  }

  /** Not a sending socket: the raw IPv6 socket sends. Returns -EOPNOTSUPP. */
  write(): number {
    return -libc.Errno.EOPNOTSUPP;
  }

  /**
   * Packets the kernel dropped because the ring was full, since the last call
   * (PACKET_STATISTICS; the kernel resets it on read), or -errno.
   */
  takeDrops(): number {
    this.#statsLength[0] = this.#stats.length;
    const r = libc.getsockoptBytes(
      this.fd,
      SOL_PACKET,
      PACKET_STATISTICS,
      this.#stats,
      this.#statsLength,
    );
    if (r < 0) return r;
    return new DataView(this.#stats.buffer).getUint32(4, true);
  }

  /** Unmaps the ring (the fd is closed by whoever opened it). */
  unmap(): void {
    libc.unmap(this.#mapping);
  }
}
