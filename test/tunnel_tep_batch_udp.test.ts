/**
 * UDP GRO in the TEP's batched decapsulating loop (lib/tunnel/tep_batch.ts, gro_udp.ts) on
 * in-memory devices, no root: a coalesced super-datagram never lets through what the separate
 * datagrams would not. The same mixed batch (spoofed outer sources, a port outside the bound
 * port set, ECN marks and drops, no binding, fragments, bad checksums) goes once through a TUN
 * that takes UDP super-datagrams and once through one that takes nothing: cut as the kernel
 * cuts, the first gives exactly the datagrams of the second, in the same order, with the same
 * counters. And a UDP super-datagram read from the TUN is checked datagram by datagram.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv6 } from "../lib/net/addr.ts";
import { TepDecapBatch, TepEncapBatch } from "../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";
import { type Arrival, tepContext, WHOLE } from "./helpers/tep_context.ts";
import {
  expectCoalescedAsPlain,
  hexOf,
  ipId,
  partialUdp,
  type UdpSpec,
  udp,
  udpChecksumOf,
  udpTrain,
} from "./helpers/udp_packets.ts";

const A6 = parseIPv6("2001:db8:a::1")!;
const B6 = parseIPv6("2001:db8:a::2")!;
const HOST_A = [198, 51, 100, 10];
const SHARED = [198, 51, 100, 20];
const WEB = [203, 0, 113, 80];
/** PSID 1 of offset 6, length 2: ports with (port >> 8) & 3 = 1, e.g. 1280–1535. */
const PORT_IN_SET = 1280;
const PORT_OUT_OF_SET = 1536;

function setup() {
  return tepContext([
    ["198.51.100.10", WHOLE, A6],
    ["198.51.100.11", WHOLE, B6],
    ["198.51.100.20", { offset: 6, psidLength: 2, psid: 1 }, A6],
  ]);
}

/** A batch that mixes runs of one flow with every reason a datagram is dropped or changed. */
function mixedBatch(): Arrival[] {
  const from = (packet: Uint8Array, src6 = A6, trafficClass = 0): Arrival => ({
    packet,
    src6,
    trafficClass,
  });
  const flow: UdpSpec = { payload: 64, src: HOST_A, dst: WEB, tos: 0x02 }; // ECT(0)
  const run = udpTrain(12, flow);
  const shared: UdpSpec = { payload: 64, src: SHARED, dst: WEB, srcPort: PORT_IN_SET, id: 0x5000 };
  const sharedRun = udpTrain(4, shared);
  return [
    ...run.slice(0, 3).map((p) => from(p)),
    from(run[3]!, B6), // spoofed: A's address from B's outer source
    from(run[4]!),
    from(run[5]!, A6, 0x03), // outer CE on an ECT inner: forwarded marked CE (RFC 6040)
    from(run[6]!),
    from(udp({ ...flow, tos: 0, id: 0x2007, seed: 10 }), A6, 0x03), // CE on not-ECT: dropped
    from(udp({ ...flow, id: 0x2007, seed: 10, checksum: "bad" })), // forwarded as it is
    ...run.slice(8, 10).map((p) => from(p)),
    from(sharedRun[0]!),
    from(udp({ ...shared, srcPort: PORT_OUT_OF_SET, id: 0x5001 })), // outside the port set
    ...sharedRun.slice(1).map((p) => from(p)),
    from(udp({ ...flow, src: [198, 51, 100, 99], id: 0x100 })), // no binding
    from(udp({ ...flow, id: 0x200a, mf: true, df: false, seed: 11 })), // a first fragment
    ...run.slice(10).map((p) => from(p)),
    from(udp({ ...flow, id: 0x200c, payload: 20, seed: 12 })), // shorter: ends the run
  ];
}

function runBatch(tun: FakeBatchTun, arrivals: Arrival[], perRead = 64) {
  const { tep, counters } = setup();
  const raw = new FakeTunnelSocket(perRead);
  raw.inbox.push(...arrivals.map((a) => ({ ...a, packet: a.packet.slice() })));
  const loop = new TepDecapBatch(tep, raw, tun);
  expect(loop.step()).toBe(arrivals.length);
  return { counters: counters.snapshot(), loop };
}

