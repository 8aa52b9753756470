/**
 * The three runs of the TEP batch fuzz (test/tunnel_tep_fuzz.test.ts) and their comparison.
 * One case (tep_fuzz_gen.ts) goes, each time on a fresh TEP context and binding table with the
 * same changes at the same lookups:
 * - **gso**: TepDecapBatch into a TUN that takes TCP (and, per case, UDP) super-packets; every
 *   super-packet cut back into what the kernel puts on the wire (lib/net/gso.ts tcpSegmentAt,
 *   lib/net/udp_segment.ts via udpCut: checksums computed afresh, as `inet_gso_segment` does
 *   for a NEEDS_CSUM skb), a single packet left partial finished as `skb_checksum_help` would;
 * - **plain**: the same batches into a TUN that takes nothing;
 * - **single**: the same packets read one per batch into the plain TUN.
 * {@link compareRuns} names the first difference, or returns "".
 */
import { parseIPv4, parseIPv6 } from "../../lib/net/addr.ts";
import { tcpSegmentAt, tcpSegmentCount } from "../../lib/net/gso.ts";
import { BindingTable } from "../../lib/tunnel/binding.ts";
import { Counters } from "../../lib/tunnel/counters.ts";
import { TepContext } from "../../lib/tunnel/pipeline.ts";
import { TepDecapBatch } from "../../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./fake_devices.ts";
import { internetChecksum } from "./packets.ts";
import type { Arrival } from "./tep_context.ts";
import type { BindingOp, FuzzCase } from "./tep_fuzz_gen.ts";
import { udpCut } from "./udp_packets.ts";

export type RunMode = "gso" | "plain" | "single";

export interface RunResult {
  /** What reaches the IPv4 stack behind the TUN, in order (super-packets cut). */
  delivered: Uint8Array[];
  /** The TUN writes themselves (gso size, partial) as hex, for the plain/single comparison. */
  writes: string[];
  /** ICMPv6 source-policy errors: destination and message, hex. */
  icmp6: string[];
  counters: Record<string, number>;
  /** The single run's independent checks (see {@link oracleOf}): what they found wrong. */
  oracle: string[];
  writeErrors: number;
  readErrors: number;
}

const TEP6 = parseIPv6("2001:db8:7e9::1")!;
const hex = (p: Uint8Array) => Buffer.from(p).toString("hex");

/** The test's own copy of the table: address → its port-set rule and PSID → host (hex). */
type Shadow = Map<number, { offset: number; psidLength: number; hosts: Map<number, string> }>;

function apply(table: BindingTable, shadow: Shadow, ops: readonly BindingOp[]): void {
  for (const op of ops) {
    if (op.kind === "set") {
      table.set(op.ipv4, op.portSet, op.host6);
      const { offset, psidLength, psid } = op.portSet;
      let e = shadow.get(op.ipv4);
      if (!e) {
        e = { offset, psidLength, hosts: new Map() };
        shadow.set(op.ipv4, e);
      }
      e.hosts.set(psid, hex(op.host6));
    } else {
      table.delete(op.ipv4, op.psid);
      const e = shadow.get(op.ipv4)!;
      e.hosts.delete(op.psid);
      if (e.hosts.size === 0) shadow.delete(op.ipv4);
    }
  }
}

/**
 * Independent of lib/ (so a fault common to all three runs still shows), for one arrival the
 * single run forwarded (`writes`: what it wrote for it): a whole TCP/UDP packet with a port
 * must have a right IPv4 header (RFC 791, the test's own RFC 1071 sum), and its source
 * address and port must be bound to its outer source at that moment (RFC 7597 §8.1, RFC 7596
 * §5.2: the PSID of the port, per the rule of the address); what is written keeps the
 * addresses and ports and has a right header checksum.
 */
