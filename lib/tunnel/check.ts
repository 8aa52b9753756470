/**
 * Check mode (after `snabb lwaftr check`): replay stored packets through the pipeline steps
 * with a given binding table and configuration, and report every output packet and the
 * counters, so that a test (or `dstm tep check`) can compare them with stored expectations.
 * No TUN device, no socket, no root: the steps are pure functions.
 *
 * A scenario (JSON) has a TEP configuration, optionally a client configuration, the bindings,
 * and the input packets in order. Each packet names its step (`tep-decap`, `tep-encap`,
 * `client-encap`, `client-decap`), carries its bytes as hex (or a `packet` description for big
 * synthetic ones), the outer IPv6 source for the two decap steps, and a time in milliseconds
 * for the ICMP rate limiter. Reading and writing the files is the caller's business.
 *
 * @module
 */
import { formatIPv6, parseIPv4, parseIPv6 } from "../net/addr.ts";
import { checksumSum } from "../net/checksum.ts";
import { IPV4_DF, IPV4_MF, IpProtocol, writeIPv4Header } from "../net/ipv4.ts";
import { encapsulate4in6 } from "../net/ipv6.ts";
import { encodePcap, type PcapRecord } from "../net/pcap.ts";
import { parsePortSet } from "../net/portset.ts";
import { BindingTable } from "./binding.ts";
import { COUNTER_NAMES, type CounterName, Counters } from "./counters.ts";
import {
  ClientContext,
  clientDecap,
  clientEncap,
  isForward,
  TepContext,
  tepDecap,
  tepEncap,
  Verdict,
  verdictName,
} from "./pipeline.ts";

export type CheckStep = "tep-decap" | "tep-encap" | "client-encap" | "client-decap";

/** A synthetic IPv4 packet (for inputs too big to read as hex). */
export interface PacketSpec {
  src: string;
  dst: string;
  protocol: "udp" | "tcp" | "icmp-echo";
  /** Total length in bytes (header + transport header + data). */
  length: number;
  srcPort?: number;
  dstPort?: number;
  /** Echo identifier (icmp-echo). */
  id?: number;
  df?: boolean;
  mf?: boolean;
  ttl?: number;
  identification?: number;
}

export interface CheckPacket {
  step: CheckStep;
  /** What the packet is about, kept in the expectations for the reader. */
  note?: string;
  hex?: string;
  packet?: PacketSpec;
  /** Outer IPv6 source (tep-decap, client-decap). */
  from6?: string;
  /** Time in ms for the rate limiter; default: the previous packet's. */
  timeMs?: number;
}

export interface CheckScenario {
  description?: string;
  tep: {
    ipv4: string;
    ipv6: string;
    linkMtu?: number;
    hairpin?: boolean;
    icmpRate?: number;
    icmpBurst?: number;
    icmpHostUnreachable?: boolean;
  };
  /** `host6` (the client's own address) only fills in the pcap output. */
  client?: { leasedIPv4: string; portSet?: string; tep6: string; host6?: string };
  bindings: { ipv4: string; portSet?: string; host6: string }[];
  packets: CheckPacket[];
}

/** What one input packet produced. */
export interface CheckOutput {
  index: number;
  step: CheckStep;
  note?: string;
  verdict: string;
  /** `tun`: written to the TUN/DTI device; `raw`: sent in IPv6 to `dst6`. */
  to?: "tun" | "raw";
  dst6?: string;
  hex?: string;
}

export interface CheckResult {
  outputs: CheckOutput[];
  /** Counters that are not zero, in declaration order. */
  counters: Partial<Record<CounterName, number>>;
}

/**
 * Runs a scenario from an empty table and zero counters. Throws (with the packet's index) on a
 * scenario that does not make sense: bad addresses, bad hex, a client step without `client`.
 *
 * @example expect(runCheck(scenario)).toEqual(stored)
 */
export function runCheck(scenario: CheckScenario): CheckResult {
  return _run(scenario).result;
}

/**
 * Two pcap files (LINKTYPE_RAW) of a scenario: `input` holds the packets as they arrived
 * (4over6 packets whole, with the outer header the kernel had stripped), `output` what left
 * (encapsulated packets with the outer header the kernel would add).
 */
export function checkPcaps(scenario: CheckScenario): { input: Uint8Array; output: Uint8Array } {
  const { inputs, outputs } = _run(scenario);
  return { input: encodePcap(inputs), output: encodePcap(outputs) };
}

/** The per-packet state a scenario runs in: its contexts, counters and replayed clock. */
interface _Setup {
  readonly tep: TepContext;
  readonly tep6: Uint8Array;
  readonly client: ClientContext | undefined;
  readonly counters: Counters;
  /** The scenario's clock (ms), which `tep` reads: set from each packet's `timeMs`. */
  readonly clock: { ms: number };
}

