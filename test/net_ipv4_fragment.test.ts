/**
 * Inner fragmentation (lib/net/ipv4_fragment.ts, RFC 791 §3.2, RFC 4459 §3.4) and the TEP's
 * `--fragment inner` (lib/tunnel/pipeline.ts, tep_batch.ts): an IPv4 packet without DF above
 * the tunnel MTU is cut into IPv4 fragments that each fit, which reassemble to the packet.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { computeIPv4HeaderChecksum, ipv4HeaderChecksum } from "../lib/net/ipv4.ts";
import { ipv4FragmentCount, writeIPv4Fragment } from "../lib/net/ipv4_fragment.ts";
import { BindingTable } from "../lib/tunnel/binding.ts";
import { buildPacket } from "../lib/tunnel/check.ts";
import { Counter, Counters } from "../lib/tunnel/counters.ts";
import { TepContext, tepEncap, Verdict } from "../lib/tunnel/pipeline.ts";
import { TepEncapBatch } from "../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";

const A4 = parseIPv4("198.51.100.10") as number;
const A6 = parseIPv6("2001:db8:a::1")!;
const WHOLE = { offset: 0, psidLength: 0, psid: 0 };

type Piece = { offset: number; mf: boolean; df: boolean; length: number; bytes: Uint8Array };

/** Every fragment of `pkt` at `mtu`, with its header fields read back. */
function cut(pkt: Uint8Array, mtu: number): Piece[] {
  const n = ipv4FragmentCount(pkt, 0, pkt.length, mtu);
  const out: Piece[] = [];
  for (let i = 0; i < n; i++) {
    const buf = new Uint8Array(mtu + 8);
    const len = writeIPv4Fragment(pkt, 0, pkt.length, mtu, i, buf, 4);
    const b = buf.slice(4, 4 + len);
    expect(ipv4HeaderChecksum(b, 0)).toBe(computeIPv4HeaderChecksum(b, 0));
    expect((b[2]! << 8) | b[3]!).toBe(len);
    const word = (b[6]! << 8) | b[7]!;
    out.push({
      offset: (word & 0x1fff) * 8,
      mf: (word & 0x2000) !== 0,
      df: (word & 0x4000) !== 0,
      length: len,
      bytes: b,
    });
  }
  return out;
}

/** The payload of `pieces` put back in place (what a receiver's reassembly makes). */
function reassemble(pieces: Piece[]): Uint8Array {
  const end = Math.max(...pieces.map((p) => p.offset + p.length - 20));
  const out = new Uint8Array(end);
  for (const p of pieces) out.set(p.bytes.subarray(20), p.offset);
  return out;
}

describe("ipv4FragmentCount / writeIPv4Fragment", () => {
  const pkt = buildPacket({
    src: "203.0.113.80",
    dst: "198.51.100.10",
    protocol: "udp",
    length: 3028,
  });

  test("a 3,028-byte packet at 1,460: three fragments of 8-byte multiples that reassemble", () => {
    const pieces = cut(pkt, 1460);
    expect(pieces.map((p) => p.length)).toEqual([1460, 1460, 148]);
    expect(pieces.map((p) => p.offset)).toEqual([0, 1440, 2880]);
    expect(pieces.map((p) => p.mf)).toEqual([true, true, false]);
    expect(pieces.every((p) => !p.df && p.length <= 1460)).toBe(true);
    // Identification, protocol, addresses as the original's.
    for (const p of pieces) {
      expect(p.bytes.subarray(4, 6)).toEqual(pkt.subarray(4, 6));
      expect(p.bytes.subarray(8, 10)).toEqual(pkt.subarray(8, 10));
      expect(p.bytes.subarray(12, 20)).toEqual(pkt.subarray(12, 20));
    }
    expect(reassemble(pieces)).toEqual(pkt.subarray(20));
  });

  test("a fragment cut further keeps its offset and its MF on the last piece", () => {
    const first = cut(pkt, 1500)[0]!.bytes; // offset 0, MF
    const second = cut(pkt, 1500)[1]!.bytes; // offset 1480, MF
    const a = cut(first, 1280);
    expect(a.map((p) => p.offset)).toEqual([0, 1256]);
    expect(a.map((p) => p.mf)).toEqual([true, true]);
    const b = cut(second, 1280);
    expect(b.map((p) => p.offset)).toEqual([1480, 1480 + 1256]);
    expect(b.map((p) => p.mf)).toEqual([true, true]);
    const last = cut(pkt, 1500).at(-1)!.bytes; // offset 2960, MF clear
    expect(cut(last, 1500)).toEqual([]); // fits
    expect(reassemble([...a, ...b, ...cut(pkt, 1500).slice(2)])).toEqual(pkt.subarray(20));
  });

  test("not cut: DF, IPv4 options, a packet that fits, an MTU below 28", () => {
    const df = buildPacket({
      src: "203.0.113.80",
      dst: "198.51.100.10",
      protocol: "udp",
      length: 3000,
      df: true,
    });
    expect(ipv4FragmentCount(df, 0, df.length, 1460)).toBe(0);
    const options = pkt.slice();
    options[0] = 0x46;
    expect(ipv4FragmentCount(options, 0, options.length, 1460)).toBe(0);
    expect(ipv4FragmentCount(pkt, 0, pkt.length, pkt.length)).toBe(0);
    expect(ipv4FragmentCount(pkt, 0, pkt.length, 27)).toBe(0);
    // A crafted fragment at offset 8191 × 8 with 3,008 bytes of data: past 65,535.
    const death = pkt.slice();
    death[6] = 0x1f;
    death[7] = 0xff;
    expect(ipv4FragmentCount(death, 0, death.length, 1460)).toBe(0);
    death[6] = 0x1e; // offset 7,936 × 8 = 63,488: + 3,008 still past 65,535
    expect(ipv4FragmentCount(death, 0, death.length, 1460)).toBe(0);
    death[6] = 0x1d;
    death[7] = 0x00; // 7,424 × 8 = 59,392 + 3,008 = 62,400: cut, offsets within 13 bits
    expect(ipv4FragmentCount(death, 0, death.length, 1460)).toBe(3);
  });
});

