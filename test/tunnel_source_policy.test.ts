/**
 * The TEP's ICMPv6 1/5 "source address failed ingress/egress policy" (RFC 4443 §3.1, RFC 7597
 * §8.1–8.2) about a decapsulated packet whose source no binding allows: built by tepDecap into
 * `ctx.reply6` only with the TEP's address given, about unbound, spoofed and bad-port sources
 * alike, quoting the rebuilt outer header and the inner packet, rate limited with the TEP's
 * other ICMP errors and counted. The end-to-end run (kernel, client renewal) is
 * test/binding_lost.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { BINDING_LOST_RENEW_MS, BindingLostGate } from "../lib/client/binding_lost.ts";
import { applicationError } from "../lib/dataplane/client_lease.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { buildSourcePolicyFailed, ICMP6_ERROR_MAX_LENGTH } from "../lib/net/icmp6.ts";
import { BindingTable } from "../lib/tunnel/binding.ts";
import { buildPacket } from "../lib/tunnel/check.ts";
import { Counter, Counters } from "../lib/tunnel/counters.ts";
import { ClientTranslator } from "../lib/tunnel/napt.ts";
import { NaptTable } from "../lib/tunnel/napt_table.ts";
import { ClientContext, TepContext, tepDecap, Verdict } from "../lib/tunnel/pipeline.ts";

const A4 = parseIPv4("198.51.100.10")!;
const A6 = parseIPv6("2001:db8:a::1")!;
const B6 = parseIPv6("2001:db8:a::2")!;
const TEP6 = parseIPv6("2001:db8::1")!;
const WHOLE = { offset: 0, psidLength: 0, psid: 0 };

function tep(o: { tep6?: Uint8Array; icmpRate?: number; icmpBurst?: number } = {}) {
  const bindings = BindingTable.create({ maxEntries: 16 });
  bindings.set(A4, WHOLE, A6);
  const counters = Counters.create({ slices: 1 }).slice(0);
  const ctx = new TepContext({ bindings, counters, tepIPv4: 1, now: () => 0, ...o });
  return { ctx, counters: counters as Float64Array };
}
const packet = (src: string, length = 60) =>
  buildPacket({ src, dst: "203.0.113.80", protocol: "udp", length });

describe("tepDecap: ICMPv6 1/5 to the sender of an unbound source", () => {
  test("no binding: the error quotes the outer header (sender → TEP, next header 4) and the packet", () => {
    const { ctx } = tep({ tep6: TEP6 });
    const pkt = packet("198.51.100.99");
    expect(tepDecap(ctx, pkt, 0, pkt.length, A6, 0, 0x28)).toBe(Verdict.DROP_NO_BINDING);
    const n = ctx.reply6Length;
    expect(n).toBe(8 + 40 + pkt.length);
    const r = ctx.reply6;
    expect([...r.subarray(0, 8)]).toEqual([1, 5, 0, 0, 0, 0, 0, 0]);
    expect(r[8]! >>> 4).toBe(6);
    expect(((r[8]! & 0x0f) << 4) | (r[9]! >>> 4)).toBe(0x28); // the outer traffic class
    expect((r[12]! << 8) | r[13]!).toBe(pkt.length);
    expect(r[14]).toBe(4);
    expect([...r.subarray(16, 32)]).toEqual([...A6]);
    expect([...r.subarray(32, 48)]).toEqual([...TEP6]);
    expect([...r.subarray(48, n)]).toEqual([...pkt]);
    expect([...ctx.reply6To]).toEqual([...A6]);
  });

  test("spoofed (another host's address) and bound: spoofed gets one, a forwarded packet none", () => {
    const { ctx } = tep({ tep6: TEP6 });
    const pkt = packet("198.51.100.10");
    expect(tepDecap(ctx, pkt, 0, pkt.length, B6, 0)).toBe(Verdict.DROP_SPOOFED_SOURCE);
    expect(ctx.reply6Length).toBeGreaterThan(0);
    expect([...ctx.reply6To]).toEqual([...B6]);
    ctx.reply6Length = 0;
    expect(tepDecap(ctx, pkt, 0, pkt.length, A6, 0)).toBe(Verdict.FORWARD);
    expect(ctx.reply6Length).toBe(0);
  });

  test("not while the TEP's table is loading (sourcePolicyReady 0): a restarted TEP tells no host", () => {
    const ready = new Int32Array(1);
    const { ctx } = tep({ tep6: TEP6 });
    const loading = new TepContext({
      bindings: ctx.bindings,
      counters: new Float64Array(ctx.counters.length),
      tepIPv4: 1,
      now: () => 0,
      tep6: TEP6,
      sourcePolicyReady: ready,
    });
    const pkt = packet("198.51.100.99");
    expect(tepDecap(loading, pkt, 0, pkt.length, A6, 0)).toBe(Verdict.DROP_NO_BINDING);
    expect(loading.reply6Length).toBe(0);
    ready[0] = 1;
    expect(tepDecap(loading, pkt, 0, pkt.length, A6, 0)).toBe(Verdict.DROP_NO_BINDING);
    expect(loading.reply6Length).toBeGreaterThan(0);
  });

  test("without the TEP's address (check mode) nothing is built", () => {
    const { ctx } = tep();
    const pkt = packet("198.51.100.99");
    expect(tepDecap(ctx, pkt, 0, pkt.length, A6, 0)).toBe(Verdict.DROP_NO_BINDING);
    expect(ctx.reply6Length).toBe(0);
  });

  test("rate limited with the other ICMP errors (icmp-rate-limited), counted when sent", () => {
    const { ctx, counters } = tep({ tep6: TEP6, icmpRate: 1, icmpBurst: 2 });
    const pkt = packet("198.51.100.99");
    let sent = 0;
    for (let i = 0; i < 10; i++) {
      tepDecap(ctx, pkt, 0, pkt.length, A6, 0);
      if (ctx.reply6Length !== 0) sent++;
      ctx.reply6Length = 0;
    }
    expect(sent).toBe(2);
    expect(counters[Counter["decap-icmp-source-policy"]]).toBe(2);
    expect(counters[Counter["icmp-rate-limited"]]).toBe(8);
    expect(counters[Counter["decap-drop-no-binding"]]).toBe(10);
  });

  test("a packet from :: (RFC 4443 §2.4 (e): no error) spends no token: the next sender still gets its 1/5", () => {
    const { ctx, counters } = tep({ tep6: TEP6, icmpRate: 1, icmpBurst: 1 });
    const pkt = packet("198.51.100.99");
    const unspecified = new Uint8Array(16);
    for (let i = 0; i < 5; i++) {
      expect(tepDecap(ctx, pkt, 0, pkt.length, unspecified, 0)).toBe(Verdict.DROP_NO_BINDING);
      expect(ctx.reply6Length).toBe(0);
    }
    expect(counters[Counter["icmp-rate-limited"]]).toBe(0);
    expect(tepDecap(ctx, pkt, 0, pkt.length, A6, 0)).toBe(Verdict.DROP_NO_BINDING);
    expect(ctx.reply6Length).toBeGreaterThan(0);
    expect([...ctx.reply6To]).toEqual([...A6]);
  });

  test("a long packet is cut so that the error fits the IPv6 minimum MTU; no error to multicast", () => {
    const out = new Uint8Array(ICMP6_ERROR_MAX_LENGTH);
    const big = packet("198.51.100.99", 1500);
    expect(buildSourcePolicyFailed(out, 0, A6, 0, TEP6, 0, 0, big, 0, big.length)).toBe(1240);
    const multicast = parseIPv6("ff02::1")!;
    expect(buildSourcePolicyFailed(out, 0, multicast, 0, TEP6, 0, 0, big, 0, 100)).toBe(0);
    const unspecified = new Uint8Array(16);
    expect(buildSourcePolicyFailed(out, 0, unspecified, 0, TEP6, 0, 0, big, 0, 100)).toBe(0);
  });
});

describe("client: BindingLostGate (lib/client/binding_lost.ts)", () => {
  test("one early renewal per 10 s; the notices in between are counted and reported with the next", () => {
    const gate = new BindingLostGate();
    expect(gate.take(0)).toEqual({ suppressed: 0 });
    for (let t = 1000; t < BINDING_LOST_RENEW_MS; t += 1000) expect(gate.take(t)).toBeUndefined();
    expect(gate.take(BINDING_LOST_RENEW_MS)).toEqual({ suppressed: 9 });
    expect(gate.take(BINDING_LOST_RENEW_MS + 1)).toBeUndefined();
  });
});

describe("client: a 1/5 about a shared address from a port outside our set (lib/dataplane/client_lease.ts)", () => {
  test("not ours (a spoofer's packet the TEP rightly refused): no renewal; one from our set renews", () => {
    // A remote attacker sends the TEP a 4over6 packet with our host address as outer source
    // and our shared IPv4 from a port outside our set: the TEP answers us with a genuine 1/5.
    const counters = Counters.create({ slices: 1 }).slice(0) as Float64Array;
    const portSet = { offset: 6, psidLength: 6, psid: 17 }; // 1296 is ours, 40000 is not
    const context = new ClientContext({ counters, leasedIPv4: A4, portSet, tep6: TEP6 });
    const lease = { generation: 1, context, translate: true };
    const translator = new ClientTranslator(NaptTable.create(), { counters });
    const info = { type: 1, code: 5, info: 0, offender6: TEP6 };
    let lost = 0;
    const spoofed = buildPacket({
      src: "198.51.100.10",
      dst: "203.0.113.80",
      protocol: "udp",
      srcPort: 40000,
      length: 60,
    });
    expect(
      applicationError(
        lease,
        translator,
        counters,
        info,
        TEP6,
        spoofed,
        spoofed.length,
        0,
        () => lost++,
      ),
    ).toBe(false);
    expect(lost).toBe(0);
    expect(counters[Counter["tunnel-error-source-policy"]]).toBe(0);
    expect(counters[Counter["tunnel-error-not-ours"]]).toBe(1);
    const ours = buildPacket({
      src: "198.51.100.10",
      dst: "203.0.113.80",
      protocol: "udp",
      srcPort: 1296,
      length: 60,
    });
    applicationError(lease, translator, counters, info, TEP6, ours, ours.length, 0, () => lost++);
    expect(lost).toBe(1);
    expect(counters[Counter["tunnel-error-source-policy"]]).toBe(1);
  });
});
