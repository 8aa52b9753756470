/**
 * UDP GRO in the client's batched inbound loop (lib/dataplane/client_batch.ts ClientInBatch,
 * lib/tunnel/gro_udp.ts) on in-memory devices, no root: a coalesced super-datagram into the DTI
 * never carries what the separate datagrams would not. The same mixed batch (a wrong outer
 * source, another inner destination, ECN marks and drops, a fragment, a bad checksum, runs of
 * two flows) goes once through a DTI that takes UDP super-datagrams and once through one that
 * takes nothing: cut as the kernel cuts, the first gives exactly the datagrams of the second,
 * flow by flow in the same order, with the same counters. With a shared lease (a port set) the
 * datagrams are translated back (NAPT) before they coalesce.
 */
import { describe, expect, test } from "bun:test";
import { ClientInBatch, ClientOutBatch } from "../lib/dataplane/client_batch.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { ClientState } from "../lib/tunnel/client_state.ts";
import { COUNTER_NAMES } from "../lib/tunnel/counters.ts";
import { NaptTable } from "../lib/tunnel/napt.ts";
import { PathMtuTable } from "../lib/tunnel/pmtu.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";
import type { Arrival } from "./helpers/tep_context.ts";
import {
  deliveredDatagrams,
  expectCoalescedAsPlain,
  hexOf,
  ipId,
  type UdpSpec,
  udp,
  udpChecksumOf,
  udpTrain,
} from "./helpers/udp_packets.ts";

const LEASED = [198, 51, 100, 10];
const WEB = [203, 0, 113, 80];
const DNS = [203, 0, 113, 53];
const TEP6 = parseIPv6("2001:db8:7e9::1")!;
const OTHER6 = parseIPv6("2001:db8:bad::1")!;
/** a = 6, k = 10, PSID 3: 63 ports (1027, 2051, …). */
const TINY = { offset: 6, psidLength: 10, psid: 3 };

function loopOver(tun: FakeBatchTun, portSet?: typeof TINY) {
  const counters = new Float64Array(COUNTER_NAMES.length);
  const state = ClientState.create();
  state.setLease(parseIPv4("198.51.100.10")!, portSet, TEP6);
  const init = {
    state,
    napt: NaptTable.create(),
    counters,
    onDemand: false,
    client: { tunnelMtu: 1460, mssClamp: false },
    pathMtu: PathMtuTable.create({ capacity: 4 }),
    udpGro: true,
  };
  const raw = new FakeTunnelSocket();
  return { loop: new ClientInBatch(init, raw, tun), raw, init, counters };
}

/** Runs `arrivals` as one batch; the counters by name. */
function runBatch(tun: FakeBatchTun, arrivals: Arrival[]): Record<string, number> {
  const { loop, raw, counters } = loopOver(tun);
  raw.inbox.push(...arrivals.map((a) => ({ ...a, packet: a.packet.slice() })));
  expect(loop.step()).toBe(arrivals.length);
  return Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, counters[i]!]));
}

/** A batch mixing runs of two flows with every reason a datagram is dropped or changed. */
function mixedBatch(): Arrival[] {
  const from = (packet: Uint8Array, src6 = TEP6, trafficClass = 0): Arrival => ({
    packet,
    src6,
    trafficClass,
  });
  const flow: UdpSpec = {
    payload: 100,
    src: WEB,
    dst: LEASED,
    srcPort: 443,
    dstPort: 40000,
    tos: 0x02,
  };
  const run = udpTrain(12, flow);
  const dns: UdpSpec = {
    payload: 40,
    src: DNS,
    dst: LEASED,
    srcPort: 53,
    dstPort: 40001,
    id: 0x7000,
  };
  const dnsRun = udpTrain(5, dns);
  return [
    ...run.slice(0, 3).map((p) => from(p)),
    from(run[3]!, OTHER6), // not from the TEP: dropped
    from(run[4]!),
    from(dnsRun[0]!),
    from(run[5]!, TEP6, 0x03), // outer CE on an ECT inner: forwarded marked CE (RFC 6040)
    from(run[6]!),
    from(dnsRun[1]!),
    from(dnsRun[2]!),
    from(udp({ ...flow, tos: 0, id: 0x2007, seed: 10 }), TEP6, 0x03), // CE on not-ECT: dropped
    from(udp({ ...flow, id: 0x2007, seed: 10, checksum: "bad" })), // forwarded as it is
    from(udp({ ...flow, dst: [198, 51, 100, 11], id: 0x2f08 })), // not the lease: dropped
    ...run.slice(8, 10).map((p) => from(p)),
    from(udp({ ...flow, id: 0x200a, mf: true, df: false, seed: 11 })), // a first fragment
    ...run.slice(10).map((p) => from(p)),
    ...dnsRun.slice(3).map((p) => from(p)),
    from(udp({ ...flow, id: 0x200c, payload: 20, seed: 12 })), // shorter: ends the run
  ];
}

