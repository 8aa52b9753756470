/**
 * The order of BIND and UNBIND for one binding at the TEP by their GENERATION
 * (lib/tep/binding_order.ts, docs/protocol.md "Generations"): the rule itself, the TEP's
 * binding messages applying it, a snapshot with a cut generation keeping what the TEP learned
 * after the cut (also before its first part came), and the GENERATION option on the wire.
 */
import { describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { BindingMessages } from "../lib/tep/binding_messages.ts";
import { bindOrder, unbindOrder } from "../lib/tep/binding_order.ts";
import { SnapshotAssemblies } from "../lib/tep/snapshot_assembly.ts";
import { GENERATION_WINDOW_MS, TepBindings, UNBOUND_MARKS_MAX } from "../lib/tep/tep_bindings.ts";
import { signMessage } from "../lib/wire/auth.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import {
  DSTM_MAX_MESSAGE,
  type DstmMessage,
  MessageType,
  SNAPSHOT_MAX_BINDINGS,
  type WireBinding,
} from "../lib/wire/dstm_types.ts";
import { RecordingTable } from "./helpers/recording_table.ts";

const X = parseIPv4("198.51.100.7")!;
const Y = parseIPv4("198.51.100.8")!;
const H = "2001:db8:2::1";
const J = "2001:db8:2::2";
const WHOLE = { offset: 0, psidLength: 0, psid: 0 };
const b = (host4: number, host6: string): WireBinding => ({ host4, host6, portSet: WHOLE });

describe("the ordering rule", () => {
  test("an UNBIND older than the binding held is superseded; not older, or unknown, applies", () => {
    expect(unbindOrder(8, 12)).toBe("superseded");
    expect(unbindOrder(12, 12)).toBe("apply");
    expect(unbindOrder(13, 12)).toBe("apply");
    expect(unbindOrder(undefined, 12)).toBe("apply");
    expect(unbindOrder(8, undefined)).toBe("apply");
  });

  test("a BIND older than the binding held, or not newer than the last UNBIND, is ignored", () => {
    expect(bindOrder(7, 9, undefined)).toBe("superseded");
    expect(bindOrder(9, 9, undefined)).toBe("apply"); // a retransmission
    expect(bindOrder(10, 9, undefined)).toBe("apply");
    expect(bindOrder(7, undefined, 7)).toBe("unbound");
    expect(bindOrder(6, undefined, 7)).toBe("unbound");
    expect(bindOrder(8, undefined, 7)).toBe("apply");
    expect(bindOrder(undefined, 9, 10)).toBe("apply"); // no generation: as before
  });
});

/** A TEP's binding handling with a recording table; `send` keeps the answers. */
function tep() {
  const table = new RecordingTable();
  const clock = { now: 1_000_000 };
  const now = () => clock.now;
  const bindings = new TepBindings(table, [], now);
  const snapshots = new SnapshotAssemblies({ now });
  const metrics = new Metrics();
  metrics.counter("dstm_tep_control_total", "TEP control messages", ["kind", "result"]);
  const answers: DstmMessage[] = [];
  const lines: string[] = [];
  const messages = new BindingMessages({
    bindings,
    snapshots,
    log: new Logger({ sink: (line) => lines.push(line) }),
    metrics,
    send: (m) => answers.push(m),
  });
  let xid = 1;
  const send = (type: MessageType, binding: WireBinding, generation?: number) =>
    messages.handle(
      { type, xid: xid++, host4: binding.host4, host6: binding.host6, generation },
      type === MessageType.BIND ? "bind" : "unbind",
      "2001:db8::53",
      4607,
    );
  const count = (kind: string, result: string) =>
    metrics.get("dstm_tep_control_total", { kind, result });
  return { table, bindings, snapshots, metrics, answers, lines, send, count, clock };
}

