/**
 * What the TEP's decapsulating loop tells its UDP GRO (issue 14, lib/tunnel/gro_udp.ts
 * `UdpHint`): the IPv4 header checksum already verified, a UDP checksum it just completed from
 * the sender's CHECKSUM_PARTIAL state, the datagram in the coalescer's own ArrayBuffer (its
 * checksum then summed by 32-bit words, lib/net/checksum.ts `checksumSumWords`). None of it may
 * let a train carry what the separate datagrams would not: a datagram with a wrong checksum,
 * from an unbound source, spoofed, or from a port outside its set, inside a run of good ones,
 * is still dropped and counted exactly as alone, or passed on as it is, never coalesced.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv6 } from "../lib/net/addr.ts";
import { checksumSum, checksumSumWords } from "../lib/net/checksum.ts";
import type { GroEmit } from "../lib/tunnel/gro.ts";
import { UdpCoalescer, UdpHint } from "../lib/tunnel/gro_udp.ts";
import { HELD_BATCHES, TepDecapBatch } from "../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";
import { type Arrival, tepContext, WHOLE } from "./helpers/tep_context.ts";
import {
  deliveredDatagrams,
  expectCoalescedAsPlain,
  ipId,
  partialUdp,
  type UdpSpec,
  udp,
  udpChecksumOf,
  udpTrain,
} from "./helpers/udp_packets.ts";

/** RFC 1071 by the book: big-endian 16-bit words, an odd last byte padded, folded. */
function referenceSum(b: Uint8Array, off: number, len: number, initial: number): number {
  let s = initial;
  for (let i = 0; i < len; i += 2) s += (b[off + i]! << 8) | (i + 1 < len ? b[off + i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

describe("checksumSumWords: the sum by 32-bit words", () => {
  test("equals RFC 1071's byte-wise sum at every alignment and length, also shorter than the head", () => {
    const buf = new Uint8Array(4096 + 64);
    let x = 7;
    for (let i = 0; i < buf.length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      buf[i] = x >>> 24;
    }
    buf.fill(0xff, 1000, 1200); // carries
    const words = new Int32Array(buf.buffer, 0, buf.length >>> 2);
    for (let base = 0; base < 8; base++) {
      const view = buf.subarray(base); // a view at an odd or even byte offset
      for (const len of [0, 1, 2, 3, 4, 5, 7, 8, 9, 20, 31, 72, 127, 128, 129, 1500, 4000]) {
        for (let off = 0; off < 4; off++) {
          const want = referenceSum(view, off, len, 0x1234);
          expect(checksumSumWords(view, off, len, 0x1234, words)).toBe(want);
          expect(checksumSum(view, off, len, 0x1234)).toBe(want);
        }
      }
    }
  });

  test("a 64 KiB run of 0xffff words still folds right (no int32 overflow)", () => {
    const buf = new Uint8Array(65536 + 8).fill(0xff);
    const words = new Int32Array(buf.buffer);
    expect(checksumSumWords(buf, 2, 65536, 0, words)).toBe(referenceSum(buf, 2, 65536, 0));
    expect(checksumSumWords(buf, 2, 65536, 0, words)).toBe(0xffff);
  });
});

describe("UdpCoalescer hints", () => {
  const HEADROOM = 10;
  /** A coalescer whose memory and the offered datagrams' buffers share one ArrayBuffer. */
  function shared() {
    const emitted: { packet: Uint8Array; gsoSize: number }[] = [];
    const emit: GroEmit = (buf, off, len, gsoSize) =>
      emitted.push({ packet: buf.slice(off, off + len), gsoSize });
    const need = UdpCoalescer.bytes(4, HEADROOM);
    const whole = new Uint8Array(need + 64 * 2048);
    const gro = new UdpCoalescer(emit, {
      trains: 4,
      headroom: HEADROOM,
      memory: whole.subarray(0, need),
    });
    const bufs = Array.from({ length: 64 }, (_, i) =>
      whole.subarray(need + 2048 * i, need + 2048 * (i + 1)),
    );
    const offer = (ps: Uint8Array[], hints: number) => {
      ps.forEach((p, i) => {
        bufs[i]!.set(p, 3); // an odd offset: the word sum's unaligned head and tail
        gro.add(bufs[i]!, 3, p.length, hints);
      });
      gro.flush();
    };
    return { gro, emitted, offer };
  }

  test("IN_MEMORY: a wrong UDP checksum inside a run is still found, passed on alone and as it is", () => {
    const { emitted, offer } = shared();
    const run = udpTrain(6, { payload: 64 });
    const bad = run[3]!.slice();
    bad[40] = bad[40]! ^ 1; // a payload bit flipped: the checksum no longer verifies
    offer([...run.slice(0, 3), bad, ...run.slice(4)], UdpHint.HEADER_CHECKED | UdpHint.IN_MEMORY);
    expect(emitted.map((e) => e.gsoSize)).toEqual([64, 0, 64]);
    expect(Buffer.from(emitted[1]!.packet).equals(Buffer.from(bad))).toBe(true);
  });

  test("without HEADER_CHECKED a wrong IPv4 header checksum keeps a datagram out of every train", () => {
    const run = udpTrain(3, { payload: 64 });
    const bad = run[1]!.slice();
    bad[10] = bad[10]! ^ 1;
    const a = shared();
    a.offer([run[0]!, bad, run[2]!], UdpHint.IN_MEMORY);
    expect(a.emitted.map((e) => e.gsoSize)).toEqual([0, 0, 0]);
  });

  test("UDP_CHECKSUM_COMPUTED only spares the sum: the other rules still apply", () => {
    const { emitted, offer } = shared();
    const run = udpTrain(4, { payload: 64 });
    const zero = udp({ payload: 64, id: 0x2004, checksum: "zero" }); // no checksum: never joins
    offer(
      [...run, zero],
      UdpHint.HEADER_CHECKED | UdpHint.IN_MEMORY | UdpHint.UDP_CHECKSUM_COMPUTED,
    );
    expect(emitted.map((e) => e.gsoSize)).toEqual([64, 0]);
  });

  test("flows whose keys share a hint slot are never mixed up (bytes compared, not the hint)", () => {
    const { emitted, offer } = shared();
    // 8 flows over 4 trains in turn: every train is taken over again and again, so the hint
    // of a flow often names a slot that now holds another flow.
    const ps: Uint8Array[] = [];
    for (let i = 0; i < 48; i++)
      ps.push(udp({ payload: 64, srcPort: 40000 + (i % 8), id: 0x100 + Math.floor(i / 8) }));
    offer(ps, UdpHint.HEADER_CHECKED | UdpHint.IN_MEMORY);
    // Nothing coalesces (more flows in turn than trains): all 48 come out once, as they were.
    expect(emitted.every((e) => e.gsoSize === 0)).toBe(true);
    const hex = (xs: Uint8Array[]) => xs.map((p) => Buffer.from(p).toString("hex")).sort();
    expect(hex(emitted.map((e) => e.packet))).toEqual(hex(ps));
  });
});

describe("TepDecapBatch with partial checksums: a train carries only what one by one would", () => {
  const A6 = parseIPv6("2001:db8:a::1")!;
  const B6 = parseIPv6("2001:db8:a::2")!;
  const HOST_A = [198, 51, 100, 10];
  const SHARED = [198, 51, 100, 20];
  const WEB = [203, 0, 113, 80];

  function run(tun: FakeBatchTun, arrivals: Arrival[]) {
    const { tep, counters } = tepContext([
      ["198.51.100.10", WHOLE, A6],
      ["198.51.100.11", WHOLE, B6],
      ["198.51.100.20", { offset: 6, psidLength: 2, psid: 1 }, A6],
    ]);
    const raw = new FakeTunnelSocket(64);
    raw.inbox.push(...arrivals.map((a) => ({ ...a, packet: a.packet.slice() })));
    const loop = new TepDecapBatch(tep, raw, tun);
    expect(loop.step()).toBe(arrivals.length);
    return counters.snapshot();
  }

  test("spoofed, unbound, outside the port set, a wrong finished checksum: dropped or passed alone, counted the same", () => {
    const from = (packet: Uint8Array, src6 = A6): Arrival => ({ packet, src6, trafficClass: 0 });
    const flow: UdpSpec = { payload: 64, src: HOST_A, dst: WEB };
    const r = udpTrain(10, flow).map(partialUdp);
    const shared: UdpSpec = { payload: 64, src: SHARED, dst: WEB, srcPort: 1280, id: 0x5000 };
    const s = udpTrain(3, shared).map(partialUdp);
    const wrong = udp({ ...flow, id: 0x2005, checksum: "bad" }); // finished, and wrong
    const batch = [
      from(r[0]!),
      from(r[1]!),
      from(r[2]!, B6), // spoofed
      from(r[3]!),
      from(r[4]!),
      from(wrong),
      from(udp({ ...flow, src: [198, 51, 100, 99], id: 0x2006 })), // no binding
      from(r[7]!),
      from(s[0]!),
      from(partialUdp(udp({ ...shared, srcPort: 1536, id: 0x5001 }))), // outside the port set
      from(s[1]!),
      from(s[2]!),
      from(r[8]!),
      from(r[9]!),
    ];
    const uso = new FakeBatchTun(true, 10, true);
    const plain = new FakeBatchTun(false, 0);
    const a = run(uso, batch);
    const b = run(plain, batch);
    expect(a).toEqual(b);
    expect(a["decap-drop-spoofed-source"]).toBe(1);
    expect(a["decap-drop-no-binding"]).toBe(1);
    expect(a["decap-drop-bad-port"]).toBe(1);
    expect(a["decap-csum-completed"]).toBe(10);
    expect(a["decap-forward"]).toBe(batch.length - 3);
    // Coalesced at all (else this test would prove nothing about trains).
    expect(uso.written.some((w) => w.gsoSize > 0)).toBe(true);
    const out = expectCoalescedAsPlain(uso.written, plain.written);
    expect(out.some((p) => ipId(p) === 0x2002)).toBe(false);
    // Every completed checksum verifies; the wrong one is still wrong.
    expect(out.filter((p) => udpChecksumOf(p) !== 0).map(ipId)).toEqual([0x2005]);
  });
});

describe("TepDecapBatch keeps its trains open while the socket says packets are pending", () => {
  const A6 = parseIPv6("2001:db8:a::1")!;
  const flow: UdpSpec = { payload: 64, src: [198, 51, 100, 10], dst: [203, 0, 113, 80] };

  function setup(count: number, perRead: number, tellsPending: boolean) {
    const { tep } = tepContext([["198.51.100.10", WHOLE, A6]]);
    const raw = new FakeTunnelSocket(perRead);
    raw.tellsPending = tellsPending;
    const run = udpTrain(count, flow);
    raw.inbox.push(...run.map((packet) => ({ packet, src6: A6, trafficClass: 0 })));
    const tun = new FakeBatchTun(true, 10, true);
    return { loop: new TepDecapBatch(tep, raw, tun), raw, tun, run };
  }

  test("reads of one flow while more wait: one super-datagram when none waits any more", () => {
    const { loop, tun, run } = setup(24, 8, true);
    expect(loop.step()).toBe(8);
    expect(loop.step()).toBe(8);
    expect(tun.written.length).toBe(0); // held: 16 more datagrams were already waiting
    expect(loop.step()).toBe(8);
    expect(tun.written.length).toBe(1);
    expect(tun.written[0]!.gsoSize).toBe(64);
    expect(hexOfDelivered(tun)).toEqual(run.map(hexOne));
  });

  test(`at most ${HELD_BATCHES} batches are held, however many wait`, () => {
    const { loop, tun } = setup(8 * (HELD_BATCHES + 2), 8, true);
    for (let i = 1; i < HELD_BATCHES; i++) loop.step();
    expect(tun.written.length).toBe(0);
    loop.step();
    expect(tun.written.length).toBe(1);
  });

  test("a socket that cannot tell (no pending): flushed at the end of every batch, as before", () => {
    const { loop, tun } = setup(16, 8, false);
    loop.step();
    expect(tun.written.length).toBe(1);
  });

  test("a read that fails emits what is held (nothing stays in a train)", () => {
    const { loop, raw, tun, run } = setup(24, 8, true);
    loop.step();
    raw.failNext = -11;
    expect(loop.step()).toBe(-11);
    expect(hexOfDelivered(tun)).toEqual(run.slice(0, 8).map(hexOne));
  });
});

const hexOne = (p: Uint8Array) => Buffer.from(p).toString("hex");
function hexOfDelivered(tun: FakeBatchTun): string[] {
  return deliveredDatagrams(tun.written).map(hexOne);
}
