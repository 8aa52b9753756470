/**
 * Red team of the TEP digest read from a request's HOST_IPV6 bytes (lib/server/handler.ts
 * #grant → lib/server/binding_sink.ts Host6Bytes → lib/server/tep_state.ts _hash): requests
 * crafted so that a scan for the option's code would find other bytes than the decoder's
 * HOST_IPV6 — an unknown extension option (0x80–0xFF, skipped by the decoder) whose value
 * looks like a HOST_IPV6 option, and bytes after the message's length holding another
 * HOST_IPV6 — at odd offsets of the datagram, from hosts of every RFC 5952 shape (zero runs
 * first, last, in the middle, equal runs, single zero groups, IPv4-mapped), on an address
 * pool shared by PSID, on the SQLite store, through DISCOVER, renewal (REQUEST), RELEASE and
 * expiry. After each step the server's digest of a TEP must be bindingsDigest of the leases
 * the TEP should hold (docs/protocol.md SYNC): a disagreement costs a SNAPSHOT per SYNC, a
 * wrong binding hash hides a wrong binding. Held: the option is found by walking the options
 * as the decoder does (lib/wire/dstm_ack.ts findOption) and the bytes are used only when
 * their text is the lease's.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocationEngine } from "../lib/alloc/engine.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { formatIPv6, parseIPv6 } from "../lib/net/addr.ts";
import { DstmHandler } from "../lib/server/handler.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, OptionCode } from "../lib/wire/dstm_types.ts";
import { prng } from "./helpers/fuzz.ts";

const TEP6 = "2001:db8::1";
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const wire = (leases: Iterable<Lease>) =>
  [...leases].map((l) => ({ host4: l.ipv4, host6: l.host6, portSet: l.portSet }));

/** Host addresses of every RFC 5952 §4.2 shape, unicast (first byte 0x20 or 0x00 for v4-mapped). */
function hostShapes(random: () => number): string[] {
  const out = new Set<string>();
  for (let mask = 0; mask < 256; mask++) {
    const b = new Uint8Array(16);
    for (let g = 0; g < 8; g++) {
      if (!(mask & (1 << g))) continue;
      const v = [1, 0x10, 0x100, 0x1000, 0xffff, 1 + ((random() * 0xfffe) | 0)][
        (random() * 6) | 0
      ]!;
      b[2 * g] = v >> 8;
      b[2 * g + 1] = v & 255;
    }
    b[0] = 0x20;
    b[1] = 0x01;
    out.add(formatIPv6(b));
  }
  for (const t of ["::ffff:192.0.2.7", "2001:db8::", "2001:db8:0:1::", "2001:db8:0:0:1:0:0:1"])
    out.add(formatIPv6(parseIPv6(t)!));
  return [...out];
}

/**
 * `message` placed at `at` of a datagram, with an unknown extension option mimicking a
 * HOST_IPV6 option of `decoy` before its options, and another HOST_IPV6 option of `decoy`
 * after its length (not part of the message).
 */
function crafted(message: Uint8Array, decoy: string, at: number): Uint8Array {
  const d = parseIPv6(decoy)!;
  const fake = new Uint8Array([0xfe, 18, OptionCode.HOST_IPV6, 16, ...d]);
  const trailer = new Uint8Array([OptionCode.HOST_IPV6, 16, ...d]);
  const length = message.length + fake.length;
  const out = new Uint8Array(at + length + trailer.length);
  out.set(message.subarray(0, 12), at);
  out.set(fake, at + 12);
  out.set(message.subarray(12), at + 12 + fake.length);
  out[at + 8] = length >> 8;
  out[at + 9] = length & 255;
  out.set(trailer, at + length);
  return out.subarray(at);
}

describe("atk21: the server's TEP digest against crafted requests", () => {
  test("grants, renewals, releases and expiries keep it the digest of the active leases (SQLite, PSID-shared)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "atk21-digest-"));
    dirs.push(dir);
    let now = 1_000_000;
    const engine = new AllocationEngine({
      pools: [{ prefixes: ["198.18.0.0/29"], tep6: TEP6, share: 4 }],
      store: SqliteLeaseStore.open(join(dir, "leases.db")),
      leaseTime: 60,
      now: () => now,
    });
    await engine.start();
    const log = new Logger({ sink: () => {}, level: "error" });
    const metrics = new Metrics();
    const sync = new TepSync(
      { teps: [TEP6], log, metrics, send: () => true, pools: engine.pools() },
      [],
    );
    const handler = new DstmHandler({ engine, metrics, log, sourceCheck: false, bindings: sync });
    const random = prng(21);
    const hosts = hostShapes(random);
    const held = new Map<string, number>();
    let acks = 0;
    for (let i = 0; i < 1500; i++) {
      const host6 = hosts[(random() * hosts.length) | 0]!;
      const decoy = hosts[(random() * hosts.length) | 0]!;
      const ipv4 = held.get(host6);
      const r = random();
      const request =
        ipv4 === undefined
          ? { type: MessageType.DISCOVER, xid: i, host6 }
          : r < 0.5
            ? { type: MessageType.REQUEST, xid: i, host6, host4: ipv4 }
            : { type: MessageType.RELEASE, xid: i, host6, host4: ipv4 };
      const answer = await handler.handle(
        crafted(encodeMessage(request), decoy, i % 7),
        "::1",
        546,
      );
      const decoded = answer ? decodeMessage(answer) : undefined;
      if (decoded?.ok && decoded.value.type !== MessageType.NAK) {
        acks++;
        // The ACK names the requester, never the decoy.
        expect(decoded.value.host6).toBe(host6);
        if (request.type === MessageType.RELEASE) held.delete(host6);
        else held.set(host6, decoded.value.host4!);
      }
      if (i % 100 === 99) {
        // Every lease lapses. Most rounds no sweep follows: the full pool's overdue leases are
        // taken over by the next hosts' DISCOVERs, whose bindings replace the previous
        // holders' at the same key (bytes of the new host, binding of another). Every third
        // round, expiry removes the rest as the server does.
        now += 61_000;
        if (i % 300 === 299) for (const lease of await engine.sweep()) sync.remove(lease);
        held.clear();
      }
      const active = engine.leases({ state: "active" });
      expect(sync.view(TEP6).count).toBe(active.length);
      expect(sync.view(TEP6).digest).toBe(bindingsDigest(wire(active)));
    }
    expect(acks).toBeGreaterThan(200);
    sync.close();
    await engine.close();
  });
});
