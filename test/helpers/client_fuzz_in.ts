/**
 * The in half of the client batch fuzz (test/client_batch_fuzz.test.ts): from one seed,
 * batches of IPv4-in-IPv6 arrivals for the client's in loop (lib/dataplane/client_batch.ts
 * ClientInBatch) — TCP trains and UDP runs of many flows interleaved, from the TEP and from
 * spoofed outer sources, to the leased address and to others, with a shared lease to ports
 * the NAPT mapped (hits), to other ports of the set and outside it (misses); good, bad and
 * partial L4 checksums, bad header checksums, outer ECN over inner ECN (RFC 6040 §4.2),
 * fragments, IPv4 options, truncated and padded packets, the leased address as source, ICMP.
 * Three runs as the TEP fuzz's (test/helpers/tep_fuzz_run.ts): a DTI with GSO (super-packets
 * cut back), a DTI without offloads, one packet per read; the single run also checked by the
 * test's own rules.
 */
import { ClientInBatch, ClientOutBatch } from "../../lib/dataplane/client_batch.ts";
import { tcpSegmentAt, tcpSegmentCount } from "../../lib/net/gso.ts";
import type { PortSetValue } from "../../lib/net/portset.ts";
import { ClientState } from "../../lib/tunnel/client_state.ts";
import { COUNTER_NAMES } from "../../lib/tunnel/counters.ts";
import { NaptTable, PLACEHOLDER_IPV4 } from "../../lib/tunnel/napt.ts";
import { PathMtuTable } from "../../lib/tunnel/pmtu.ts";
import { LEASES, NOW_MS, TEPS, WHOLE } from "./client_fuzz_out.ts";
import {
  bytes4,
  hex,
  isFragment,
  l4Sum,
  laterFragment,
  v4,
  withPorts,
} from "./client_fuzz_packets.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./fake_devices.ts";
import { prng } from "./fuzz.ts";
import { internetChecksum } from "./packets.ts";
import { tcp } from "./tcp_packets.ts";
import type { Arrival } from "./tep_context.ts";
import { echo, fragments, partial, withOptions } from "./tep_fuzz_packets.ts";
import type { RunMode, RunResult } from "./tep_fuzz_run.ts";
import { udp, udpCut } from "./udp_packets.ts";

const LEASED = LEASES[0]!;
const OTHER6 = Uint8Array.from([0x20, 1, 0x0d, 0xb8, 0x0b, 0xad, ...new Array(9).fill(0), 1]);
const PEERS = [
  [203, 0, 113, 80],
  [203, 0, 113, 53],
  [192, 0, 2, 7],
];

/** A host flow the NAPT maps before the batches: its protocol, ports and peer. */
interface HostFlow {
  proto: 6 | 17;
  hostPort: number;
  peer: number[];
  peerPort: number;
}

export interface InCase {
  seed: number;
  portSet: PortSetValue;
  udpGro: boolean;
  mssClamp: boolean;
  onDemand: boolean;
  perRead: number;
  /** The GSO DTI's headroom (packets at unaligned offsets too). */
  headroom: number;
  /** The GSO DTI refuses UDP super-datagram writes (-EINVAL) after taking TUN_F_USO4. */
  refuseUdpGso: boolean;
  /** Flows the host opens first (through ClientOutBatch, so the NAPT maps them). */
  hostFlows: HostFlow[];
  /** The external port of each host flow (NAPT), or its own port (whole address). */
  external: number[];
  /** Batches, each with the lease's TEP (an index into TEPS) while it comes. */
  batches: { tep: number; lost: boolean; arrivals: Arrival[] }[];
}

/** Generator switches: shapes a known bug makes fail (none known so far). */
export const IN_SHAPES = { options: true, partial: true };

/** Opens the host flows through a ClientOutBatch on `init`; their external ports. */
function openHostFlows(
  init: ConstructorParameters<typeof ClientOutBatch>[0],
  flows: HostFlow[],
): number[] {
  const tun = new FakeBatchTun(true, 10);
  const raw = new FakeTunnelSocket();
  const out = new ClientOutBatch(init, tun, raw);
  return flows.map((f) => {
    const src = bytes4(init.onDemand ? PLACEHOLDER_IPV4 : LEASED);
    const p =
      f.proto === 6
        ? tcp({ payload: 0, flags: 0x02, src, dst: f.peer })
        : udp({ payload: 10, src, dst: f.peer });
    tun.inbox.push({ packet: withPorts(p, f.hostPort, f.peerPort), gsoSize: 0 });
    out.step();
    const s = raw.sent.at(-1);
    return s ? (s.packet[20]! << 8) | s.packet[21]! : -1;
  });
}

