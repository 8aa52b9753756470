/**
 * Red team (atk17) on `dstm tep --fragment inner` (lib/net/ipv4_fragment.ts, pipeline.ts
 * tepEncap, tep_batch.ts #sendInnerFragments), as a host on the IPv4 side sending crafted
 * packets towards a bound host:
 *
 * - Fault (fixed): with a jumbo `--link-mtu` (above 9,256: IPoIB, loopback-like links) the
 *   batch loop's fragment buffers held only a segment's 9,216 bytes while a piece may be the
 *   whole tunnel MTU: a 30,000-byte packet without DF threw a RangeError out of the loop's step
 *   (the encapsulating worker's loop). Now the buffers hold the tunnel MTU.
 * - Held: every cut (any length, MTU, original offset and MF of a fragment cut further) gives
 *   pieces within the MTU, 8-byte offsets, MF on all but the last (which keeps the original's),
 *   the header otherwise the original's, and the data back in place (as the kernel's
 *   ip_fragment would, RFC 791 §3.2); in the batch loop the pieces of the segments of one TUN
 *   super-packet go in order, each segment's pieces carrying its bytes and its identification,
 *   between the packets before and after.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { tcpSegmentAt, tcpSegmentCount } from "../lib/net/gso.ts";
import { computeIPv4HeaderChecksum, ipv4HeaderChecksum } from "../lib/net/ipv4.ts";
import { ipv4FragmentCount, writeIPv4Fragment } from "../lib/net/ipv4_fragment.ts";
import { psidOfPort } from "../lib/net/portset.ts";
import { BindingTable } from "../lib/tunnel/binding.ts";
import { buildPacket } from "../lib/tunnel/check.ts";
import { Counters } from "../lib/tunnel/counters.ts";
import { TepContext } from "../lib/tunnel/pipeline.ts";
import { TepEncapBatch } from "../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";

const A4 = parseIPv4("198.51.100.10") as number;
const A6 = parseIPv6("2001:db8:a::1")!;
const WHOLE = { offset: 0, psidLength: 0, psid: 0 };
const SPEC = { src: "203.0.113.80", dst: "198.51.100.10" } as const;

function loopWith(linkMtu?: number) {
  const bindings = BindingTable.create({ maxEntries: 16 });
  bindings.set(A4, WHOLE, A6);
  const tep = new TepContext({
    bindings,
    counters: Counters.create({ slices: 1 }).slice(0),
    tepIPv4: 1,
    mssClamp: false,
    fragmentInner: true,
    ...(linkMtu ? { linkMtu } : {}),
  });
  const raw = new FakeTunnelSocket();
  const tun = new FakeBatchTun();
  return { raw, tun, loop: new TepEncapBatch(tep, raw, tun, () => 0) };
}

const word = (p: Uint8Array) => (p[6]! << 8) | p[7]!;

/** The data of `pieces` put back at their offsets, from byte `base` of the datagram. */
function reassemble(pieces: readonly Uint8Array[], base: number): Uint8Array {
  const end = Math.max(...pieces.map((p) => (word(p) & 0x1fff) * 8 + p.length - 20));
  const out = new Uint8Array(end - base);
  for (const p of pieces) out.set(p.subarray(20), (word(p) & 0x1fff) * 8 - base);
  return out;
}

