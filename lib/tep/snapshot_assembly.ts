/**
 * The TEP's side of SNAPSHOT (docs/protocol.md "TEP synchronisation"): the parts of the
 * snapshot each server is sending, the BIND / UNBIND applied since its first part came, and
 * the parts still missing, which the TEP's next SYNC to that server asks for again.
 *
 * A server cuts a snapshot from its table when it starts sending it and sends the changes
 * after that as BIND / UNBIND while the parts are still going out in chunks
 * (lib/server/tep_snapshot.ts). So when the last part is in, the TEP takes the snapshot's
 * bindings and then applies those changes again, in order: it ends with the server's table.
 * Several servers sharing one lease database may each be sending one: they are kept apart, by
 * server address.
 *
 * Parts get lost (UDP): a snapshot of 1,000,000 bindings is about 22,700 datagrams. Rather
 * than wait for a whole new snapshot that would lose parts too, the TEP names the parts it
 * lacks in SNAPSHOT_MISSING ({@link SnapshotAssemblies.request}), the first
 * SNAPSHOT_MISSING_MAX_RANGES ranges of them (the rest at the SYNC after), and the server
 * sends those again with the same id (lib/server/tep_snapshot_keep.ts). A part of the
 * snapshot last completed from that server (a re-send that crossed the last part) is ignored;
 * an incomplete snapshot that got no part for {@link SNAPSHOT_ASSEMBLY_IDLE_MS} is dropped.
 *
 * @module
 */
import type { Metrics } from "../control/metrics.ts";
import {
  type DstmMessage,
  SNAPSHOT_MISSING_MAX_RANGES,
  type WireBinding,
  type WirePartRange,
  type WireSnapshotMissing,
} from "../wire/dstm_types.ts";

/** A BIND (`bind`) or UNBIND the TEP applied while a snapshot was coming. */
export interface SnapshotChange {
  readonly bind: boolean;
  readonly binding: WireBinding;
  /** The message's GENERATION, if it carried one. */
  readonly generation?: number;
  /** When it came (ms, the TEP's clock); only with a generation. */
  readonly at?: number;
}

/** Every part of one snapshot, and the changes to apply on top of it. */
export interface CompleteSnapshot {
  readonly parts: number;
  readonly bindings: Iterable<readonly WireBinding[]>;
  readonly changes: readonly SnapshotChange[];
  /**
   * The snapshot's cut (GENERATION of its parts): every lease change up to it is in it;
   * undefined when its server sent none (lib/tep/tep_bindings.ts `loadSnapshot`).
   */
  readonly generation?: number;
  /** When its first part came (ms, the TEP's clock); undefined: now. */
  readonly startedAt?: number;
}

interface Assembly {
  readonly id: number;
  readonly parts: number;
  /** GENERATION of its first part received (the server cuts a snapshot once: all alike). */
  readonly generation: number | undefined;
  readonly received: Map<number, readonly WireBinding[]>;
  readonly changes: SnapshotChange[];
  /** When its first part came (ms). */
  readonly startedAt: number;
  /** When its last part came (ms). */
  lastPartAt: number;
}

/** Most changes kept for one snapshot being received; past it, it is dropped (the next SYNC asks again). */
export const SNAPSHOT_CHANGES_MAX = 100_000;

/**
 * An incomplete snapshot that got no part for this long (ms) is dropped: its server no longer
 * sends it (the server keeps a snapshot's cut for 60 s, lib/server/tep_snapshot_keep.ts).
 */
export const SNAPSHOT_ASSEMBLY_IDLE_MS = 60_000;

export interface SnapshotAssembliesOptions {
  /**
   * `dstm_tep_control_total{kind="snapshot",result}`: `duplicate` (a part of the snapshot
   * already applied), `parts-requested` (parts named in SNAPSHOT_MISSING: lost, or still to
   * come while the server sends; it ignores a request then), `expired`.
   */
  readonly metrics?: Metrics;
  /** Clock (ms). */
  readonly now?: () => number;
}

export class SnapshotAssemblies {
  /** By server address (canonical): bounded by the configured servers. */
  readonly #assemblies = new Map<string, Assembly>();
  /** The id of the last snapshot completed from each server. */
  readonly #completed = new Map<string, number>();
  readonly #metrics: Metrics | undefined;
  readonly #now: () => number;