function setup(c: {
  portSet: PortSetValue;
  udpGro: boolean;
  mssClamp: boolean;
  onDemand: boolean;
}) {
  const counters = new Float64Array(COUNTER_NAMES.length);
  const state = ClientState.create();
  state.setLease(LEASED, c.portSet, TEPS[0]!);
  const init = {
    state,
    napt: NaptTable.create(),
    counters,
    onDemand: c.onDemand,
    client: { tunnelMtu: 1460, mssClamp: c.mssClamp },
    pathMtu: PathMtuTable.create({ capacity: 4 }),
    udpGro: c.udpGro,
  };
  return { init, counters };
}

/** The case of `seed`. */
export function inCase(seed: number): InCase {
  const r = prng(seed ^ 0x1c0ffee);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const psidLength = r() < 0.5 ? 0 : pick([2, 4, 6, 8]);
  const portSet = psidLength === 0 ? WHOLE : { offset: 6, psidLength, psid: int(2 ** psidLength) };
  const hostFlows: HostFlow[] = Array.from({ length: 1 + int(16) }, () => ({
    proto: r() < 0.6 ? 6 : 17,
    hostPort: 1024 + int(60000),
    peer: pick(PEERS),
    peerPort: pick([80, 443, 53, 1 + int(65535)]),
  }));
  // onDemand: the host's flows come from the placeholder, the NAPT maps replies back to it.
  const base = { portSet, udpGro: r() < 0.5, mssClamp: r() < 0.5, onDemand: r() < 0.25 };
  const external = withClock(() => openHostFlows(setup(base).init, hostFlows));
  const state = hostFlows.map(() => ({
    seq: int(2 ** 32) >>> 0,
    id: int(65536),
    size: pick([1348, 1348, 1000, 100 + int(1300)]), // a train's segment size
  }));
  const batches: InCase["batches"] = [];
  let tep = 0;
  for (let b = 1 + int(4); b > 0; b--) {
    if (batches.length > 0 && r() < 0.25) tep = 1 - tep; // the lease moves to another TEP
    const lost = batches.length > 0 && r() < 0.1; // no lease while this batch comes
    const arrivals: Arrival[] = [];
    let f = int(hostFlows.length);
    for (let k = 1 + int(120); k > 0; k--) {
      if (r() > 0.8) f = int(hostFlows.length);
      const flow = hostFlows[f]!;
      const st = state[f]!;
      let dport = external[f]! < 0 ? flow.hostPort : external[f]!;
      const y = r();
      if (y < 0.06) dport = 1 + int(65535); // a miss: no mapping (or outside the set)
      let dst = bytes4(LEASED);
      if (y > 0.97) dst = [198, 51, 100, 77];
      let src = flow.peer;
      if (y > 0.95 && y <= 0.97) src = bytes4(LEASED); // a local source from the tunnel
      const x = r();
      let p: Uint8Array;
      if (x < 0.03) p = echo(src, dst, dport, int(200));
      else if (x < 0.06) {
        const whole = udp({
          payload: 100 + int(2000),
          src,
          dst,
          srcPort: flow.peerPort,
          dstPort: dport,
          df: false,
          id: st.id,
        });
        st.id = (st.id + 1) & 0xffff;
        const pieces = fragments(whole, 8 * (20 + int(170)));
        if (r() < 0.4) pieces.reverse(); // held until the first fragment comes (its ports)
        for (const q of pieces) arrivals.push({ packet: q, src6: TEPS[tep]!, trafficClass: 0 });
        continue;
      } else if (flow.proto === 6) {
        const syn = r() < 0.03;
        const payload = syn ? 0 : r() < 0.9 ? st.size : int(1348);
        const flags = syn ? 0x12 : pick([0x10, 0x10, 0x10, 0x18, 0x11, 0x04, 0x90]);
        p = tcp({
          payload,
          seq: st.seq,
          id: st.id,
          flags,
          src,
          dst,
          tos: pick([0, 0, 2, 1]),
          seed: st.seq,
        });
        if (syn) p.set([2, 4, 0x23, 0x8c], 40); // MSS 9100 to clamp
        p = withPorts(p, flow.peerPort, dport);
        st.seq = (st.seq + payload) >>> 0;
      } else {
        p = udp({
          payload: r() < 0.9 ? st.size : int(1400),
          src,
          dst,
          srcPort: flow.peerPort,
          dstPort: dport,
          id: st.id,
          tos: pick([0, 0, 2]),
          seed: st.id,
        });
        if (r() < 0.05) {
          p[26] = 0; // no checksum (RFC 768)
          p[27] = 0;
        }
      }
      st.id = (st.id + 1) & 0xffff;
      let trafficClass = 0;
      const z = r();
      if (z < 0.04)
        p[p.length - 1]! ^= 0x5a; // bad L4 checksum
      else if (z < 0.06)
        p[10]! ^= 1; // bad header checksum
      else if (z < 0.12 && IN_SHAPES.partial && (p[9] === 6 || (p[9] === 17 && (p[26] || p[27]))))
        partial(p);
      else if (z < 0.18) trafficClass = pick([1, 2, 3]);
      else if (z < 0.2 && IN_SHAPES.options) p = withOptions(p);
      else if (z < 0.22) p = p.slice(0, int(p.length));
      else if (z < 0.24) {
        const q = new Uint8Array(p.length + 1 + int(20)); // link padding
        q.set(p);
        p = q;
      }
      const outer = r();
      const src6 = outer < 0.04 ? OTHER6 : outer < 0.08 ? TEPS[1 - tep]! : TEPS[tep]!;
      arrivals.push({ packet: p, src6, trafficClass });
    }
    batches.push({ tep, lost, arrivals });
  }
  const headroom = pick([0, 1, 3, 4, 10, 10, 12]);
  const refuseUdpGso = base.udpGro && r() < 0.2;
  return {
    seed,
    ...base,
    perRead: 1 + int(64),
    headroom,
    refuseUdpGso,
    hostFlows,
    external,
    batches,
  };
}

