/**
 * Bringing a TEP back in step when its SYNC differs from the server's view of it (./tep_sync.ts;
 * docs/protocol.md, "TEP synchronisation"): the TEP gets its whole table as SNAPSHOT parts,
 * sent in chunks (./tep_snapshot.ts) to its configured address and control port, never to
 * where the SYNC came from.
 *
 * No snapshot starts while one is still going out in chunks (it already brings the TEP in
 * step), nor just after a chunked one ended (a SYNC sent before the TEP read its last part is
 * stale): counted `snapshot_busy`. On an unauthenticated channel (no `--tep-key`) a TEP gets
 * at most UNAUTH_SNAPSHOT_BURST snapshots at once, then one per UNAUTH_SNAPSHOT_INTERVAL_MS
 * (./tep_state.ts), so forged SYNCs cannot turn the server into an amplifier against it
 * (docs/security.md): counted `snapshot_deferred`.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import type { WireBinding } from "../wire/dstm_types.ts";
import type { TepChannel } from "./tep_channel.ts";
import { type SnapshotPacing, sendSnapshot } from "./tep_snapshot.ts";
import { SYNC_INTERVAL_MS, type TepState, takeSnapshotToken } from "./tep_state.ts";

/** What a resync uses of the server's TEP synchronisation. */
export interface ResyncContext {
  readonly channel: TepChannel;
  /** `dstm_tep_messages_total{kind}`: snapshot, snapshot_part, snapshot_chunk, _busy, _deferred. */
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly pacing: SnapshotPacing;
  readonly now: () => number;
}

/**
 * `tep`'s SYNC reported another count or digest than the server's: sends it a snapshot of its
 * bindings unless one is busy or the unauthenticated allowance is spent (see the module's
 * description). The first chunk leaves before this returns.
 */
export function resyncTep(tep: TepState, ctx: ResyncContext): void {
  if (
    tep.snapshot?.running ||
    (tep.chunkedSnapshotEnded > 0 && ctx.now() - tep.chunkedSnapshotEnded < SYNC_INTERVAL_MS / 2)
  ) {
    ctx.metrics.inc("dstm_tep_messages_total", { kind: "snapshot_busy" });
    return;
  }
  if (!ctx.channel.authenticated && !takeSnapshotToken(tep, ctx.now())) {
    ctx.metrics.inc("dstm_tep_messages_total", { kind: "snapshot_deferred" });
    return;
  }
  _sendSnapshot(tep, ctx);
}

/** Sends `tep` its table as the next snapshot; logs `tep-snapshot` when the last part is out. */
function _sendSnapshot(tep: TepState, ctx: ResyncContext): void {
  const all: WireBinding[] = [];
  for (const { ipv4, host6, portSet } of tep.bindings.values()) {
    all.push({ host4: ipv4, host6, portSet });
  }
  tep.snapshotId = (tep.snapshotId + 1) >>> 0;
  const { metrics, log } = ctx;
  const run = sendSnapshot(
    all,
    tep.snapshotId,
    (message) => {
      metrics.inc("dstm_tep_messages_total", { kind: "snapshot_part" });
      ctx.channel.send(tep.tep6, message);
    },
    ctx.pacing,
  );
  metrics.inc("dstm_tep_messages_total", { kind: "snapshot" });
  if (!run.running) {
    log.info("tep-snapshot", { tep6: tep.tep6, bindings: all.length, parts: run.parts });
    return;
  }
  tep.snapshot = run;
  void run.done.then((outcome) => {
    if (tep.snapshot === run) tep.snapshot = undefined;
    tep.chunkedSnapshotEnded = ctx.now();
    metrics.inc("dstm_tep_messages_total", { kind: "snapshot_chunk" }, outcome.chunks);
    log.info("tep-snapshot", {
      tep6: tep.tep6,
      bindings: outcome.bindings,
      parts: outcome.parts,
      chunks: outcome.chunks,
      "time-ms": Math.round(outcome.ms),
      cancelled: outcome.cancelled || undefined,
    });
  });
}