function oracleOf(shadow: Shadow, a: Arrival, writes: readonly Uint8Array[]): string {
  const p = a.packet;
  if (writes.length === 0 || p.length < 20 || p[0]! >>> 4 !== 4)
    return writes.length ? "not IPv4 forwarded" : "";
  const ihl = (p[0]! & 0x0f) * 4;
  const total = (p[2]! << 8) | p[3]!;
  if (ihl < 20 || ihl > p.length || total < ihl || total > p.length) return "malformed forwarded";
  if (internetChecksum(p, 0, ihl) !== 0) return "bad IPv4 header checksum forwarded";
  for (const w of writes)
    if (internetChecksum(w, 0, (w[0]! & 0x0f) * 4) !== 0)
      return "written with a bad header checksum";
  const fragment = (((p[6]! << 8) | p[7]!) & 0x3fff) !== 0;
  if (fragment || (p[9] !== 6 && p[9] !== 17) || total < ihl + 4) return "";
  const v4 = ((p[12]! << 24) | (p[13]! << 16) | (p[14]! << 8) | p[15]!) >>> 0;
  const port = (p[ihl]! << 8) | p[ihl + 1]!;
  const e = shadow.get(v4);
  const psid =
    e && e.psidLength > 0
      ? (port >> (16 - e.offset - e.psidLength)) & ((1 << e.psidLength) - 1)
      : 0;
  const host = e?.hosts.get(psid);
  if (host !== hex(a.src6)) return `forwarded from ${hex(a.src6)}, bound to ${host ?? "nothing"}`;
  const w = writes[0]!;
  if (
    hex(w.subarray(12, 20)) !== hex(p.subarray(12, 20)) ||
    hex(w.subarray(ihl, ihl + 4)) !== hex(p.subarray(ihl, ihl + 4))
  )
    return "written with other addresses or ports";
  return "";
}

/** The kernel's cut of a TUN write (gso size > 0), or the packet finished if left partial. */
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
  // NEEDS_CSUM without GSO: the field holds the pseudo-header sum; sum from the L4 header on.
  const q = p.slice();
  const ihl = (q[0]! & 0x0f) * 4;
  const f = ihl + (q[9] === 6 ? 16 : 6);
  const c = internetChecksum(q, ihl, q.length);
  q[f] = c >>> 8;
  q[f + 1] = c & 0xff;
  return [q];
}

