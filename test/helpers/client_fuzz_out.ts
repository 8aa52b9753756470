/**
 * The out half of the client batch fuzz (test/client_batch_fuzz.test.ts): from one seed, what
 * the DTI hands the client's out loop (lib/dataplane/client_batch.ts ClientOutBatch) — TCP
 * and UDP super-packets (gso size beside, the checksum partial as the kernel leaves it),
 * single packets (half with NEEDS_CSUM), many flows interleaved, from the leased source, a
 * spoofed one, the other lease's and the on-demand placeholder, DF on and off, sizes around
 * the path MTU, SYN with an MSS to clamp, FIN / RST / PSH / URG, IPv4 options, fragments in
 * any order, truncated packets and bad header checksums, ICMP echo — with lease changes
 * between reads (a new lease, whole ↔ shared with NAPT, another TEP, the lease lost, a lower
 * path MTU). Three runs (fresh state each): "whole" (each super-packet read whole through a
 * DTI with offloads), "apart" (the same traffic as a DTI without offloads gives it, cut
 * beforehand, several packets per read) and "single" (one packet per read).
 */
import { ClientOutBatch } from "../../lib/dataplane/client_batch.ts";
import type { PortSetValue } from "../../lib/net/portset.ts";
import { ClientState } from "../../lib/tunnel/client_state.ts";
import { COUNTER_NAMES } from "../../lib/tunnel/counters.ts";
import { NaptTable, PLACEHOLDER_IPV4 } from "../../lib/tunnel/napt.ts";
import { PathMtuTable } from "../../lib/tunnel/pmtu.ts";
import { type Era, outOracle } from "./client_fuzz_out_check.ts";
import {
  bytes4,
  fixL4,
  hex,
  PlainBatchTun,
  VnetFakeTun,
  type VnetFrame,
  withMss,
  withPorts,
} from "./client_fuzz_packets.ts";
import { FakeTunnelSocket } from "./fake_devices.ts";
import { prng } from "./fuzz.ts";
import { segmentsOf, tcp } from "./tcp_packets.ts";
import { echo, fixIPv4, fragments, partial, withOptions } from "./tep_fuzz_packets.ts";
import { udp, udpCut } from "./udp_packets.ts";

export const LEASES = [0xc633640a, 0xc633640b]; // 198.51.100.10, .11
const SPOOF = 0xc6336463; // 198.51.100.99
export const TEPS = [
  Uint8Array.from([0x20, 1, 0x0d, 0xb8, 0x07, 0xe9, ...new Array(9).fill(0), 1]),
  Uint8Array.from([0x20, 1, 0x0d, 0xb8, 0x07, 0xea, ...new Array(9).fill(0), 1]),
];
const PEERS = [
  [203, 0, 113, 80],
  [203, 0, 113, 53],
  [192, 0, 2, 7],
];
export const WHOLE: PortSetValue = { offset: 0, psidLength: 0, psid: 0 };
/** The clock every run sees (Date.now), so NAPT ages and ICMP rate limits are the same. */
export const NOW_MS = 1_700_000_000_000;

export type OutEvent =
  | { kind: "read"; frame: VnetFrame }
  /** `inRead`: the lease comes while the loop is blocked in its next read (not between two). */
  | { kind: "lease"; ipv4: number; portSet: PortSetValue; tep: number; inRead: boolean }
  | { kind: "clear" }
  | { kind: "pmtu"; tep: number; mtu6: number };

export interface OutCase {
  seed: number;
  onDemand: boolean;
  mssClamp: boolean;
  tunnelMtu: number;
  /** Plain packets per read in the "apart" run. */
  perRead: number;
  /**
   * The loop's buffers (ClientBatchInit.batchSize): at least 32, a super-packet's segments; a
   * smaller send vector fills up (the on-demand queue's 64) and goes in the middle of a batch.
   */
  batchSize: number;
  /** The DTI's headroom: where the loop reads packets into its buffers (unaligned too). */
  headroom: number;
  events: OutEvent[];
}

interface Flow {
  proto: "tcp" | "udp" | "icmp" | "frag";
  src: "leased" | "spoof" | "stale";
  sport: number;
  dst: number[];
  dport: number;
  df: boolean;
  tos: number;
  seq: number;
  id: number;
}