describe("--fragment inner, batch loop", () => {
  test("a jumbo --link-mtu: a 30,000-byte packet is cut, not a RangeError out of step()", () => {
    const { raw, tun, loop } = loopWith(16000);
    const big = buildPacket({ ...SPEC, protocol: "udp", length: 30000 });
    tun.inbox.push({ packet: big, gsoSize: 0 });
    expect(loop.step()).toBe(1); // main: RangeError (a 9,216-byte buffer for a 15,960-byte piece)
    const pieces = raw.sent.map((s) => s.packet);
    expect(pieces.map((p) => p.length)).toEqual([15956, 14064]);
    expect(reassemble(pieces, 0)).toEqual(big.subarray(20));
  });

  test("a super-packet's segments, each cut: in order, each piece its segment's bytes and ID", () => {
    const { raw, tun, loop } = loopWith();
    // A TCP super-packet without DF (the IPv4 side's 1,500-byte segments, GRO-merged): 10
    // segments of 1,520 bytes, above the tunnel MTU of 1,460.
    const gso = 1480 - 20;
    const sup = buildPacket({ ...SPEC, protocol: "tcp", length: 40 + 10 * gso, identification: 7 });
    const before = buildPacket({ ...SPEC, protocol: "udp", length: 100 });
    const after = buildPacket({ ...SPEC, protocol: "udp", length: 300 });
    for (const p of [
      { packet: before, gsoSize: 0 },
      { packet: sup, gsoSize: gso },
      { packet: after, gsoSize: 0 },
    ]) {
      tun.inbox.push(p);
      expect(loop.step()).toBeGreaterThan(0);
    }
    const sent = raw.sent.map((s) => s.packet);
    expect(sent[0]).toEqual(before);
    expect(sent.at(-1)).toEqual(after);
    const count = tcpSegmentCount(sup, 0, sup.length, gso);
    expect(count).toBe(10);
    const middle = sent.slice(1, -1);
    expect(middle.length).toBe(2 * count);
    const ids = new Set<number>();
    for (let i = 0; i < count; i++) {
      const seg = new Uint8Array(2048);
      const n = tcpSegmentAt(sup, 0, gso, i, seg, 0);
      const pair = middle.slice(2 * i, 2 * i + 2);
      for (const p of pair) {
        expect(p.length).toBeLessThanOrEqual(1460);
        expect((p[4]! << 8) | p[5]!).toBe((seg[4]! << 8) | seg[5]!);
      }
      ids.add((seg[4]! << 8) | seg[5]!);
      expect(reassemble(pair, 0)).toEqual(seg.subarray(20, n));
    }
    expect(ids.size).toBe(count);
    for (const s of raw.sent) expect([...s.dst6]).toEqual([...A6]);
  });
});

describe("--fragment inner at the tunnel MTU ± 1, and a total length shorter than the read", () => {
  test("1,459 and 1,460 whole; 1,461 in 1,460 + 21; trailing bytes past the total never sent", () => {
    const { raw, tun, loop } = loopWith();
    for (const length of [1459, 1460, 1461]) {
      tun.inbox.push({ packet: buildPacket({ ...SPEC, protocol: "udp", length }), gsoSize: 0 });
      expect(loop.step()).toBe(1);
    }
    expect(raw.sent.map((x) => x.packet.length)).toEqual([1459, 1460, 1460, 21]);
    // A read of 3,000 bytes whose header says 1,461: the 1,539 after it are not the packet's.
    raw.sent.length = 0;
    const lie = new Uint8Array(3000).fill(0xee);
    lie.set(buildPacket({ ...SPEC, protocol: "udp", length: 1461 }), 0);
    tun.inbox.push({ packet: lie, gsoSize: 0 });
    expect(loop.step()).toBe(1);
    const pieces = raw.sent.map((x) => x.packet);
    expect(pieces.map((p) => p.length)).toEqual([1460, 21]);
    expect(reassemble(pieces, 0)).toEqual(lie.subarray(20, 1461));
  });
});

describe("--fragment inner with a shared (port-set) address: fragments follow their first", () => {
  test("a datagram to host B's ports, its fragments last-first, each above the MTU: all of B's", () => {
    const S4 = parseIPv4("198.51.100.20") as number;
    const HOST_A = parseIPv6("2001:db8:a::a")!;
    const HOST_B = parseIPv6("2001:db8:a::b")!;
    const bindings = BindingTable.create({ maxEntries: 16 });
    bindings.set(S4, { offset: 6, psidLength: 1, psid: 0 }, HOST_A);
    bindings.set(S4, { offset: 6, psidLength: 1, psid: 1 }, HOST_B);
    const tep = new TepContext({
      bindings,
      counters: Counters.create({ slices: 1 }).slice(0),
      tepIPv4: 1,
      mssClamp: false,
      fragmentInner: true,
    });
    const raw = new FakeTunnelSocket();
    const tun = new FakeBatchTun();
    const loop = new TepEncapBatch(tep, raw, tun, () => 0);
    // Port 0x0600 + 0x200: PSID 1 at offset 6, length 1 (RFC 7597 §5.1).
    const port = 0x0600 | 0x0200;
    expect(psidOfPort(port, 6, 1)).toBe(1);
    const whole = buildPacket({
      src: "203.0.113.80",
      dst: "198.51.100.20",
      protocol: "udp",
      length: 4000,
      dstPort: port,
      identification: 0x1717,
    });
    // Cut on the IPv4 side at 1,500 (the sender's link): 1,500, 1,500, 1,040 bytes.
    const originals: Uint8Array[] = [];
    const n = ipv4FragmentCount(whole, 0, whole.length, 1500);
    for (let i = 0; i < n; i++) {
      const out = new Uint8Array(1500);
      originals.push(out.slice(0, writeIPv4Fragment(whole, 0, whole.length, 1500, i, out, 0)));
    }
    expect(originals.map((p) => p.length)).toEqual([1500, 1500, 1040]);
    // Arriving last first: the two without ports are held until the first comes.
    for (const p of [...originals].reverse()) {
      tun.inbox.push({ packet: p, gsoSize: 0 });
      expect(loop.step()).toBe(1);
    }
    for (const s of raw.sent) expect([...s.dst6]).toEqual([...HOST_B]);
    // 1,500 → 1,460 + 60 twice, and the 1,040 whole: five pieces, the first's first.
    const pieces = raw.sent.map((s) => s.packet);
    expect(pieces.map((p) => p.length).sort((a, b) => a - b)).toEqual([60, 60, 1040, 1460, 1460]);
    expect(pieces[0]![7]).toBe(0); // offset 0 first (it released the others)
    expect(reassemble(pieces, 0)).toEqual(whole.subarray(20));
  });
});