describe("TepDecapBatch: UDP GRO after every check", () => {
  test("a mixed batch: super-datagrams cut back give exactly what one-by-one forwarding gives", () => {
    const batch = mixedBatch();
    const uso = new FakeBatchTun(true, 10, true);
    const plain = new FakeBatchTun(false, 0);
    const a = runBatch(uso, batch);
    const b = runBatch(plain, batch);
    expect(a.counters).toEqual(b.counters);
    expect(a.counters["decap-forward"]).toBeGreaterThan(0);
    // Nothing of a dropped datagram: not the spoofed one, not the one outside the port set.
    const out = expectCoalescedAsPlain(uso.written, plain.written);
    expect(out.some((p) => ipId(p) === 0x2003)).toBe(false);
    expect(out.some((p) => ((p[20]! << 8) | p[21]!) === PORT_OUT_OF_SET)).toBe(false);
    // The CE mark stays on its own datagram only.
    expect(out.filter((p) => (p[1]! & 3) === 3).map(ipId)).toEqual([0x2005]);
    // The bad checksum is still bad (never recomputed into a good one).
    expect(out.filter((p) => udpChecksumOf(p) !== 0).length).toBe(1);
  });

  test("the counters say why each datagram was dropped, as without GRO", () => {
    const { counters } = runBatch(new FakeBatchTun(true, 10, true), mixedBatch());
    const name = (n: keyof typeof counters) => counters[n];
    expect(name("decap-drop-spoofed-source")).toBe(1);
    expect(name("decap-drop-bad-port")).toBe(1);
    expect(name("decap-drop-ecn")).toBe(1);
    expect(name("decap-drop-no-binding")).toBe(1);
    expect(name("decap-ecn-ce")).toBe(1);
    expect(name("decap-forward")).toBe(mixedBatch().length - 4);
  });

  test("a TUN without UDP GSO (kernel before 6.2): datagrams one by one, TCP still coalesced", () => {
    const tun = new FakeBatchTun(true, 10, false);
    const run = udpTrain(8, { payload: 64, src: HOST_A, dst: WEB });
    runBatch(
      tun,
      run.map((packet) => ({ packet, src6: A6, trafficClass: 0 })),
    );
    expect(tun.written.map((w) => w.gsoSize)).toEqual(run.map(() => 0));
    expect(hexOf(tun.written.map((w) => w.packet))).toEqual(hexOf(run));
    const { loop } = runBatch(new FakeBatchTun(true, 10, false), []);
    expect(loop.gro).not.toBeNull();
    expect(loop.groUdp).toBeNull();
  });
});

describe("TepDecapBatch: many flows in turn (an aggregate of hosts)", () => {
  test("64 flows, 4 datagrams each, one after another in turn: one write per flow, order kept", () => {
    // No two consecutive datagrams share a flow. A read of 256 and 64 trains held still meet
    // each flow's 4 datagrams in one batch (with 64 per read and 8 trains: 256 writes).
    const runs = Array.from({ length: 64 }, (_, f) =>
      udpTrain(4, { payload: 64, src: HOST_A, dst: WEB, srcPort: 10000 + f, id: 0x100 * f }),
    );
    const arrivals: Arrival[] = [];
    for (let i = 0; i < 4; i++)
      for (const run of runs) arrivals.push({ packet: run[i]!, src6: A6, trafficClass: 0 });
    const uso = new FakeBatchTun(true, 10, true);
    const plain = new FakeBatchTun(false, 0);
    const a = runBatch(uso, arrivals, 256);
    const b = runBatch(plain, arrivals, 256);
    expect(a.counters).toEqual(b.counters);
    expectCoalescedAsPlain(uso.written, plain.written, 64);
    expect(uso.written.length).toBe(64);
    expect(uso.written.every((w) => w.gsoSize === 64)).toBe(true);
  });
});

