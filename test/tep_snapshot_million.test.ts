/**
 * The case that motivated SNAPSHOT_MISSING (docs/protocol.md): 1,000,000 bindings are 22,728
 * SNAPSHOT parts, and at 0.1 % loss a whole snapshot arrives with probability 0.999^22728 ≈
 * 1.3 × 10⁻¹⁰: a TEP that needed one whole snapshot never got in step. Here the server's real
 * TepSync and the TEP's real SnapshotAssemblies talk in process, through the codec, each
 * SNAPSHOT datagram dropped with probability 0.001 (a seeded PRNG, so a failure reproduces):
 * the TEP ends with exactly the server's table after one full snapshot and a few rounds of
 * re-sent parts, one per SYNC.
 */
import { describe, expect, test } from "bun:test";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { SYNC_INTERVAL_MS, TepSync } from "../lib/server/tep_sync.ts";
import { SnapshotAssemblies } from "../lib/tep/snapshot_assembly.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, type WireBinding } from "../lib/wire/dstm_types.ts";
import { prng } from "./helpers/fuzz.ts";

const N = 1_000_000;
const PARTS = Math.ceil(N / 44); // 22,728
const TEP6 = "2001:db8::7";
const LOSS = 0.001;

describe("1,000,000 bindings at 0.1 % loss per SNAPSHOT datagram", () => {
  test("the TEP gets the whole table from one snapshot and re-sends of its lost parts", () => {
    // 1,000,000 shared leases of 192.0.2.0/24 … (16 bits of PSID): distinct bindings.
    const leases: Lease[] = Array.from({ length: N }, (_, i) => ({
      ipv4: 0xc0000200 + (i >>> 14),
      portSet: { offset: 0, psidLength: 14, psid: i & 0x3fff },
      host6: `2001:db8:${(i >>> 16).toString(16)}::${(i & 0xffff).toString(16)}`,
      tep4: 0,
      tep6: TEP6,
      pool: "p",
      state: "active",
      grantedAt: 0,
      expiresAt: 1e15,
    }));
    const clock = { now: 1_700_000_000_000 };
    const random = prng(0x5ca1e);
    let inFlight: DstmMessage[] = [];
    let lost = 0;
    const metrics = new Metrics();
    const server = new TepSync(
      {
        teps: [TEP6],
        log: new Logger({ sink: () => {} }),
        metrics,
        now: () => clock.now,
        snapshotPacing: { parts: 1e6, ms: 1e9, gapMs: 0 }, // each run in one go
        send: (data) => {
          const decoded = decodeMessage(data);
          if (!decoded.ok) throw new Error(decoded.error.message);
          if (decoded.value.type !== MessageType.SNAPSHOT) return true;
          if (random() < LOSS) lost++;
          else inFlight.push(decoded.value);
          return true;
        },
      },
      leases,
    );
    const tep = new SnapshotAssemblies({ now: () => clock.now });
    let table: WireBinding[] | undefined;
    let rounds = 0;
    const lostPerRound: number[] = [];
    while (table === undefined && rounds < 10) {
      const before = lost;
      // The TEP's SYNC (an empty table until the snapshot is whole), with what it lacks.
      const sync: DstmMessage = {
        type: MessageType.SYNC,
        xid: rounds,
        tep6: TEP6,
        syncCount: 0,
        syncDigest: 0,
        snapshotMissing: tep.request("server"),
      };
      const bytes = encodeMessage(sync);
      const decoded = decodeMessage(bytes);
      if (!decoded.ok) throw new Error(decoded.error.message);
      server.onTepMessage(bytes, decoded.value, TEP6, 4608);
      for (const part of inFlight) {
        const whole = tep.add("server", part);
        if (whole) table = [...whole.bindings].flat();
      }
      inFlight = [];
      lostPerRound.push(lost - before);
      rounds++;
      clock.now += SYNC_INTERVAL_MS;
    }
    const kind = (k: string) => metrics.get("dstm_tep_messages_total", { kind: k });
    // The first snapshot did lose parts: before SNAPSHOT_MISSING it would have been repeated.
    expect(lostPerRound[0]).toBeGreaterThan(0);
    expect(table?.length).toBe(N);
    expect(bindingsDigest(table!)).toBe(server.view(TEP6).digest);
    expect(kind("snapshot")).toBe(1);
    expect(kind("snapshot_part")).toBe(PARTS);
    expect(kind("snapshot_request")).toBe(rounds - 1);
    expect(kind("snapshot_part_resent")).toBe(lost);
    expect(rounds).toBeLessThanOrEqual(4);
    server.close();
  }, 120_000);
});
