/**
 * Red team: the client's UDP coalescing into its DTI (lib/dataplane/client_batch.ts
 * ClientInBatch → lib/tunnel/tun_writer.ts → lib/tunnel/gro_udp.ts) attacked as an on-link
 * host spoofing the TEP's IPv6 source and as a hostile TEP, no root. Every batch goes once
 * through a DTI that takes UDP super-datagrams (cut back as the kernel cuts them) and once
 * through one that takes nothing (`dstm client --no-offload`). The rule: the host gets, flow
 * by flow, byte for byte the same datagrams; an ICMP message to the host comes after exactly
 * the same datagrams (and TCP segments); the counters are the same. The TEP's side of the
 * same coalescer is in redteam_udp_gro.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { ClientInBatch, ClientOutBatch } from "../lib/dataplane/client_batch.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { ClientState } from "../lib/tunnel/client_state.ts";
import { COUNTER_NAMES } from "../lib/tunnel/counters.ts";
import { NaptTable } from "../lib/tunnel/napt.ts";
import { PathMtuTable } from "../lib/tunnel/pmtu.ts";
import { FakeBatchTun, FakeTunnelSocket, type TunWrite } from "./helpers/fake_devices.ts";
import { internetChecksum } from "./helpers/packets.ts";
import { segmentsOf, tcp } from "./helpers/tcp_packets.ts";
import type { Arrival } from "./helpers/tep_context.ts";
import { type UdpSpec, udp, udpCut, udpTrain } from "./helpers/udp_packets.ts";

const LEASED = [198, 51, 100, 10];
const NEXT = [198, 51, 100, 12];
const WEB = [203, 0, 113, 80];
const TEP6 = parseIPv6("2001:db8:7e9::1")!;
const SPOOF6 = parseIPv6("2001:db8:7e9::66")!;
/** a = 6, k = 10, PSID 3: 63 ports (1027, 2051, …). */
const TINY = { offset: 6, psidLength: 10, psid: 3 };

const from = (packet: Uint8Array, src6 = TEP6, trafficClass = 0): Arrival => ({
  packet,
  src6,
  trafficClass,
});

interface Lease {
  ipv4: string;
  portSet?: typeof TINY;
}

/** A client inbound loop over `tun` (and its outbound loop, to open NAPT mappings). */
function client(tun: FakeBatchTun, lease: Lease, udpGro = true) {
  const counters = new Float64Array(COUNTER_NAMES.length);
  const state = ClientState.create();
  state.setLease(parseIPv4(lease.ipv4)!, lease.portSet, TEP6);
  const init = {
    state,
    napt: NaptTable.create(),
    counters,
    onDemand: false,
    client: { tunnelMtu: 1460, mssClamp: false },
    pathMtu: PathMtuTable.create({ capacity: 4 }),
    udpGro,
  };
  const raw = new FakeTunnelSocket();
  const loop = new ClientInBatch(init, raw, tun);
  /** The host sends one datagram from `port` to WEB:443; returns the external port it got. */
  const open = (port: number): number => {
    const outTun = new FakeBatchTun();
    const outRaw = new FakeTunnelSocket();
    const out = new ClientOutBatch(init, outTun, outRaw);
    outTun.inbox.push({
      packet: udp({ payload: 10, src: LEASED, dst: WEB, srcPort: port, dstPort: 443 }),
      gsoSize: 0,
    });
    expect(out.step()).toBe(1);
    const sent = outRaw.sent.at(-1)!.packet;
    return (sent[20]! << 8) | sent[21]!;
  };
  return { loop, raw, state, counters, open };
}

type Step = Arrival[] | ((c: ReturnType<typeof client>) => void);

/** Runs the steps (batches, or actions on the client between them) over `tun`. */
function run(tun: FakeBatchTun, lease: Lease, steps: (c: ReturnType<typeof client>) => Step[]) {
  const c = client(tun, lease);
  for (const s of steps(c)) {
    if (typeof s === "function") {
      s(c);
      continue;
    }
    c.raw.inbox.push(...s.map((a) => ({ ...a, packet: a.packet.slice() })));
    while (c.loop.step() > 0) {}
  }
  const counters = Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, c.counters[i]!]));
  return { counters, stats: { ...c.loop.stats } };
}

