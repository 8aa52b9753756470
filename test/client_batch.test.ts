/**
 * The DSTM client's batched loops (lib/dataplane/client_batch.ts) on in-memory devices: a
 * super-packet the DTI hands over is cut into segments and every segment goes through the
 * checks a packet read alone goes through (anti-spoofing, DF / path MTU, port set / NAPT);
 * packets from the tunnel are checked one by one and only those that passed are coalesced
 * (GRO) into the DTI. The on-demand queue, the NAPT and lease changes keep working. A
 * segmented or coalesced batch never lets through what separate packets would not: one test
 * per check. No root needed.
 */
import { describe, expect, test } from "bun:test";
import { ClientInBatch, ClientOutBatch } from "../lib/dataplane/client_batch.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { portInSet } from "../lib/net/portset.ts";
import { ClientState } from "../lib/tunnel/client_state.ts";
import { COUNTER_NAMES, Counter } from "../lib/tunnel/counters.ts";
import { NaptTable } from "../lib/tunnel/napt.ts";
import { PathMtuTable } from "../lib/tunnel/pmtu.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";
import { internetChecksum } from "./helpers/packets.ts";
import { ACK, PSH, SYN, segmentsOf, tcp, tcpChecksumOf, u32 } from "./helpers/tcp_packets.ts";

const LEASED = [198, 51, 100, 10];
const LEASED4 = parseIPv4("198.51.100.10")!;
const WEB4 = [203, 0, 113, 80];
const PLACEHOLDER = [192, 0, 0, 2];
const TEP6 = parseIPv6("2001:db8:7e9::1")!;
const OTHER6 = parseIPv6("2001:db8:bad::1")!;
/** a = 6, k = 10, PSID 3: 63 ports (1027, 2051, …). */
const TINY = { offset: 6, psidLength: 10, psid: 3 };
const GSO = 1400;

type Name = (typeof COUNTER_NAMES)[number];

function setup(opts: { portSet?: typeof TINY; onDemand?: boolean; lease?: boolean } = {}) {
  const counters = new Float64Array(COUNTER_NAMES.length);
  const state = ClientState.create();
  if (opts.lease !== false) state.setLease(LEASED4, opts.portSet, TEP6);
  const napt = NaptTable.create();
  const pathMtu = PathMtuTable.create({ capacity: 4 });
  const init = {
    state,
    napt,
    counters,
    onDemand: opts.onDemand === true,
    client: { tunnelMtu: 1460, mssClamp: false },
    pathMtu,
  };
  const count = (name: Name) => counters[Counter[name]]!;
  return { counters, state, napt, pathMtu, init, count };
}

/** Sets a TCP packet's ports and recomputes its checksum. */
function ports(p: Uint8Array, sport: number, dport: number): Uint8Array {
  p[20] = sport >>> 8;
  p[21] = sport;
  p[22] = dport >>> 8;
  p[23] = dport;
  p[36] = 0;
  p[37] = 0;
  const c = tcpChecksumOf(p);
  p[36] = c >>> 8;
  p[37] = c;
  return p;
}

const segments = segmentsOf;

const sport = (p: Uint8Array) => (p[20]! << 8) | p[21]!;
const dport = (p: Uint8Array) => (p[22]! << 8) | p[23]!;
const valid = (p: Uint8Array) => internetChecksum(p, 0, 20) === 0 && tcpChecksumOf(p) === 0;

/** The DTI hands over a host's 20 × 1,400-byte super-packet. */
function superPacket(src = LEASED, extra: Parameters<typeof tcp>[0] = { payload: 0 }) {
  return tcp({ ...extra, payload: 20 * GSO, src, dst: WEB4, flags: ACK | PSH });
}

