/**
 * One case of the `--kernel-encap` fuzz (kencap_fuzz_gen.ts), run twice on fresh state with
 * the same clock (Date.now, 250 ms per frame: NAPT ages, ICMP rate limits refilled between
 * frames): by ClientKernelEncapOut (lib/dataplane/client_kernel_encap.ts) on a fake DTI whose
 * written-back frames the kernel model cuts (kencap_fuzz_kernel.ts kernelCut), and by the
 * userspace DTI path, ClientOutBatch, fed what VnetTunDevice.read gives for the same frame,
 * one packet per read so that each segment's outcome is known. Compared frame by frame:
 *
 * - a plain packet, or a super-packet of a shared lease with DF clear (segment by segment):
 *   the same inner IPv4 packets, ICMPv4 errors / RSTs and counters;
 * - a super-packet checked whole: the kernel-encap loop runs the checks on its first and last
 *   segments only, so its counters and replies are those of the userspace path's first
 *   segment (and last, when the first went), and it sends all of it or nothing: all when the
 *   userspace path sent every segment (byte for byte, in order), nothing when it dropped the
 *   first or the last. A middle segment the userspace path dropped while the kernel-encap
 *   loop let the super-packet through is the unsoundness the fuzz hunts;
 * - a super-packet whose virtio_net_hdr the kernel-encap loop refuses (no NEEDS_CSUM,
 *   csum_start not the L4 header, csum_offset not the L4 checksum: stricter than
 *   VnetTunDevice.read) is dropped as malformed;
 * - and the frames written back must be ones the kernel takes.
 *
 * Independently (client_fuzz_out_check.ts outOracle on what the kernel puts on the wire):
 * every packet from the lease, its source port in the set, with DF no larger than the tunnel
 * MTU, checksums right, TCP sequence numbers of a flow never going back, replies to the lease.
 */
import { ClientOutBatch } from "../../lib/dataplane/client_batch.ts";
import { ClientKernelEncapOut } from "../../lib/dataplane/client_kernel_encap.ts";
import { tcpSegmentCount } from "../../lib/net/gso.ts";
import { udpSegmentCount } from "../../lib/net/udp_segment.ts";
import { ClientState } from "../../lib/tunnel/client_state.ts";
import { COUNTER_NAMES } from "../../lib/tunnel/counters.ts";
import { NaptTable } from "../../lib/tunnel/napt.ts";
import { PathMtuTable } from "../../lib/tunnel/pmtu.ts";
import { NOW_MS, type OutCase, TEPS, WHOLE } from "./client_fuzz_out.ts";
import { type Era, outOracle } from "./client_fuzz_out_check.ts";
import { hex, PlainBatchTun } from "./client_fuzz_packets.ts";
import { FakeFrameTun, FakeTunnelSocket } from "./fake_devices.ts";
import { H, type KencapCase } from "./kencap_fuzz_gen.ts";
import { kernelCut, userspaceRead } from "./kencap_fuzz_kernel.ts";

const FORWARD = new Set([
  "client-encap-forward",
  "client-encap-forward-bytes",
  "client-kernel-encap",
  "client-kernel-encap-segments",
  "client-kernel-encap-bytes",
]);

export interface KencapResult {
  problems: string[];
  /** Inner IPv4 packets on the wire from the kernel-encap loop's frames. */
  wire: number;
  supers: number;
  replies: number;
  /** Super-packets the kernel-encap loop refused for their virtio_net_hdr alone. */
  stricter: number;
  /** Frames by how the oracle judged them (plain, by-segment, whole-sent, first-dropped, …). */
  kinds: Record<string, number>;
}

type Delta = Map<string, number>;

function delta(now: Float64Array, before: Float64Array): Delta {
  const d: Delta = new Map();
  for (let i = 0; i < now.length; i++)
    if (now[i] !== before[i]) d.set(COUNTER_NAMES[i]!, now[i]! - before[i]!);
  return d;
}

function add(...ds: Delta[]): Delta {
  const d: Delta = new Map();
  for (const x of ds) for (const [k, v] of x) d.set(k, (d.get(k) ?? 0) + v);
  return d;
}

/** The counters without the forwarding ones, sorted, as text. */
function drops(d: Delta): string {
  return JSON.stringify([...d].filter(([k]) => !FORWARD.has(k)).sort());
}

interface Outcome {
  sent: Uint8Array[];
  replies: Uint8Array[];
  delta: Delta;
}

/** Runs `c`; see the module text. */
export function runKencap(c: KencapCase): KencapResult {
  const realNow = Date.now;
  let now = NOW_MS;
  Date.now = () => now;
  try {
    return run(c, (ms) => {
      now = ms;
    });
  } finally {
    Date.now = realNow;
  }
}