describe("the TEP's BIND / UNBIND with generations", () => {
  test("A's late UNBIND (version 8) after B's BIND (version 12) of the same X→H leaves it", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 5); // A's grant
    t.send(MessageType.BIND, b(X, H), 12); // B's grant after A's expiry (version 8)
    t.send(MessageType.UNBIND, b(X, H), 8); // A's UNBIND of the expiry, late
    expect(t.table.map.get(X)).toBe(H);
    expect(t.bindings.generation(b(X, H))).toBe(12);
    expect(t.count("unbind", "unbind-superseded")).toBe(1);
    // Every message is acknowledged, so no server retries.
    expect(t.answers.map((a) => a.type)).toEqual([
      MessageType.BIND_ACK,
      MessageType.BIND_ACK,
      MessageType.BIND_ACK,
    ]);
    // B's own UNBIND (its release, version 15) still removes it.
    t.send(MessageType.UNBIND, b(X, H), 15);
    expect(t.table.map.has(X)).toBe(false);
  });

  test("without the generation (an older server) the late UNBIND removes it, as before", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H));
    t.send(MessageType.UNBIND, b(X, H));
    expect(t.table.map.has(X)).toBe(false);
  });

  test("a BIND arriving after the UNBIND of its lease is ignored; a later grant is not", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 5);
    t.send(MessageType.UNBIND, b(X, H), 8);
    t.send(MessageType.BIND, b(X, H), 5); // a retransmission of the first, late
    expect(t.table.map.has(X)).toBe(false);
    expect(t.count("bind", "bind-unbound")).toBe(1);
    t.send(MessageType.BIND, b(X, J), 9); // the slot granted again
    expect(t.table.map.get(X)).toBe(J);
  });

  test("an UNBIND for a slot held by nobody marks it: a BIND of that lease arriving later is ignored", () => {
    const t = tep();
    t.send(MessageType.UNBIND, b(X, H), 8);
    expect(t.count("unbind", "unbind-stale")).toBe(1);
    t.send(MessageType.BIND, b(X, H), 6);
    expect(t.table.map.has(X)).toBe(false);
    t.send(MessageType.BIND, b(X, H), 9);
    expect(t.table.map.get(X)).toBe(H);
  });

  test("a BIND older than the binding held is ignored (a late BIND of a previous holder)", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, J), 20);
    t.send(MessageType.BIND, b(X, H), 11);
    expect(t.table.map.get(X)).toBe(J);
    expect(t.count("bind", "bind-superseded")).toBe(1);
  });

  test("an UNBIND's mark lasts GENERATION_WINDOW_MS: a BIND after that is applied as before", () => {
    const t = tep();
    t.send(MessageType.UNBIND, b(X, H), 8);
    t.clock.now += GENERATION_WINDOW_MS;
    expect(t.bindings.bindOrder(b(X, H), 6)).toBe("unbound");
    t.clock.now += 1;
    t.send(MessageType.BIND, b(X, H), 6);
    expect(t.table.map.get(X)).toBe(H);
  });

  test("the UNBIND marks are bounded: the oldest slot is forgotten first", () => {
    const t = tep();
    t.bindings.markUnbound(b(X, H), 8);
    for (let i = 0; i < UNBOUND_MARKS_MAX; i++)
      t.bindings.markUnbound(b(parseIPv4("10.0.0.1")! + i, H), 1);
    expect(t.bindings.bindOrder(b(X, H), 7)).toBe("apply"); // forgotten: as before
    expect(t.bindings.bindOrder(b(parseIPv4("10.0.0.1")! + 5, H), 1)).toBe("unbound");
  });
});

describe("a snapshot with a cut generation", () => {
  const snapshot = (
    t: ReturnType<typeof tep>,
    bindings: WireBinding[],
    generation?: number,
  ): number | undefined => {
    const whole = t.snapshots.add("2001:db8::53", {
      type: MessageType.SNAPSHOT,
      xid: 0,
      snapshot: { id: 1, part: 0, parts: 1 },
      bindings,
      generation,
    });
    return whole ? t.bindings.loadSnapshot(whole) : undefined;
  };

  test("a BIND newer than the cut, received before the first part, survives it", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 31); // B's grant, after A cut its snapshot at 30
    expect(snapshot(t, [b(Y, J)], 30)).toBe(0);
    expect(t.table.map.get(X)).toBe(H);
    expect(t.table.map.get(Y)).toBe(J);
    expect(t.bindings.managedCount).toBe(2);
  });

  test("a BIND not newer than the cut is the snapshot's to decide (it has the slot freed)", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 29);
    snapshot(t, [b(Y, J)], 30);
    expect(t.table.map.has(X)).toBe(false);
  });

  test("without a cut generation the snapshot replaces what came before its first part, as before", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 31);
    snapshot(t, [b(Y, J)]);
    expect(t.table.map.has(X)).toBe(false);
  });

  test("an UNBIND newer than the cut keeps its slot free", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 20);
    t.send(MessageType.UNBIND, b(X, H), 33); // freed after the cut
    snapshot(t, [b(X, H), b(Y, J)], 30);
    expect(t.table.map.has(X)).toBe(false);
    expect(t.table.map.get(Y)).toBe(J);
  });

  test("only what came shortly before the first part outranks the cut (GENERATION_WINDOW_MS)", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 31);
    t.send(MessageType.UNBIND, b(Y, J), 32);
    t.clock.now += GENERATION_WINDOW_MS + 1;
    snapshot(t, [b(Y, J)], 30);
    expect(t.table.map.has(X)).toBe(false);
    expect(t.table.map.get(Y)).toBe(J);
  });

  test("a lease database created anew (numbers start again): the TEP follows the servers by the next snapshot", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 900_000); // from the old database
    t.clock.now += 60_000;
    // The new database's grant of X to J: older by the numbers, so ignored for now ...
    t.send(MessageType.BIND, b(X, J), 7);
    expect(t.table.map.get(X)).toBe(H);
    // ... until the next snapshot (the SYNC differs from the server's view): it holds J.
    snapshot(t, [b(X, J)], 7);
    expect(t.table.map.get(X)).toBe(J);
    t.send(MessageType.UNBIND, b(X, J), 9);
    expect(t.table.map.has(X)).toBe(false);
  });

  test("a binding the snapshot holds as the TEP did keeps its generation (a late UNBIND stays stale)", () => {
    const t = tep();
    t.send(MessageType.BIND, b(X, H), 12);
    snapshot(t, [b(X, H)], 11);
    t.send(MessageType.UNBIND, b(X, H), 8);
    expect(t.table.map.get(X)).toBe(H);
  });
});