describe("tepEncap with fragmentInner", () => {
  function context(fragmentInner: boolean) {
    const bindings = BindingTable.create({ maxEntries: 16 });
    bindings.set(A4, WHOLE, A6);
    const counters = Counters.create({ slices: 1 }).slice(0);
    return new TepContext({ bindings, counters, tepIPv4: 1, fragmentInner });
  }
  const big = buildPacket({
    src: "203.0.113.80",
    dst: "198.51.100.10",
    protocol: "udp",
    length: 3000,
  });
  const host6 = new Uint8Array(16);

  test("on: FORWARD_FRAGMENT with the pieces to cut, counted encap-fragmented-inner", () => {
    const ctx = context(true);
    expect(tepEncap(ctx, big, 0, big.length, host6, 0)).toBe(Verdict.FORWARD_FRAGMENT);
    expect(ctx.innerFragments).toBe(3);
    expect(ctx.innerMtu).toBe(1460);
    expect([...host6]).toEqual([...A6]);
    expect(ctx.counters[Counter["encap-fragmented-inner"]]).toBe(1);
    expect(ctx.counters[Counter["encap-fragmented"]]).toBe(0);
    // A packet that fits leaves no pieces behind from the one before.
    const small = buildPacket({
      src: "203.0.113.80",
      dst: "198.51.100.10",
      protocol: "udp",
      length: 100,
    });
    expect(tepEncap(ctx, small, 0, small.length, host6, 0)).toBe(Verdict.FORWARD);
    expect(ctx.innerFragments).toBe(0);
  });

  test("off (the default): the outer packet is fragmented, nothing to cut", () => {
    const ctx = context(false);
    expect(tepEncap(ctx, big, 0, big.length, host6, 0)).toBe(Verdict.FORWARD_FRAGMENT);
    expect(ctx.innerFragments).toBe(0);
    expect(ctx.counters[Counter["encap-fragmented"]]).toBe(1);
  });
});

describe("TepEncapBatch with --fragment inner", () => {
  test("the pieces go in order, each in its own outer packet to the host, between the others", () => {
    const bindings = BindingTable.create({ maxEntries: 16 });
    bindings.set(A4, WHOLE, A6);
    const counters = Counters.create({ slices: 1 });
    const tep = new TepContext({
      bindings,
      counters: counters.slice(0),
      tepIPv4: 1,
      mssClamp: false,
      fragmentInner: true,
    });
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun();
    const loop = new TepEncapBatch(tep, raw, tun, () => 0);
    const spec = { src: "203.0.113.80", dst: "198.51.100.10", protocol: "udp" } as const;
    const before = buildPacket({ ...spec, length: 100 });
    const big = buildPacket({ ...spec, length: 3000 });
    const after = buildPacket({ ...spec, length: 200 });
    // A TUN read gives one packet (or one super-packet): a step each.
    for (const packet of [before, big, after]) {
      tun.inbox.push({ packet, gsoSize: 0 });
      expect(loop.step()).toBe(1);
    }
    expect(raw.sent.map((s) => s.packet.length)).toEqual([100, 1460, 1460, 120, 200]);
    for (const s of raw.sent) expect([...s.dst6]).toEqual([...A6]);
    const pieces = raw.sent.slice(1, 4).map((s) => {
      const word = (s.packet[6]! << 8) | s.packet[7]!;
      return {
        offset: (word & 0x1fff) * 8,
        mf: (word & 0x2000) !== 0,
        df: false,
        length: s.packet.length,
        bytes: s.packet,
      };
    });
    expect(pieces.map((p) => p.mf)).toEqual([true, true, false]);
    expect(reassemble(pieces)).toEqual(big.subarray(20));
    expect(counters.get("encap-fragmented-inner")).toBe(1);
    expect(counters.get("encap-forward")).toBe(3);
  });
});
