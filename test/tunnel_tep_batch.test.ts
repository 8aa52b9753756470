/**
 * The TEP's batched loops (lib/tunnel/tep_batch.ts) on in-memory devices: every segment goes
 * through the same checks as a single packet, only segments that passed are coalesced, the
 * order within a flow is kept, and super-packets the TUN hands over are cut and checked
 * segment by segment. No root needed.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv6 } from "../lib/net/addr.ts";
import { TepDecapBatch, TepEncapBatch } from "../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";
import { internetChecksum } from "./helpers/packets.ts";
import { ACK, PSH, segmentsOf, tcp, tcpChecksumOf, u32 } from "./helpers/tcp_packets.ts";
import { tepContext, WHOLE } from "./helpers/tep_context.ts";

const HOST4 = [198, 51, 100, 10];
const WEB4 = [203, 0, 113, 80];
const A6 = parseIPv6("2001:db8:a::1")!;
const B6 = parseIPv6("2001:db8:a::2")!;

function setup() {
  return tepContext([
    ["198.51.100.10", WHOLE, A6],
    ["198.51.100.11", WHOLE, B6],
  ]);
}

const segments = segmentsOf;

describe("TepDecapBatch", () => {
  test("segments of one flow from their bound host become one super-packet, byte for byte", () => {
    const { tep, counters } = setup();
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun();
    const loop = new TepDecapBatch(tep, raw, tun);
    const original = tcp({ payload: 20 * 1400, src: HOST4, dst: WEB4, flags: ACK | PSH });
    const segs = segments(original, 1400);
    for (const s of segs) raw.inbox.push({ packet: s, src6: A6, trafficClass: 0 });
    expect(loop.step()).toBe(20);
    expect(tun.written.length).toBe(1);
    expect(tun.written[0]!.gsoSize).toBe(1400);
    expect(Buffer.from(tun.written[0]!.packet).equals(Buffer.from(original))).toBe(true);
    expect(counters.get("decap-forward")).toBe(20); // counted per segment, as one by one
  });

  test("a spoofed segment in the middle is dropped and never joins: the train breaks there", () => {
    const { tep, counters } = setup();
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun();
    const loop = new TepDecapBatch(tep, raw, tun);
    const segs = segments(tcp({ payload: 10 * 1000, src: HOST4, dst: WEB4 }), 1000);
    for (const [i, s] of segs.entries())
      raw.inbox.push({ packet: s, src6: i === 4 ? B6 : A6, trafficClass: 0 });
    loop.step();
    expect(counters.get("decap-drop-spoofed-source")).toBe(1);
    expect(counters.get("decap-forward")).toBe(9);
    // Segments 0–3 as one, then 5–9 as another (5 does not follow 3): nothing of segment 4.
    expect(tun.written.map((w) => w.packet.length)).toEqual([40 + 12 + 4000, 40 + 12 + 5000]);
    expect(u32(tun.written[1]!.packet, 24)).toBe(u32(segs[5]!, 24));
    for (const w of tun.written) {
      expect(internetChecksum(w.packet, 0, 20)).toBe(0);
      expect(tcpChecksumOf(w.packet)).toBe(0);
    }
  });

  test("a device without GSO gets every forwarded packet on its own; the batch is split by short reads", () => {
    const { tep } = setup();
    const raw = new FakeTunnelSocket(3);
    const tun = new FakeBatchTun(false, 0);
    const loop = new TepDecapBatch(tep, raw, tun);
    const segs = segments(tcp({ payload: 7 * 500, src: HOST4, dst: WEB4 }), 500);
    for (const s of segs) raw.inbox.push({ packet: s, src6: A6, trafficClass: 0 });
    let reads = 0;
    while (loop.step() > 0) reads++;
    expect(reads).toBe(3);
    expect(tun.written.map((w) => w.gsoSize)).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(tun.written.map((w) => u32(w.packet, 24))).toEqual(segs.map((s) => u32(s, 24)));
  });
});

describe("TepDecapBatch: a kernel peer's whole TSO packet", () => {
  test("goes to a GSO TUN as one super-packet cut at the tunnel MTU, to a plain TUN as segments", () => {
    for (const gso of [true, false]) {
      const { tep, counters } = setup();
      const raw = new FakeTunnelSocket();
      const tun = new FakeBatchTun(gso);
      const loop = new TepDecapBatch(tep, raw, tun);
      const whole = tcp({ payload: 30000, src: HOST4, dst: WEB4 });
      raw.inbox.push({ packet: whole, src6: A6, trafficClass: 0 });
      loop.step();
      expect(counters.get("decap-tcp-segmented")).toBe(1);
      if (gso) {
        expect(tun.written.length).toBe(1);
        expect(tun.written[0]!.gsoSize).toBe(1460 - 52);
        expect(Buffer.from(tun.written[0]!.packet).equals(Buffer.from(whole))).toBe(true);
      } else {
        expect(tun.written.length).toBe(Math.ceil(30000 / (1460 - 52)));
        for (const w of tun.written) {
          expect(w.packet.length).toBeLessThanOrEqual(1460);
          expect(tcpChecksumOf(w.packet)).toBe(0);
        }
      }
    }
  });
});

/** The packet with its TCP checksum field set to the pseudo-header sum (a sender's CHECKSUM_PARTIAL). */
function partial(p: Uint8Array): Uint8Array {
  const q = p.slice();
  let sum = 6 + (q.length - 20);
  for (let i = 12; i < 20; i += 2) sum += (q[i]! << 8) | q[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  q[36] = sum >>> 8;
  q[37] = sum & 0xff;
  return q;
}

describe("TepDecapBatch: a kernel peer's TSO packet with its checksum left to the hardware", () => {
  test("a GSO TUN gets it as it came, marked partial; a plain TUN gets finished segments", () => {
    for (const gso of [true, false]) {
      const { tep, counters } = setup();
      const raw = new FakeTunnelSocket();
      const tun = new FakeBatchTun(gso);
      const loop = new TepDecapBatch(tep, raw, tun);
      const whole = partial(tcp({ payload: 20000, src: HOST4, dst: WEB4 }));
      raw.inbox.push({ packet: whole, src6: A6, trafficClass: 0 });
      // A small partial packet (no TSO) is always finished before it leaves.
      const small = partial(tcp({ payload: 100, src: HOST4, dst: WEB4, seq: 5 }));
      raw.inbox.push({ packet: small, src6: A6, trafficClass: 0 });
      loop.step();
      expect(counters.get("decap-csum-completed")).toBe(2);
      const last = tun.written.at(-1)!;
      expect(last.partialChecksum).toBe(false);
      expect(tcpChecksumOf(last.packet)).toBe(0);
      if (gso) {
        expect(tun.written.length).toBe(2);
        expect(tun.written[0]!.partialChecksum).toBe(true);
        expect(tun.written[0]!.gsoSize).toBe(1460 - 52);
        expect(Buffer.from(tun.written[0]!.packet).equals(Buffer.from(whole))).toBe(true);
      } else {
        expect(tun.written.length).toBe(Math.ceil(20000 / 1408) + 1);
        for (const w of tun.written) {
          expect(w.partialChecksum).toBe(false);
          expect(tcpChecksumOf(w.packet)).toBe(0);
        }
      }
    }
  });
});

describe("TepEncapBatch", () => {
  test("a super-packet from the TUN is cut, each segment encapsulated to its host in one send", () => {
    const { tep, counters } = setup();
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun();
    const icmp: Uint8Array[] = [];
    const loop = new TepEncapBatch(tep, raw, tun, (b, o, l) => {
      icmp.push(b.slice(o, o + l));
      return l;
    });
    const original = tcp({ payload: 30000, src: WEB4, dst: HOST4, tos: 0x02 });
    tun.inbox.push({ packet: original, gsoSize: 1400 });
    expect(loop.step()).toBe(Math.ceil(30000 / 1400));
    expect(raw.writeCalls).toEqual([Math.ceil(30000 / 1400)]);
    expect(counters.get("encap-forward")).toBe(raw.sent.length);
    let seq = u32(original, 24);
    for (const s of raw.sent) {
      expect([...s.dst6]).toEqual([...A6]);
      expect(s.trafficClass & 3).toBe(2); // ECT(0) copied to the outer header (RFC 6040)
      expect(s.packet.length).toBeLessThanOrEqual(1460);
      expect(tcpChecksumOf(s.packet)).toBe(0);
      expect(u32(s.packet, 24)).toBe(seq);
      seq = (seq + s.packet.length - 52) >>> 0;
    }
    expect(icmp.length).toBe(0);
  });

  test("a packet above the tunnel MTU with DF gets its ICMP error, the others still go", () => {
    const { tep, counters } = setup();
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun();
    const icmp: Uint8Array[] = [];
    const loop = new TepEncapBatch(tep, raw, tun, (b, o, l) => {
      icmp.push(b.slice(o, o + l));
      return l;
    });
    tun.inbox.push({ packet: tcp({ payload: 1600, src: WEB4, dst: HOST4 }), gsoSize: 0 });
    loop.step();
    expect(counters.get("encap-drop-too-big")).toBe(1);
    expect(icmp.length).toBe(1);
    expect(icmp[0]![9]).toBe(1); // ICMP
    expect(raw.sent.length).toBe(0);
    tun.inbox.push({
      packet: tcp({ payload: 1000, src: WEB4, dst: [198, 51, 100, 11] }),
      gsoSize: 0,
    });
    loop.step();
    expect(raw.sent.length).toBe(1);
    expect([...raw.sent[0]!.dst6]).toEqual([...B6]);
  });
});