/** Generator switches: shapes a known bug makes fail (none known so far). */
export const OUT_SHAPES = {
  options: true,
  truncated: true,
  fragments: true,
  /**
   * A lease arriving during the read that hands over a flow's next packets while earlier ones
   * wait in the on-demand queue. Off: the known reordering of ClientOutBatch.step
   * (test/client_batch_fuzz.test.ts "on-demand: packets held for a lease …").
   */
  leaseDuringRead: false,
};

/** The case of `seed`. */
export function outCase(seed: number): OutCase {
  const r = prng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const onDemand = r() < 0.3;
  const tunnelMtu = pick([1460, 1400, 1280 + int(181)]);
  const events: OutEvent[] = [];
  const many = r() < 0.25; // many flows, and often 12 ports for them
  const portSet = (): PortSetValue => {
    if (r() < 0.45) return WHOLE;
    const psidLength = many && r() < 0.6 ? 12 : pick([2, 4, 6, 10, 12]);
    // a = 2, k = 12: 12 ports, so the NAPT runs out of them (RSTs, ICMPv4 3/13 into the DTI).
    return { offset: psidLength === 12 ? 2 : 6, psidLength, psid: int(2 ** psidLength) };
  };
  let lease = -1; // the current leased address, -1 none
  let tep = 0;
  const pmtu = [tunnelMtu + 40, tunnelMtu + 40];
  if (!onDemand || r() < 0.5) {
    lease = pick(LEASES);
    events.push({ kind: "lease", ipv4: lease, portSet: portSet(), tep, inRead: false });
  }
  const flows: Flow[] = Array.from({ length: 1 + int(many ? 90 : 12) }, () => ({
    proto: pick(["tcp", "tcp", "tcp", "udp", "udp", "icmp", "frag"] as const),
    src: r() < 0.75 ? "leased" : r() < 0.5 ? "spoof" : "stale",
    sport: 1024 + int(64000),
    dst: pick(PEERS),
    dport: pick([80, 443, 53, 5201, 1 + int(65535)]),
    df: r() < 0.8,
    tos: pick([0, 0, 1, 2, 3, 0xb8]),
    seq: int(2 ** 32) >>> 0,
    id: int(65536),
  }));
  const read = (packet: Uint8Array, gsoSize = 0, needsCsum = false) =>
    events.push({ kind: "read", frame: { packet, gsoSize, needsCsum } });
  let flow = flows[0]!;
  for (let k = 5 + int(flows.length > 13 ? 200 : 60); k > 0; k--) {
    if (r() < (many ? 0.015 : 0.08)) {
      const x = r();
      if (x < 0.45) {
        lease = pick(LEASES);
        tep = r() < 0.8 ? tep : 1 - tep;
        const inRead = r() < 0.5 && OUT_SHAPES.leaseDuringRead;
        events.push({ kind: "lease", ipv4: lease, portSet: portSet(), tep, inRead });
      } else if (x < 0.6) {
        lease = -1;
        events.push({ kind: "clear" });
      } else {
        const t = r() < 0.8 ? tep : 1 - tep;
        pmtu[t] = Math.max(1280, pmtu[t]! - 20 - int(200));
        events.push({ kind: "pmtu", tep: t, mtu6: pmtu[t]! });
      }
    }
    if (r() > 0.6) flow = pick(flows);
    const here =
      flow.src === "spoof"
        ? SPOOF
        : lease < 0
          ? onDemand
            ? PLACEHOLDER_IPV4
            : LEASES[0]!
          : flow.src === "stale"
            ? LEASES[0] === lease
              ? LEASES[1]!
              : LEASES[0]!
            : r() < 0.1 && onDemand
              ? PLACEHOLDER_IPV4
              : lease;
    const src = bytes4(here);
    const mtu = Math.min(tunnelMtu, pmtu[tep]! - 40);
    const around = (header: number) => Math.max(1, mtu - header + int(41) - 30);
    if (flow.proto === "tcp") {
      const x = r();
      let p: Uint8Array;
      let gso = 0;
      if (x < 0.45) {
        gso = r() < 0.8 ? around(52) : 100 + int(1400);
        const n = 2 + int(Math.min(30, Math.floor(60000 / gso)));
        const payload = gso * n - (r() < 0.5 ? int(gso - 1) : 0);
        const flags = 0x10 | pick([0, 0x08, 0x08, 0x01 | 0x08, 0x80]);
        p = tcp({
          payload,
          seq: flow.seq,
          id: flow.id,
          flags,
          tos: flow.tos,
          df: flow.df,
          src,
          dst: flow.dst,
          seed: flow.seq,
        });
      } else {
        const flags = pick([0x02, 0x12, 0x11, 0x04, 0x14, 0x18, 0x30, 0x10, 0x19]);
        const payload = flags & 0x06 ? 0 : pick([0, 1 + int(200), around(52), around(52)]);
        p = tcp({
          payload,
          seq: flow.seq,
          id: flow.id,
          flags,
          tos: flow.tos,
          df: flow.df,
          src,
          dst: flow.dst,
          seed: flow.seq,
        });
        if (flags & 0x02) withMss(p, pick([536, 1360, 1460, 8960, 65495]));
        if (flags & 0x20) p[39] = 5; // urgent pointer
      }
      flow.seq = (flow.seq + p.length - 52) >>> 0;
      flow.id = (flow.id + Math.max(1, Math.ceil((p.length - 52) / Math.max(1, gso)))) & 0xffff;
      // The flow's number in the window field (kept by NAPT and MSS clamp): the order check's key.
      const index = flows.indexOf(flow);
      p[34] = index >>> 8;
      p[35] = index & 0xff;
      withPorts(p, flow.sport, flow.dport);
      mangleAndRead(p, gso);
    } else if (flow.proto === "udp") {
      const gso = r() < 0.4 ? (r() < 0.7 ? around(28) : 1 + int(1400)) : 0;
      const n = gso > 0 ? 2 + int(Math.min(20, Math.floor(60000 / gso))) : 1;
      const payload =
        gso > 0 ? gso * n - (r() < 0.5 ? int(gso) : 0) : pick([0, 1 + int(300), around(28)]);
      const p = udp({
        payload,
        src,
        dst: flow.dst,
        srcPort: flow.sport,
        dstPort: flow.dport,
        df: flow.df,
        tos: flow.tos,
        id: flow.id,
        seed: flow.id,
      });
      flow.id = (flow.id + n) & 0xffff;
      mangleAndRead(p, gso);
    } else if (flow.proto === "icmp") {
      const p = echo(src, flow.dst, flow.sport, pick([8, int(1500), around(28)]));
      if (!flow.df) {
        p[6] = 0;
        fixIPv4(p);
      }
      mangleAndRead(p, 0);
    } else if (OUT_SHAPES.fragments) {
      const p = udp({
        payload: 100 + int(3000),
        src,
        dst: flow.dst,
        srcPort: flow.sport,
        dstPort: flow.dport,
        df: false,
        id: flow.id,
      });
      flow.id = (flow.id + 1) & 0xffff;
      const fs = fragments(p, 8 * (20 + int(170)));
      if (r() < 0.4) fs.reverse();
      for (const f of fs) read(f);
    }
  }
  const batchSize = r() < 0.5 ? 128 : 32 + int(97);
  const headroom = pick([0, 1, 3, 4, 10, 10, 12]);
  return {
    seed,
    onDemand,
    mssClamp: r() < 0.5,
    tunnelMtu,
    perRead: 1 + int(12),
    batchSize,
    headroom,
    events,
  };

  /** A packet as the DTI hands it, sometimes changed: options, truncated, bad header sum. */
  function mangleAndRead(p: Uint8Array, gso: number): void {
    let q = p;
    let broken = false;
    const x = r();
    if (x < 0.08 && OUT_SHAPES.options) q = withOptions(q);
    else if (x < 0.12 && gso === 0 && OUT_SHAPES.truncated) {
      q = q.slice(0, int(q.length));
      broken = true;
    } else if (x < 0.15 && gso === 0) {
      q[10]! ^= 0x40;
      broken = true;
    }
    if (gso > 0) read(partial(q), gso, true);
    else if ((q[9] === 6 || q[9] === 17) && !broken && r() < 0.5) read(partial(q), 0, true);
    else read(q);
  }
}

