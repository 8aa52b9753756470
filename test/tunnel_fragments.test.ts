/**
 * Fragments of shared-address flows (RFC 7597 §8.3.3): the fragment table on its own (order,
 * holding, eviction, bounds, counters, with an injected clock), then the TEP steps.
 */
import { describe, expect, test } from "bun:test";
import { formatIPv6, parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { BindingTable } from "../lib/tunnel/binding.ts";
import { COUNTER_NAMES, Counter } from "../lib/tunnel/counters.ts";
import { fragmentCounterIndexes } from "../lib/tunnel/fragment_steps.ts";
import { FragmentLookup, FragmentTable } from "../lib/tunnel/fragments.ts";
import { TepContext, tepDecap, tepEncap, Verdict, verdictName } from "../lib/tunnel/pipeline.ts";
import { fragmentedUdp } from "./helpers/fragments.ts";

const ip = (text: string) => parseIPv4(text) as number;
const SHARED = ip("198.51.100.7");
const WHOLE4 = ip("198.51.100.8");
const WEB = ip("192.0.2.80");
const C6 = parseIPv6("2001:db8:c::1")!;
const D6 = parseIPv6("2001:db8:d::1")!;
const E6 = parseIPv6("2001:db8:e::1")!;
// offset 6, PSID length 6: C has PSID 17 (1296–1311, 2320–2335, …), D PSID 18 (1312–1327, …).
const SET_C = { offset: 6, psidLength: 6, psid: 17 };
const SET_D = { offset: 6, psidLength: 6, psid: 18 };

function table(options: ConstructorParameters<typeof FragmentTable>[0] = {}) {
  const counters = new Float64Array(COUNTER_NAMES.length);
  const t = new FragmentTable({
    ...options,
    counters,
    indexes: fragmentCounterIndexes("encap"),
  });
  const count = (what: "tracked" | "held" | "drop-timeout" | "drop-no-room") =>
    counters[Counter[`encap-frag-${what}`]]!;
  return { t, count };
}

/** 3,000 bytes of UDP in three fragments of ≤ 1,280 bytes. */
const datagram = (id: number, dst = SHARED, dport = 1300) =>
  fragmentedUdp({ src: WEB, dst, sport: 53, dport, payload: 2992, id, mtu: 1280 });

const VALUE = Uint8Array.from({ length: 16 }, (_, i) => i + 1);

describe("FragmentTable", () => {
  test("first fragment first: the later ones get its status and value; all bytes seen frees the entry", () => {
    const { t, count } = table();
    const [first, second, third] = datagram(1);
    expect(t.resolve(first!, 0, first!.length, 7, VALUE, 0, 1000)).toBe(true);
    expect(t.size).toBe(1);
    const out = new Uint8Array(16);
    expect(t.lookup(second!, 0, second!.length, out, 0, null, 0, 1001)).toBe(7);
    expect([...out]).toEqual([...VALUE]);
    expect(t.lookup(third!, 0, third!.length, out, 0, null, 0, 1002)).toBe(7);
    expect(t.size).toBe(0);
    expect(count("tracked")).toBe(1);
    expect(count("held")).toBe(0);
  });

  test("first fragment last: the others are held, then released in their arrival order", () => {
    const { t, count } = table();
    const [first, second, third] = datagram(2);
    const out = new Uint8Array(16);
    expect(t.lookup(third!, 0, third!.length, out, 0, E6, 0, 10)).toBe(FragmentLookup.HELD);
    expect(t.lookup(second!, 0, second!.length, out, 0, D6, 0, 11)).toBe(FragmentLookup.HELD);
    expect(t.held).toBe(2);
    expect(t.popReleased(new Uint8Array(2048), 0, null, 0)).toBe(0);
    t.resolve(first!, 0, first!.length, 3, VALUE, 0, 12);
    const buf = new Uint8Array(2048);
    const six = new Uint8Array(16);
    const n1 = t.popReleased(buf, 0, six, 0);
    expect([...buf.subarray(0, n1)]).toEqual([...third!]);
    expect(formatIPv6(six)).toBe("2001:db8:e::1");
    expect(t.lookup(buf, 0, n1, out, 0, null, 0, 13)).toBe(3);
    const n2 = t.popReleased(buf, 0, six, 0);
    expect([...buf.subarray(0, n2)]).toEqual([...second!]);
    expect(formatIPv6(six)).toBe("2001:db8:d::1");
    expect(t.lookup(buf, 0, n2, out, 0, null, 0, 14)).toBe(3);
    expect(t.popReleased(buf, 0, null, 0)).toBe(0);
    expect(t.held).toBe(0);
    expect(t.size).toBe(0); // replays are not counted twice: 3,000 bytes seen once each
    expect(count("held")).toBe(2);
    expect(count("drop-timeout")).toBe(0);
  });

  test("a datagram whose first fragment never comes is forgotten after the timeout, its held fragments counted", () => {
    const { t, count } = table({ timeoutMs: 15_000 });
    const [, second, third] = datagram(3);
    t.lookup(second!, 0, second!.length, null, 0, null, 0, 0);
    t.lookup(third!, 0, third!.length, null, 0, null, 0, 5_000);
    t.expire(14_999);
    expect(t.held).toBe(2);
    t.expire(15_000);
    expect(t.held).toBe(0);
    expect(t.size).toBe(0);
    expect(count("drop-timeout")).toBe(2);
    // A decided datagram that loses a fragment is forgotten too (nothing held: nothing counted).
    const [first2] = datagram(4);
    t.resolve(first2!, 0, first2!.length, 0, null, 0, 20_000);
    expect(t.size).toBe(1);
    t.expire(35_000);
    expect(t.size).toBe(0);
    expect(count("drop-timeout")).toBe(2);
  });

  test("bounded: datagrams, held fragments and their size; every refusal is counted", () => {
    const { t, count } = table({ datagrams: 2, holdSlots: 1, slotBytes: 1024 });
    const a = datagram(10);
    const b = datagram(11);
    const c = datagram(12);
    expect(t.resolve(a[0]!, 0, a[0]!.length, 0, null, 0, 0)).toBe(true);
    expect(t.resolve(b[0]!, 0, b[0]!.length, 0, null, 0, 0)).toBe(true);
    expect(t.resolve(c[0]!, 0, c[0]!.length, 0, null, 0, 0)).toBe(false); // table full
    expect(t.lookup(c[1]!, 0, c[1]!.length, null, 0, null, 0, 0)).toBe(FragmentLookup.NO_ROOM);
    expect(count("drop-no-room")).toBe(2);
    expect(t.size).toBe(2);
    // Slots: one, of 1,024 bytes.
    const { t: small, count: smallCount } = table({ holdSlots: 1, slotBytes: 1024 });
    const d = fragmentedUdp({
      src: WEB,
      dst: SHARED,
      sport: 53,
      dport: 1300,
      payload: 2992,
      id: 20,
      mtu: 1000,
    });
    expect(small.lookup(d[1]!, 0, d[1]!.length, null, 0, null, 0, 0)).toBe(FragmentLookup.HELD);
    expect(small.lookup(d[2]!, 0, d[2]!.length, null, 0, null, 0, 0)).toBe(FragmentLookup.NO_ROOM);
    const big = datagram(21); // 1,280-byte fragments do not fit 1,024-byte slots
    expect(small.lookup(big[1]!, 0, big[1]!.length, null, 0, null, 0, 0)).toBe(
      FragmentLookup.NO_ROOM,
    );
    expect(smallCount("drop-no-room")).toBe(2);
    expect(small.size).toBe(1); // the refused datagram left no entry behind
  });

  test("keys are (source, destination, protocol, identification)", () => {
    const { t } = table();
    const x = datagram(30);
    const y = datagram(30, SHARED, 1320); // same id, same addresses: same datagram key
    const z = datagram(31);
    t.resolve(x[0]!, 0, x[0]!.length, 1, null, 0, 0);
    expect(t.lookup(z[1]!, 0, z[1]!.length, null, 0, null, 0, 0)).toBe(FragmentLookup.HELD);
    expect(t.lookup(y[1]!, 0, y[1]!.length, null, 0, null, 0, 0)).toBe(1);
  });
});

function tep(now = { ms: 1000 }) {
  const bindings = BindingTable.create({ maxEntries: 16 });
  bindings.set(SHARED, SET_C, C6);
  bindings.set(SHARED, SET_D, D6);
  bindings.set(WHOLE4, { offset: 0, psidLength: 0, psid: 0 }, E6);
  const counters = new Float64Array(COUNTER_NAMES.length);
  const ctx = new TepContext({ bindings, counters, tepIPv4: ip("192.0.2.1"), now: () => now.ms });
  return { ctx, counters, now };
}

describe("TEP: fragments of a shared address", () => {
  test("encapsulation: a 3,000-byte UDP reply reaches the host of its port, in order or not", () => {
    const { ctx, counters } = tep();
    const host = new Uint8Array(16);
    for (const order of [
      [0, 1, 2],
      [2, 1, 0],
      [1, 0, 2],
    ]) {
      const frags = datagram(100 + order[0]! * 10 + order[1]!);
      const sent: string[] = [];
      const run = (p: Uint8Array, n: number) => {
        host.fill(0);
        const v = tepEncap(ctx, p, 0, n, host, 0);
        if (v === Verdict.FORWARD) sent.push(formatIPv6(host));
        else expect(verdictName(v)).toBe("HELD");
      };
      for (const i of order) {
        const f = frags[i]!.slice();
        run(f, f.length);
        const buf = new Uint8Array(2048);
        for (let m = ctx.encapFragments.popReleased(buf, 0, null, 0); m > 0; ) {
          run(buf, m);
          m = ctx.encapFragments.popReleased(buf, 0, null, 0);
        }
      }
      expect(sent).toEqual(["2001:db8:c::1", "2001:db8:c::1", "2001:db8:c::1"]);
    }
    expect(counters[Counter["encap-drop-no-binding"]]).toBe(0);
    expect(counters[Counter["encap-forward"]]).toBe(9);
    expect(counters[Counter["encap-frag-tracked"]]).toBe(3);
    expect(counters[Counter["encap-frag-held"]]).toBe(3);
    expect(ctx.encapFragments.size).toBe(0);
  });

  test("encapsulation: a datagram to D's port goes to D; a later fragment alone is held, then dropped on timeout", () => {
    const { ctx, counters, now } = tep();
    const host = new Uint8Array(16);
    const [first, second] = datagram(200, SHARED, 1320);
    expect(tepEncap(ctx, first!, 0, first!.length, host, 0)).toBe(Verdict.FORWARD);
    expect(formatIPv6(host)).toBe("2001:db8:d::1");
    host.fill(0);
    expect(tepEncap(ctx, second!, 0, second!.length, host, 0)).toBe(Verdict.FORWARD);
    expect(formatIPv6(host)).toBe("2001:db8:d::1");
    const [, lonely] = datagram(201);
    expect(tepEncap(ctx, lonely!, 0, lonely!.length, host, 0)).toBe(Verdict.HELD);
    now.ms += 15_000;
    const [, other] = datagram(202);
    tepEncap(ctx, other!, 0, other!.length, host, 0); // any fragment runs the expiry
    expect(counters[Counter["encap-frag-drop-timeout"]]).toBe(1);
  });

  test("encapsulation: a whole address needs no tracking", () => {
    const { ctx, counters } = tep();
    const host = new Uint8Array(16);
    for (const f of datagram(300, WHOLE4).reverse())
      expect(tepEncap(ctx, f, 0, f.length, host, 0)).toBe(Verdict.FORWARD);
    expect(counters[Counter["encap-frag-tracked"]]).toBe(0);
  });

  test("decapsulation: a host's fragments pass after their first; another host's are spoofed", () => {
    const { ctx, counters } = tep();
    const out = fragmentedUdp({
      src: SHARED,
      dst: WEB,
      sport: 1300,
      dport: 53,
      payload: 2992,
      id: 7,
      mtu: 1280,
    });
    // Later fragment first, from C: held; then the first, then one claimed by D.
    expect(tepDecap(ctx, out[2]!, 0, out[2]!.length, C6, 0)).toBe(Verdict.HELD);
    expect(tepDecap(ctx, out[0]!, 0, out[0]!.length, C6, 0)).toBe(Verdict.FORWARD);
    const buf = new Uint8Array(2048);
    const six = new Uint8Array(16);
    const n = ctx.decapFragments.popReleased(buf, 0, six, 0);
    expect(n).toBe(out[2]!.length);
    expect(tepDecap(ctx, buf, 0, n, six, 0)).toBe(Verdict.FORWARD);
    expect(tepDecap(ctx, out[1]!, 0, out[1]!.length, D6, 0)).toBe(Verdict.DROP_SPOOFED_SOURCE);
    expect(tepDecap(ctx, out[1]!, 0, out[1]!.length, C6, 0)).toBe(Verdict.FORWARD);
    expect(counters[Counter["decap-forward"]]).toBe(3);
    expect(counters[Counter["decap-drop-spoofed-source"]]).toBe(1);
    expect(counters[Counter["decap-drop-bad-port"]]).toBe(0);
    // A datagram whose first fragment used a port of no set: its other fragments are bad too.
    const bad = fragmentedUdp({
      src: SHARED,
      dst: WEB,
      sport: 80,
      dport: 53,
      payload: 2992,
      id: 8,
      mtu: 1280,
    });
    expect(tepDecap(ctx, bad[0]!, 0, bad[0]!.length, C6, 0)).toBe(Verdict.DROP_BAD_PORT);
    expect(tepDecap(ctx, bad[1]!, 0, bad[1]!.length, C6, 0)).toBe(Verdict.DROP_BAD_PORT);
  });
});