const delivered = (written: TunWrite[]) =>
  written.flatMap((w) =>
    w.gsoSize === 0
      ? [w.packet]
      : w.packet[9] === 17
        ? udpCut(w.packet, w.gsoSize)
        : segmentsOf(w.packet, w.gsoSize),
  );
const hex = (p: Uint8Array) => Buffer.from(p).toString("hex");

const isFlow = (p: Uint8Array) => p[9] === 17 || p[9] === 6;

/** Hex of each UDP / TCP packet by 5-tuple (bytes 12–24) in order; others by addresses. */
function byFlow(ps: Uint8Array[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of ps) {
    const key = `${hex(p.subarray(12, isFlow(p) ? 24 : 20))}/${p[9]}`;
    out[key] = [...(out[key] ?? []), hex(p)];
  }
  return out;
}

/**
 * For each packet that is not UDP, the datagrams to the same destination delivered before
 * it, flow by flow: the host must see an ICMP error (from the peer, or from a router on the
 * way about the host's flow to the peer) after exactly the same datagrams.
 */
function othersAfter(ps: Uint8Array[]): string[] {
  const seen = new Map<string, number>();
  const out: string[] = [];
  for (const p of ps) {
    const dst = hex(p.subarray(16, 20));
    if (isFlow(p)) {
      const flow = `${hex(p.subarray(16, 24))}${hex(p.subarray(12, 16))}/${p[9]}`;
      seen.set(flow, (seen.get(flow) ?? 0) + 1);
      continue;
    }
    const before = [...seen].filter(([f]) => f.startsWith(dst)).sort();
    out.push(`${hex(p)} after ${JSON.stringify(before)}`);
  }
  return out;
}

/** The same steps with and without UDP coalescing: the same delivery and the same counters. */
function expectSameAsSeparate(
  lease: Lease,
  steps: (c: ReturnType<typeof client>) => Step[],
  uso = new FakeBatchTun(true, 10, true),
): { supers: number; delivered: Uint8Array[] } {
  const plain = new FakeBatchTun(false, 0);
  const a = run(uso, lease, steps);
  const b = run(plain, lease, steps);
  expect(a.counters).toEqual(b.counters);
  expect(a.stats.writeErrors).toBe(b.stats.writeErrors);
  const got = delivered(uso.written);
  const want = plain.written.map((w) => w.packet);
  expect(got.length).toBe(want.length);
  expect(byFlow(got)).toEqual(byFlow(want));
  expect(othersAfter(got)).toEqual(othersAfter(want));
  return { supers: uso.written.filter((w) => w.gsoSize > 0).length, delivered: got };
}

/** An ICMPv4 error from `src` to `dst` (type 3 code 3 by default) quoting a datagram. */
function icmpError(src: readonly number[], dst: readonly number[], quote: Uint8Array, code = 3) {
  const body = quote.subarray(0, 28);
  const p = new Uint8Array(20 + 8 + body.length);
  p[0] = 0x45;
  p[2] = p.length >>> 8;
  p[3] = p.length & 0xff;
  p[8] = 64;
  p[9] = 1;
  p.set(src, 12);
  p.set(dst, 16);
  p[20] = 3;
  p[21] = code;
  p.set(body, 28);
  const c = internetChecksum(p, 20, p.length);
  p[22] = c >>> 8;
  p[23] = c & 0xff;
  const h = internetChecksum(p, 0, 20);
  p[10] = h >>> 8;
  p[11] = h & 0xff;
  return p;
}