describe("ClientOutBatch: DTI super-packets → segments → checks → sendmmsg", () => {
  test("a 28,000-byte super-packet goes to the TEP as 20 checked segments in one sendmmsg", () => {
    const { init, count } = setup();
    const tun = new FakeBatchTun();
    const raw = new FakeTunnelSocket();
    const loop = new ClientOutBatch(init, tun, raw);
    const original = superPacket();
    tun.inbox.push({ packet: original, gsoSize: GSO });
    expect(loop.step()).toBe(20);
    expect(raw.writeCalls).toEqual([20]);
    expect(count("client-encap-forward")).toBe(20);
    let seq = u32(original, 24);
    for (const s of raw.sent) {
      expect(s.dst6).toEqual(TEP6);
      expect(s.packet.length).toBeLessThanOrEqual(1460);
      expect(valid(s.packet)).toBe(true);
      expect(u32(s.packet, 24)).toBe(seq);
      expect(s.flowLabel).toBe(raw.sent[0]!.flowLabel);
      seq = (seq + s.packet.length - 52) >>> 0;
    }
  });

  test("anti-spoofing: a super-packet from another source than the lease sends no segment", () => {
    const { init, count } = setup();
    const tun = new FakeBatchTun();
    const raw = new FakeTunnelSocket();
    const loop = new ClientOutBatch(init, tun, raw);
    tun.inbox.push({ packet: superPacket([198, 51, 100, 99]), gsoSize: GSO });
    tun.inbox.push({ packet: superPacket(), gsoSize: GSO });
    expect(loop.step()).toBe(20);
    expect(raw.sent.length).toBe(0);
    expect(count("client-encap-drop-wrong-source")).toBe(20); // every segment, as one by one
    expect(loop.step()).toBe(20);
    expect(raw.sent.length).toBe(20);
  });

  test("DF and path MTU: segments above the learned path MTU are dropped and answered, none sent", () => {
    const { init, count, pathMtu } = setup();
    pathMtu.learn(TEP6, 0, 1300, (Date.now() / 1000) | 0); // tunnel MTU towards the TEP: 1,260
    const tun = new FakeBatchTun();
    const raw = new FakeTunnelSocket();
    const loop = new ClientOutBatch(init, tun, raw);
    tun.inbox.push({ packet: superPacket(), gsoSize: GSO });
    expect(loop.step()).toBe(20);
    expect(raw.sent.length).toBe(0);
    expect(count("client-encap-drop-too-big")).toBe(20);
    // ICMPv4 3/4 with next-hop MTU 1,260 into the DTI (rate limited: a burst of 20).
    expect(tun.written.length).toBeGreaterThan(0);
    for (const w of tun.written) {
      expect(w.packet[9]).toBe(1);
      expect([w.packet[20], w.packet[21]]).toEqual([3, 4]);
      expect((w.packet[26]! << 8) | w.packet[27]!).toBe(1260);
      expect(w.headroom).toBeGreaterThanOrEqual(tun.headroom);
    }
    // Without DF the segments go whole (the kernel fragments the outer packet).
    tun.inbox.push({ packet: superPacket(LEASED, { payload: 0, df: false }), gsoSize: GSO });
    expect(loop.step()).toBe(20);
    expect(raw.sent.length).toBe(20);
  });

  test("port set: every segment gets the flow's one external port of the set, checksums right", () => {
    const { init, count } = setup({ portSet: TINY });
    const tun = new FakeBatchTun();
    const raw = new FakeTunnelSocket();
    const loop = new ClientOutBatch(init, tun, raw);
    tun.inbox.push({ packet: ports(superPacket(), 40000, 5201), gsoSize: GSO });
    expect(loop.step()).toBe(20);
    expect(raw.sent.length).toBe(20);
    const external = sport(raw.sent[0]!.packet);
    expect(portInSet(external, TINY)).toBe(true);
    for (const s of raw.sent) {
      expect(sport(s.packet)).toBe(external);
      expect(valid(s.packet)).toBe(true);
    }
    expect(count("client-encap-drop-bad-port")).toBe(0);
  });

  test("NAPT: with every port of the set held, no segment of a new flow goes (each counted)", () => {
    const { init, count } = setup({ portSet: TINY });
    const tun = new FakeBatchTun();
    const raw = new FakeTunnelSocket();
    const loop = new ClientOutBatch(init, tun, raw);
    for (let i = 0; i < 63; i++)
      tun.inbox.push({
        packet: ports(tcp({ payload: 0, src: LEASED, dst: WEB4, flags: SYN }), 30000 + i, 80),
        gsoSize: 0,
      });
    for (let i = 0; i < 63; i++) expect(loop.step()).toBe(1);
    expect(raw.sent.length).toBe(63);
    tun.inbox.push({ packet: ports(superPacket(), 40000, 5201), gsoSize: GSO });
    expect(loop.step()).toBe(20);
    expect(raw.sent.length).toBe(63);
    expect(count("client-napt-drop-no-port")).toBe(20);
  });

  test("on-demand: packets wait for the lease, a lease is asked for once, then they go translated", () => {
    const { init, state, count } = setup({ onDemand: true, lease: false });
    const tun = new FakeBatchTun();
    const raw = new FakeTunnelSocket();
    let asked = 0;
    const loop = new ClientOutBatch(init, tun, raw, () => asked++);
    const syn = tcp({ payload: 0, src: PLACEHOLDER, dst: WEB4, flags: SYN });
    tun.inbox.push({ packet: syn, gsoSize: 0 });
    tun.inbox.push({ packet: syn, gsoSize: 0 });
    expect(loop.step()).toBe(1);
    expect(loop.step()).toBe(1);
    expect(asked).toBe(1);
    expect(loop.queued).toBe(2);
    expect(count("client-queued")).toBe(2);
    expect(raw.sent.length).toBe(0);
    state.setLease(LEASED4, undefined, TEP6);
    expect(loop.step()).toBe(0); // nothing new read; the queue went
    expect(raw.sent.length).toBe(2);
    for (const s of raw.sent) {
      expect([...s.packet.subarray(12, 16)]).toEqual(LEASED);
      expect(valid(s.packet)).toBe(true);
    }
  });

  test("lease refresh: without a lease (not on-demand) segments are dropped; a new lease is followed", () => {
    const { init, state, count } = setup();
    const tun = new FakeBatchTun();
    const raw = new FakeTunnelSocket();
    const loop = new ClientOutBatch(init, tun, raw);
    state.clearLease();
    tun.inbox.push({ packet: superPacket(), gsoSize: GSO });
    expect(loop.step()).toBe(20);
    expect(count("client-drop-no-lease")).toBe(20);
    state.setLease(parseIPv4("198.51.100.11")!, undefined, TEP6);
    tun.inbox.push({ packet: superPacket(), gsoSize: GSO });
    tun.inbox.push({ packet: superPacket([198, 51, 100, 11]), gsoSize: GSO });
    loop.step();
    expect(count("client-encap-drop-wrong-source")).toBe(20); // the old address
    loop.step();
    expect(raw.sent.length).toBe(20);
  });
});

