/**
 * A lost SNAPSHOT part no longer loses the whole snapshot (docs/protocol.md,
 * "SNAPSHOT_MISSING"): the TEP names the parts it lacks in its SYNC, the server sends exactly
 * those again from the cut it kept (lib/server/tep_snapshot_keep.ts). Without a real network:
 * the option's codec, the TEP's assembly, the server's judgement and re-send (TepSync with a
 * recording `send` and a fake clock). The end-to-end run with real processes and dropped
 * datagrams is test/tep_snapshot_loss.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { type Lease, WHOLE_ADDRESS } from "../lib/lease/lease.ts";
import { sendSnapshot } from "../lib/server/tep_snapshot.ts";
import {
  judgeSnapshotRequest,
  type KeptSnapshot,
  SNAPSHOT_KEEP_MS,
} from "../lib/server/tep_snapshot_keep.ts";
import { TepSync, UNAUTH_SNAPSHOT_INTERVAL_MS } from "../lib/server/tep_sync.ts";
import {
  missingRanges,
  SNAPSHOT_ASSEMBLY_IDLE_MS,
  SnapshotAssemblies,
} from "../lib/tep/snapshot_assembly.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import {
  type DstmMessage,
  MessageType,
  SNAPSHOT_MISSING_MAX_RANGES,
  type WireBinding,
  type WireSnapshotMissing,
} from "../lib/wire/dstm_types.ts";

const TEP6 = "2001:db8::7";
const binding = (n: number): WireBinding => ({
  host4: 0xc6120000 + n + 1,
  host6: `2001:db8:1::${(n + 1).toString(16)}`,
  portSet: WHOLE_ADDRESS,
});

function syncBytes(missing: WireSnapshotMissing | undefined): Uint8Array {
  return encodeMessage({
    type: MessageType.SYNC,
    xid: 1,
    tep6: TEP6,
    syncCount: 0,
    syncDigest: 0,
    snapshotMissing: missing,
  });
}

describe("SNAPSHOT_MISSING on the wire (0x81, in SYNC)", () => {
  test("round-trips; a server that does not read it would skip it (an extension code)", () => {
    const request = { id: 7, parts: 10, ranges: [{ first: 1, last: 2 }] };
    const bytes = syncBytes(request);
    // The option sits after SYNC_STATE: code 0x81, length 10, id, parts, first, last.
    const at = bytes.indexOf(0x81, 12);
    expect([...bytes.subarray(at, at + 12)]).toEqual([0x81, 10, 0, 0, 0, 7, 0, 10, 0, 1, 0, 2]);
    const decoded = decodeMessage(bytes);
    expect(decoded.ok && decoded.value.snapshotMissing).toEqual(request);
    // In any other message it is skipped, as any extension a receiver does not read.
    const bind = encodeMessage({ type: MessageType.BIND, xid: 2, host4: 0xc6336401, host6: TEP6 });
    const withOption = new Uint8Array([...bind, ...bytes.subarray(at, at + 12)]);
    withOption[9] = withOption.length;
    const skipped = decodeMessage(withOption);
    expect(skipped.ok && skipped.value.snapshotMissing).toBeUndefined();
  });

  test("a length other than 6 + 4n (n ≥ 1) or a second copy makes the SYNC malformed", () => {
    const bytes = syncBytes({ id: 7, parts: 10, ranges: [{ first: 1, last: 2 }] });
    const at = bytes.indexOf(0x81, 12);
    const variant = (value: number[]) => {
      const out = new Uint8Array([...bytes.subarray(0, at), 0x81, value.length, ...value]);
      out[9] = out.length;
      return decodeMessage(out);
    };
    const value = [...bytes.subarray(at + 2, at + 12)];
    expect(variant(value).ok).toBe(true);
    for (const bad of [value.slice(0, 6), value.slice(0, 9), [...value, 0], [...value, 0, 0]]) {
      const r = variant(bad);
      expect(!r.ok && r.error.code).toBe("bad-option-length");
    }
    const twice = new Uint8Array([...bytes, 0x81, 10, ...value]);
    twice[9] = twice.length;
    const r = decodeMessage(twice);
    expect(!r.ok && r.error.code).toBe("duplicate-option");
  });

  test("the codec checks the shape only (1–62 ranges of 16-bit parts); the server judges the rest", () => {
    const ranges = (n: number) => Array.from({ length: n }, (_, i) => ({ first: i, last: i }));
    expect(() => syncBytes({ id: 1, parts: 9, ranges: [] })).toThrow(RangeError);
    expect(() =>
      syncBytes({ id: 1, parts: 99, ranges: ranges(SNAPSHOT_MISSING_MAX_RANGES + 1) }),
    ).toThrow(RangeError);
    expect(() => syncBytes({ id: 1, parts: 9, ranges: [{ first: 0, last: 65536 }] })).toThrow(
      RangeError,
    );
    const most = syncBytes({ id: 1, parts: 99, ranges: ranges(SNAPSHOT_MISSING_MAX_RANGES) });
    expect(most.length).toBeLessThan(400); // a SYNC stays one small datagram
    const absurd = decodeMessage(syncBytes({ id: 1, parts: 3, ranges: [{ first: 5, last: 2 }] }));
    expect(absurd.ok && absurd.value.snapshotMissing?.ranges).toEqual([{ first: 5, last: 2 }]);
  });
});

describe("the TEP's assembly reports its missing parts", () => {
  const part = (id: number, p: number, parts: number): DstmMessage => ({
    type: MessageType.SNAPSHOT,
    xid: p,
    snapshot: { id, part: p, parts },
    bindings: [binding(p)],
  });

  test("missingRanges: the gaps and the tail, ascending, at most `max`", () => {
    const got = new Map([1, 2, 5].map((p) => [p, true]));
    expect(missingRanges(got, 8, 62)).toEqual([
      { first: 0, last: 0 },
      { first: 3, last: 4 },
      { first: 6, last: 7 },
    ]);
    expect(missingRanges(got, 8, 2)).toEqual([
      { first: 0, last: 0 },
      { first: 3, last: 4 },
    ]);
    expect(missingRanges(new Map([[0, true]]), 1, 62)).toEqual([]);
  });

  test("request() names what is missing (bounded), a re-sent part completes it, a late copy is ignored", () => {
    let now = 1000;
    const metrics = new Metrics();
    metrics.counter("dstm_tep_control_total", "declared by the TEP (lib/tep/control.ts)");
    const a = new SnapshotAssemblies({ metrics, now: () => now });
    expect(a.request("s")).toBeUndefined();
    // 200 parts, every other one lost: 100 gaps, of which the first 62 are asked for.
    for (let p = 0; p < 200; p += 2) expect(a.add("s", part(9, p, 200))).toBeUndefined();
    const request = a.request("s")!;
    expect(request.id).toBe(9);
    expect(request.parts).toBe(200);
    expect(request.ranges.length).toBe(SNAPSHOT_MISSING_MAX_RANGES);
    expect(request.ranges[0]).toEqual({ first: 1, last: 1 });
    expect(request.ranges.at(-1)).toEqual({ first: 123, last: 123 });
    const requested = () =>
      metrics.get("dstm_tep_control_total", { kind: "snapshot", result: "parts-requested" });
    expect(requested()).toBe(62);
    for (let p = 1; p < 199; p += 2) a.add("s", part(9, p, 200));
    expect(a.request("s")!.ranges).toEqual([{ first: 199, last: 199 }]);
    a.changed(true, binding(500)); // a BIND while the snapshot is coming
    const done = a.add("s", part(9, 199, 200));
    expect(done?.parts).toBe(200);
    expect([...done!.bindings].flat().length).toBe(200);
    expect(done!.changes).toEqual([{ bind: true, binding: binding(500) }]);
    expect(a.request("s")).toBeUndefined();
    // A re-sent copy of a part of that snapshot arriving late starts nothing.
    expect(a.add("s", part(9, 3, 200))).toBeUndefined();
    expect(a.request("s")).toBeUndefined();
    expect(metrics.get("dstm_tep_control_total", { kind: "snapshot", result: "duplicate" })).toBe(
      1,
    );
    // An incomplete snapshot nobody sends any more is dropped after the idle time.
    a.add("s", part(10, 0, 2));
    now += SNAPSHOT_ASSEMBLY_IDLE_MS - 1;
    expect(a.request("s")?.ranges).toEqual([{ first: 1, last: 1 }]);
    now += 1;
    expect(a.request("s")).toBeUndefined();
    expect(metrics.get("dstm_tep_control_total", { kind: "snapshot", result: "expired" })).toBe(1);
  });
});

describe("judgeSnapshotRequest()", () => {
  const kept: KeptSnapshot = {
    id: 5,
    parts: 10,
    bindings: Array.from({ length: 430 }, (_, i) => binding(i)),
    cutAt: 0,
  };
  const ask = (ranges: { first: number; last: number }[], id = 5, parts = 10, now = 1) =>
    judgeSnapshotRequest(kept, { id, parts, ranges }, now);

  test("resend: the ranges asked for and how many parts they hold", () => {
    expect(
      ask([
        { first: 0, last: 0 },
        { first: 3, last: 9 },
      ]),
    ).toEqual({
      kind: "resend",
      ranges: [
        { first: 0, last: 0 },
        { first: 3, last: 9 },
      ],
      count: 8,
    });
  });

  test("unknown: another id, no cut, or a cut older than SNAPSHOT_KEEP_MS", () => {
    expect(ask([{ first: 0, last: 0 }], 6).kind).toBe("unknown");
    expect(
      judgeSnapshotRequest(undefined, { id: 5, parts: 10, ranges: [{ first: 0, last: 0 }] }, 1),
    ).toEqual({ kind: "unknown" });
    expect(ask([{ first: 0, last: 0 }], 5, 10, SNAPSHOT_KEEP_MS - 1).kind).toBe("resend");
    expect(ask([{ first: 0, last: 0 }], 5, 10, SNAPSHOT_KEEP_MS).kind).toBe("unknown");
  });

  test("malformed: part ≥ parts, first > last, out of order, overlapping, no or too many ranges, other parts", () => {
    const cases = [
      [{ first: 0, last: 10 }],
      [{ first: 4, last: 3 }],
      [
        { first: 5, last: 6 },
        { first: 1, last: 2 },
      ],
      [
        { first: 1, last: 3 },
        { first: 3, last: 4 },
      ],
      [],
      Array.from({ length: SNAPSHOT_MISSING_MAX_RANGES + 1 }, (_, i) => ({ first: i, last: i })),
    ];
    for (const ranges of cases) expect(ask(ranges, 5, 100).kind).toBe("malformed");
    expect(ask([{ first: 0, last: 0 }], 5, 11).kind).toBe("malformed"); // the kept id, other parts
    expect(ask([{ first: 0, last: 0 }], 5, 0).kind).toBe("malformed");
  });
});

describe("sendSnapshot(…, only)", () => {
  test("sends exactly the parts of the ranges, each as the first time", () => {
    const bindings = Array.from({ length: 44 * 9 + 3 }, (_, i) => binding(i)); // 10 parts
    const all: DstmMessage[] = [];
    sendSnapshot(bindings, 3, (m) => all.push(m), { parts: 100, ms: 1e9, gapMs: 0 });
    const again: DstmMessage[] = [];
    const run = sendSnapshot(bindings, 3, (m) => again.push(m), { parts: 2, ms: 1e9, gapMs: 0 }, [
      { first: 1, last: 1 },
      { first: 7, last: 9 },
    ]);
    expect(run.parts).toBe(4);
    return run.done.then((outcome) => {
      expect(outcome).toMatchObject({ parts: 4, chunks: 2, bindings: 399, cancelled: false });
      expect(again).toEqual([1, 7, 8, 9].map((i) => all[i]!));
    });
  });
});

/** A server's TepSync for one TEP holding `n` bindings, with a fake clock; what it sends. */
function server(n: number) {
  const leases: Lease[] = Array.from({ length: n }, (_, i) => ({
    ipv4: binding(i).host4,
    portSet: WHOLE_ADDRESS,
    host6: binding(i).host6,
    tep4: 0,
    tep6: TEP6,
    pool: "p",
    state: "active",
    grantedAt: 0,
    expiresAt: 1e15,
  }));
  const clock = { now: 1_700_000_000_000 };
  const sent: DstmMessage[] = [];
  const metrics = new Metrics();
  const lines: string[] = [];
  const logger = new Logger({ sink: (text) => lines.push(...text.split("\n")) });
  const log = () => {
    logger.flush();
    return lines;
  };
  const sync = new TepSync(
    {
      teps: [TEP6],
      log: logger,
      metrics,
      now: () => clock.now,
      snapshotPacing: { parts: 10_000, ms: 1e9, gapMs: 0 }, // every run in one go
      send: (data) => {
        const decoded = decodeMessage(data);
        if (!decoded.ok) throw new Error(decoded.error.message);
        if (decoded.value.type === MessageType.SNAPSHOT) sent.push(decoded.value);
        return true;
      },
    },
    leases,
  );
  const report = (missing?: WireSnapshotMissing, state: WireBinding[] = []) => {
    const message: DstmMessage = {
      type: MessageType.SYNC,
      xid: 1,
      tep6: TEP6,
      syncCount: state.length,
      syncDigest: bindingsDigest(state),
      snapshotMissing: missing,
    };
    sync.onTepMessage(encodeMessage(message), message, TEP6, 4608);
  };
  const kind = (k: string) => metrics.get("dstm_tep_messages_total", { kind: k });
  return { sync, sent, metrics, report, kind, clock, log };
}