/** `p` with 4 bytes of IPv4 options (NOP NOP NOP EOL), checksums right. */
function withOptions(p: Uint8Array): Uint8Array {
  const q = new Uint8Array(p.length + 4);
  q.set(p.subarray(0, 20), 0);
  q.set([1, 1, 1, 0], 20);
  q.set(p.subarray(20), 24);
  q[0] = 0x46;
  q[2] = q.length >>> 8;
  q[3] = q.length & 0xff;
  q[10] = 0;
  q[11] = 0;
  const h = internetChecksum(q, 0, 24);
  q[10] = h >>> 8;
  q[11] = h & 0xff;
  return q;
}

/** `p` with its IPv4 header checksum off by one. */
function badHeaderChecksum(p: Uint8Array): Uint8Array {
  const q = p.slice();
  q[11] = (q[11]! + 1) & 0xff;
  return q;
}

/** `p` followed by `extra` bytes after its IPv4 total length (link padding). */
function padded(p: Uint8Array, extra: number): Uint8Array {
  const q = new Uint8Array(p.length + extra).fill(0xa5);
  q.set(p, 0);
  return q;
}

const flow = (dstPort: number, over: Partial<UdpSpec> = {}): UdpSpec => ({
  payload: 120,
  src: WEB,
  dst: LEASED,
  srcPort: 443,
  dstPort,
  id: 0x1000,
  ...over,
});

describe("the client's UDP coalescing is opt-in (udpGro, dstm client --udp-gro)", () => {
  test("by default a DTI with UDP GSO still gets every datagram on its own (the host's netfilter sees each)", () => {
    const tun = new FakeBatchTun(true, 10, true);
    const { loop, raw } = client(tun, { ipv4: "198.51.100.10" }, false);
    expect(loop.groUdp).toBeNull();
    expect(loop.gro).not.toBeNull(); // TCP is still coalesced
    const t = udpTrain(8, flow(40000));
    raw.inbox.push(...t.map((p) => from(p)));
    expect(loop.step()).toBe(8);
    expect(tun.written.map((w) => w.gsoSize)).toEqual(t.map(() => 0));
    expect(tun.written.map((w) => hex(w.packet))).toEqual(t.map(hex));
  });
});

