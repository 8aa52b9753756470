/**
 * Sending one TEP its full binding table as SNAPSHOT parts in **bounded chunks**
 * (docs/protocol.md "TEP synchronisation", docs/scale-out.md).
 *
 * A table of 200,000 bindings is about 4,500 SNAPSHOT datagrams. Sent in one go they would
 * hold the server's event loop (no DISCOVER answered meanwhile) and overflow the TEP's
 * receive buffer (every lost part must then be asked for again). So the parts go out in
 * chunks: a chunk ends after {@link SnapshotPacing.parts} datagrams or {@link SnapshotPacing.ms}
 * milliseconds, whichever comes first, and the next chunk starts {@link SnapshotPacing.gapMs}
 * later, from a timer: requests that arrived meanwhile are answered between chunks. A table
 * that fits in one chunk is sent at once, synchronously, as before.
 *
 * The parts are cut from the table as it was when the snapshot started (a copy of the list,
 * not of the bindings); changes after that reach the TEP as BIND / UNBIND, which it applies on
 * top of the snapshot when the last part arrives (lib/tep/control.ts). Parts a TEP lost are
 * sent again from that same cut, paced the same way (`only`; ./tep_snapshot_keep.ts).
 *
 * @module
 */
import {
  type DstmMessage,
  MessageType,
  SNAPSHOT_MAX_BINDINGS,
  type WireBinding,
  type WirePartRange,
} from "../wire/dstm_types.ts";

/** Bounds of one chunk of a snapshot, and the pause between chunks. */
export interface SnapshotPacing {
  /** Most SNAPSHOT datagrams in one chunk (≥ 1). */
  readonly parts: number;
  /** Longest time one chunk may take to send (ms; ≥ 0: at least one part is sent). */
  readonly ms: number;
  /** Pause between two chunks (ms): the event loop turns, the TEP reads its socket. */
  readonly gapMs: number;
}

/**
 * 16 datagrams (≈ 18 KB, 704 bindings) a chunk, at most 5 ms, 4 ms apart: about 4,000
 * datagrams (170,000 bindings) a second, well inside a default 208 KiB receive buffer even
 * when the TEP is held off the CPU for 20 ms.
 */
export const SNAPSHOT_PACING: SnapshotPacing = { parts: 16, ms: 5, gapMs: 4 };

/** What a finished (or cancelled) snapshot sent. */
export interface SnapshotOutcome {
  /** Bindings of the snapshot (all its parts, also when only some were sent). */
  readonly bindings: number;
  /** SNAPSHOT datagrams this run sent (all the parts, or those of `only`), unless cancelled. */
  readonly parts: number;
  /** Chunks sent (1 for a table that fits in one chunk). */
  readonly chunks: number;
  /** From the first part to the last (ms). */
  readonly ms: number;
  /** True when {@link SnapshotRun.cancel} stopped it before its last part. */
  readonly cancelled: boolean;
}

export interface SnapshotRun {
  /** SNAPSHOT datagrams this run sends: the snapshot's parts, or those of `only`. */
  readonly parts: number;
  /** True until the last part is sent or the run is cancelled. */
  readonly running: boolean;
  /** Resolves when the last part is sent or the run is cancelled; never rejects. */
  readonly done: Promise<SnapshotOutcome>;
  /** Sends no further part. */
  cancel(): void;
}

/**
 * Sends `bindings` as snapshot `id` through `send` (one SNAPSHOT message a call), paced by
 * `pacing`: every part in order, or with `only` just the parts of those ranges (ascending,
 * each within the snapshot's parts: checked by the caller, ./tep_snapshot_keep.ts), each as it
 * was the first time (same id, part, parts, bindings). Each part carries `generation` (the
 * cut's GENERATION, docs/protocol.md "Generations") when given. The first chunk leaves before
 * this returns.
 */
export function sendSnapshot(
  bindings: readonly WireBinding[],
  id: number,
  send: (message: DstmMessage) => void,
  pacing: SnapshotPacing = SNAPSHOT_PACING,
  only?: readonly WirePartRange[],
  generation?: number,
): SnapshotRun {
  const parts = Math.max(1, Math.ceil(bindings.length / SNAPSHOT_MAX_BINDINGS));
  const order = only === undefined ? undefined : _partList(only);
  const total = order?.length ?? parts;
  const maxParts = Math.max(1, pacing.parts);
  const started = performance.now();
  /** Index into the parts this run sends (`order`, else 0 … parts − 1). */
  let next = 0;
  let chunks = 0;
  let cancelled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finished = Promise.withResolvers<SnapshotOutcome>();
  const finish = () =>
    finished.resolve({
      bindings: bindings.length,
      parts: total,
      chunks,
      ms: performance.now() - started,
      cancelled,
    });
  const chunk = () => {
    timer = undefined;
    if (cancelled) return;
    chunks++;
    const chunkStart = performance.now();
    for (let sent = 0; next < total; ) {
      const part = order === undefined ? next : (order[next] as number);
      const from = part * SNAPSHOT_MAX_BINDINGS;
      send({
        type: MessageType.SNAPSHOT,
        xid: part,
        snapshot: { id, part, parts },
        bindings: bindings.slice(from, from + SNAPSHOT_MAX_BINDINGS),
        generation,
      });
      next++;
      sent++;
      if (sent >= maxParts || performance.now() - chunkStart >= pacing.ms) break;
    }
    if (next < total) timer = setTimeout(chunk, pacing.gapMs);
    else finish();
  };
  chunk();
  return {
    parts: total,
    get running() {
      return !cancelled && next < total;
    },
    done: finished.promise,
    cancel() {
      if (cancelled || next >= total) return;
      cancelled = true;
      clearTimeout(timer);
      finish();
    },
  };
}

/** The part numbers of `ranges`, in order (at most 65,536: parts are 16-bit). */
function _partList(ranges: readonly WirePartRange[]): Uint16Array {
  let count = 0;
  for (const { first, last } of ranges) count += last - first + 1;
  const list = new Uint16Array(count);
  let i = 0;
  for (const { first, last } of ranges) for (let p = first; p <= last; p++) list[i++] = p;
  return list;
}
