/**
 * Bringing a TEP back in step when its SYNC differs from the server's view of it (./tep_sync.ts;
 * docs/protocol.md, "TEP synchronisation"): the TEP gets its whole table as SNAPSHOT parts,
 * sent in chunks (./tep_snapshot.ts) to its configured address and control port, never to
 * where the SYNC came from. When its SYNC names the parts of the last snapshot it is still
 * missing (SNAPSHOT_MISSING) and the server still keeps that snapshot's cut
 * (./tep_snapshot_keep.ts), only those parts are sent again, from that cut, paced the same way:
 * counted `snapshot_request` and `snapshot_part_resent` (per part). A request for a snapshot
 * the server no longer keeps gets a new snapshot (`snapshot_request_unknown`); one that makes
 * no sense is dropped, counted `snapshot_request_malformed` and logged at warn (rate-limited),
 * and the SYNC is answered as if it had none.
 *
 * No snapshot or re-send starts while one is still going out in chunks (it already brings the
 * TEP in step), nor just after a chunked one ended (a SYNC sent before the TEP read its last
 * part is stale): counted `snapshot_busy`. On an unauthenticated channel (no `--tep-key`) a
 * TEP gets at most UNAUTH_SNAPSHOT_BURST snapshots or re-sends at once, then one per
 * UNAUTH_SNAPSHOT_INTERVAL_MS (./tep_state.ts), so forged SYNCs cannot turn the server into an
 * amplifier against it (docs/security.md): counted `snapshot_deferred`.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import type { Metrics } from "../control/metrics.ts";
import type { WarnLimit } from "../control/warn_limit.ts";
import {
  SNAPSHOT_MAX_BINDINGS,
  type WireBinding,
  type WirePartRange,
  type WireSnapshotMissing,
} from "../wire/dstm_types.ts";
import type { TepChannel } from "./tep_channel.ts";
import { type SnapshotPacing, sendSnapshot } from "./tep_snapshot.ts";
import { judgeSnapshotRequest, type KeptSnapshot } from "./tep_snapshot_keep.ts";
import { SYNC_INTERVAL_MS, type TepState, takeSnapshotToken } from "./tep_state.ts";

/** What a resync uses of the server's TEP synchronisation. */
export interface ResyncContext {
  readonly channel: TepChannel;
  /**
   * `dstm_tep_messages_total{kind}`: snapshot, snapshot_part, snapshot_chunk, _busy, _deferred,
   * snapshot_request, snapshot_part_resent, snapshot_request_unknown, _malformed.
   */
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Warnings anyone on the channel can cause (a malformed request), rate-limited. */
  readonly warn: WarnLimit;
  readonly pacing: SnapshotPacing;
  readonly now: () => number;
  /**
   * Shared store: the version every change up to which is in the server's view, taken when a
   * snapshot is cut and sent as its GENERATION (docs/protocol.md, "Generations").
   */
  readonly watchedThrough?: () => number | undefined;
}

/**
 * `tep`'s SYNC reported another count or digest than the server's: sends it the parts of
 * `request` again, or a snapshot of its bindings, unless one is busy or the unauthenticated
 * allowance is spent (see the module's description). The first chunk leaves before this
 * returns.
 */
export function resyncTep(tep: TepState, ctx: ResyncContext, request?: WireSnapshotMissing): void {
  const resend = request === undefined ? undefined : _judge(tep, ctx, request);
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
  if (resend !== undefined && tep.kept !== undefined) _send(tep, ctx, tep.kept, resend);
  else _sendSnapshot(tep, ctx);
}

/** The ranges to send again for `request`, or undefined (counted) when a snapshot is due. */
function _judge(
  tep: TepState,
  ctx: ResyncContext,
  request: WireSnapshotMissing,
): readonly WirePartRange[] | undefined {
  const verdict = judgeSnapshotRequest(tep.kept, request, ctx.now());
  if (verdict.kind === "resend") return verdict.ranges;
  ctx.metrics.inc("dstm_tep_messages_total", { kind: `snapshot_request_${verdict.kind}` });
  if (verdict.kind === "malformed")
    ctx.warn.warn("tep-reject", {
      reason: "snapshot-request-malformed",
      type: "sync",
      tep6: tep.tep6,
      detail: verdict.detail,
    });
  return undefined;
}

/** Cuts `tep`'s table as the next snapshot, keeps the cut and sends all its parts. */
function _sendSnapshot(tep: TepState, ctx: ResyncContext): void {
  const all: WireBinding[] = [];
  for (const { ipv4, host6, portSet } of tep.bindings.values()) {
    all.push({ host4: ipv4, host6, portSet });
  }
  tep.snapshotId = (tep.snapshotId + 1) >>> 0;
  tep.kept = {
    id: tep.snapshotId,
    parts: Math.max(1, Math.ceil(all.length / SNAPSHOT_MAX_BINDINGS)),
    bindings: all,
    cutAt: ctx.now(),
    generation: ctx.watchedThrough?.(),
  };
  _send(tep, ctx, tep.kept);
}

/**
 * Sends the parts of `cut` (those of `only`, or all) to `tep`; logs `tep-snapshot` (or
 * `tep-snapshot-resend`) when the last one is out.
 */
function _send(
  tep: TepState,
  ctx: ResyncContext,
  cut: KeptSnapshot,
  only?: readonly WirePartRange[],
): void {
  const { metrics, log } = ctx;
  const partKind = only === undefined ? "snapshot_part" : "snapshot_part_resent";
  const run = sendSnapshot(
    cut.bindings,
    cut.id,
    (message) => {
      metrics.inc("dstm_tep_messages_total", { kind: partKind });
      ctx.channel.send(tep.tep6, message);
    },
    ctx.pacing,
    only,
    cut.generation,
  );
  metrics.inc("dstm_tep_messages_total", {
    kind: only === undefined ? "snapshot" : "snapshot_request",
  });
  const event = only === undefined ? "tep-snapshot" : "tep-snapshot-resend";
  const id = only === undefined ? undefined : cut.id;
  if (!run.running) {
    log.info(event, { tep6: tep.tep6, bindings: cut.bindings.length, parts: run.parts, id });
    return;
  }
  tep.snapshot = run;
  void run.done.then((outcome) => {
    if (tep.snapshot === run) tep.snapshot = undefined;
    tep.chunkedSnapshotEnded = ctx.now();
    metrics.inc("dstm_tep_messages_total", { kind: "snapshot_chunk" }, outcome.chunks);
    log.info(event, {
      tep6: tep.tep6,
      bindings: outcome.bindings,
      parts: outcome.parts,
      id,
      chunks: outcome.chunks,
      "time-ms": Math.round(outcome.ms),
      cancelled: outcome.cancelled || undefined,
    });
  });
}