function withClock<T>(f: () => T): T {
  const realNow = Date.now;
  Date.now = () => NOW_MS;
  try {
    return f();
  } finally {
    Date.now = realNow;
  }
}

/** The kernel's cut of a DTI write, or the packet finished if left partial (NEEDS_CSUM). */
function deliver(w: {
  packet: Uint8Array;
  gsoSize: number;
  partialChecksum: boolean;
}): Uint8Array[] {
  const p = w.packet;
  if (w.gsoSize > 0) {
    if (p[9] === 17) return udpCut(p, w.gsoSize);
    const n = tcpSegmentCount(p, 0, p.length, w.gsoSize);
    if (n <= 0) throw new Error(`TCP super-packet the kernel refuses: ${n}`);
    const out = new Uint8Array(70000);
    return Array.from({ length: n }, (_, i) =>
      out.slice(0, tcpSegmentAt(p, 0, w.gsoSize, i, out, 0)),
    );
  }
  if (!w.partialChecksum) return [p];
  const q = p.slice();
  const ihl = (q[0]! & 0x0f) * 4;
  const f = ihl + (q[9] === 6 ? 16 : 6);
  const c = internetChecksum(q, ihl, q.length);
  q[f] = c >>> 8;
  q[f + 1] = c & 0xff;
  return [q];
}

/** Runs `c` in `mode` (tep_fuzz_run.ts's modes), as a RunResult for compareRuns. */
export function runIn(c: InCase, mode: RunMode): RunResult {
  return withClock(() => {
    const { init, counters } = setup(c);
    const external = openHostFlows(init, c.hostFlows);
    const oracle: string[] = [];
    if (JSON.stringify(external) !== JSON.stringify(c.external))
      oracle.push("the NAPT mapped other ports than in the generator's run");
    counters.fill(0);
    const raw = new FakeTunnelSocket(mode === "single" ? 1 : c.perRead);
    const tun =
      mode === "gso" ? new FakeBatchTun(true, c.headroom, c.udpGro) : new FakeBatchTun(false, 0);
    tun.refuseUdpGso = mode === "gso" && c.refuseUdpGso;
    const loop = new ClientInBatch(init, raw, tun);
    for (const { tep, lost, arrivals } of c.batches) {
      // A lease renewed with another TEP (ClientState, as the main thread sets it).
      const s = init.state;
      if (lost) s.clearLease();
      else if (!s.hasLease || hex(s.tep6(new Uint8Array(16))) !== hex(TEPS[tep]!))
        s.setLease(LEASED, c.portSet, TEPS[tep]!);
      for (const a of arrivals) raw.inbox.push({ ...a, packet: a.packet.slice() });
      if (mode === "single")
        for (const a of arrivals) {
          const before = tun.written.length;
          loop.step();
          const writes = tun.written.slice(before).map((w) => w.packet);
          const problem = lost
            ? writes.length > 0
              ? "written without a lease"
              : ""
            : inOracle(c, a, writes, tep) || ecnOracle(a, writes);
          if (problem) oracle.push(`${problem}: ${hex(a.packet).slice(0, 96)}`);
        }
      for (let guard = 0; raw.inbox.length > 0 && guard < 100000; guard++) loop.step();
    }
    const names = COUNTER_NAMES.map((n, i) => [n, counters[i]!] as const).filter(
      ([, v]) => v !== 0,
    );
    return {
      delivered: tun.written.flatMap(deliver),
      writes: tun.written.map((w) => `${w.gsoSize} ${w.partialChecksum} ${hex(w.packet)}`),
      icmp6: [],
      counters: Object.fromEntries(names),
      oracle,
      writeErrors: loop.stats.writeErrors,
      readErrors: loop.stats.readErrors,
    };
  });
}