function loops(c: KencapCase) {
  const make = () => ({
    batchSize: c.batchSize,
    state: ClientState.create(),
    napt: NaptTable.create(),
    counters: new Float64Array(COUNTER_NAMES.length),
    onDemand: false,
    client: { tunnelMtu: c.tunnelMtu, mssClamp: c.mssClamp },
    pathMtu: PathMtuTable.create({ capacity: 4 }),
  });
  const ui = make();
  const ki = make();
  const utun = new PlainBatchTun(1, c.headroom);
  const raw = new FakeTunnelSocket();
  const user = new ClientOutBatch(ui, utun, raw);
  const ktun = new FakeFrameTun(true, H);
  const kernel = new ClientKernelEncapOut(ki, ktun);
  return { ui, ki, utun, raw, user, ktun, kernel };
}

function run(c: KencapCase, setNow: (ms: number) => void): KencapResult {
  const { ui, ki, utun, raw, user, ktun, kernel } = loops(c);
  const problems: string[] = [];
  const wire: Uint8Array[] = [];
  let onWire = 0;
  const kReplies: Uint8Array[] = [];
  const eras: Era[] = [];
  const pmtu = [c.tunnelMtu + 40, c.tunnelMtu + 40];
  let leased = false;
  let shared = false;
  let supers = 0;
  let stricter = 0;
  let frameNo = 0;
  const kinds: Record<string, number> = {};
  const tally = (k: string) => {
    kinds[k] = (kinds[k] ?? 0) + 1;
  };
  const newEra = (x: Omit<Era, "from" | "fromReply">) => {
    eras.push({ ...x, from: wire.length, fromReply: kReplies.length });
  };
  for (const e of c.events) {
    if (e.kind === "lease") {
      for (const s of [ui.state, ki.state]) s.setLease(e.ipv4, e.portSet, TEPS[e.tep]!);
      leased = true;
      shared = e.portSet.psidLength > 0;
      newEra({ ...e, mtu: Math.min(c.tunnelMtu, pmtu[e.tep]! - 40) });
      continue;
    }
    if (e.kind === "clear") {
      for (const s of [ui.state, ki.state]) s.clearLease();
      leased = false;
      newEra({ ipv4: -1, portSet: WHOLE, tep: 0, mtu: 0 });
      continue;
    }
    if (e.kind === "pmtu") {
      for (const t of [ui.pathMtu, ki.pathMtu])
        t.learn(TEPS[e.tep]!, 0, e.mtu6, ((NOW_MS + 250 * frameNo) / 1000) | 0);
      pmtu[e.tep] = Math.min(pmtu[e.tep]!, e.mtu6);
      const x = eras[eras.length - 1];
      if (x) newEra({ ...x, mtu: Math.min(c.tunnelMtu, pmtu[x.tep]! - 40) });
      continue;
    }
    const frame = e.frame;
    setNow(NOW_MS + 250 * frameNo);
    // VnetTunDevice.readFrame (and read) give nothing for a frame without a packet.
    if (frame.length <= H) continue;
    const label = `frame ${frameNo++}${e.what ? ` (${e.what})` : ""} gso ${frame[1]} ${frame[4]! | (frame[5]! << 8)}: ${hex(frame).slice(0, 120)}`;
    // The kernel-encap loop: one read, its frames cut by the kernel.
    const kBefore = ki.counters.slice();
    const b0 = ktun.back.length;
    const r0 = ktun.written.length;
    ktun.frames.push(frame.slice());
    kernel.step();
    const kd = delta(ki.counters, kBefore);
    const kSent: Uint8Array[] = [];
    for (const f of ktun.back.slice(b0)) {
      const cut = kernelCut(f);
      if (typeof cut === "string")
        problems.push(`${label}: written back, the kernel refuses it: ${cut}`);
      else kSent.push(...cut);
    }
    const kr = ktun.written.slice(r0).map((w) => w.packet);
    // A plain frame whose NEEDS_CSUM points elsewhere leaves its L4 checksum as the host (or
    // the attacker) wrote it, on both paths alike: not for the checksum check below.
    if (e.what !== "plain-csum") wire.push(...kSent);
    onWire += kSent.length;
    kReplies.push(...kr);
    if (!leased) {
      if (drops(kd) !== drops(new Map([["client-drop-no-lease", 1]])) || kSent.length > 0)
        problems.push(`${label}: without a lease ${drops(kd)}`);
      continue;
    }
    // The userspace path: what VnetTunDevice.read gives, one packet per read. A super-packet
    // the kernel-encap loop refuses for its header alone does not go there either (the NAPT's
    // ports and identifications would no longer be those of the kernel-encap run).
    const gsoType = frame[1]! & 0x7f;
    const refused = gsoType !== 0 && !kernelTakes(frame);
    const segs = refused ? [] : userspaceRead(frame, c.batchSize);
    const outs: Outcome[] = [];
    // A super-packet checked whole stops at a dropped first segment: the userspace path's
    // other segments would still go through its NAPT before their own drop (a FIN on the last
    // marks the mapping closing), which the kernel-encap loop, dropping it whole, never does.
    const whole = gsoType !== 0 && !refused && !(shared && !(frame[H + 6]! & 0x40));
    for (const s of segs ?? []) {
      if (whole && outs.length === 1 && outs[0]!.sent.length === 0) break;
      const before = ui.counters.slice();
      const s0 = raw.sent.length;
      const w0 = utun.written.length;
      utun.inbox.push({ packet: s, gsoSize: 0 });
      user.step();
      outs.push({
        sent: raw.sent.slice(s0).map((x) => x.packet),
        replies: utun.written.slice(w0).map((w) => w.packet),
        delta: delta(ui.counters, before),
      });
    }
    let want: Outcome;
    if (segs === null) {
      tally("device-drop");
      want = { sent: [], replies: [], delta: new Map([["client-encap-drop-malformed", 1]]) };
    } else if (!whole && !refused) {
      tally(gsoType === 0 ? "plain" : "by-segment");
      want = {
        sent: outs.flatMap((o) => o.sent),
        replies: outs.flatMap((o) => o.replies),
        delta: add(...outs.map((o) => o.delta)),
      };
    } else if (refused) {
      stricter++;
      want = { sent: [], replies: [], delta: new Map([["client-encap-drop-malformed", 1]]) };
    } else {
      supers++;
      const first = outs[0]!;
      const last = outs[outs.length - 1]!;
      const checked = outs.length > 1 && first.sent.length > 0 ? [first, last] : [first];
      const dropped = checked.some((o) => o.sent.length === 0);
      tally(
        first.sent.length === 0
          ? "first-dropped"
          : dropped
            ? "last-dropped"
            : outs.length > 1 &&
                outs.some((o, i) => i > 0 && o.sent[0]?.length !== first.sent[0]?.length)
              ? "whole-sent, last segment shorter"
              : "whole-sent",
      );
      want = {
        sent: dropped ? [] : outs.flatMap((o) => o.sent),
        replies: checked.flatMap((o) => o.replies),
        delta: add(...checked.map((o) => o.delta)),
      };
      if (!dropped && outs.some((o) => o.sent.length !== 1))
        problems.push(
          `${label}: first and last segments pass, the userspace path sent ${outs.map((o) => o.sent.length).join(",")} per segment`,
        );
    }
    const diff = compare(want, kSent, kr, kd);
    if (diff) problems.push(`${label}: ${diff}`);
  }
  const oracle = outOracle(
    { ...c, onDemand: false } as OutCase,
    eras,
    wire.map((packet, i) => ({ packet, dst6: TEPS[eraAt(eras, i)]! })),
    kReplies,
  );
  return {
    problems: [...problems, ...oracle],
    wire: onWire,
    supers,
    replies: kReplies.length,
    stricter,
    kinds,
  };
}

