/**
 * The cut of the last snapshot the server sent a TEP, kept so that the parts the TEP lost can
 * be sent again instead of a whole new snapshot (docs/protocol.md, "SNAPSHOT_MISSING").
 *
 * A snapshot of 1,000,000 bindings is about 22,700 SNAPSHOT datagrams over UDP: at 0.1 % loss
 * a whole one practically never arrives. So a TEP holding an incomplete snapshot names, in its
 * next SYNC, the parts it is missing (`WireSnapshotMissing`), and the server answers by sending
 * exactly those parts again, with the same snapshot id and the same `parts`, cut from the same
 * table. Only that cut can be re-sent: parts cut from today's table would not fit the others.
 *
 * Bounds: one cut per TEP (the newest: cutting a new snapshot replaces it), dropped once the
 * TEP's SYNC matches the server's view, and {@link SNAPSHOT_KEEP_MS} after it was cut
 * (./tep_sync.ts looks every SYNC period). The cut is the list the snapshot was sent from
 * (one small object per binding, the lease's own strings), not a copy of the leases.
 *
 * @module
 */
import {
  SNAPSHOT_MISSING_MAX_RANGES,
  type WireBinding,
  type WirePartRange,
  type WireSnapshotMissing,
} from "../wire/dstm_types.ts";

/** How long a cut is kept after it was cut (ms): time for many SYNC periods of re-requests. */
export const SNAPSHOT_KEEP_MS = 60_000;

/** The table of one snapshot as it was cut, to send its parts again. */
export interface KeptSnapshot {
  /** The snapshot id its parts carried. */
  readonly id: number;
  /** Its number of parts (≥ 1). */
  readonly parts: number;
  /** The bindings in part order: part p holds SNAPSHOT_MAX_BINDINGS of them from p × that. */
  readonly bindings: readonly WireBinding[];
  /** When it was cut (ms, the server's clock). */
  readonly cutAt: number;
  /**
   * Shared store: the version every lease change up to which it holds (each part's
   * GENERATION, docs/protocol.md "Generations"); undefined otherwise.
   */
  readonly generation?: number;
}

/** What to do with a TEP's SNAPSHOT_MISSING. */
export type SnapshotRequestVerdict =
  /** Send these parts of the kept cut again (`count` parts in all). */
  | { readonly kind: "resend"; readonly ranges: readonly WirePartRange[]; readonly count: number }
  /** The server keeps no cut of that id (restart, expired, replaced): a new snapshot instead. */
  | { readonly kind: "unknown" }
  /** The request makes no sense (counted, logged): treated as absent. */
  | { readonly kind: "malformed"; readonly detail: string };

/** The kept cut of `kept` unless it is older than {@link SNAPSHOT_KEEP_MS} at `now` (ms). */
export function liveCut(kept: KeptSnapshot | undefined, now: number): KeptSnapshot | undefined {
  return kept !== undefined && now - kept.cutAt < SNAPSHOT_KEEP_MS ? kept : undefined;
}

/**
 * Judges a TEP's request against the cut the server keeps for it at `now` (ms):
 * - `malformed` when the request breaks a rule whatever the server keeps: no ranges or more
 *   than {@link SNAPSHOT_MISSING_MAX_RANGES}, `parts` 0, a range with first > last or
 *   last ≥ parts, ranges not ascending and apart; or when it names the kept id with another
 *   `parts` than that snapshot's;
 * - `unknown` when no live cut has that id;
 * - else `resend`, with the ranges as asked and the number of parts they hold.
 * Never throws.
 */
export function judgeSnapshotRequest(
  kept: KeptSnapshot | undefined,
  request: WireSnapshotMissing,
  now: number,
): SnapshotRequestVerdict {
  const { id, parts, ranges } = request;
  if (ranges.length < 1 || ranges.length > SNAPSHOT_MISSING_MAX_RANGES)
    return _malformed(`${ranges.length} ranges (1 to ${SNAPSHOT_MISSING_MAX_RANGES})`);
  if (parts < 1) return _malformed("a snapshot of 0 parts");
  let count = 0;
  let after = -1;
  for (const { first, last } of ranges) {
    if (first > last || last >= parts)
      return _malformed(`parts ${first}-${last} of a snapshot of ${parts}`);
    if (first <= after) return _malformed(`parts ${first}-${last} after part ${after}`);
    after = last;
    count += last - first + 1;
  }
  const cut = liveCut(kept, now);
  if (cut === undefined || cut.id !== id) return { kind: "unknown" };
  if (cut.parts !== parts) return _malformed(`snapshot ${id} has ${cut.parts} parts, not ${parts}`);
  return { kind: "resend", ranges, count };
}

function _malformed(detail: string): SnapshotRequestVerdict {
  return { kind: "malformed", detail };
}