export type OutMode = "whole" | "apart" | "single";

export interface OutResult {
  sent: string[];
  /** What the loop wrote into the DTI (ICMPv4 errors, RSTs). */
  replies: string[];
  counters: string;
  asked: number;
  queued: number;
  oracle: string[];
  errors: number;
}

/** What the kernel without offloads would have handed over for a frame: its packets, checksums finished. */
function cutBeforehand(f: VnetFrame): Uint8Array[] {
  const p = f.packet;
  if (f.gsoSize > 0) return p[9] === 17 ? udpCut(p, f.gsoSize) : segmentsOf(p, f.gsoSize);
  return [f.needsCsum ? fixL4(p.slice()) : p.slice()];
}

/** Runs `c` in `mode`; `oracle`: what the test's own checks found wrong. */
export function runOut(c: OutCase, mode: OutMode): OutResult {
  const realNow = Date.now;
  Date.now = () => NOW_MS;
  try {
    return run(c, mode);
  } finally {
    Date.now = realNow;
  }
}

function run(c: OutCase, mode: OutMode): OutResult {
  const counters = new Float64Array(COUNTER_NAMES.length);
  const state = ClientState.create();
  const pathMtu = PathMtuTable.create({ capacity: 4 });
  const init = {
    batchSize: c.batchSize,
    state,
    napt: NaptTable.create(),
    counters,
    onDemand: c.onDemand,
    client: { tunnelMtu: c.tunnelMtu, mssClamp: c.mssClamp },
    pathMtu,
  };
  const vnet = new VnetFakeTun(true, c.headroom);
  const plain = new PlainBatchTun(mode === "apart" ? c.perRead : 1, c.headroom);
  const tun = mode === "whole" ? vnet : plain;
  const raw = new FakeTunnelSocket();
  let asked = 0;
  const loop = new ClientOutBatch(init, tun, raw, () => asked++);
  const pmtu = [c.tunnelMtu + 40, c.tunnelMtu + 40];
  const eras: Era[] = [];
  let era = null as Era | null;
  const drain = () => {
    for (
      let guard = 0;
      (vnet.frames.length > 0 || plain.inbox.length > 0) && guard < 100000;
      guard++
    )
      loop.step();
    loop.step(); // the on-demand queue goes at the next step after a lease
  };
  const setLease = (e: Extract<OutEvent, { kind: "lease" }>) => {
    state.setLease(e.ipv4, e.portSet, TEPS[e.tep]!);
    const from = raw.sent.length;
    const mtu = Math.min(c.tunnelMtu, pmtu[e.tep]! - 40);
    const x = {
      ipv4: e.ipv4,
      portSet: e.portSet,
      tep: e.tep,
      mtu,
      from,
      fromReply: tun.written.length,
    };
    era = x;
    eras.push(x);
  };
  for (const e of c.events) {
    if (e.kind === "read") {
      if (mode === "whole") vnet.frames.push({ ...e.frame, packet: e.frame.packet.slice() });
      else for (const p of cutBeforehand(e.frame)) plain.inbox.push({ packet: p, gsoSize: 0 });
      continue;
    }
    drain();
    if (e.kind === "pmtu") {
      pathMtu.learn(TEPS[e.tep]!, 0, e.mtu6, (NOW_MS / 1000) | 0);
      pmtu[e.tep] = Math.min(pmtu[e.tep]!, e.mtu6);
      if (era) {
        era = { ...era, mtu: Math.min(c.tunnelMtu, pmtu[era.tep]! - 40) };
        era.from = raw.sent.length;
        era.fromReply = tun.written.length;
        eras.push(era);
      }
    } else if (e.kind === "clear") {
      state.clearLease();
      era = {
        ipv4: -1,
        portSet: WHOLE,
        tep: 0,
        mtu: 0,
        from: raw.sent.length,
        fromReply: tun.written.length,
      };
      eras.push(era);
    } else if (e.inRead) tun.beforeRead = () => setLease(e);
    else setLease(e);
  }
  drain();
  loop.step(); // a lease that came in the last read: its queue goes now
  const oracle = outOracle(
    c,
    eras,
    raw.sent,
    tun.written.map((w) => w.packet),
  );
  const names = COUNTER_NAMES.map((n, i) => [n, counters[i]!] as const).filter(([, v]) => v !== 0);
  return {
    sent: raw.sent.map((s) => `${hex(s.dst6)} ${s.trafficClass} ${s.flowLabel} ${hex(s.packet)}`),
    replies: tun.written.map((w) => `${w.gsoSize} ${hex(w.packet)}`),
    counters: JSON.stringify(names),
    asked,
    queued: loop.queued,
    oracle,
    errors: loop.stats.readErrors + loop.stats.writeErrors,
  };
}
