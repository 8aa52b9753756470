/**
 * The encapsulating half of the TEP batch fuzz (test/tunnel_tep_fuzz.test.ts): from one seed,
 * what the kernel hands the TEP's TUN — single IPv4 packets and TCP/UDP super-packets of many
 * segments (gso size beside) to bound and unbound, whole and shared addresses, ports in and out
 * of the port sets, above the tunnel MTU with and without DF (RFC 2473 §7.2: ICMPv4 3/4 or
 * fragmented outside), fragments in any order, malformed packets — with binding changes before
 * and in the middle of a run. TepEncapBatch reads each super-packet as its segments in one
 * read; the same segments read one per read must give the same IPv6 packets (addresses,
 * traffic class, flow label) in the same order, the same ICMPv4 errors and counters, and every
 * whole TCP/UDP packet sent goes to the host bound to its destination and port (the test's own
 * copy of the table, RFC 7597 §5.1).
 */
import { parseIPv4 } from "../../lib/net/addr.ts";
import { tcpSegmentAt, tcpSegmentCount } from "../../lib/net/gso.ts";
import { udpSegmentCount, writeUdpSegment } from "../../lib/net/udp_segment.ts";
import { BindingTable, LookupStatus } from "../../lib/tunnel/binding.ts";
import { Counters } from "../../lib/tunnel/counters.ts";
import { TepContext } from "../../lib/tunnel/pipeline.ts";
import { TepEncapBatch } from "../../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./fake_devices.ts";
import { prng } from "./fuzz.ts";
import { tcp } from "./tcp_packets.ts";
import { type BindingOp, fuzzCase } from "./tep_fuzz_gen.ts";
import { fixIPv4 } from "./tep_fuzz_packets.ts";
import { udp } from "./udp_packets.ts";

export interface EncapCase {
  seed: number;
  initial: BindingOp[];
  /** What the TUN hands over, in order; `at`: binding changes due at that lookup of the run. */
  reads: { packet: Uint8Array; gsoSize: number }[];
  during: { at: number; ops: BindingOp[] }[];
  linkMtu: number;
  icmpHostUnreachable: boolean;
  mssClamp: boolean;
}

const hex = (p: Uint8Array) => Buffer.from(p).toString("hex");
const PEER = [203, 0, 113, 80];

/** The case of `seed`: the decapsulating case's table and changes, packets the other way. */
export function encapCase(seed: number): EncapCase {
  const d = fuzzCase(seed);
  const r = prng(seed ^ 0x5eed);
  const int = (n: number) => Math.floor(r() * n);
  const addrs = [...new Set(d.initial.map((op) => op.ipv4))];
  const reads: EncapCase["reads"] = [];
  for (let k = 1 + int(60); k > 0; k--) {
    const v4 = addrs.length > 0 && r() < 0.9 ? addrs[int(addrs.length)]! : 0xc633647f; // .127: unbound
    const dst = [v4 >>> 24, (v4 >>> 16) & 0xff, (v4 >>> 8) & 0xff, v4 & 0xff];
    const port = 1024 + int(64000);
    const df = r() < 0.8;
    const tos = [0, 1, 2, 3, 0xb8][int(5)]!;
    const x = r();
    if (x < 0.35) {
      // A TCP super-packet (or one segment), segments up to 1,460 bytes: some above the MTU.
      const mss = 200 + int(1300);
      const n = 1 + int(12);
      const p = tcp({
        payload: mss * n - (r() < 0.5 ? int(mss) : 0),
        src: PEER,
        dst,
        df,
        tos,
        seq: int(2 ** 32) >>> 0,
      });
      p[22] = port >>> 8; // destination port (the host's)
      p[23] = port & 0xff;
      reads.push({ packet: tcpFix(p), gsoSize: n > 1 ? mss : 0 });
    } else if (x < 0.7) {
      const size = 1 + int(1500);
      const n = 1 + int(8);
      const p = udp({ payload: size * n, src: PEER, dst, dstPort: port, df, tos, id: int(65536) });
      reads.push({ packet: p, gsoSize: n > 1 ? size : 0 });
    } else if (x < 0.85) {
      // Fragments of one datagram, in any order.
      const p = udp({
        payload: 100 + int(2000),
        src: PEER,
        dst,
        dstPort: port,
        df: false,
        id: int(65536),
      });
      const cut = 8 * (4 + int(100));
      const fs: Uint8Array[] = [];
      for (let at = 0; at < p.length - 20; at += cut) {
        const piece = p.subarray(20 + at, Math.min(20 + at + cut, p.length));
        const f = new Uint8Array(20 + piece.length);
        f.set(p.subarray(0, 20));
        f.set(piece, 20);
        f[2] = f.length >>> 8;
        f[3] = f.length & 0xff;
        const fo = (at + cut < p.length - 20 ? 0x2000 : 0) | (at >>> 3);
        f[6] = fo >>> 8;
        f[7] = fo & 0xff;
        fs.push(fixIPv4(f));
      }
      if (r() < 0.5) fs.reverse();
      for (const f of fs) reads.push({ packet: f, gsoSize: 0 });
    } else {
      const p = udp({ payload: int(100), src: PEER, dst, dstPort: port, tos });
      const y = r();
      if (y < 0.3) p[10]! ^= 1;
      else if (y < 0.6) reads.push({ packet: p.slice(0, int(p.length)), gsoSize: 0 });
      else reads.push({ packet: p, gsoSize: 0 });
    }
  }
  // The decapsulating case's changes, in the order made (each valid after the ones before),
  // at lookups spread over the run.
  const changes = d.batches.flatMap((b) => [b.before, ...b.during.map((t) => t.ops)]);
  const ats = changes.map(() => int(reads.length * 3)).sort((a, b) => a - b);
  const during = changes.map((ops, i) => ({ at: ats[i]!, ops }));
  return {
    seed,
    initial: d.initial,
    reads,
    during,
    linkMtu: d.linkMtu,
    icmpHostUnreachable: r() < 0.5,
    mssClamp: d.mssClamp,
  };
}

