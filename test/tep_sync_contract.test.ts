/**
 * The server ⇄ TEP contract where the suite had holes (issue 10, mutants 2 and 3):
 * a SYNC whose count matches but whose digest does not still gets a SNAPSHOT, and a lease
 * that expires is UNBIND-ed at its TEP.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { DstmServer } from "../lib/server/server.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { bindUdp, type UdpEndpoint } from "../lib/sys/udp.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType } from "../lib/wire/dstm_types.ts";
import { waitUntil } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const T0 = 1_700_000_000_000;

function lease(ipv4: string, host6: string): Lease {
  return {
    ipv4: parseIPv4(ipv4)!,
    portSet: WHOLE_ADDRESS,
    host6,
    tep4: 0,
    tep6: "2001:db8::7",
    pool: "p",
    state: "active",
    grantedAt: T0,
    expiresAt: T0 + 600_000,
  };
}

describe("SYNC compares the digest, not only the count", () => {
  test("a TEP with as many bindings as the server but other ones gets a SNAPSHOT", () => {
    const sent: DstmMessage[] = [];
    const a = lease("192.0.2.1", "2001:db8:1::a");
    const sync = new TepSync(
      {
        teps: ["2001:db8::7"],
        log: new Logger({ sink: () => {} }),
        metrics: new Metrics(),
        now: () => T0,
        send: (data) => {
          const decoded = decodeMessage(data);
          if (!decoded.ok) throw new Error(decoded.error.message);
          sent.push(decoded.value);
          return true;
        },
      },
      [a],
    );
    const theirs = [{ host4: a.ipv4, host6: "2001:db8:1::bad", portSet: WHOLE_ADDRESS }];
    const ours = [{ host4: a.ipv4, host6: a.host6, portSet: WHOLE_ADDRESS }];
    expect(bindingsDigest(theirs)).not.toBe(bindingsDigest(ours));
    const report = (bindings: typeof ours) => {
      const message: DstmMessage = {
        type: MessageType.SYNC,
        xid: 1,
        tep6: "2001:db8::7",
        syncCount: bindings.length,
        syncDigest: bindingsDigest(bindings),
      };
      sync.onTepMessage(encodeMessage(message), message, "2001:db8::7", 4608);
    };
    report(ours); // in step: only the server's SYNC answer (its own count and digest)
    expect(sent.map((m) => [m.type, m.tep6, m.syncCount, m.syncDigest])).toEqual([
      [MessageType.SYNC, "2001:db8::7", 1, bindingsDigest(ours)],
    ]);
    report(theirs); // same count, other binding: the full table
    expect(sent.map((m) => m.type)).toEqual([MessageType.SYNC, MessageType.SNAPSHOT]);
    expect(sent[1]!.bindings).toEqual(ours);
  });
});

describe("expiry reaches the TEP", () => {
  test("a lease that expires is UNBIND-ed at its TEP", async () => {
    const received: DstmMessage[] = [];
    const tep: UdpEndpoint = await bindUdp("::1", 0, (data, address, port) => {
      const decoded = decodeMessage(data);
      if (!decoded.ok) return;
      received.push(decoded.value);
      const m = decoded.value;
      if (m.type === MessageType.BIND || m.type === MessageType.UNBIND) {
        tep.send(
          encodeMessage({ type: MessageType.BIND_ACK, xid: m.xid, host4: m.host4! }),
          address,
          port,
        );
      }
    });
    cleanup.push(() => tep.close());
    const server = await DstmServer.start({
      pools: [{ prefixes: ["198.51.100.0/29"], tep6: "::1" }],
      leaseTime: 1,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      tepPort: tep.port,
      sweepIntervalMs: 50,
      log: new Logger({ sink: () => {} }),
    });
    cleanup.push(() => server.stop());
    // The TEP says hello (empty, like the server), so the server treats it as connected.
    tep.send(
      encodeMessage({
        type: MessageType.SYNC,
        xid: 1,
        tep6: "::1",
        syncCount: 0,
        syncDigest: 0,
      }),
      "::1",
      server.listening.port,
    );
    await waitUntil(() => server.tepSync!.view("::1").connected, {
      timeoutMs: 5000,
      what: "the TEP to count as connected",
    });
    const transport = await DstmTransport.open({ server: "::1", port: server.listening.port });
    cleanup.push(() => transport.close());
    const granted = await new DstmClient(transport, "2001:db8:1::e").discover();
    expect(received.some((m) => m.type === MessageType.BIND && m.host4 === granted.ipv4)).toBe(
      true,
    );
    await waitUntil(
      () => received.some((m) => m.type === MessageType.UNBIND && m.host4 === granted.ipv4),
      { timeoutMs: 10_000, what: "UNBIND of the expired lease" },
    );
    expect(server.metrics.get("dstm_leases_expired_total")).toBe(1);
    expect(server.tepSync!.view("::1").count).toBe(0);
  });
});

describe("a lease granted before its TEP syncs", () => {
  function syncWith(requireTep: boolean) {
    const sent: DstmMessage[] = [];
    const lines: string[] = [];
    const metrics = new Metrics();
    const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
    const sync = new TepSync(
      {
        teps: ["2001:db8::7"],
        log,
        metrics,
        now: () => T0,
        requireTep,
        send: (data) => {
          const decoded = decodeMessage(data);
          if (decoded.ok) sent.push(decoded.value);
          return true;
        },
      },
      [],
    );
    cleanup.push(() => sync.close());
    return { sync, sent, lines, metrics, log };
  }

  test("is granted without a BIND, counted as bind_deferred and said at warn with what to check", async () => {
    const { sync, sent, lines, metrics, log } = syncWith(false);
    expect(await sync.install(lease("192.0.2.1", "2001:db8:1::a"))).toBe(true);
    expect(await sync.install(lease("192.0.2.2", "2001:db8:1::b"))).toBe(true);
    expect(sent.filter((m) => m.type === MessageType.BIND)).toEqual([]);
    expect(metrics.get("dstm_tep_messages_total", { kind: "bind_deferred" })).toBe(2);
    log.flush();
    const warned = lines.filter((l) => / WARN tep-bind-deferred /.test(l));
    expect(warned.length).toBe(2);
    expect(warned[0]).toContain("ipv4=192.0.2.1");
    expect(warned[0]).toMatch(/--require-tep/);
    expect(warned[0]).toMatch(/--tep-key/);
  });

  test("is decided at once: a plain boolean, not a promise (the ACK waits no turn)", () => {
    expect(syncWith(false).sync.install(lease("192.0.2.1", "2001:db8:1::a"))).toBe(true);
    expect(syncWith(true).sync.install(lease("192.0.2.1", "2001:db8:1::a"))).toBe(false);
  });

  test("past the warning limit each lease is still counted, the lines stop", () => {
    const { sync, lines, metrics, log } = syncWith(false);
    for (let i = 1; i <= 30; i++) {
      expect(sync.install(lease(`192.0.2.${i}`, `2001:db8:1::${i.toString(16)}`))).toBe(true);
    }
    expect(metrics.get("dstm_tep_messages_total", { kind: "bind_deferred" })).toBe(30);
    log.flush();
    const warned = lines.filter((l) => / WARN tep-bind-deferred /.test(l));
    // WarnLimit's burst (20) on a clock that stands still: the first 20 leases' lines.
    expect(warned.length).toBe(20);
    expect(warned[19]).toContain("ipv4=192.0.2.20");
  });

  test("with --require-tep it is refused instead, and nothing is deferred", async () => {
    const { sync, metrics, lines, log } = syncWith(true);
    expect(await sync.install(lease("192.0.2.1", "2001:db8:1::a"))).toBe(false);
    expect(metrics.get("dstm_tep_messages_total", { kind: "bind_deferred" })).toBe(0);
    log.flush();
    expect(lines.some((l) => / tep-bind-deferred /.test(l))).toBe(false);
  });
});