/** Runs `c` in `mode`. */
export function runCase(c: FuzzCase, mode: RunMode): RunResult {
  const table = BindingTable.create({ maxEntries: 256 });
  const shadow: Shadow = new Map();
  apply(table, shadow, c.initial);
  // The table changes under the loop at a given lookup of the batch, as the TEP's binding
  // thread changes the shared table under its Workers (deterministic here). A lookup is a
  // datagram's source check, which first reads the table's change count (`writes`,
  // lib/tunnel/batch_lookups.ts) whether or not it then asks the table again: the change
  // lands just before that read, where the TEP's thread may land it.
  let lookups = 0;
  let pending: { at: number; ops: BindingOp[] }[] = [];
  const writes = Object.getOwnPropertyDescriptor(BindingTable.prototype, "writes")!.get!;
  Object.defineProperty(table, "writes", {
    get() {
      while (pending.length > 0 && pending[0]!.at <= lookups)
        apply(table, shadow, pending.shift()!.ops);
      lookups++;
      return writes.call(table);
    },
  });
  let clock = 1_000_000;
  const counters = Counters.create({ slices: 1 });
  const tep = new TepContext({
    bindings: table,
    counters: counters.slice(0),
    tepIPv4: parseIPv4("192.0.2.1")!,
    tep6: TEP6,
    linkMtu: c.linkMtu,
    hairpin: c.hairpin,
    mssClamp: c.mssClamp,
    now: () => clock,
  });
  const raw = new FakeTunnelSocket(mode === "single" ? 1 : c.perRead);
  // A fake that can say `pending` (packets already waiting) does when the case says so.
  Object.assign(raw, { tellsPending: c.tellsPending });
  const tun =
    mode === "gso" ? new FakeBatchTun(true, c.headroom, c.gsoUdp) : new FakeBatchTun(false, 0);
  tun.refuseUdpGso = c.refuseUdpGso;
  const icmp6: string[] = [];
  const oracle: string[] = [];
  const loop = new TepDecapBatch(tep, raw, tun, {
    batchSize: 300,
    udpTrains: c.udpTrains,
    sendIcmp6: (t) => {
      icmp6.push(`${hex(t.reply6To)} ${hex(t.reply6.subarray(0, t.reply6Length))}`);
      t.reply6Length = 0;
    },
  });
  for (const b of c.batches) {
    apply(table, shadow, b.before);
    pending = b.during.slice();
    lookups = 0;
    for (const a of b.arrivals) raw.inbox.push({ ...a, packet: a.packet.slice() });
    if (mode === "single")
      for (const a of b.arrivals) {
        // One arrival per step: the table as it is when its lookup comes.
        const before = tun.written.length;
        while (pending.length > 0 && pending[0]!.at <= lookups)
          apply(table, shadow, pending.shift()!.ops);
        const view = new Map([...shadow].map(([k, v]) => [k, { ...v, hosts: new Map(v.hosts) }]));
        loop.step();
        const problem = oracleOf(
          view,
          a,
          tun.written.slice(before).map((w) => w.packet),
        );
        if (problem) oracle.push(`${problem}: ${hex(a.packet).slice(0, 80)}`);
      }
    for (let guard = 0; raw.inbox.length > 0 && guard < 100000; guard++) loop.step();
    // A change due at a lookup that never came still happens before the next batch.
    for (const d of pending) apply(table, shadow, d.ops);
    pending = [];
    clock += c.clockStepMs;
  }
  const snap = counters.snapshot() as Record<string, number>;
  return {
    delivered: tun.written.flatMap(deliver),
    writes: tun.written.map((w) => `${w.gsoSize} ${w.partialChecksum} ${hex(w.packet)}`),
    icmp6,
    counters: Object.fromEntries(Object.entries(snap).filter(([, v]) => v !== 0)),
    oracle,
    writeErrors: loop.stats.writeErrors,
    readErrors: loop.stats.readErrors,
  };
}

/**
 * The order a coalescing writer must keep: per flow (addresses, protocol and ports; a fragment
 * per datagram: addresses, protocol, identification).
 */
function flowKey(p: Uint8Array): string {
  const ihl = (p[0]! & 0x0f) * 4;
  const addrs = hex(p.subarray(12, 20));
  if ((((p[6]! << 8) | p[7]!) & 0x3fff) !== 0)
    return `frag ${addrs} ${p[9]} ${hex(p.subarray(4, 6))}`;
  if (p[9] === 6 || p[9] === 17) return `${addrs} ${p[9]} ${hex(p.subarray(ihl, ihl + 4))}`;
  return `${addrs} ${p[9]}`;
}

function byFlow(ps: readonly Uint8Array[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const p of ps) {
    const k = flowKey(p);
    const l = m.get(k);
    if (l) l.push(hex(p));
    else m.set(k, [hex(p)]);
  }
  return m;
}

/**
 * What the receiver's IPv4 layer hands up (RFC 791 reassembly), in order: each packet as it
 * is, fragments joined into their datagram at the place of the piece that completed it
 * (pieces that never make a whole, overlapping or not, left out). So a fragment's order against
 * the rest of its flow is checked too: a non-first fragment carries no ports.
 */
function reassembled(ps: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  const held = new Map<string, Uint8Array[]>();
  for (const p of ps) {
    if (p.length < 20 || (((p[6]! << 8) | p[7]!) & 0x3fff) === 0) {
      out.push(p);
      continue;
    }
    const key = `${hex(p.subarray(12, 20))} ${p[9]} ${hex(p.subarray(4, 6))}`;
    const pieces = [...(held.get(key) ?? []), p];
    held.set(key, pieces);
    const whole = joined(pieces);
    if (whole) {
      held.delete(key);
      out.push(whole);
    }
  }
  return out;
}