describe("ipv4FragmentCount / writeIPv4Fragment against RFC 791 §3.2", () => {
  test("1,000 crafted packets: lengths, MTUs, fragments of fragments", () => {
    let seed = 0x17171717;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const same = (a: Uint8Array, b: Uint8Array) =>
      a.length === b.length && a.every((x, i) => x === b[i]);
    const bad: string[] = [];
    let cut = 0;
    for (let k = 0; k < 1000; k++) {
      const len = 28 + rnd(65508);
      const mtu = 28 + rnd(k % 4 === 0 ? 200 : 9000);
      const pkt = buildPacket({ ...SPEC, protocol: "udp", length: len });
      // Every other one a fragment already: an offset that leaves room, MF either way.
      const maxOff = Math.min(8191, Math.floor((65535 - (len - 20)) / 8));
      const fragOff = k % 2 === 0 ? 0 : rnd(maxOff + 1);
      const mf = rnd(2) === 1;
      pkt[6] = (mf ? 0x20 : 0) | (fragOff >>> 8);
      pkt[7] = fragOff & 0xff;
      pkt[10] = 0;
      pkt[11] = 0;
      const c = computeIPv4HeaderChecksum(pkt, 0);
      pkt[10] = c >>> 8;
      pkt[11] = c & 0xff;
      const n = ipv4FragmentCount(pkt, 0, len, mtu);
      const want = len <= mtu ? 0 : Math.ceil((len - 20) / ((mtu - 20) & ~7));
      const where = `len ${len} mtu ${mtu} off ${fragOff} mf ${mf}`;
      if (n !== want) bad.push(`${where}: ${n} pieces, not ${want}`);
      if (n === 0) continue;
      cut++;
      const pieces: Uint8Array[] = [];
      const out = new Uint8Array(mtu + 3);
      for (let i = 0; i < n; i++) {
        const m = writeIPv4Fragment(pkt, 0, len, mtu, i, out, 3);
        const p = out.slice(3, 3 + m);
        const w = word(p);
        const lastMf = i < n - 1 ? 0x2000 : mf ? 0x2000 : 0;
        if (
          m > mtu ||
          ipv4HeaderChecksum(p, 0) !== computeIPv4HeaderChecksum(p, 0) ||
          ((p[2]! << 8) | p[3]!) !== m ||
          // The rest of the header is the original's (TOS, ID, TTL, protocol, addresses).
          !same(p.subarray(0, 2), pkt.subarray(0, 2)) ||
          !same(p.subarray(4, 6), pkt.subarray(4, 6)) ||
          !same(p.subarray(8, 10), pkt.subarray(8, 10)) ||
          !same(p.subarray(12, 20), pkt.subarray(12, 20)) ||
          (w & 0x6000) !== lastMf ||
          (i < n - 1 && (m - 20) % 8 !== 0)
        )
          bad.push(`${where}: piece ${i} of ${n}`);
        pieces.push(p);
      }
      if ((word(pieces[0]!) & 0x1fff) !== fragOff) bad.push(`${where}: first offset`);
      if (!same(reassemble(pieces, fragOff * 8), pkt.subarray(20, len))) bad.push(`${where}: data`);
    }
    expect(bad.slice(0, 5)).toEqual([]);
    expect(cut).toBeGreaterThan(500);
  });
});
