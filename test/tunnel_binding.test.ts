import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { type PortSetValue, psidOfPort } from "../lib/net/portset.ts";
import {
  BindingConflictError,
  type BindingEntry,
  BindingTable,
  BindingTableFullError,
  LookupStatus,
} from "../lib/tunnel/binding.ts";

const ip = (text: string) => parseIPv4(text) as number;
const v6 = (text: string) => parseIPv6(text) as Uint8Array;
const WHOLE: PortSetValue = { offset: 0, psidLength: 0, psid: 0 };
const shared = (psid: number): PortSetValue => ({ offset: 6, psidLength: 2, psid });
const A4 = ip("198.51.100.10");
const A6 = v6("2001:db8:a::1");
const B6 = v6("2001:db8:b::1");
const S4 = ip("198.51.100.20");

/** A host6 that encodes (ipv4, psid, version), as the concurrency test checks it. */
function codedHost(ipv4: number, psid: number, version: number): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  const w2 = ((psid << 16) | (version & 0xffff)) >>> 0;
  v.setUint32(0, 0x20010db8);
  v.setUint32(4, ipv4);
  v.setUint32(8, w2);
  v.setUint32(12, (ipv4 ^ w2 ^ 0x5a5a5a5a) >>> 0);
  return h;
}

describe("BindingTable", () => {
  test("create(): capacity is a power of two ≥ 2 × maxEntries", () => {
    expect(BindingTable.create({ maxEntries: 1 }).capacity).toBe(16);
    expect(BindingTable.create({ maxEntries: 100 }).capacity).toBe(256);
    expect(BindingTable.create({ maxEntries: 65536 }).capacity).toBe(131072);
    expect(() => BindingTable.create({ maxEntries: 0 })).toThrow(RangeError);
    expect(() => BindingTable.create({ maxEntries: 1.5 })).toThrow(RangeError);
  });

  test("set() then lookupHost() copies the host; matchesHost() compares it", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    expect(t.set(A4, WHOLE, A6)).toBe("added");
    const out = new Uint8Array(20).fill(0xee);
    expect(t.lookupHost(A4, 443, out, 2)).toBe(true);
    expect([...out.subarray(2, 18)]).toEqual([...A6]);
    expect(out[1]).toBe(0xee);
    expect(out[18]).toBe(0xee);
    expect(t.matchesHost(A4, 1, A6, 0)).toBe(true);
    expect(t.matchesHost(A4, 1, B6, 0)).toBe(false);
    expect(t.match(A4, 1, B6, 0)).toBe(LookupStatus.OTHER_HOST);
    expect(t.find(ip("198.51.100.11"), 1, out, 0)).toBe(LookupStatus.NO_ADDRESS);
    expect(t.size).toBe(1);
    expect(t.addressCount).toBe(1);
  });

  test("a whole address ignores the port, even −1 (no port)", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    t.set(A4, WHOLE, A6);
    const out = new Uint8Array(16);
    for (const port of [-1, 0, 80, 65535])
      expect(t.find(A4, port, out, 0)).toBe(LookupStatus.FOUND);
  });

  test("set() on an existing key updates the host in place; the same host is unchanged", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    t.set(A4, WHOLE, A6);
    expect(t.set(A4, WHOLE, A6)).toBe("unchanged");
    expect(t.set(A4, WHOLE, B6)).toBe("updated");
    expect(t.matchesHost(A4, 0, B6, 0)).toBe(true);
    expect(t.size).toBe(1);
  });

  test("a host6 at an offset inside a larger buffer", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    const framed = new Uint8Array(40);
    framed.set(A6, 7);
    t.set(A4, WHOLE, framed, 7);
    expect(t.matchesHost(A4, 0, A6, 0)).toBe(true);
    expect(() => t.set(A4, WHOLE, framed, 30)).toThrow(RangeError);
  });

  test("shared address: the port picks the PSID and so the host (RFC 7597 §5.1)", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    const hosts = [0, 1, 3].map((p) => v6(`2001:db8:c::${p}`));
    t.set(S4, shared(0), hosts[0]!);
    t.set(S4, shared(1), hosts[1]!);
    t.set(S4, shared(3), hosts[2]!);
    expect(t.size).toBe(3);
    expect(t.addressCount).toBe(1);
    const out = new Uint8Array(16);
    // Offset 6, PSID length 2: m = 8, so ports 1024–1279 are PSID 0, 1280–1535 PSID 1, …
    expect(t.find(S4, 1024, out, 0)).toBe(LookupStatus.FOUND);
    expect([...out]).toEqual([...hosts[0]!]);
    expect(t.find(S4, 1535, out, 0)).toBe(LookupStatus.FOUND);
    expect([...out]).toEqual([...hosts[1]!]);
    expect(t.find(S4, 65535, out, 0)).toBe(LookupStatus.FOUND);
    expect([...out]).toEqual([...hosts[2]!]);
    expect(t.find(S4, 1536, out, 0)).toBe(LookupStatus.NO_PORT_SET); // PSID 2: not bound
    expect(t.find(S4, 80, out, 0)).toBe(LookupStatus.NO_PORT_SET); // excluded low range
    expect(t.find(S4, -1, out, 0)).toBe(LookupStatus.NO_PORT_SET); // no port (a fragment)
    expect(t.match(S4, 1300, hosts[1]!, 0)).toBe(LookupStatus.FOUND);
    expect(t.match(S4, 1300, hosts[0]!, 0)).toBe(LookupStatus.OTHER_HOST);
  });

  test("one sharing rule per address: a conflicting set() throws until the old bindings go", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    t.set(S4, shared(1), A6);
    expect(() => t.set(S4, WHOLE, B6)).toThrow(BindingConflictError);
    expect(() => t.set(S4, { offset: 4, psidLength: 2, psid: 1 }, B6)).toThrow(
      BindingConflictError,
    );
    expect(t.delete(S4, 1)).toBe(true);
    expect(t.addressCount).toBe(0);
    expect(t.set(S4, WHOLE, B6)).toBe("added");
    expect(t.matchesHost(S4, 80, B6, 0)).toBe(true);
  });

  test("set() rejects bad port sets and addresses", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    expect(() => t.set(A4, { offset: 6, psidLength: 2, psid: 4 }, A6)).toThrow(RangeError);
    expect(() => t.set(A4, { offset: 10, psidLength: 7, psid: 0 }, A6)).toThrow(RangeError);
    expect(() => t.set(-1, WHOLE, A6)).toThrow(RangeError);
    expect(() => t.set(2 ** 32, WHOLE, A6)).toThrow(RangeError);
    expect(() => t.set(A4, WHOLE, new Uint8Array(15))).toThrow(RangeError);
  });

  test("delete() removes one binding; the address goes with its last binding", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    t.set(S4, shared(0), A6);
    t.set(S4, shared(2), B6);
    expect(t.delete(S4, 0)).toBe(true);
    expect(t.delete(S4, 0)).toBe(false);
    expect(t.find(S4, 1024, new Uint8Array(16), 0)).toBe(LookupStatus.NO_PORT_SET);
    expect(t.matchesHost(S4, 1536, B6, 0)).toBe(true);
    expect(t.delete(S4, 2)).toBe(true);
    expect(t.find(S4, 1536, new Uint8Array(16), 0)).toBe(LookupStatus.NO_ADDRESS);
    expect(t.size).toBe(0);
    expect(t.addressCount).toBe(0);
    expect(t.delete(A4, 0)).toBe(false);
  });

  test("addresses ≥ 2^31 and 0.0.0.0 / 255.255.255.255 are plain keys", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    for (const a of [0, 0x7fffffff, 0x80000000, 0xffffffff]) t.set(a, WHOLE, codedHost(a, 0, 1));
    for (const a of [0, 0x7fffffff, 0x80000000, 0xffffffff]) {
      expect(t.matchesHost(a, 0, codedHost(a, 0, 1), 0)).toBe(true);
    }
    expect(t.entries().map((e) => e.ipv4)).toEqual([0, 0x7fffffff, 0x80000000, 0xffffffff]);
  });

  test("capacity is fixed: set() beyond maxEntries throws, updates and re-adds after a delete work", () => {
    const t = BindingTable.create({ maxEntries: 100 });
    for (let i = 0; i < 100; i++) t.set(A4 + i, WHOLE, A6);
    expect(() => t.set(A4 + 100, WHOLE, A6)).toThrow(BindingTableFullError);
    expect(t.set(A4 + 5, WHOLE, B6)).toBe("updated");
    t.delete(A4 + 5, 0);
    expect(t.set(A4 + 100, WHOLE, A6)).toBe("added");
    expect(t.size).toBe(100);
    expect(t.capacity).toBe(256);
  });

  test("tombstones: a deleted slot inside a probe run stays a tombstone and is reused", () => {
    const t = BindingTable.create({ maxEntries: 8 }); // 16 slots: collisions are easy to find
    const a = A4;
    let b = -1;
    for (let c = a + 1; c < a + 10000 && b < 0; c++) {
      t.set(a, WHOLE, A6);
      t.set(c, WHOLE, B6);
      t.delete(a, 0);
      if (t.tombstones === 1) b = c; // a's slot is followed by c's: c probed past a
      t.delete(c, 0);
      expect(t.tombstones).toBe(0); // the run ended in an empty slot: cleaned up entirely
      if (b >= 0) break;
    }
    expect(b).toBeGreaterThan(0);
    t.set(a, WHOLE, A6);
    t.set(b, WHOLE, B6);
    t.delete(a, 0);
    expect(t.tombstones).toBe(1);
    expect(t.matchesHost(b, 0, B6, 0)).toBe(true); // found past the tombstone
    t.set(a, WHOLE, A6); // reuses the tombstone
    expect(t.tombstones).toBe(0);
    expect(t.size).toBe(2);
    expect(t.matchesHost(a, 0, A6, 0)).toBe(true);
    expect(t.matchesHost(b, 0, B6, 0)).toBe(true);
  });

  test("heavy churn keeps tombstones bounded and every live binding findable", () => {
    const t = BindingTable.create({ maxEntries: 64 });
    const live = new Map<number, number>();
    let seed = 7;
    for (let n = 0; n < 100_000; n++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const a = A4 + (seed % 200);
      if (live.has(a)) {
        t.delete(a, 0);
        live.delete(a);
      } else if (live.size < 64) {
        t.set(a, WHOLE, codedHost(a, 0, n));
        live.set(a, n);
      }
      // Deletes turn used slots into tombstones; a set() compacts past capacity/4 tombstones:
      // used + tombstones never exceeds 3/4 of the slots, so a probe always meets an empty one.
      expect(t.size + t.tombstones).toBeLessThanOrEqual((t.capacity * 3) / 4);
    }
    expect(t.size).toBe(live.size);
    for (let a = A4; a < A4 + 200; a++) {
      const v = live.get(a);
      if (v === undefined)
        expect(t.find(a, 0, new Uint8Array(16), 0)).toBe(LookupStatus.NO_ADDRESS);
      else expect(t.matchesHost(a, 0, codedHost(a, 0, v), 0)).toBe(true);
    }
  });

  test("compact() keeps every binding and clears tombstones", () => {
    const t = BindingTable.create({ maxEntries: 1000 });
    for (let i = 0; i < 1000; i++) t.set(A4 + i, WHOLE, codedHost(A4 + i, 0, i));
    for (let i = 0; i < 1000; i += 3) t.delete(A4 + i, 0);
    const before = t.entries();
    t.compact();
    expect(t.tombstones).toBe(0);
    expect(t.entries()).toEqual(before);
    expect(t.size).toBe(before.length);
  });

  test("entries() lists bindings sorted by address and PSID; get() finds one", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    t.set(S4, shared(3), B6);
    t.set(A4, WHOLE, A6);
    t.set(S4, shared(1), A6);
    const list = t.entries();
    expect(list.map((e) => [e.ipv4, e.portSet.psid])).toEqual([
      [A4, 0],
      [S4, 1],
      [S4, 3],
    ]);
    expect(list[1]!.portSet).toEqual(shared(1));
    expect(list[0]!.portSet).toEqual(WHOLE);
    expect([...list[2]!.host6]).toEqual([...B6]);
    expect(t.get(S4, 3)?.host6).toEqual(B6);
    expect(t.get(S4, 2)).toBeUndefined();
  });

  test("replaceAll() applies only the difference; a bad snapshot changes nothing", () => {
    const t = BindingTable.create({ maxEntries: 4 });
    t.set(A4, WHOLE, A6);
    t.set(A4 + 1, WHOLE, A6);
    t.set(S4, shared(0), A6);
    const snapshot: BindingEntry[] = [
      { ipv4: A4, portSet: WHOLE, host6: A6 }, // unchanged
      { ipv4: A4 + 1, portSet: WHOLE, host6: B6 }, // new host
      { ipv4: S4, portSet: WHOLE, host6: B6 }, // rule change: shared → whole
      { ipv4: A4 + 2, portSet: WHOLE, host6: B6 }, // new
    ];
    expect(t.replaceAll(snapshot)).toEqual({ added: 2, updated: 1, removed: 1 });
    expect(t.entries().map((e) => [e.ipv4, e.portSet.psidLength])).toEqual([
      [A4, 0],
      [A4 + 1, 0],
      [A4 + 2, 0],
      [S4, 0],
    ]);
    expect(t.matchesHost(S4, 80, B6, 0)).toBe(true);
    const before = t.entries();
    const dup = [...snapshot, { ipv4: A4, portSet: WHOLE, host6: B6 }];
    expect(() => t.replaceAll(dup)).toThrow(RangeError);
    expect(() =>
      t.replaceAll([
        { ipv4: S4, portSet: shared(1), host6: A6 },
        { ipv4: S4, portSet: WHOLE, host6: A6 },
      ]),
    ).toThrow(BindingConflictError);
    const five = [0, 1, 2, 3, 4].map((i) => ({ ipv4: A4 + 10 + i, portSet: WHOLE, host6: A6 }));
    expect(() => t.replaceAll(five)).toThrow(BindingTableFullError);
    expect(t.entries()).toEqual(before);
    expect(t.replaceAll([])).toEqual({ added: 0, updated: 0, removed: 4 });
    expect(t.size).toBe(0);
  });

  test("attach() sees the creator's bindings and later changes; refuses other buffers", () => {
    const t = BindingTable.create({ maxEntries: 16 });
    const reader = BindingTable.attach(t.buffer);
    t.set(A4, WHOLE, A6);
    expect(reader.matchesHost(A4, 0, A6, 0)).toBe(true);
    expect(reader.size).toBe(1);
    t.delete(A4, 0);
    expect(reader.size).toBe(0);
    expect(() => BindingTable.attach(new SharedArrayBuffer(1024))).toThrow(TypeError);
  });

  test("answers do not depend on which sharing rule the previous lookup resolved", () => {
    // The lookup tries the rule of the last resolved address first (binding_slots.ts); any
    // order of lookups over addresses with different rules must give the same answers.
    const t = BindingTable.create({ maxEntries: 64 });
    const rules: Record<string, PortSetValue | null> = {
      "198.51.100.1": WHOLE,
      "198.51.100.2": { offset: 6, psidLength: 2, psid: 0 },
      "198.51.100.3": { offset: 4, psidLength: 4, psid: 0 },
      "198.51.100.4": { offset: 0, psidLength: 3, psid: 0 },
      "198.51.100.5": null, // unbound
    };
    const bound = (psid: number) => psid !== 1; // PSID 1 left out everywhere
    for (const [addr, rule] of Object.entries(rules)) {
      if (!rule) continue;
      if (rule.psidLength === 0) t.set(ip(addr), WHOLE, codedHost(ip(addr), 0, 0));
      else
        for (let psid = 0; psid < 2 ** rule.psidLength; psid++)
          if (bound(psid)) t.set(ip(addr), { ...rule, psid }, codedHost(ip(addr), psid, 0));
    }
    const expected = (addr: string, port: number): [LookupStatus, number] => {
      const rule = rules[addr];
      if (!rule) return [LookupStatus.NO_ADDRESS, -1];
      if (rule.psidLength === 0) return [LookupStatus.FOUND, 0];
      const psid = port < 0 ? -1 : psidOfPort(port, rule.offset, rule.psidLength);
      return psid >= 0 && bound(psid) ? [LookupStatus.FOUND, psid] : [LookupStatus.NO_PORT_SET, -1];
    };
    const queries: [string, number][] = [];
    for (const addr of Object.keys(rules))
      for (const port of [-1, 0, 80, 1023, 1024, 1300, 4096, 5000, 8191, 8192, 40000, 65535])
        queries.push([addr, port]);
    const out = new Uint8Array(16);
    const view = new DataView(out.buffer);
    let seed = 99;
    for (let pass = 0; pass < 50; pass++) {
      for (let i = queries.length - 1; i > 0; i--) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        const j = seed % (i + 1);
        [queries[i], queries[j]] = [queries[j]!, queries[i]!];
      }
      for (const [addr, port] of queries) {
        const [status, psid] = expected(addr, port);
        expect([addr, port, t.find(ip(addr), port, out, 0)]).toEqual([addr, port, status]);
        if (status !== LookupStatus.FOUND) continue;
        expect(view.getUint32(8) >>> 16).toBe(psid);
        const host = codedHost(ip(addr), psid, 0);
        expect(t.match(ip(addr), port, host, 0)).toBe(LookupStatus.FOUND);
        expect(t.match(ip(addr), port, A6, 0)).toBe(LookupStatus.OTHER_HOST);
      }
    }
    // An address that changes its rule is looked up under the new one at once, also right
    // after a lookup that resolved its old rule.
    const moved = ip("198.51.100.2");
    expect(t.find(moved, 1024, out, 0)).toBe(LookupStatus.FOUND); // 6/2, PSID 0
    for (const psid of [0, 2, 3]) t.delete(moved, psid);
    t.set(moved, { offset: 4, psidLength: 4, psid: 5 }, A6);
    expect(t.find(moved, 1024, out, 0)).toBe(LookupStatus.NO_PORT_SET); // excluded under 4/4
    expect(t.find(moved, 1024, out, 0)).toBe(LookupStatus.NO_PORT_SET);
    expect(t.find(ip("198.51.100.2"), 1300, out, 0)).toBe(LookupStatus.NO_PORT_SET);
    expect(t.match(moved, (1 << 12) | (5 << 8), A6, 0)).toBe(LookupStatus.FOUND);
    expect(t.match(moved, (1 << 12) | (6 << 8), A6, 0)).toBe(LookupStatus.NO_PORT_SET);
  });

  test("262,144 bindings (a /16 shared by 4) all resolve to their own host", () => {
    const t = BindingTable.create({ maxEntries: 262144 });
    const base = ip("198.18.0.0");
    for (let i = 0; i < 65536; i++) {
      for (let psid = 0; psid < 4; psid++)
        t.set(base + i, shared(psid), codedHost(base + i, psid, 1));
    }
    expect(t.size).toBe(262144);
    expect(t.addressCount).toBe(65536);
    expect(() => t.set(base + 65536, WHOLE, A6)).toThrow(BindingTableFullError);
    const out = new Uint8Array(16);
    const view = new DataView(out.buffer);
    let bad = 0;
    for (let i = 0; i < 65536; i++) {
      for (let psid = 0; psid < 4; psid++) {
        const port = 1024 + (psid << 8) + (i & 0xff) + (i & 0x3f) * 1024;
        if (t.find(base + i, port, out, 0) !== LookupStatus.FOUND) bad++;
        else if (view.getUint32(4) !== base + i || view.getUint32(8) >>> 16 !== psid) bad++;
      }
      if (t.find(base + i, 1000, out, 0) !== LookupStatus.NO_PORT_SET) bad++;
    }
    expect(bad).toBe(0);
    expect(t.find(ip("198.19.0.0"), 2000, out, 0)).toBe(LookupStatus.NO_ADDRESS);
  });

  test("a Worker doing millions of lookups while this thread rewrites bindings never sees a torn host6", async () => {
    const STABLE = 256;
    const CHURNED = 256; // × 4 PSIDs
    const base = ip("198.18.0.0");
    const t = BindingTable.create({ maxEntries: STABLE + CHURNED * 4 });
    for (let i = 0; i < STABLE; i++) t.set(base + i, WHOLE, codedHost(base + i, 0, 0));
    const control = new SharedArrayBuffer(8);
    const flags = new Int32Array(control);
    const worker = new Worker(new URL("./helpers/binding_reader_worker.ts", import.meta.url));
    const result = new Promise<{
      torn: number;
      stableMisses: number;
      churnedFound: number;
      churnedMissing: number;
      matches: number;
    }>((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(e);
    });
    worker.postMessage({
      table: t.buffer,
      control,
      base,
      stable: STABLE,
      churned: CHURNED,
      lookups: 4_000_000,
    });
    const deadline = Date.now() + 30_000;
    while (Atomics.load(flags, 0) === 0 && Date.now() < deadline) {}
    // Writer: flip hosts, delete and re-add, and now and then compact, until the reader is done.
    let flips = 0;
    let deletes = 0;
    let compactions = 0;
    let seed = 99;
    while (Atomics.load(flags, 1) === 0 && Date.now() < deadline) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const k = seed % (CHURNED * 4);
      const a = base + STABLE + (k >>> 2);
      const psid = k & 3;
      if ((seed >>> 20) % 4 === 0) {
        if (t.delete(a, psid)) deletes++;
      } else {
        t.set(a, shared(psid), codedHost(a, psid, flips));
        flips++;
      }
      if (flips % 20000 === 19999) {
        t.compact();
        compactions++;
      }
    }
    const r = await result;
    worker.terminate();
    expect(r.torn).toBe(0);
    expect(r.stableMisses).toBe(0);
    expect(r.churnedFound).toBeGreaterThan(0);
    expect(r.churnedMissing).toBeGreaterThan(0);
    expect(flips).toBeGreaterThan(1000);
    expect(deletes).toBeGreaterThan(100);
    console.log(
      `concurrency: 4,000,000 reader lookups against ${flips} host flips, ${deletes} deletes, ${compactions} compactions: ${r.torn} torn, ${r.stableMisses} stable misses`,
    );
  }, 60_000);
});