  constructor(options: SnapshotAssembliesOptions = {}) {
    this.#metrics = options.metrics;
    this.#now = options.now ?? Date.now;
  }

  /**
   * A SNAPSHOT part from `server`: the whole snapshot once this was its last missing part,
   * else undefined. A part of another id starts that server's snapshot over; a part whose
   * `parts` differs from the snapshot's is ignored, and so is a part of the snapshot last
   * completed from `server` (counted `duplicate`).
   */
  add(server: string, message: DstmMessage): CompleteSnapshot | undefined {
    const { id, part, parts } = message.snapshot!;
    let assembly = this.#assemblies.get(server);
    if (!assembly || assembly.id !== id) {
      if (this.#completed.get(server) === id) {
        this.#metrics?.inc("dstm_tep_control_total", { kind: "snapshot", result: "duplicate" });
        return undefined;
      }
      assembly = {
        id,
        parts,
        generation: message.generation,
        startedAt: this.#now(),
        received: new Map(),
        changes: [],
        lastPartAt: 0,
      };
      this.#assemblies.set(server, assembly);
    }
    if (assembly.parts !== parts) return undefined;
    assembly.lastPartAt = this.#now();
    assembly.received.set(part, message.bindings ?? []);
    if (assembly.received.size < parts) return undefined;
    this.#assemblies.delete(server);
    this.#completed.set(server, id);
    return {
      parts,
      bindings: assembly.received.values(),
      changes: assembly.changes,
      generation: assembly.generation,
      startedAt: assembly.startedAt,
    };
  }

  /**
   * Notes an applied BIND (`bind`) or UNBIND, with its GENERATION if it had one, for every
   * snapshot still being received.
   */
  changed(bind: boolean, binding: WireBinding, generation?: number): void {
    for (const [server, assembly] of this.#assemblies) {
      if (assembly.changes.length >= SNAPSHOT_CHANGES_MAX) this.#assemblies.delete(server);
      else
        assembly.changes.push(
          // The time matters only with a generation (lib/tep/tep_bindings.ts).
          generation === undefined
            ? { bind, binding }
            : { bind, binding, generation, at: this.#now() },
        );
    }
  }

  /**
   * What the next SYNC to `server` asks for (SNAPSHOT_MISSING): the first
   * SNAPSHOT_MISSING_MAX_RANGES ranges of parts of its incomplete snapshot not received yet,
   * ascending (counted `parts-requested`, per part); undefined when none is incomplete. Drops
   * (counted `expired`) one that got no part for {@link SNAPSHOT_ASSEMBLY_IDLE_MS}.
   */
  request(server: string): WireSnapshotMissing | undefined {
    const assembly = this.#assemblies.get(server);
    if (!assembly) return undefined;
    if (this.#now() - assembly.lastPartAt >= SNAPSHOT_ASSEMBLY_IDLE_MS) {
      this.#assemblies.delete(server);
      this.#metrics?.inc("dstm_tep_control_total", { kind: "snapshot", result: "expired" });
      return undefined;
    }
    const ranges = missingRanges(assembly.received, assembly.parts, SNAPSHOT_MISSING_MAX_RANGES);
    if (ranges.length === 0) return undefined;
    let count = 0;
    for (const { first, last } of ranges) count += last - first + 1;
    this.#metrics?.inc(
      "dstm_tep_control_total",
      { kind: "snapshot", result: "parts-requested" },
      count,
    );
    return { id: assembly.id, parts: assembly.parts, ranges };
  }
}

/**
 * The parts among 0 … `parts` − 1 that `received` lacks, as at most `max` ascending ranges
 * (the first ones). Empty when none lacks.
 *
 * @example missingRanges(new Map([[1, []], [2, []]]), 5, 62) // [{first: 0, last: 0}, {first: 3, last: 4}]
 */
export function missingRanges(
  received: ReadonlyMap<number, unknown>,
  parts: number,
  max: number,
): WirePartRange[] {
  const ranges: WirePartRange[] = [];
  let first = -1;
  for (let part = 0; part <= parts && ranges.length < max; part++) {
    const lacking = part < parts && !received.has(part);
    if (lacking && first < 0) first = part;
    else if (!lacking && first >= 0) {
      ranges.push({ first, last: part - 1 });
      first = -1;
    }
  }
  return ranges;
}
