/**
 * Path MTU per host (RFC 8201), the relay of ICMPv6 errors about tunnel packets (RFC 2473 §8)
 * and what the TEP and client steps do with them: no root, no sockets.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { Ecn } from "../lib/net/ecn.ts";
import { icmpCode, icmpNextHopMtu, icmpType } from "../lib/net/icmp4.ts";
import { ipv4Destination, ipv4Source } from "../lib/net/ipv4.ts";
import { BindingTable } from "../lib/tunnel/binding.ts";
import { buildPacket } from "../lib/tunnel/check.ts";
import { Counter, Counters } from "../lib/tunnel/counters.ts";
import { clientSentTo, relayTunnelError, tepSentTo } from "../lib/tunnel/icmp_relay.ts";
import {
  ClientContext,
  clientDecap,
  clientEncap,
  TepContext,
  tepDecap,
  tepEncap,
  Verdict,
} from "../lib/tunnel/pipeline.ts";
import { PathMtuTable } from "../lib/tunnel/pmtu.ts";
import { internetChecksum } from "./helpers/packets.ts";

const ip = (text: string) => parseIPv4(text) as number;
const E4 = ip("198.51.100.3");
const WEB4 = ip("192.0.2.80");
const TEP4 = ip("192.0.2.1");
const E6 = parseIPv6("2001:db8:2::e")!;
const TEP6 = parseIPv6("2001:db8:1::1")!;
const WHOLE = { offset: 0, psidLength: 0, psid: 0 };

function tep(pathMtu = PathMtuTable.create()) {
  const counters = Counters.create({ slices: 1 });
  const bindings = BindingTable.create({ maxEntries: 16 });
  bindings.set(E4, WHOLE, E6);
  const ctx = new TepContext({
    bindings,
    counters: counters.slice(0),
    tepIPv4: TEP4,
    pathMtu,
    now: () => 0,
  });
  return { ctx, counters, pathMtu };
}

const echo = (length: number, df: boolean, src = "192.0.2.80", dst = "198.51.100.3") =>
  buildPacket({ src, dst, protocol: "icmp-echo", length, id: 7, df });

describe("PathMtuTable (RFC 8201)", () => {
  test("a PTB lowers the estimate, never raises it, never below 1280; lookups see it", () => {
    const t = PathMtuTable.create({ capacity: 16 });
    expect(t.lookup(E6, 0)).toBe(0);
    expect(t.learn(E6, 0, 1400, 100)).toBe(1400);
    expect(t.lookup(E6, 0)).toBe(1400);
    expect(t.learn(E6, 0, 1450, 101)).toBe(0); // higher: ignored (§4)
    expect(t.lookup(E6, 0)).toBe(1400);
    expect(t.learn(E6, 0, 600, 102)).toBe(1280); // below the IPv6 minimum: 1280
    expect(t.lookup(E6, 0)).toBe(1280);
    expect(t.count).toBe(1);
  });

  test("estimates expire after their age; the table stays bounded with many hosts", () => {
    const t = PathMtuTable.create({ capacity: 16, ageSeconds: 600 });
    t.learn(E6, 0, 1400, 1000);
    expect(t.expire(1599)).toBe(0);
    // The same MTU again restarts the age (as the kernel's route cache does on each PTB).
    expect(t.learn(E6, 0, 1400, 1500)).toBe(0);
    expect(t.expire(1600)).toBe(0);
    expect(t.lookup(E6, 0)).toBe(1400);
    expect(t.expire(2100)).toBe(1);
    expect(t.lookup(E6, 0)).toBe(0);
    const host = new Uint8Array(16);
    for (let i = 0; i < 1000; i++) {
      host[14] = i >> 8;
      host[15] = i & 0xff;
      t.learn(host, 0, 1300 + (i % 100), 2000 + i);
    }
    expect(t.count).toBeLessThanOrEqual(16);
    // The last host learned is there (the oldest estimates make room).
    expect(t.lookup(host, 0)).toBe(1300 + (999 % 100));
  });

  test("a second view of the buffer (another Worker) sees what the writer learned", () => {
    const t = PathMtuTable.create();
    const other = PathMtuTable.attach(t.buffer);
    t.learn(E6, 0, 1400, 1);
    expect(other.lookup(E6, 0)).toBe(1400);
  });

  test("the kernel's route value is followed down and up, and forgotten at the link MTU", () => {
    const t = PathMtuTable.create({ ageSeconds: 600 });
    expect(t.follow(E6, 0, 1500, 1500, 1)).toBe(0); // nothing below the link: no estimate
    expect(t.count).toBe(0);
    expect(t.follow(E6, 0, 1400, 1500, 2)).toBe(1400);
    expect(t.lookup(E6, 0)).toBe(1400);
    expect(t.follow(E6, 0, 1300, 1500, 3)).toBe(1300); // down
    expect(t.follow(E6, 0, 1450, 1500, 4)).toBe(1450); // and up again: it is the kernel's
    expect(t.lookup(E6, 0)).toBe(1450);
    expect(t.follow(E6, 0, 1000, 1500, 5)).toBe(1280); // never below the IPv6 minimum
    expect(t.follow(E6, 0, 1500, 1500, 6)).toBe(0); // the kernel's is the link's again
    expect([t.lookup(E6, 0), t.count]).toEqual([0, 0]);
  });

  test("a Packet Too Big's lower estimate stays (and ages) whatever the kernel's route says", () => {
    const t = PathMtuTable.create({ ageSeconds: 600 });
    t.learn(E6, 0, 1300, 10);
    expect(t.follow(E6, 0, 1400, 1500, 11)).toBe(1300); // higher: the PTB's stays
    expect(t.follow(E6, 0, 1500, 1500, 12)).toBe(1300); // at the link: left to age
    expect(t.lookup(E6, 0)).toBe(1300);
    expect(t.expire(610)).toBe(1); // its age counts from the PTB, not from the follows
    expect(t.lookup(E6, 0)).toBe(0);
    // A kernel value below a PTB's takes over, and then follows the kernel back up.
    t.learn(E6, 0, 1400, 700);
    expect(t.follow(E6, 0, 1350, 1500, 701)).toBe(1350);
    expect(t.follow(E6, 0, 1500, 1500, 702)).toBe(0);
    expect(t.lookup(E6, 0)).toBe(0);
  });

  test("a followed estimate lives while it is followed; a PTB lower than it takes over", () => {
    const t = PathMtuTable.create({ ageSeconds: 600 });
    t.follow(E6, 0, 1400, 1500, 1);
    t.follow(E6, 0, 1400, 1500, 500);
    expect(t.expire(700)).toBe(0); // refreshed at 500: lives to 1100
    expect(t.lookup(E6, 0)).toBe(1400);
    expect(t.learn(E6, 0, 1350, 800)).toBe(1350);
    expect(t.follow(E6, 0, 1500, 1500, 801)).toBe(1350); // a PTB's now: not forgotten
  });
});

describe("TEP encapsulation with a learned path MTU (RFC 2473 §7.1)", () => {
  test("DF packet above path MTU − 40: ICMPv4 3/4 with 1360 from the TEP; below: forwarded", () => {
    const { ctx, counters, pathMtu } = tep();
    const out = new Uint8Array(16);
    expect(tepEncap(ctx, echo(1460, true), 0, 1460, out, 0)).toBe(Verdict.FORWARD);
    pathMtu.learn(E6, 0, 1400, 1);
    expect(tepEncap(ctx, echo(1460, true), 0, 1460, out, 0)).toBe(Verdict.ICMP);
    expect(icmpType(ctx.reply, 0)).toBe(3);
    expect(icmpCode(ctx.reply, 0)).toBe(4);
    expect(icmpNextHopMtu(ctx.reply, 0)).toBe(1360);
    expect(ipv4Source(ctx.reply, 0)).toBe(TEP4);
    expect(ipv4Destination(ctx.reply, 0)).toBe(WEB4);
    expect(tepEncap(ctx, echo(1360, true), 0, 1360, out, 0)).toBe(Verdict.FORWARD);
    // Without DF the outer packet is fragmented (by the kernel, at the path MTU).
    expect(tepEncap(ctx, echo(1460, false), 0, 1460, out, 0)).toBe(Verdict.FORWARD_FRAGMENT);
    const snap = counters.snapshot();
    expect(snap["encap-too-big-path-mtu"]).toBe(2);
    expect(snap["encap-icmp-too-big"]).toBe(1);
    expect(snap["encap-fragmented"]).toBe(1);
  });

  test("the link MTU stays the upper bound: a larger path MTU changes nothing", () => {
    const { ctx, pathMtu } = tep();
    pathMtu.learn(E6, 0, 9000, 1);
    const out = new Uint8Array(16);
    expect(tepEncap(ctx, echo(1500, true), 0, 1500, out, 0)).toBe(Verdict.ICMP);
    expect(icmpNextHopMtu(ctx.reply, 0)).toBe(1460);
  });

  test("outer traffic class copies DSCP and ECN; flow label per flow", () => {
    const { ctx } = tep();
    const p = echo(100, false);
    p[1] = (46 << 2) | Ecn.ECT0;
    p[10] = 0;
    p[11] = 0;
    const c = internetChecksum(p, 0, 20);
    p[10] = c >> 8;
    p[11] = c & 0xff;
    const out = new Uint8Array(16);
    expect(tepEncap(ctx, p, 0, 100, out, 0)).toBe(Verdict.FORWARD);
    expect(ctx.trafficClass).toBe((46 << 2) | Ecn.ECT0);
    expect(ctx.flowLabel).toBeGreaterThan(0);
  });
});

describe("relayTunnelError (RFC 2473 §8.3)", () => {
  test("PTB about a DF packet: path MTU learned, 3/4 with MTU − 40 to the inner source", () => {
    const { ctx, counters, pathMtu } = tep();
    const inner = echo(1460, true);
    const quoted = inner.subarray(0, 1232); // what fits a 1280-byte PTB
    expect(
      relayTunnelError(ctx, { type: 2, code: 0, info: 1400 }, E6, 0, quoted, 0, 1232, TEP4, 5),
    ).toBe(true);
    expect(pathMtu.lookup(E6, 0)).toBe(1400);
    expect(icmpCode(ctx.reply, 0)).toBe(4);
    expect(icmpNextHopMtu(ctx.reply, 0)).toBe(1360);
    expect(ipv4Destination(ctx.reply, 0)).toBe(WEB4);
    expect(internetChecksum(ctx.reply, 20, ctx.replyLength)).toBe(0);
    const snap = counters.snapshot();
    expect(snap["pmtu-learned"]).toBe(1);
    expect(snap["tunnel-error-too-big"]).toBe(1);
    expect(snap["icmp-relay-frag-needed"]).toBe(1);
  });

  test("PTB about a packet without DF: learned, nothing sent (the kernel fragments the next)", () => {
    const { ctx, counters, pathMtu } = tep();
    const inner = echo(1460, false);
    expect(
      relayTunnelError(ctx, { type: 2, code: 0, info: 1400 }, E6, 0, inner, 0, 200, TEP4, 5),
    ).toBe(false);
    expect(pathMtu.lookup(E6, 0)).toBe(1400);
    expect(counters.get("tunnel-error-not-relayed")).toBe(1);
  });

  test("Destination Unreachable → 3/1 (3/13 for admin prohibited); Time Exceeded, Parameter Problem → 3/1", () => {
    const { ctx, counters } = tep();
    const inner = echo(84, false);
    const cases: [number, number, number][] = [
      [1, 0, 1],
      [1, 3, 1],
      [1, 1, 13],
      [3, 0, 1],
      [4, 1, 1],
    ];
    for (const [type, code, expected] of cases) {
      expect(relayTunnelError(ctx, { type, code, info: 0 }, E6, 0, inner, 0, 84, TEP4, 5)).toBe(
        true,
      );
      expect(icmpType(ctx.reply, 0)).toBe(3);
      expect(icmpCode(ctx.reply, 0)).toBe(expected);
    }
    const snap = counters.snapshot();
    expect(snap["tunnel-error-unreachable"]).toBe(3);
    expect(snap["tunnel-error-time-exceeded"]).toBe(1);
    expect(snap["tunnel-error-parameter-problem"]).toBe(1);
    expect(snap["icmp-relay-host-unreachable"]).toBe(4);
    expect(snap["icmp-relay-admin-prohibited"]).toBe(1);
  });

  test("rate limited, and never about an ICMP error or a truncated quote", () => {
    const counters = Counters.create({ slices: 1 });
    const bindings = BindingTable.create({ maxEntries: 4 });
    const ctx = new TepContext({
      bindings,
      counters: counters.slice(0),
      tepIPv4: TEP4,
      icmpRate: 1,
      icmpBurst: 2,
      now: () => 0,
    });
    const inner = echo(84, false);
    let sent = 0;
    for (let i = 0; i < 5; i++)
      if (relayTunnelError(ctx, { type: 1, code: 0, info: 0 }, E6, 0, inner, 0, 84, TEP4, 5))
        sent++;
    expect(sent).toBe(2);
    expect(counters.get("icmp-rate-limited")).toBe(3);
    expect(relayTunnelError(ctx, { type: 1, code: 0, info: 0 }, E6, 0, inner, 0, 12, TEP4, 5)).toBe(
      false,
    );
    expect(counters.get("tunnel-error-not-relayed")).toBe(1);
  });

  test("only errors about packets we sent to that host are believed (tepSentTo, clientSentTo)", () => {
    const { ctx, counters } = tep();
    const toE = echo(1460, true);
    expect(tepSentTo(ctx.bindings, ctx.counters, toE, 0, 200, E6, 0)).toBe(true);
    // A quote whose destination is bound to another host, or to no host: not ours.
    expect(tepSentTo(ctx.bindings, ctx.counters, toE, 0, 200, TEP6, 0)).toBe(false);
    const elsewhere = echo(1460, true, "192.0.2.80", "198.51.100.99");
    expect(tepSentTo(ctx.bindings, ctx.counters, elsewhere, 0, 200, E6, 0)).toBe(false);
    expect(tepSentTo(ctx.bindings, ctx.counters, toE, 0, 12, E6, 0)).toBe(false);
    expect(counters.get("tunnel-error-not-ours")).toBe(3);
    const fromE = echo(1460, true, "198.51.100.3", "192.0.2.80");
    const c = Counters.create({ slices: 1 });
    expect(clientSentTo(c.slice(0), E4, TEP6, fromE, 0, 200, TEP6, 0)).toBe(true);
    expect(clientSentTo(c.slice(0), E4, TEP6, fromE, 0, 200, E6, 0)).toBe(false);
    expect(clientSentTo(c.slice(0), E4, TEP6, toE, 0, 200, TEP6, 0)).toBe(false);
    expect(c.get("tunnel-error-not-ours")).toBe(2);
  });

  test("--icmp-rate 0 sends none at all (no first burst)", () => {
    const counters = Counters.create({ slices: 1 });
    const bindings = BindingTable.create({ maxEntries: 4 });
    const ctx = new TepContext({
      bindings,
      counters: counters.slice(0),
      tepIPv4: TEP4,
      icmpRate: 0,
      now: () => 0,
    });
    const inner = echo(84, false);
    expect(relayTunnelError(ctx, { type: 1, code: 0, info: 0 }, E6, 0, inner, 0, 84, TEP4, 5)).toBe(
      false,
    );
    expect(counters.get("icmp-rate-limited")).toBe(1);
  });

  test("the client relays from the inner destination (it has no address on the path)", () => {
    const counters = Counters.create({ slices: 1 });
    const ctx = new ClientContext({ counters: counters.slice(0), leasedIPv4: E4, tep6: TEP6 });
    const inner = echo(84, false, "198.51.100.3", "192.0.2.80");
    expect(relayTunnelError(ctx, { type: 1, code: 0, info: 0 }, TEP6, 0, inner, 0, 84, 0, 5)).toBe(
      true,
    );
    expect(ipv4Source(ctx.reply, 0)).toBe(WEB4);
    expect(ipv4Destination(ctx.reply, 0)).toBe(E4);
  });
});

describe("client steps", () => {
  test("DF packet above the learned path MTU to the TEP: ICMP 3/4 for the application", () => {
    const counters = Counters.create({ slices: 1 });
    const pathMtu = PathMtuTable.create();
    const ctx = new ClientContext({
      counters: counters.slice(0),
      leasedIPv4: E4,
      tep6: TEP6,
      pathMtu,
      now: () => 0,
    });
    const p = () => echo(1460, true, "198.51.100.3", "192.0.2.80");
    expect(clientEncap(ctx, p(), 0, 1460)).toBe(Verdict.FORWARD);
    pathMtu.learn(TEP6, 0, 1400, 1);
    expect(clientEncap(ctx, p(), 0, 1460)).toBe(Verdict.ICMP);
    expect(icmpNextHopMtu(ctx.reply, 0)).toBe(1360);
    expect(ipv4Destination(ctx.reply, 0)).toBe(E4);
    expect(counters.get("client-encap-drop-too-big")).toBe(1);
  });

  test("RFC 6040 at decapsulation: outer CE marks ECT(0), drops Not-ECT (TEP and client)", () => {
    const { ctx, counters } = tep();
    const from = (ecn: number) => {
      const p = echo(84, false, "198.51.100.3", "192.0.2.80");
      p[1] = ecn;
      p[10] = 0;
      p[11] = 0;
      const c = internetChecksum(p, 0, 20);
      p[10] = c >> 8;
      p[11] = c & 0xff;
      return p;
    };
    const ect = from(Ecn.ECT0);
    expect(tepDecap(ctx, ect, 0, 84, E6, 0, Ecn.CE)).toBe(Verdict.FORWARD);
    expect(ect[1]! & 3).toBe(Ecn.CE);
    expect(internetChecksum(ect, 0, 20)).toBe(0);
    expect(tepDecap(ctx, from(Ecn.NOT_ECT), 0, 84, E6, 0, Ecn.CE)).toBe(Verdict.DROP_ECN);
    expect(tepDecap(ctx, from(Ecn.NOT_ECT), 0, 84, E6, 0, (10 << 2) | Ecn.NOT_ECT)).toBe(
      Verdict.FORWARD,
    );
    expect(counters.get("decap-drop-ecn")).toBe(1);
    expect(counters.get("decap-ecn-ce")).toBe(1);

    const cc = Counters.create({ slices: 1 });
    const client = new ClientContext({ counters: cc.slice(0), leasedIPv4: E4, tep6: TEP6 });
    const toHost = (ecn: number) => {
      const p = echo(84, false);
      p[1] = ecn;
      p[10] = 0;
      p[11] = 0;
      const c = internetChecksum(p, 0, 20);
      p[10] = c >> 8;
      p[11] = c & 0xff;
      return p;
    };
    expect(clientDecap(client, toHost(Ecn.ECT1), 0, 84, TEP6, 0, Ecn.CE)).toBe(Verdict.FORWARD);
    expect(clientDecap(client, toHost(Ecn.NOT_ECT), 0, 84, TEP6, 0, Ecn.CE)).toBe(Verdict.DROP_ECN);
    expect(cc.get("client-decap-ecn-ce")).toBe(1);
    expect(cc.get("client-decap-drop-ecn")).toBe(1);
    expect(Counter["client-decap-drop-ecn"]).toBeGreaterThan(0);
  });
});
