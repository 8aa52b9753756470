/**
 * The three runs of the client batch fuzz's out half (client_fuzz_out.ts has the cases): on
 * fresh state each, with the clock fixed (Date.now: NAPT ages, ICMP rate limits), lease
 * changes applied between reads (or inside the next read), and the test's own checks
 * (client_fuzz_out_check.ts) over what was sent.
 */
import { ClientOutBatch } from "../../lib/dataplane/client_batch.ts";
import { ClientState } from "../../lib/tunnel/client_state.ts";
import { COUNTER_NAMES } from "../../lib/tunnel/counters.ts";
import { NaptTable } from "../../lib/tunnel/napt.ts";
import { PathMtuTable } from "../../lib/tunnel/pmtu.ts";
import { NOW_MS, type OutCase, type OutEvent, TEPS, WHOLE } from "./client_fuzz_out.ts";
import { type Era, outOracle } from "./client_fuzz_out_check.ts";
import { fixL4, hex, PlainBatchTun, VnetFakeTun, type VnetFrame } from "./client_fuzz_packets.ts";
import { FakeTunnelSocket } from "./fake_devices.ts";
import { segmentsOf } from "./tcp_packets.ts";
import { udpCut } from "./udp_packets.ts";

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