/** The datagram `pieces` make when they cover it from 0 to a last piece, back to back; else null. */
function joined(pieces: readonly Uint8Array[]): Uint8Array | null {
  const parts = pieces
    .map((p) => ({
      p,
      ihl: (p[0]! & 0x0f) * 4,
      at: (((p[6]! << 8) | p[7]!) & 0x1fff) * 8,
      more: (p[6]! & 0x20) !== 0,
      total: (p[2]! << 8) | p[3]!,
    }))
    .sort((a, b) => a.at - b.at);
  let end = 0;
  for (const x of parts) {
    if (x.at !== end || x.total < x.ihl || x.total > x.p.length) return null;
    end += x.total - x.ihl;
  }
  const first = parts[0]!;
  if (parts.at(-1)!.more) return null;
  const q = new Uint8Array(first.ihl + end);
  q.set(first.p.subarray(0, first.ihl));
  for (const x of parts) q.set(x.p.subarray(x.ihl, x.total), first.ihl + x.at);
  q[2] = q.length >>> 8;
  q[3] = q.length & 0xff;
  q[6] = q[6]! & 0x40;
  q[7] = 0;
  return q;
}

/** For each ICMP message delivered, how many packets to its destination went before it. */
function icmpPrecedence(ps: readonly Uint8Array[]): number[] {
  const seen = new Map<string, number>();
  const out: number[] = [];
  for (const p of ps) {
    const d = hex(p.subarray(16, 20));
    if (p[9] === 1) out.push(seen.get(d) ?? 0);
    else seen.set(d, (seen.get(d) ?? 0) + 1);
  }
  return out;
}

function firstDiff(a: readonly string[], b: readonly string[]): string {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++)
    if (a[i] !== b[i]) return `at ${i} of ${a.length}/${b.length}:\n  ${a[i]}\n  ${b[i]}`;
  return "";
}

/** "" when the three runs agree (see the module text), else the first difference, named. */
export function compareRuns(gso: RunResult, plain: RunResult, single: RunResult): string {
  const problems: string[] = single.oracle.slice(0, 3);
  const counters = (x: RunResult) => JSON.stringify(x.counters, Object.keys(x.counters).sort());
  if (counters(plain) !== counters(single))
    problems.push(`counters batched ${counters(plain)} ≠ one by one ${counters(single)}`);
  if (counters(gso) !== counters(plain))
    problems.push(`counters gso ${counters(gso)} ≠ plain ${counters(plain)}`);
  let d = firstDiff(plain.writes, single.writes);
  if (d) problems.push(`TUN writes batched ≠ one by one ${d}`);
  d = firstDiff(plain.icmp6, single.icmp6) || firstDiff(gso.icmp6, plain.icmp6);
  if (d) problems.push(`ICMPv6 errors differ ${d}`);
  const g = byFlow(gso.delivered);
  const p = byFlow(plain.delivered);
  for (const k of new Set([...g.keys(), ...p.keys()])) {
    d = firstDiff(g.get(k) ?? [], p.get(k) ?? []);
    if (d) {
      problems.push(`flow ${k}: gso ≠ plain ${d}`);
      break;
    }
  }
  const gr = byFlow(reassembled(gso.delivered));
  const pr = byFlow(reassembled(plain.delivered));
  for (const k of new Set([...gr.keys(), ...pr.keys()])) {
    d = firstDiff(gr.get(k) ?? [], pr.get(k) ?? []);
    if (d) {
      problems.push(`flow ${k}, fragments reassembled: gso ≠ plain ${d}`);
      break;
    }
  }
  if (gso.delivered.length !== plain.delivered.length)
    problems.push(`delivered gso ${gso.delivered.length} ≠ plain ${plain.delivered.length}`);
  d = firstDiff(
    icmpPrecedence(gso.delivered).map(String),
    icmpPrecedence(plain.delivered).map(String),
  );
  if (d) problems.push(`an ICMP message overtook packets to its destination ${d}`);
  for (const [name, x] of [
    ["gso", gso],
    ["plain", plain],
    ["single", single],
  ] as const)
    if (x.writeErrors !== 0 || x.readErrors !== 0)
      problems.push(`${name}: ${x.writeErrors} write errors, ${x.readErrors} read errors`);
  return problems.join("\n");
}
