import type { PortSetValue } from "../../lib/net/portset.ts";
import { PLACEHOLDER_IPV4 } from "../../lib/tunnel/napt.ts";
import { bytes4, type VnetFrame, withMss, withPorts } from "./client_fuzz_packets.ts";
import { prng } from "./fuzz.ts";
import { tcp } from "./tcp_packets.ts";
import { echo, fixIPv4, fragments, partial, withOptions } from "./tep_fuzz_packets.ts";
import { udp } from "./udp_packets.ts";

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
   * wait in the on-demand queue (a reordering of ClientOutBatch.step the fuzz found, fixed;
   * test/client_batch_fuzz.test.ts "on-demand packets held for a lease …").
   */
  leaseDuringRead: true,
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
