import { describe, expect, test } from "bun:test";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { type Lease, leaseOf, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../lib/lease/memory.ts";
import { formatIPv6 } from "../lib/net/addr.ts";
import type { Host6Bytes } from "../lib/server/binding_sink.ts";
import { DstmHandler } from "../lib/server/handler.ts";
import { addBinding, newTepState, removeBinding } from "../lib/server/tep_state.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType } from "../lib/wire/dstm_types.ts";
import { prng } from "./helpers/fuzz.ts";

/** The wire view of a TEP's bindings, for bindingsDigest. */
const wire = (leases: Iterable<Lease>) =>
  [...leases].map((l) => ({ host4: l.ipv4, host6: l.host6, portSet: l.portSet }));

/** Random host addresses' bytes at `at` of a larger array, with their canonical text. */
function randomHost6(random: () => number, at: number): Host6Bytes {
  const bytes = new Uint8Array(at + 16 + 3);
  for (let i = 0; i < 16; i++) bytes[at + i] = random() < 0.3 ? 0 : (random() * 256) | 0;
  bytes[at] = 0x20; // unicast
  return { text: formatIPv6(bytes, at), bytes, offset: at };
}

const lease = (ipv4: number, host6: string, psidLength = 0, psid = 0): Lease =>
  leaseOf(
    ipv4,
    psidLength === 0 ? WHOLE_ADDRESS : { offset: 6, psidLength, psid },
    host6,
    0,
    "2001:db8::7",
    "192.0.2.0/24",
    "active",
    0,
    1,
    undefined,
  );

describe("the TEP digest from a request's HOST_IPV6 bytes (Host6Bytes)", () => {
  test("adds and removes give the digest of the text, at any offset, shared or whole", () => {
    const random = prng(12);
    const tep = newTepState("2001:db8::7", [], 0);
    const held = new Map<number, Lease>();
    for (let i = 0; i < 2000; i++) {
      const host6 = randomHost6(random, i % 5);
      const shared = i % 3 === 0;
      const l = lease(
        0xc0000200 + (i % 97),
        host6.text,
        shared ? 4 : 0,
        shared ? (random() * 16) | 0 : 0,
      );
      const key = l.ipv4 * 65536 + l.portSet.psid;
      if (random() < 0.3 && held.has(key)) {
        // The released binding's own bytes, or (another host's) bytes that are not its: unused.
        const own = held.get(key)!.host6 === host6.text;
        removeBinding(tep, held.get(key)!, own ? host6 : randomHost6(random, 1));
        held.delete(key);
      } else {
        addBinding(tep, l, host6); // replaces the key's binding of another host, if any
        held.set(key, l);
      }
      expect(tep.digest).toBe(bindingsDigest(wire(held.values())));
    }
  });

  test("bytes whose text is not the binding's host6 are not used", () => {
    const tep = newTepState("2001:db8::7", [], 0);
    const other = randomHost6(prng(3), 2);
    addBinding(tep, lease(0xc0000201, "2001:db8:1::a"), other);
    expect(tep.digest).toBe(bindingsDigest(wire([lease(0xc0000201, "2001:db8:1::a")])));
  });

  test("the handler's grants and releases keep the TEP's digest that of its bindings", async () => {
    const engine = new AllocationEngine({
      pools: [{ prefixes: ["198.18.0.0/24"], tep6: "2001:db8::1" }],
      store: new MemoryLeaseStore(),
      leaseTime: 3600,
    });
    await engine.start();
    const log = new Logger({ sink: () => {}, level: "error" });
    const metrics = new Metrics();
    const sync = new TepSync(
      { teps: ["2001:db8::1"], log, metrics, send: () => true, pools: engine.pools() },
      [],
    );
    const handler = new DstmHandler({ engine, metrics, log, sourceCheck: false, bindings: sync });
    const random = prng(7);
    const hosts = Array.from({ length: 40 }, () => randomHost6(random, 0).text);
    const granted = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const host6 = hosts[(random() * hosts.length) | 0]!;
      const ipv4 = granted.get(host6);
      const request =
        ipv4 === undefined
          ? { type: MessageType.DISCOVER, xid: i, host6 }
          : { type: MessageType.RELEASE, xid: i, host6, host4: ipv4 };
      // The request at an offset of a larger buffer, as a received datagram's view may be.
      const bytes = encodeMessage(request);
      const datagram = new Uint8Array(bytes.length + 9);
      datagram.set(bytes, 5);
      const answer = await handler.handle(datagram.subarray(5, 5 + bytes.length), "::1", 546);
      expect(answer?.[1]).toBe(
        ipv4 === undefined ? MessageType.DISCOVER_ACK : MessageType.RELEASE_ACK,
      );
      if (ipv4 === undefined) {
        const ack = decodeMessage(answer!);
        granted.set(host6, ack.ok ? ack.value.host4! : 0);
      } else granted.delete(host6);
      const active = [...granted].map(([h, a]) => lease(a, h));
      expect(sync.view("2001:db8::1").count).toBe(granted.size);
      expect(sync.view("2001:db8::1").digest).toBe(bindingsDigest(wire(active)));
    }
    sync.close();
    await engine.close();
  });
});
