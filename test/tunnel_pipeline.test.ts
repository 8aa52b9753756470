import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { BindingTable } from "../lib/tunnel/binding.ts";
import { buildPacket } from "../lib/tunnel/check.ts";
import { COUNTER_NAMES, COUNTER_STRIDE, Counter, Counters } from "../lib/tunnel/counters.ts";
import {
  ClientContext,
  isForward,
  TepContext,
  tepDecap,
  tepEncap,
  Verdict,
  verdictName,
} from "../lib/tunnel/pipeline.ts";
import { TokenBucket } from "../lib/tunnel/ratelimit.ts";

const ip = (text: string) => parseIPv4(text) as number;
const A4 = ip("198.51.100.10");
const A6 = parseIPv6("2001:db8:a::1")!;
const WHOLE = { offset: 0, psidLength: 0, psid: 0 };

describe("Counters", () => {
  test("the names the operators read: one per forward/drop reason, unique", () => {
    expect(new Set(COUNTER_NAMES).size).toBe(COUNTER_NAMES.length);
    for (const name of [
      "decap-forward",
      "decap-drop-no-binding",
      "decap-drop-spoofed-source",
      "decap-drop-bad-port",
      "decap-drop-malformed",
      "decap-drop-hairpin-disabled",
      "encap-forward",
      "encap-drop-no-binding",
      "encap-drop-malformed",
      "encap-icmp-too-big",
      "encap-fragmented",
      "icmp-rate-limited",
      "client-encap-forward",
      "client-encap-drop-wrong-source",
      "client-decap-forward",
      "client-decap-drop-wrong-tep",
      "client-decap-drop-wrong-destination",
    ] as const) {
      expect(COUNTER_NAMES).toContain(name);
    }
    expect(COUNTER_STRIDE % 8).toBe(0);
    expect(COUNTER_STRIDE).toBeGreaterThanOrEqual(COUNTER_NAMES.length);
  });

  test("each slice has its own writer; snapshot() sums the slices", () => {
    const counters = Counters.create({ slices: 3 });
    const s0 = counters.slice(0);
    const s2 = Counters.attach(counters.buffer).slice(2);
    s0[Counter["encap-forward"]]! += 2;
    s2[Counter["encap-forward"]]! += 5;
    s2[Counter["decap-drop-spoofed-source"]]! += 1;
    const snap = counters.snapshot();
    expect(snap["encap-forward"]).toBe(7);
    expect(snap["decap-drop-spoofed-source"]).toBe(1);
    expect(snap["decap-forward"]).toBe(0);
    expect(Object.keys(snap)).toEqual([...COUNTER_NAMES]);
    expect(counters.get("encap-forward")).toBe(7);
    counters.reset();
    expect(counters.get("encap-forward")).toBe(0);
  });

  test("slices do not overlap and start on 64-byte lines", () => {
    const counters = Counters.create({ slices: 2 });
    const a = counters.slice(0);
    const b = counters.slice(1);
    expect(b.byteOffset - a.byteOffset).toBe(COUNTER_STRIDE * 8);
    expect(b.byteOffset % 64).toBe(0);
    a.fill(1);
    expect(b.every((x) => x === 0)).toBe(true);
    expect(() => counters.slice(2)).toThrow(RangeError);
    expect(() => Counters.create({ slices: 0 })).toThrow(RangeError);
    expect(() => Counters.attach(new SharedArrayBuffer(7))).toThrow(TypeError);
  });
});

describe("TokenBucket", () => {
  test("starts full, refills at the rate, never above the burst", () => {
    const b = new TokenBucket(10, 3);
    expect([b.take(0), b.take(0), b.take(0), b.take(0)]).toEqual([true, true, true, false]);
    expect(b.take(50)).toBe(false); // half a token
    expect(b.take(100)).toBe(true);
    expect(b.take(100_000)).toBe(true);
    expect(b.available).toBe(2); // capped at the burst, one taken
  });

  test("a clock that steps back refills nothing", () => {
    const b = new TokenBucket(1, 1);
    expect(b.take(10_000)).toBe(true);
    expect(b.take(0)).toBe(false);
    expect(b.take(10_500)).toBe(false);
    expect(b.take(11_000)).toBe(true);
  });

  test("rate 0 sends the burst and then nothing; bad parameters throw", () => {
    const b = new TokenBucket(0, 1);
    expect(b.take(0)).toBe(true);
    expect(b.take(1e12)).toBe(false);
    expect(() => new TokenBucket(-1, 1)).toThrow(RangeError);
    expect(() => new TokenBucket(1, Number.NaN)).toThrow(RangeError);
  });
});