describe("TepDecapBatch: a TUN that took TUN_F_USO4 but refuses a UDP_L4 write (EINVAL)", () => {
  test("that super-datagram goes as its datagrams, in order, and UDP coalescing stops", () => {
    const { tep } = setup();
    const raw = new FakeTunnelSocket(8);
    const tun = new FakeBatchTun(true, 10, true);
    tun.refuseUdpGso = true;
    const loop = new TepDecapBatch(tep, raw, tun);
    const run = udpTrain(24, { payload: 64, src: HOST_A, dst: WEB });
    for (const packet of run) raw.inbox.push({ packet, src6: A6, trafficClass: 0 });
    while (loop.step() > 0) {}
    expect(tun.refused).toBe(1); // only the first batch's super-datagram was tried
    expect(tun.written.every((w) => w.gsoSize === 0)).toBe(true);
    expect(hexOf(tun.written.map((w) => w.packet))).toEqual(hexOf(run));
    expect(loop.stats.writeErrors).toBe(0);
    expect(loop.stats.lastError).toBe(-22);
  });

  test("datagrams with partial checksums (a veth sender's) leave completed after the refusal too", () => {
    const { tep } = setup();
    const raw = new FakeTunnelSocket(8);
    const tun = new FakeBatchTun(true, 10, true);
    tun.refuseUdpGso = true;
    const loop = new TepDecapBatch(tep, raw, tun);
    const run = udpTrain(24, { payload: 64, src: HOST_A, dst: WEB });
    for (const packet of run)
      raw.inbox.push({ packet: partialUdp(packet), src6: A6, trafficClass: 0 });
    while (loop.step() > 0) {}
    expect(tun.refused).toBe(1);
    // The refused super-datagram cut here, the later datagrams completed one by one: each as
    // the sender's hardware would have finished it.
    expect(hexOf(tun.written.map((w) => w.packet))).toEqual(hexOf(run));
  });
});

describe("TepEncapBatch: a UDP super-datagram from the TUN", () => {
  test("is cut, and every datagram checked: too big with DF → ICMP, the others to their host", () => {
    const { tep, counters } = setup();
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun(true, 10, true);
    const icmp: Uint8Array[] = [];
    const loop = new TepEncapBatch(tep, raw, tun, (b, o, l) => {
      icmp.push(b.slice(o, o + l));
      return l;
    });
    // Three datagrams of 1,000 bytes to host A: one write, one sendmmsg of three.
    const small = udpTrain(3, { payload: 1000, src: WEB, dst: HOST_A });
    const whole = udp({ payload: 3000, src: WEB, dst: HOST_A });
    // Built as the kernel hands it over: the headers of the first, the payloads one after another.
    whole.set(small[0]!.subarray(0, 28));
    for (const [i, p] of small.entries()) whole.set(p.subarray(28), 28 + 1000 * i);
    whole[2] = (3028 >>> 8) & 0xff;
    whole[3] = 3028 & 0xff;
    tun.inbox.push({ packet: whole, gsoSize: 1000 });
    expect(loop.step()).toBe(3);
    expect(raw.writeCalls).toEqual([3]);
    expect(hexOf(raw.sent.map((s) => s.packet))).toEqual(hexOf(small));
    // Two datagrams of 1,600 bytes with DF: above the tunnel MTU, each refused on its own.
    const big = udpTrain(2, { payload: 1600, src: WEB, dst: HOST_A, id: 0x4000 });
    const both = udp({ payload: 3200, src: WEB, dst: HOST_A, id: 0x4000 });
    both.set(big[0]!.subarray(0, 28));
    both.set(big[0]!.subarray(28), 28);
    both.set(big[1]!.subarray(28), 1628);
    both[2] = (3228 >>> 8) & 0xff;
    both[3] = 3228 & 0xff;
    tun.inbox.push({ packet: both, gsoSize: 1600 });
    expect(loop.step()).toBe(2);
    expect(raw.sent.length).toBe(3);
    expect(counters.get("encap-drop-too-big")).toBe(2);
    expect(icmp.length).toBe(2);
  });
});