describe("red team: the client's UDP coalescing into the DTI against one-by-one delivery", () => {
  test("an ICMP error between the same addresses comes after the datagrams before it, not before", () => {
    const run1 = udpTrain(6, flow(40000));
    const quoted = udp({ payload: 8, src: LEASED, dst: WEB, srcPort: 40000, dstPort: 443 });
    const icmp = icmpError(WEB, LEASED, quoted);
    const { supers } = expectSameAsSeparate({ ipv4: "198.51.100.10" }, () => [
      [...run1.slice(0, 3).map((p) => from(p)), from(icmp), ...run1.slice(3).map((p) => from(p))],
    ]);
    expect(supers).toBeGreaterThan(0);
  });

  test("a router's ICMP error about the host's flow comes after the peer's datagrams before it", () => {
    const run1 = udpTrain(6, flow(40000));
    const quoted = udp({ payload: 8, src: LEASED, dst: WEB, srcPort: 40000, dstPort: 443 });
    const fragNeeded = icmpError([192, 0, 2, 1], LEASED, quoted, 4);
    const { supers } = expectSameAsSeparate({ ipv4: "198.51.100.10" }, () => [
      [
        ...run1.slice(0, 3).map((p) => from(p)),
        from(fragNeeded),
        ...run1.slice(3).map((p) => from(p)),
      ],
    ]);
    expect(supers).toBeGreaterThan(0);
  });

  test("an ICMP error comes after the TCP segments held for the host too", () => {
    const segs = Array.from({ length: 6 }, (_, i) =>
      tcp({
        payload: 100,
        seq: 1000 + 100 * i,
        id: 0x4000 + i,
        src: WEB,
        dst: LEASED,
        srcPort: 443,
        seed: i,
        timestamps: false,
      }),
    );
    const quoted = tcp({ payload: 0, src: LEASED, dst: WEB, srcPort: 5201, timestamps: false });
    const icmp = icmpError([192, 0, 2, 1], LEASED, quoted, 4);
    const uso = new FakeBatchTun(true, 10, true);
    expectSameAsSeparate(
      { ipv4: "198.51.100.10" },
      () => [
        [...segs.slice(0, 3).map((p) => from(p)), from(icmp), ...segs.slice(3).map((p) => from(p))],
      ],
      uso,
    );
    expect(uso.written.some((w) => w.gsoSize > 0 && w.packet[9] === 6)).toBe(true);
  });

  test("spoofed TEP source: an on-link host's datagrams of the same 5-tuple mid-train", () => {
    const good = udpTrain(10, flow(40000, { seed: 1 }));
    // Same 5-tuple, from another IPv6 source (dropped) and from the TEP's own address (forwarded:
    // at layer 3 it is the TEP), with a continuing id, a repeated id, and another payload.
    const forged = udpTrain(3, flow(40000, { id: 0x1003, seed: 99 }));
    const repeated = udp(flow(40000, { id: 0x1004, seed: 98 }));
    const { supers } = expectSameAsSeparate({ ipv4: "198.51.100.10" }, () => [
      [
        ...good.slice(0, 3).map((p) => from(p)),
        from(forged[0]!, SPOOF6),
        from(forged[0]!, TEP6),
        ...good.slice(3, 5).map((p) => from(p)),
        from(repeated, TEP6),
        from(forged[1]!, SPOOF6, 3),
        ...good.slice(5).map((p) => from(p)),
        from(forged[2]!, TEP6, 3),
      ],
    ]);
    expect(supers).toBeGreaterThan(0);
  });

  test("a hostile TEP: options, header checksums, padding, truncation, TTL, TOS, DF, fragments mid-train", () => {
    const f = flow(40000);
    const t = udpTrain(30, f);
    const at = (i: number, over: Partial<UdpSpec> = {}) =>
      udp({ ...f, id: 0x1000 + i, seed: 3 + i, ...over });
    const truncated = t[9]!.slice(0, 60); // total length longer than the outer payload
    const { supers } = expectSameAsSeparate({ ipv4: "198.51.100.10" }, () => [
      [
        ...t.slice(0, 3).map((p) => from(p)),
        from(withOptions(t[3]!)),
        from(t[4]!),
        from(badHeaderChecksum(t[5]!)),
        from(t[6]!),
        from(padded(t[7]!, 13)),
        from(t[8]!),
        from(truncated),
        from(at(10, { ttl: 1 })),
        from(at(11, { ttl: 1 })),
        from(at(12, { tos: 0x02 })),
        from(at(13, { tos: 0x01 })),
        from(at(14, { df: false })),
        from(at(15, { df: false })),
        from(at(16, { df: false, mf: true })), // a first fragment
        from(at(17, { checksum: "zero" })),
        from(at(18, { checksum: "bad" })),
        ...t.slice(19, 24).map((p) => from(p)),
        from(at(24, { payload: 119 })),
        from(at(25, { payload: 121 })),
        ...t.slice(26).map((p) => from(p)),
      ],
    ]);
    expect(supers).toBeGreaterThan(0);
  });

  test("a shared lease: outside the port set, no mapping, fragments first / middle / last between good trains", () => {
    const { supers } = expectSameAsSeparate({ ipv4: "198.51.100.10", portSet: TINY }, (c) => {
      const ext = c.open(40000);
      const ext2 = c.open(40001);
      const a = udpTrain(12, flow(ext, { seed: 5 }));
      const b = udpTrain(12, flow(ext2, { payload: 300, id: 0x5000 }));
      // A datagram of 24 + 16 + 16 payload bytes in three fragments (ids 0x7000), last first.
      const whole = udp(flow(ext, { payload: 48, id: 0x7000, df: false, seed: 77 }));
      const frag = (offset8: number, bytes: number, more: boolean) => {
        const start = 20 + offset8 * 8;
        const p = new Uint8Array(20 + bytes);
        p.set(whole.subarray(0, 20), 0);
        p.set(whole.subarray(start, start + bytes), 20);
        p[2] = p.length >>> 8;
        p[3] = p.length & 0xff;
        const fo = offset8 | (more ? 0x2000 : 0);
        p[6] = fo >>> 8;
        p[7] = fo & 0xff;
        p[10] = 0;
        p[11] = 0;
        const h = internetChecksum(p, 0, 20);
        p[10] = h >>> 8;
        p[11] = h & 0xff;
        return p;
      };
      const first = frag(0, 32, true);
      const middle = frag(4, 16, true);
      const last = frag(6, 8 + 0, false);
      const outside = udp(flow(1028, { id: 0x6000 }));
      const unmapped = udp(flow(2051, { id: 0x6001 }));
      return [
        [
          ...a.slice(0, 3).map((p) => from(p)),
          from(last),
          ...b.slice(0, 2).map((p) => from(p)),
          from(outside),
          ...a.slice(3, 6).map((p) => from(p)),
          from(middle),
          from(unmapped),
          ...b.slice(2, 6).map((p) => from(p)),
          from(first),
          ...a.slice(6).map((p) => from(p)),
          ...b.slice(6).map((p) => from(p)),
        ],
      ];
    });
    expect(supers).toBeGreaterThan(0);
  });

  test("a lease change between batches and inside one (new address, new port set)", () => {
    const old = udpTrain(8, flow(40000));
    const moved = udpTrain(8, flow(40000, { dst: NEXT, id: 0x2000 }));
    const { supers } = expectSameAsSeparate({ ipv4: "198.51.100.10" }, () => [
      [...old.slice(0, 4).map((p) => from(p)), ...moved.slice(0, 2).map((p) => from(p))],
      (x) => x.state.setLease(parseIPv4("198.51.100.12")!, undefined, TEP6),
      [...old.slice(4).map((p) => from(p)), ...moved.slice(2, 6).map((p) => from(p))],
      (x) => x.state.setLease(parseIPv4("198.51.100.12")!, TINY, TEP6),
      [...moved.slice(6).map((p) => from(p)), from(udp(flow(1027, { dst: NEXT, id: 0x2100 })))],
    ]);
    expect(supers).toBeGreaterThan(0);
  });

  test("more flows than trains, 64-datagram and 65,535-byte limits", () => {
    const flows = Array.from({ length: 11 }, (_, i) => udpTrain(9, flow(40000 + i, { seed: i })));
    const interleaved: Arrival[] = [];
    for (let k = 0; k < 9; k++) for (const f of flows) interleaved.push(from(f[k]!));
    const many = udpTrain(70, flow(41000, { payload: 64, id: 0xffe0 }));
    const big = udpTrain(4, flow(41001, { payload: 30000 - 28, df: false }));
    const { supers } = expectSameAsSeparate({ ipv4: "198.51.100.10" }, () => [
      interleaved.slice(0, 60),
      interleaved.slice(60),
      many.slice(0, 64).map((p) => from(p)),
      [...many.slice(64).map((p) => from(p)), ...big.map((p) => from(p))],
    ]);
    expect(supers).toBeGreaterThan(0);
  });

  test("a DTI refusing UDP_L4 writes (EINVAL) mid-batch: the datagrams still arrive, in order, once", () => {
    const uso = new FakeBatchTun(true, 10, true);
    uso.refuseUdpGso = true;
    const a = udpTrain(10, flow(40000));
    const b = udpTrain(10, flow(40001, { payload: 64 }));
    const quoted = udp({ payload: 8, src: LEASED, dst: WEB, srcPort: 40001, dstPort: 443 });
    const mixed: Arrival[] = [];
    for (let i = 0; i < 10; i++) mixed.push(from(a[i]!), from(b[i]!));
    mixed.splice(9, 0, from(icmpError(WEB, LEASED, quoted)));
    expectSameAsSeparate({ ipv4: "198.51.100.10" }, () => [mixed, mixed.slice(0, 4)], uso);
    expect(uso.refused).toBeGreaterThan(0);
  });
});