function _run(scenario: CheckScenario): {
  result: CheckResult;
  inputs: PcapRecord[];
  outputs: PcapRecord[];
} {
  const setup = _setup(scenario);
  const outputs: CheckOutput[] = [];
  const pcapIn: PcapRecord[] = [];
  const pcapOut: PcapRecord[] = [];
  scenario.packets.forEach((p, index) => {
    const where = `packet ${index}`;
    if (p.timeMs !== undefined) setup.clock.ms = p.timeMs;
    const bytes =
      p.hex !== undefined ? hexToBytes(p.hex, where) : p.packet && buildPacket(p.packet);
    if (!bytes) throw new Error(`${where}: needs hex or packet`);
    const out: CheckOutput =
      p.note === undefined
        ? { index, step: p.step, verdict: "" }
        : { index, step: p.step, note: p.note, verdict: "" };
    const input = _step(setup, p, bytes, out, where);
    pcapIn.push({ timeMs: setup.clock.ms, data: input });
    if (out.hex !== undefined) {
      const data = hexToBytes(out.hex, where);
      const src6 =
        p.step === "client-encap"
          ? _ipv6(scenario.client?.host6 ?? "::", "client.host6")
          : setup.tep6;
      pcapOut.push({
        timeMs: setup.clock.ms,
        data: out.to === "raw" ? encapsulate4in6(data, src6, parseIPv6(out.dst6!)!) : data,
      });
    }
    outputs.push(out);
  });

  const all = setup.counters.snapshot();
  const nonzero: Partial<Record<CounterName, number>> = {};
  for (const name of COUNTER_NAMES) if (all[name] !== 0) nonzero[name] = all[name];
  return { result: { outputs, counters: nonzero }, inputs: pcapIn, outputs: pcapOut };
}

/** The scenario's binding table, counters and TEP (and client) contexts. */
function _setup(scenario: CheckScenario): _Setup {
  const tep4 = _ipv4(scenario.tep.ipv4, "tep.ipv4");
  const tep6 = _ipv6(scenario.tep.ipv6, "tep.ipv6");
  const bindings = BindingTable.create({ maxEntries: Math.max(16, scenario.bindings.length) });
  for (const b of scenario.bindings) {
    const portSet = parsePortSet(b.portSet ?? "all");
    if (!portSet) throw new Error(`binding ${b.ipv4}: bad port set ${b.portSet}`);
    bindings.set(_ipv4(b.ipv4, "binding"), portSet, _ipv6(b.host6, "binding"));
  }
  const counters = Counters.create({ slices: 1 });
  const slice = counters.slice(0);
  const clock = { ms: 0 };
  const tep = new TepContext({
    bindings,
    counters: slice,
    tepIPv4: tep4,
    linkMtu: scenario.tep.linkMtu,
    hairpin: scenario.tep.hairpin,
    icmpRate: scenario.tep.icmpRate,
    icmpBurst: scenario.tep.icmpBurst,
    icmpHostUnreachable: scenario.tep.icmpHostUnreachable,
    now: () => clock.ms,
  });
  let client: ClientContext | undefined;
  if (scenario.client) {
    const portSet = parsePortSet(scenario.client.portSet ?? "all");
    if (!portSet) throw new Error(`client: bad port set ${scenario.client.portSet}`);
    client = new ClientContext({
      counters: slice,
      leasedIPv4: _ipv4(scenario.client.leasedIPv4, "client.leasedIPv4"),
      portSet,
      tep6: _ipv6(scenario.client.tep6, "client.tep6"),
    });
  }
  return { tep, tep6, client, counters, clock };
}

const _host6 = new Uint8Array(16);

/**
 * Runs one packet through its step, filling `out` (verdict, and what left where); returns the
 * packet as it arrived for the input capture (4over6 packets with their outer header).
 */
function _step(
  setup: _Setup,
  p: CheckPacket,
  bytes: Uint8Array,
  out: CheckOutput,
  where: string,
): Uint8Array {
  const { tep, tep6, client } = setup;
  // Headroom and tailroom, so that a step reading past its range would show.
  const buf = new Uint8Array(bytes.length + 80).fill(0xee);
  buf.set(bytes, 40);
  let input = bytes;
  let verdict: Verdict;
  switch (p.step) {
    case "tep-decap": {
      const from6 = _ipv6(p.from6, `${where} from6`);
      input = encapsulate4in6(bytes, from6, tep6);
      verdict = tepDecap(tep, buf, 40, bytes.length, from6, 0);
      if (isForward(verdict)) _emit(out, "tun", undefined, buf.subarray(40, 40 + tep.length));
      break;
    }
    case "tep-encap": {
      _host6.fill(0);
      verdict = tepEncap(tep, buf, 40, bytes.length, _host6, 0);
      if (isForward(verdict)) _emit(out, "raw", _host6, buf.subarray(40, 40 + tep.length));
      break;
    }
    case "client-encap": {
      if (!client) throw new Error(`${where}: client step without a client configuration`);
      verdict = clientEncap(client, buf, 40, bytes.length);
      if (isForward(verdict)) {
        _emit(out, "raw", client.tep6, buf.subarray(40, 40 + client.length));
      }
      break;
    }
    case "client-decap": {
      if (!client) throw new Error(`${where}: client step without a client configuration`);
      const from6 = _ipv6(p.from6, `${where} from6`);
      input = encapsulate4in6(bytes, from6, client.tep6);
      verdict = clientDecap(client, buf, 40, bytes.length, from6, 0);
      if (isForward(verdict)) _emit(out, "tun", undefined, buf.subarray(40, 40 + client.length));
      break;
    }
    default:
      throw new Error(`${where}: unknown step ${String((p as CheckPacket).step)}`);
  }
  if (verdict === Verdict.ICMP)
    _emit(out, "tun", undefined, tep.reply.subarray(0, tep.replyLength));
  out.verdict = verdictName(verdict);
  return input;
}