/** The TCP checksum again (after the destination port changed). */
function tcpFix(p: Uint8Array): Uint8Array {
  p[36] = 0;
  p[37] = 0;
  let sum = 6 + (p.length - 20);
  for (let i = 12; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  for (let i = 20; i < p.length; i += 2) sum += (p[i]! << 8) | (p[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const c = ~sum & 0xffff;
  p[36] = c >>> 8;
  p[37] = c & 0xff;
  return p;
}

/** The segments the TUN device hands over for a read (lib/net/gso.ts, udp_segment.ts). */
function segmentsOf(e: { packet: Uint8Array; gsoSize: number }): Uint8Array[] {
  const p = e.packet;
  if (e.gsoSize === 0) return [p];
  const out = new Uint8Array(70000);
  const udpish = p[9] === 17;
  const n = udpish
    ? udpSegmentCount(p, 0, p.length, e.gsoSize)
    : tcpSegmentCount(p, 0, p.length, e.gsoSize);
  return Array.from({ length: n }, (_, i) =>
    out.slice(
      0,
      udpish
        ? writeUdpSegment(p, 0, e.gsoSize, i, out, 0)
        : tcpSegmentAt(p, 0, e.gsoSize, i, out, 0),
    ),
  );
}

type Shadow = Map<number, { offset: number; psidLength: number; hosts: Map<number, string> }>;

/** Runs the case: super-packets read whole (`batched`) or each segment on its own read. */
export function runEncap(c: EncapCase, batched: boolean) {
  const table = BindingTable.create({ maxEntries: 256 });
  const shadow: Shadow = new Map();
  const apply = (ops: readonly BindingOp[]) => {
    for (const op of ops)
      if (op.kind === "set") {
        table.set(op.ipv4, op.portSet, op.host6);
        const { offset, psidLength, psid } = op.portSet;
        const e = shadow.get(op.ipv4) ?? { offset, psidLength, hosts: new Map() };
        shadow.set(op.ipv4, e);
        e.hosts.set(psid, hex(op.host6));
      } else {
        table.delete(op.ipv4, op.psid);
        const e = shadow.get(op.ipv4)!;
        e.hosts.delete(op.psid);
        if (e.hosts.size === 0) shadow.delete(op.ipv4);
      }
  };
  apply(c.initial);
  const pending = c.during.slice();
  let lookups = 0;
  const oracle: string[] = [];
  const find = table.find.bind(table);
  table.find = (ipv4, port, out, off) => {
    while (pending.length > 0 && pending[0]!.at <= lookups) apply(pending.shift()!.ops);
    lookups++;
    const status = find(ipv4, port, out, off);
    // The test's own answer for the host of (address, port), when the lib found one.
    if (status === LookupStatus.FOUND && port >= 0) {
      const e = shadow.get(ipv4 >>> 0);
      const psid =
        e && e.psidLength > 0
          ? (port >> (16 - e.offset - e.psidLength)) & ((1 << e.psidLength) - 1)
          : 0;
      const want = e?.hosts.get(psid);
      if (want !== hex(out.subarray(off, off + 16)))
        oracle.push(
          `${ipv4 >>> 0}:${port} → ${hex(out.subarray(off, off + 16))}, bound to ${want}`,
        );
    }
    return status;
  };
  const counters = Counters.create({ slices: 1 });
  const tep = new TepContext({
    bindings: table,
    counters: counters.slice(0),
    tepIPv4: parseIPv4("192.0.2.1")!,
    linkMtu: c.linkMtu,
    icmpHostUnreachable: c.icmpHostUnreachable,
    mssClamp: c.mssClamp,
    now: () => 1_000_000,
  });
  const raw = new FakeTunnelSocket();
  const tun = new FakeBatchTun(true, 10, true);
  const icmp: string[] = [];
  const loop = new TepEncapBatch(tep, raw, tun, (b, o, l) => {
    icmp.push(hex(b.subarray(o, o + l)));
    return l;
  });
  for (const e of c.reads) {
    if (batched) tun.inbox.push({ packet: e.packet.slice(), gsoSize: e.gsoSize });
    else for (const s of segmentsOf(e)) tun.inbox.push({ packet: s, gsoSize: 0 });
  }
  for (let guard = 0; tun.inbox.length > 0 && guard < 100000; guard++) loop.step();
  // RFC 2473 §7.2 / RFC 791: with DF nothing above the tunnel MTU goes into the tunnel.
  for (const s of raw.sent)
    if ((s.packet[6]! & 0x40) !== 0 && s.packet.length > c.linkMtu - 40)
      oracle.push(`${s.packet.length} bytes with DF sent, tunnel MTU ${c.linkMtu - 40}`);
  const snap = counters.snapshot() as Record<string, number>;
  return {
    sent: raw.sent.map((s) => `${hex(s.dst6)} ${s.trafficClass} ${s.flowLabel} ${hex(s.packet)}`),
    icmp,
    counters: JSON.stringify(Object.entries(snap).filter(([, v]) => v !== 0)),
    oracle,
    errors: loop.stats.writeErrors + loop.stats.readErrors,
  };
}