describe("ClientInBatch: recvmmsg → checks → GRO into the DTI", () => {
  function inbound(opts: { portSet?: typeof TINY } = {}) {
    const s = setup(opts);
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun();
    const loop = new ClientInBatch(s.init, raw, tun);
    return { ...s, raw, tun, loop };
  }
  const toHost = (o: Parameters<typeof tcp>[0] = { payload: 0 }) =>
    tcp({ ...o, payload: 20 * GSO, src: WEB4, dst: LEASED, flags: ACK | PSH });

  test("20 segments of one flow from the TEP become one super-packet, byte for byte", () => {
    const { raw, tun, loop, count } = inbound();
    const original = toHost();
    for (const s of segments(original, GSO))
      raw.inbox.push({ packet: s, src6: TEP6, trafficClass: 0 });
    expect(loop.step()).toBe(20);
    expect(tun.written.length).toBe(1);
    expect(tun.written[0]!.gsoSize).toBe(GSO);
    expect(Buffer.from(tun.written[0]!.packet).equals(Buffer.from(original))).toBe(true);
    expect(count("client-decap-forward")).toBe(20);
  });

  /**
   * Everything the DTI got, as payload bytes, and whether the sequence range of `bad` is
   * among them (the test payloads repeat, so by sequence number rather than by content).
   */
  function carried(tun: FakeBatchTun, bad: Uint8Array): { bytes: number; leaked: boolean } {
    let bytes = 0;
    let leaked = false;
    const badSeq = u32(bad, 24);
    for (const w of tun.written) {
      expect(valid(w.packet)).toBe(true);
      const payload = w.packet.length - 52;
      bytes += payload;
      if ((badSeq - u32(w.packet, 24)) >>> 0 < payload) leaked = true;
    }
    return { bytes, leaked };
  }

  test("anti-spoofing: a segment from another IPv6 source than the TEP is never coalesced", () => {
    const { raw, tun, loop, count } = inbound();
    const segs = segments(toHost(), GSO);
    segs.forEach((s, i) => {
      raw.inbox.push({ packet: s, src6: i === 7 ? OTHER6 : TEP6, trafficClass: 0 });
    });
    expect(loop.step()).toBe(20);
    expect(count("client-decap-drop-wrong-tep")).toBe(1);
    expect(carried(tun, segs[7]!)).toEqual({ bytes: 19 * GSO, leaked: false });
  });

  test("a segment to another IPv4 address than the lease is never coalesced", () => {
    const { raw, tun, loop, count } = inbound();
    const segs = segments(toHost(), GSO);
    const stray = segments(toHost({ payload: 0, seed: 9 }), GSO)[7]!;
    stray.set([198, 51, 100, 11], 16); // same flow otherwise, next in sequence
    stray[10] = 0;
    stray[11] = 0;
    const ip = internetChecksum(stray, 0, 20);
    stray[10] = ip >>> 8;
    stray[11] = ip;
    ports(stray, sport(stray), dport(stray));
    segs[7] = stray;
    for (const s of segs) raw.inbox.push({ packet: s, src6: TEP6, trafficClass: 0 });
    expect(loop.step()).toBe(20);
    expect(count("client-decap-drop-wrong-destination")).toBe(1);
    expect(carried(tun, stray)).toEqual({ bytes: 19 * GSO, leaked: false });
  });

  test("port set: segments to a port outside the set, or to a port no flow uses, are never coalesced", () => {
    const { raw, tun, loop, count, init } = inbound({ portSet: TINY });
    // The host's flow 40000 → 5201 went out first and got an external port.
    const outTun = new FakeBatchTun();
    const outRaw = new FakeTunnelSocket();
    const out = new ClientOutBatch(init, outTun, outRaw);
    outTun.inbox.push({
      packet: ports(tcp({ payload: 10, src: LEASED, dst: WEB4 }), 40000, 5201),
      gsoSize: 0,
    });
    expect(out.step()).toBe(1);
    const external = sport(outRaw.sent[0]!.packet);
    const segs = segments(ports(toHost(), 5201, external), GSO);
    const outside = ports(segs[5]!.slice(), 5201, 1028); // 1028: not in the set
    const unmapped = ports(segs[9]!.slice(), 5201, 2051); // in the set, no flow
    segs[5] = outside;
    segs[9] = unmapped;
    for (const s of segs) raw.inbox.push({ packet: s, src6: TEP6, trafficClass: 0 });
    expect(loop.step()).toBe(20);
    expect(count("client-decap-drop-wrong-destination")).toBe(1);
    expect(count("client-napt-drop-no-mapping")).toBe(1);
    const { bytes } = carried(tun, outside);
    expect(bytes).toBe(18 * GSO);
    for (const w of tun.written) expect(dport(w.packet)).toBe(40000); // translated back
    expect(tun.written.some((w) => w.gsoSize > 0)).toBe(true);
  });

  test("ECN: a segment whose outer CE cannot be carried (Not-ECT inside) is dropped, not coalesced", () => {
    const { raw, tun, loop, count } = inbound();
    const segs = segments(toHost(), GSO);
    segs.forEach((s, i) => {
      raw.inbox.push({ packet: s, src6: TEP6, trafficClass: i === 3 ? 0x03 : 0 });
    });
    expect(loop.step()).toBe(20);
    expect(count("client-decap-drop-ecn")).toBe(1);
    expect(carried(tun, segs[3]!)).toEqual({ bytes: 19 * GSO, leaked: false });
  });

  test("a DTI without offloads gets every packet as it came; no lease: dropped and counted", () => {
    const s = setup();
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun(false);
    const loop = new ClientInBatch(s.init, raw, tun);
    for (const p of segments(toHost(), GSO))
      raw.inbox.push({ packet: p, src6: TEP6, trafficClass: 0 });
    expect(loop.step()).toBe(20);
    expect(tun.written.length).toBe(20);
    expect(tun.written.every((w) => w.gsoSize === 0)).toBe(true);
    s.state.clearLease();
    raw.inbox.push({ packet: toHost(), src6: TEP6, trafficClass: 0 });
    expect(loop.step()).toBe(1);
    expect(s.count("client-drop-no-lease")).toBe(1);
  });
});