function _emit(
  out: CheckOutput,
  to: "tun" | "raw",
  dst6: Uint8Array | undefined,
  data: Uint8Array,
) {
  out.to = to;
  if (dst6) out.dst6 = formatIPv6(dst6);
  out.hex = bytesToHex(data);
}

/**
 * Builds a synthetic IPv4 packet: valid header and transport checksums, data bytes
 * 0x00, 0x01, … Allocates; for fixtures and tests.
 *
 * @example buildPacket({ src: "198.51.100.10", dst: "203.0.113.5", protocol: "udp", length: 1600, df: true })
 */
export function buildPacket(spec: PacketSpec): Uint8Array {
  const src = _ipv4(spec.src, "packet src");
  const dst = _ipv4(spec.dst, "packet dst");
  const l4Length = spec.protocol === "tcp" ? 20 : 8;
  if (!Number.isInteger(spec.length) || spec.length < 20 + l4Length || spec.length > 65535) {
    throw new RangeError(`packet length ${spec.length} does not fit`);
  }
  const pkt = new Uint8Array(spec.length);
  const protocol =
    spec.protocol === "tcp"
      ? IpProtocol.TCP
      : spec.protocol === "udp"
        ? IpProtocol.UDP
        : IpProtocol.ICMP;
  const flags = (spec.df ? IPV4_DF : 0) | (spec.mf ? IPV4_MF : 0);
  writeIPv4Header(
    pkt,
    0,
    spec.length,
    spec.identification ?? 1,
    flags,
    spec.ttl ?? 64,
    protocol,
    src,
    dst,
  );
  for (let i = 20 + l4Length; i < spec.length; i++) pkt[i] = i - 20 - l4Length;
  const view = new DataView(pkt.buffer);
  const l4 = 20;
  if (spec.protocol === "icmp-echo") {
    pkt[l4] = 8;
    view.setUint16(l4 + 4, spec.id ?? 0);
    view.setUint16(l4 + 6, 1);
    view.setUint16(l4 + 2, ~checksumSum(pkt, l4, spec.length - l4) & 0xffff);
    return pkt;
  }
  view.setUint16(l4, spec.srcPort ?? 0);
  view.setUint16(l4 + 2, spec.dstPort ?? 0);
  const at = spec.protocol === "tcp" ? l4 + 16 : l4 + 6;
  if (spec.protocol === "tcp") {
    view.setUint32(l4 + 4, 1); // sequence number
    pkt[l4 + 12] = 5 << 4; // data offset
    pkt[l4 + 13] = 0x18; // PSH, ACK
    view.setUint16(l4 + 14, 65535);
  } else {
    view.setUint16(l4 + 4, spec.length - l4);
  }
  // Pseudo-header: source, destination, protocol, transport length (RFC 768, RFC 9293).
  let sum = checksumSum(pkt, 12, 8);
  sum += protocol + (spec.length - l4);
  let c = ~checksumSum(pkt, l4, spec.length - l4, sum) & 0xffff;
  if (c === 0 && spec.protocol === "udp") c = 0xffff; // RFC 768: 0 means "no checksum"
  view.setUint16(at, c);
  return pkt;
}

/** Lower-case hex of bytes. */
export function bytesToHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Bytes of hex text; spaces, newlines and `:` are ignored. Throws on anything else. */
export function hexToBytes(hex: string, where = "hex"): Uint8Array {
  const clean = hex.replace(/[\s:]/g, "");
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) {
    throw new Error(`${where}: not an even number of hex digits`);
  }
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function _ipv4(text: string, what: string): number {
  const v = parseIPv4(text);
  if (v === null) throw new Error(`${what}: ${text} is not an IPv4 address`);
  return v;
}

function _ipv6(text: string | undefined, what: string): Uint8Array {
  const v = text === undefined ? null : parseIPv6(text);
  if (v === null) throw new Error(`${what}: ${text} is not an IPv6 address`);
  return v;
}