describe("pipeline contexts and verdicts", () => {
  test("verdict names; FORWARD and FORWARD_FRAGMENT are the forwarding verdicts", () => {
    expect(verdictName(Verdict.DROP_SPOOFED_SOURCE)).toBe("DROP_SPOOFED_SOURCE");
    expect(verdictName(99)).toBe("UNKNOWN_99");
    expect(isForward(Verdict.FORWARD)).toBe(true);
    expect(isForward(Verdict.FORWARD_FRAGMENT)).toBe(true);
    expect(isForward(Verdict.ICMP)).toBe(false);
    expect(isForward(Verdict.DROP_MALFORMED)).toBe(false);
  });

  test("TepContext: tunnel MTU = link MTU − 40; a link below the IPv6 minimum is refused", () => {
    const bindings = BindingTable.create({ maxEntries: 16 });
    const counters = Counters.create({ slices: 1 }).slice(0);
    expect(new TepContext({ bindings, counters, tepIPv4: 1 }).tunnelMtu).toBe(1460);
    expect(new TepContext({ bindings, counters, tepIPv4: 1, linkMtu: 1280 }).tunnelMtu).toBe(1240);
    expect(() => new TepContext({ bindings, counters, tepIPv4: 1, linkMtu: 1279 })).toThrow(
      RangeError,
    );
  });

  test("ClientContext refuses a bad port set or a short TEP address", () => {
    const counters = Counters.create({ slices: 1 }).slice(0);
    expect(
      () =>
        new ClientContext({
          counters,
          leasedIPv4: A4,
          tep6: A6,
          portSet: { offset: 6, psidLength: 6, psid: 64 },
        }),
    ).toThrow(RangeError);
    expect(() => new ClientContext({ counters, leasedIPv4: A4, tep6: new Uint8Array(4) })).toThrow(
      RangeError,
    );
  });

  test("the clock is read only when an ICMP error is due, not per forwarded packet", () => {
    const bindings = BindingTable.create({ maxEntries: 16 });
    bindings.set(A4, WHOLE, A6);
    let reads = 0;
    const ctx = new TepContext({
      bindings,
      counters: Counters.create({ slices: 1 }).slice(0),
      tepIPv4: ip("192.0.2.1"),
      now: () => {
        reads++;
        return 0;
      },
    });
    const small = buildPacket({
      src: "203.0.113.80",
      dst: "198.51.100.10",
      protocol: "udp",
      length: 100,
      df: true,
    });
    const host6 = new Uint8Array(16);
    for (let i = 0; i < 1000; i++)
      expect(tepEncap(ctx, small, 0, small.length, host6, 0)).toBe(Verdict.FORWARD);
    const out = buildPacket({
      src: "198.51.100.10",
      dst: "203.0.113.80",
      protocol: "udp",
      length: 100,
    });
    for (let i = 0; i < 1000; i++)
      expect(tepDecap(ctx, out, 0, out.length, A6, 0)).toBe(Verdict.FORWARD);
    expect(reads).toBe(0);
    const big = buildPacket({
      src: "203.0.113.80",
      dst: "198.51.100.10",
      protocol: "udp",
      length: 1600,
      df: true,
    });
    expect(tepEncap(ctx, big, 0, big.length, host6, 0)).toBe(Verdict.ICMP);
    expect(reads).toBe(1);
  });

  test("steps work on a packet at an offset inside a larger buffer and report its length", () => {
    const bindings = BindingTable.create({ maxEntries: 16 });
    bindings.set(A4, WHOLE, A6);
    const ctx = new TepContext({
      bindings,
      counters: Counters.create({ slices: 1 }).slice(0),
      tepIPv4: 1,
    });
    const pkt = buildPacket({
      src: "203.0.113.80",
      dst: "198.51.100.10",
      protocol: "tcp",
      length: 80,
    });
    const buf = new Uint8Array(300).fill(0xff);
    buf.set(pkt, 40);
    const host6 = new Uint8Array(32);
    expect(tepEncap(ctx, buf, 40, 200, host6, 8)).toBe(Verdict.FORWARD);
    expect(ctx.length).toBe(80);
    expect([...host6.subarray(8, 24)]).toEqual([...A6]);
    expect([...buf.subarray(40, 120)]).toEqual([...pkt]); // the packet is not modified (TTL included)
  });
});