/** The TEP of the era of wire packet `i` (what the seg6 route would send it to). */
function eraAt(eras: readonly Era[], i: number): number {
  let tep = 0;
  for (const e of eras) if (e.from <= i) tep = e.tep;
  return tep;
}

/** Whether ClientKernelEncapOut takes the super-packet's virtio_net_hdr (its own checks, and csum_offset). */
function kernelTakes(frame: Uint8Array): boolean {
  const len = frame.length - H;
  const gsoType = frame[1]! & 0x7f;
  const gso = frame[4]! | (frame[5]! << 8);
  const count =
    gsoType === 5
      ? udpSegmentCount(frame, H, len, gso)
      : gsoType === 1
        ? tcpSegmentCount(frame, H, len, gso)
        : -1;
  const ihl = (frame[H]! & 0x0f) << 2;
  // csum_offset too (the kernel's own rule since 6.11; the loop checks it since the case
  // "a super-packet's csum_offset").
  const offset = frame[8]! | (frame[9]! << 8);
  return (
    count >= 1 &&
    (frame[0]! & 1) === 1 &&
    (frame[6]! | (frame[7]! << 8)) === ihl &&
    offset === (gsoType === 5 ? 6 : 16)
  );
}

function compare(want: Outcome, sent: Uint8Array[], replies: Uint8Array[], d: Delta): string {
  const a = want.sent.map(hex);
  const b = sent.map(hex);
  for (let i = 0; i < Math.max(a.length, b.length); i++)
    if (a[i] !== b[i])
      return `packet ${i} of ${a.length} (userspace) / ${b.length} (kernel-encap):\n  ${a[i]?.slice(0, 160)}\n  ${b[i]?.slice(0, 160)}\n  counters ${drops(want.delta)} / ${drops(d)}`;
  const ra = want.replies.map(hex);
  const rb = replies.map(hex);
  if (ra.join() !== rb.join())
    return `replies into the DTI ${ra.length} / ${rb.length}:\n  ${ra.join(" ").slice(0, 160)}\n  ${rb.join(" ").slice(0, 160)}`;
  if (drops(want.delta) !== drops(d)) return `counters ${drops(want.delta)}\n  ≠ ${drops(d)}`;
  const segments = d.get("client-kernel-encap-segments") ?? 0;
  if (segments !== sent.length)
    return `client-kernel-encap-segments ${segments}, ${sent.length} on the wire`;
  return "";
}