describe("GENERATION on the wire", () => {
  test("BIND, UNBIND and SNAPSHOT carry it; any 53-bit value round-trips", () => {
    for (const generation of [0, 1, 2 ** 32 - 1, 2 ** 32, 123_456_789_012, 2 ** 53 - 1]) {
      for (const type of [MessageType.BIND, MessageType.UNBIND]) {
        const m: DstmMessage = { type, xid: 7, host4: X, host6: H, generation };
        const d = decodeMessage(encodeMessage(m));
        expect(d.ok && d.value.generation).toBe(generation);
      }
    }
    expect(() =>
      encodeMessage({ type: MessageType.BIND, xid: 1, host4: X, host6: H, generation: 2 ** 53 }),
    ).toThrow(RangeError);
    expect(() => encodeMessage({ type: MessageType.SYNC, xid: 1, tep6: H, generation: 5 })).toThrow(
      RangeError,
    );
  });

  test("a full signed SNAPSHOT part with it still fits the IPv6 minimum MTU", () => {
    const bindings = Array.from({ length: SNAPSHOT_MAX_BINDINGS }, (_, i) => b(X + i, H));
    const m: DstmMessage = {
      type: MessageType.SNAPSHOT,
      xid: 0,
      snapshot: { id: 1, part: 0, parts: 1 },
      bindings,
      generation: 2 ** 53 - 1,
    };
    const bytes = signMessage(m, { id: 1, secret: new Uint8Array(32).fill(1) }, Date.now());
    expect(bytes.length).toBeLessThanOrEqual(DSTM_MAX_MESSAGE);
    const d = decodeMessage(bytes);
    expect(d.ok && d.value.generation).toBe(2 ** 53 - 1);
  });

  test("a value of 2^53 or more is refused (bad-generation)", () => {
    const bytes = encodeMessage({
      type: MessageType.BIND,
      xid: 1,
      host4: X,
      host6: H,
      generation: 1,
    });
    const at = bytes.length - 8; // GENERATION is the last option: its value is the last 8 bytes
    const big = bytes.slice();
    big[at] = 0x00;
    big[at + 1] = 0x20; // 2^53
    const d = decodeMessage(big);
    expect(d.ok ? "ok" : d.error.code).toBe("bad-generation");
  });
});

describe("the server sends GENERATION (lib/server/tep_sync.ts)", () => {
  const TEP = "2001:db8::7";
  const leaseOfHost = (host4: number, host6: string): Lease => ({
    ipv4: host4,
    portSet: WHOLE_ADDRESS,
    host6,
    tep4: 0,
    tep6: TEP,
    pool: "p",
    state: "active",
    grantedAt: 0,
    expiresAt: 1e15,
  });

  test("BIND and UNBIND carry the generation they are given, SNAPSHOT parts its cut", async () => {
    const sent: DstmMessage[] = [];
    const old = leaseOfHost(Y, J);
    const sync = new TepSync(
      {
        teps: [TEP],
        log: new Logger({ sink: () => {} }),
        metrics: new Metrics(),
        send: (data) => {
          const m = decodeMessage(data);
          if (m.ok) sent.push(m.value);
          return true;
        },
        watchedThrough: () => 41,
      },
      [old],
    );
    try {
      const report: DstmMessage = {
        type: MessageType.SYNC,
        xid: 1,
        tep6: TEP,
        syncCount: 0,
        syncDigest: 0,
      };
      sync.onTepMessage(encodeMessage(report), report, TEP, 4608);
      const part = sent.find((m) => m.type === MessageType.SNAPSHOT);
      expect(part?.generation).toBe(41);
      const granted = leaseOfHost(X, H);
      const installing = sync.install(granted, 42);
      const bind = sent.find((m) => m.type === MessageType.BIND);
      expect(bind?.generation).toBe(42);
      const ack: DstmMessage = { type: MessageType.BIND_ACK, xid: bind!.xid, host4: X };
      sync.onTepMessage(encodeMessage(ack), ack, TEP, 4608);
      expect(await installing).toBe(true);
      const freed = { ...granted, state: "expired" as const };
      sync.remove(freed, 45);
      expect(sent.find((m) => m.type === MessageType.UNBIND)?.generation).toBe(45);
      // None given (a store that numbers no writes): no GENERATION, as before.
      sync.remove(old);
      const unbinds = sent.filter((m) => m.type === MessageType.UNBIND);
      expect(unbinds.at(-1)?.host4).toBe(Y);
      expect(unbinds.at(-1)?.generation).toBeUndefined();
    } finally {
      sync.close();
    }
  });
});