const dport = (p: Uint8Array) => (p[22]! << 8) | p[23]!;

describe("ClientInBatch: UDP GRO into the DTI after every check", () => {
  test("a mixed batch: super-datagrams cut back give exactly what one-by-one delivery gives", () => {
    const batch = mixedBatch();
    const uso = new FakeBatchTun(true, 10, true);
    const plain = new FakeBatchTun(false, 0);
    const a = runBatch(uso, batch);
    const b = runBatch(plain, batch);
    expect(a).toEqual(b);
    expect(a["client-decap-drop-wrong-tep"]).toBe(1);
    expect(a["client-decap-drop-wrong-destination"]).toBe(1);
    expect(a["client-decap-drop-ecn"]).toBe(1);
    expect(a["client-decap-ecn-ce"]).toBe(1);
    expect(a["client-decap-forward"]).toBe(batch.length - 3);
    const out = expectCoalescedAsPlain(uso.written, plain.written);
    // Nothing of a dropped datagram: not the one from another source, not the one to another address.
    expect(out.some((p) => ipId(p) === 0x2003)).toBe(false);
    expect(out.some((p) => ipId(p) === 0x2f08)).toBe(false);
    // The CE mark stays on its own datagram; the bad checksum is still bad, never repaired.
    expect(out.filter((p) => (p[1]! & 3) === 3).map(ipId)).toEqual([0x2005]);
    expect(out.filter((p) => udpChecksumOf(p) !== 0).length).toBe(1);
  });

  test("a shared lease: datagrams to the flow's external port are translated back, then coalesced; others never", () => {
    const uso = new FakeBatchTun(true, 10, true);
    const { loop, raw, init, counters } = loopOver(uso, TINY);
    // The host's flow 40000 → 443 went out first and got an external port of the set.
    const outTun = new FakeBatchTun();
    const outRaw = new FakeTunnelSocket();
    const out = new ClientOutBatch(init, outTun, outRaw);
    outTun.inbox.push({
      packet: udp({ payload: 10, src: LEASED, dst: WEB, srcPort: 40000, dstPort: 443 }),
      gsoSize: 0,
    });
    expect(out.step()).toBe(1);
    const sent = outRaw.sent[0]!.packet;
    const external = (sent[20]! << 8) | sent[21]!;
    expect(external).not.toBe(40000);
    const replies = udpTrain(10, {
      payload: 200,
      src: WEB,
      dst: LEASED,
      srcPort: 443,
      dstPort: external,
    });
    const outside = udp({
      payload: 200,
      src: WEB,
      dst: LEASED,
      srcPort: 443,
      dstPort: 1028,
      id: 0x3000,
    });
    const unmapped = udp({
      payload: 200,
      src: WEB,
      dst: LEASED,
      srcPort: 443,
      dstPort: 2051,
      id: 0x3001,
    });
    for (const p of [
      ...replies.slice(0, 4),
      outside,
      ...replies.slice(4, 7),
      unmapped,
      ...replies.slice(7),
    ])
      raw.inbox.push({ packet: p, src6: TEP6, trafficClass: 0 });
    expect(loop.step()).toBe(12);
    const got = deliveredDatagrams(uso.written);
    expect(got.length).toBe(10);
    for (const p of got) {
      expect(dport(p)).toBe(40000); // translated back to the host's own port
      expect(udpChecksumOf(p)).toBe(0);
    }
    expect(got.map(ipId)).toEqual(replies.map(ipId));
    expect(uso.written.some((w) => w.gsoSize > 0)).toBe(true);
    expect(uso.written.length).toBeLessThan(10);
    const count = (name: (typeof COUNTER_NAMES)[number]) => counters[COUNTER_NAMES.indexOf(name)]!;
    expect(count("client-decap-drop-wrong-destination")).toBe(1);
    expect(count("client-napt-drop-no-mapping")).toBe(1);
  });

  test("a DTI without UDP GSO (kernel before 6.2) gets the datagrams one by one; TCP GRO stays", () => {
    const tun = new FakeBatchTun(true, 10, false);
    const run = udpTrain(8, { payload: 64, src: WEB, dst: LEASED, srcPort: 443, dstPort: 40000 });
    runBatch(
      tun,
      run.map((packet) => ({ packet, src6: TEP6, trafficClass: 0 })),
    );
    expect(tun.written.map((w) => w.gsoSize)).toEqual(run.map(() => 0));
    expect(hexOf(tun.written.map((w) => w.packet))).toEqual(hexOf(run));
    const { loop } = loopOver(new FakeBatchTun(true, 10, false));
    expect(loop.gro).not.toBeNull();
    expect(loop.groUdp).toBeNull();
    expect(loopOver(new FakeBatchTun(true, 10, true)).loop.groUdp).not.toBeNull();
  });
});
