/**
 * The decapsulating loop's binding lookups remembered within one batch
 * (lib/tunnel/batch_lookups.ts): only a FOUND source, only for the same inner source, port
 * and all 16 bytes of the outer source, and only while the table is unchanged; a refusal
 * never; the destination's answer per address; nothing past the batch. A binding removed or
 * added between two datagrams counts from the next datagram on, as one by one. No root.
 */
import { describe, expect, test } from "bun:test";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { BatchLookups } from "../lib/tunnel/batch_lookups.ts";
import { LookupStatus } from "../lib/tunnel/binding.ts";
import { TepDecapBatch } from "../lib/tunnel/tep_batch.ts";
import { FakeBatchTun, FakeTunnelSocket } from "./helpers/fake_devices.ts";
import { tepContext, WHOLE } from "./helpers/tep_context.ts";
import { type UdpSpec, udpTrain } from "./helpers/udp_packets.ts";

const A6 = parseIPv6("2001:db8:a::1")!;
const B6 = parseIPv6("2001:db8:a::2")!;
const HOST_A = parseIPv4("198.51.100.10")!;
const HOST_B = parseIPv4("198.51.100.11")!;
const SHARED = parseIPv4("198.51.100.20")!;

function table() {
  return tepContext([
    ["198.51.100.10", WHOLE, A6],
    ["198.51.100.20", { offset: 6, psidLength: 2, psid: 1 }, A6],
  ]).tep.bindings;
}

/** The table, and how often its source lookup ran. */
function counted() {
  const bindings = table();
  const calls = { match: 0 };
  const match = bindings.match.bind(bindings);
  bindings.match = (...args) => {
    calls.match++;
    return match(...args);
  };
  return { bindings, calls };
}

describe("BatchLookups", () => {
  test("a FOUND source is taken again for the same source, port and outer source, while the table is unchanged", () => {
    const { bindings, calls } = counted();
    const memo = new BatchLookups();
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.FOUND);
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.FOUND);
    expect(calls.match).toBe(1); // remembered
    // Anything else is looked up: another port, another outer source.
    expect(memo.match(bindings, HOST_A, 40001, A6, 0)).toBe(LookupStatus.FOUND);
    expect(memo.match(bindings, HOST_A, 40000, B6, 0)).toBe(LookupStatus.OTHER_HOST);
    expect(calls.match).toBe(3);
    memo.forget();
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.FOUND);
    expect(calls.match).toBe(4);
  });

  test("any change to the table (here another address's) and the next datagram is looked up", () => {
    const { bindings, calls } = counted();
    const memo = new BatchLookups();
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.FOUND);
    bindings.set(HOST_B, WHOLE, B6);
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.FOUND);
    expect(calls.match).toBe(2);
    bindings.delete(HOST_A, 0);
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.NO_ADDRESS);
    // Rebound to another host: the old outer source is now spoofed.
    bindings.set(HOST_A, WHOLE, B6);
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.OTHER_HOST);
  });

  test("an outer source that differs in any one of its 16 bytes is looked up: spoofed", () => {
    const bindings = table();
    const memo = new BatchLookups();
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.FOUND);
    for (let i = 0; i < 16; i++) {
      const other = new Uint8Array(32);
      other.set(A6, 16);
      other[16 + i]! ^= 0x01;
      expect(memo.match(bindings, HOST_A, 40000, other, 16)).toBe(LookupStatus.OTHER_HOST);
    }
    expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.FOUND);
  });

  test("a port outside the shared address's set after one inside it is looked up (NO_PORT_SET)", () => {
    const bindings = table();
    const memo = new BatchLookups();
    // Offset 6, 2 PSID bits (RFC 7597 §5.1): port 1280 (0x0500) has PSID 1, 1536 (0x0600) 2.
    expect(memo.match(bindings, SHARED, 1280, A6, 0)).toBe(LookupStatus.FOUND);
    expect(memo.match(bindings, SHARED, 1536, A6, 0)).toBe(LookupStatus.NO_PORT_SET);
  });

  test("a refusal is never remembered", () => {
    const { bindings, calls } = counted();
    const memo = new BatchLookups();
    expect(memo.match(bindings, HOST_B, 40000, B6, 0)).toBe(LookupStatus.NO_ADDRESS);
    expect(memo.match(bindings, HOST_B, 40000, B6, 0)).toBe(LookupStatus.NO_ADDRESS);
    expect(calls.match).toBe(2);
  });

  test("the destination: its answer per address, with the table as the datagram's source lookup saw it", () => {
    const bindings = table();
    const memo = new BatchLookups();
    const datagram = (dst4: number) => {
      expect(memo.match(bindings, HOST_A, 40000, A6, 0)).toBe(LookupStatus.FOUND);
      return memo.find(bindings, dst4);
    };
    expect(datagram(HOST_B)).toBe(LookupStatus.NO_ADDRESS);
    expect(datagram(HOST_B)).toBe(LookupStatus.NO_ADDRESS);
    bindings.set(HOST_B, WHOLE, B6);
    expect(datagram(HOST_B)).toBe(LookupStatus.FOUND);
    expect(datagram(SHARED)).toBe(LookupStatus.NO_PORT_SET); // another address: looked up
  });
});

describe("TepDecapBatch: what it remembers lasts one batch", () => {
  const flow: UdpSpec = { payload: 64, src: [198, 51, 100, 10], dst: [203, 0, 113, 80] };

  function setup(spec: UdpSpec) {
    const { tep, counters } = tepContext([["198.51.100.10", WHOLE, A6]]);
    const raw = new FakeTunnelSocket(8);
    for (const packet of udpTrain(16, spec)) raw.inbox.push({ packet, src6: A6, trafficClass: 0 });
    const tun = new FakeBatchTun(true, 10, true);
    return { tep, counters, loop: new TepDecapBatch(tep, raw, tun), tun };
  }

  test("a binding removed between two batches: the next batch's datagrams are dropped, counted", () => {
    const { tep, counters, loop } = setup(flow);
    expect(loop.step()).toBe(8);
    tep.bindings.delete(HOST_A, 0);
    expect(loop.step()).toBe(8);
    const c = counters.snapshot();
    expect(c["decap-forward"]).toBe(8);
    expect(c["decap-drop-no-binding"]).toBe(8);
  });

  test("a binding removed in the middle of a batch: the datagrams after it are dropped, as one by one", () => {
    const { tep, counters, loop } = setup(flow);
    // The control thread's delete lands just before the 5th datagram's source lookup.
    const bindings = tep.bindings;
    const writes = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(bindings), "writes")!;
    let reads = 0;
    Object.defineProperty(bindings, "writes", {
      get() {
        if (++reads === 5) bindings.delete(HOST_A, 0);
        return writes.get!.call(bindings);
      },
    });
    expect(loop.step()).toBe(8);
    const c = counters.snapshot();
    expect(c["decap-forward"]).toBe(4);
    expect(c["decap-drop-no-binding"]).toBe(4);
  });

  test("a destination bound between two batches is a hairpin from the next batch on", () => {
    const { tep, counters, loop } = setup({ ...flow, dst: [198, 51, 100, 11] });
    tep.hairpin = false;
    expect(loop.step()).toBe(8);
    tep.bindings.set(HOST_B, WHOLE, B6);
    expect(loop.step()).toBe(8);
    const c = counters.snapshot();
    expect(c["decap-forward"]).toBe(8);
    expect(c["decap-drop-hairpin-disabled"]).toBe(8);
  });
});