/**
 * Independent of lib/, for one arrival of the single run and what was written for it: only
 * from the TEP (the client's only tunnel peer), only to the leased
 * address, never from it; a right header checksum; a TCP/UDP packet's destination port the
 * host's own (the NAPT's mapping the test saw made, RFC 3022 §2.2) and its source the peer's;
 * an L4 checksum neither repaired nor broken (a partial one finished).
 */
function inOracle(c: InCase, a: Arrival, writes: readonly Uint8Array[], tep: number): string {
  if (writes.length === 0) return "";
  if (hex(a.src6) !== hex(TEPS[tep]!)) return "written from another outer source than the TEP";
  const to = c.onDemand ? PLACEHOLDER_IPV4 : LEASED;
  // A first fragment releases the later ones held for it (they came before it): after it.
  for (const q of writes.slice(1)) {
    if (!laterFragment(q)) return "one arrival, several writes, not held fragments";
    if (v4([...q.subarray(16, 20)]) !== to) return "a released fragment to another address";
    if (internetChecksum(q, 0, (q[0]! & 0x0f) * 4) !== 0)
      return "a released fragment, bad header checksum";
  }
  const w = writes[0]!;
  const p = a.packet;
  const ihl = (w[0]! & 0x0f) * 4;
  if (internetChecksum(w, 0, ihl) !== 0) return "written with a bad header checksum";
  if (internetChecksum(p, 0, (p[0]! & 0x0f) * 4) !== 0) return "a bad header checksum forwarded";
  if (v4([...w.subarray(16, 20)]) !== to) return "written to another address";
  if (v4([...w.subarray(12, 16)]) === LEASED) return "written from the leased address";
  if ((w[9] !== 6 && w[9] !== 17) || isFragment(w)) return "";
  const port = (w[ihl + 2]! << 8) | w[ihl + 3]!;
  const outer = (p[ihl + 2]! << 8) | p[ihl + 3]!;
  const i = c.external.findIndex((e, j) => e === outer && c.hostFlows[j]!.proto === w[9]);
  if (c.portSet.psidLength > 0) {
    if (i < 0) return `port ${outer} written, no mapping for it`;
    if (port !== c.hostFlows[i]!.hostPort)
      return `port ${outer} → ${port}, host port ${c.hostFlows[i]!.hostPort}`;
  } else if (port !== outer) return "the port changed";
  const zeroUdp = w[9] === 17 && w[ihl + 6] === 0 && w[ihl + 7] === 0;
  const partialIn = hex(partial(p.slice())) === hex(p);
  if (!zeroUdp && !partialIn && (l4Sum(p) === 0) !== (l4Sum(w) === 0))
    return l4Sum(w) === 0 ? "a bad L4 checksum repaired" : "a good L4 checksum broken";
  return "";
}

/**
 * RFC 6040 §4.2, the test's own table: outer CE over an inner Not-ECT packet is dropped,
 * outer CE marks an ECT packet CE, outer ECT(1) over inner ECT(0) gives ECT(1), else the inner
 * codepoint stays.
 */
function ecnOracle(a: Arrival, writes: readonly Uint8Array[]): string {
  const p = a.packet;
  if (writes.length === 0 || p.length < 20) return "";
  const outer = a.trafficClass & 3;
  const inner = p[1]! & 3;
  if (outer === 3 && inner === 0) return "outer CE over inner Not-ECT written";
  const want = outer === 3 ? 3 : outer === 1 && inner === 2 ? 1 : inner;
  const got = writes[0]![1]! & 3;
  return got === want ? "" : `ECN ${inner} under outer ${outer} written as ${got}, not ${want}`;
}