describe("the server re-sends the parts a TEP asks for", () => {
  test("exactly those parts of the kept cut: same id, same parts, same bindings", () => {
    const s = server(44 * 9 + 1); // 10 parts
    s.report();
    const first = s.sent.splice(0);
    expect(first.length).toBe(10);
    const id = first[0]!.snapshot!.id;
    s.clock.now += UNAUTH_SNAPSHOT_INTERVAL_MS;
    s.report({
      id,
      parts: 10,
      ranges: [
        { first: 2, last: 2 },
        { first: 8, last: 9 },
      ],
    });
    expect(s.sent).toEqual([2, 8, 9].map((i) => first[i]!));
    expect([
      s.kind("snapshot"),
      s.kind("snapshot_request"),
      s.kind("snapshot_part_resent"),
    ]).toEqual([1, 1, 3]);
    expect(s.kind("snapshot_part")).toBe(10);
  });

  test("a request for an id the server does not keep gets a new snapshot; a matching SYNC drops the cut", () => {
    const s = server(100); // 3 parts
    s.report();
    const first = s.sent.splice(0);
    const id = first[0]!.snapshot!.id;
    s.clock.now += UNAUTH_SNAPSHOT_INTERVAL_MS;
    s.report({ id: (id + 7) >>> 0, parts: 3, ranges: [{ first: 1, last: 1 }] });
    expect(s.kind("snapshot_request_unknown")).toBe(1);
    expect(s.sent.length).toBe(3); // the whole table, under a new id
    const second = s.sent.splice(0);
    expect(second[0]!.snapshot!.id).not.toBe(id);
    // The old id is gone: the cut is that of the newest snapshot only.
    s.clock.now += UNAUTH_SNAPSHOT_INTERVAL_MS;
    s.report({ id, parts: 3, ranges: [{ first: 1, last: 1 }] });
    expect(s.kind("snapshot_request_unknown")).toBe(2);
    const third = s.sent.splice(0);
    expect(third.length).toBe(3);
    // In step (the TEP holds the server's table): the cut is dropped, a late request is unknown.
    s.clock.now += UNAUTH_SNAPSHOT_INTERVAL_MS;
    s.report(
      undefined,
      third.flatMap((m) => m.bindings ?? []),
    );
    expect(s.sent.length).toBe(0);
    s.report({ id: third[0]!.snapshot!.id, parts: 3, ranges: [{ first: 0, last: 0 }] });
    expect(s.kind("snapshot_request_unknown")).toBe(3);
    expect(s.kind("snapshot_request")).toBe(0);
  });

  test("the cut is dropped SNAPSHOT_KEEP_MS after it was cut (the SYNC-period watch)", () => {
    const s = server(100);
    s.report();
    const id = s.sent.splice(0)[0]!.snapshot!.id;
    s.clock.now += SNAPSHOT_KEEP_MS;
    s.sync.watch();
    s.report({ id, parts: 3, ranges: [{ first: 1, last: 1 }] });
    expect(s.kind("snapshot_request_unknown")).toBe(1);
    expect(s.kind("snapshot")).toBe(2);
  });

  test("a malformed request is a counted, rate-limited-logged drop; the SYNC is answered as one without it", () => {
    const s = server(100);
    s.report();
    const id = s.sent.splice(0)[0]!.snapshot!.id;
    for (const ranges of [[{ first: 1, last: 3 }], [{ first: 2, last: 1 }]]) {
      s.clock.now += UNAUTH_SNAPSHOT_INTERVAL_MS;
      s.report({ id, parts: 3, ranges });
    }
    expect(s.kind("snapshot_request_malformed")).toBe(2);
    expect(s.kind("snapshot_request")).toBe(0);
    expect(s.kind("snapshot")).toBe(3); // a fresh snapshot each time, as for a SYNC without it
    const logged = () => s.log().filter((l) => l.includes("reason=snapshot-request-malformed"));
    expect(logged()[0]).toContain('detail="parts 1-3 of a snapshot of 3"');
    // A flood of them: every one counted, the log bounded (lib/control/warn_limit.ts).
    for (let i = 0; i < 100; i++) s.report({ id, parts: 0, ranges: [{ first: 0, last: 0 }] });
    expect(s.kind("snapshot_request_malformed")).toBe(102);
    expect(logged().length).toBeLessThanOrEqual(25);
  });

  test("unauthenticated: re-sends count against the snapshot allowance", () => {
    const s = server(100);
    s.report(); // the first of UNAUTH_SNAPSHOT_BURST (2)
    const id = s.sent.splice(0)[0]!.snapshot!.id;
    const ask = { id, parts: 3, ranges: [{ first: 0, last: 2 }] };
    s.report(ask); // the second
    s.report(ask); // none left: deferred
    s.report(ask);
    expect(s.kind("snapshot_request")).toBe(1);
    expect(s.kind("snapshot_deferred")).toBe(2);
    expect(s.sent.length).toBe(3);
    s.clock.now += UNAUTH_SNAPSHOT_INTERVAL_MS;
    s.report(ask);
    expect(s.kind("snapshot_request")).toBe(2);
  });
});
