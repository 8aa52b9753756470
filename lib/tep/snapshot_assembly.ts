/**
 * The TEP's side of SNAPSHOT (docs/protocol.md "TEP synchronisation"): the parts of the
 * snapshot each server is sending, and the BIND / UNBIND applied since its first part came.
 *
 * A server cuts a snapshot from its table when it starts sending it and sends the changes
 * after that as BIND / UNBIND while the parts are still going out in chunks
 * (lib/server/tep_snapshot.ts). So when the last part is in, the TEP takes the snapshot's
 * bindings and then applies those changes again, in order: it ends with the server's table.
 * Several servers sharing one lease database may each be sending one: they are kept apart, by
 * server address.
 *
 * @module
 */
import type { DstmMessage, WireBinding } from "../wire/dstm_types.ts";

/** A BIND (`bind`) or UNBIND the TEP applied while a snapshot was coming. */
export interface SnapshotChange {
  readonly bind: boolean;
  readonly binding: WireBinding;
}

/** Every part of one snapshot, and the changes to apply on top of it. */
export interface CompleteSnapshot {
  readonly parts: number;
  readonly bindings: Iterable<readonly WireBinding[]>;
  readonly changes: readonly SnapshotChange[];
}

interface Assembly {
  readonly id: number;
  readonly parts: number;
  readonly received: Map<number, readonly WireBinding[]>;
  readonly changes: SnapshotChange[];
}

/** Most changes kept for one snapshot being received; past it, it is dropped (the next SYNC asks again). */
export const SNAPSHOT_CHANGES_MAX = 100_000;

export class SnapshotAssemblies {
  /** By server address (canonical): bounded by the configured servers. */
  readonly #assemblies = new Map<string, Assembly>();

  /**
   * A SNAPSHOT part from `server`: the whole snapshot once this was its last missing part,
   * else undefined. A part of another id starts that server's snapshot over; a part whose
   * `parts` differs from the snapshot's is ignored.
   */
  add(server: string, message: DstmMessage): CompleteSnapshot | undefined {
    const { id, part, parts } = message.snapshot!;
    let assembly = this.#assemblies.get(server);
    if (!assembly || assembly.id !== id) {
      assembly = { id, parts, received: new Map(), changes: [] };
      this.#assemblies.set(server, assembly);
    }
    if (assembly.parts !== parts) return undefined;
    assembly.received.set(part, message.bindings ?? []);
    if (assembly.received.size < parts) return undefined;
    this.#assemblies.delete(server);
    return { parts, bindings: assembly.received.values(), changes: assembly.changes };
  }

  /** Notes an applied BIND (`bind`) or UNBIND for every snapshot still being received. */
  changed(bind: boolean, binding: WireBinding): void {
    for (const [server, assembly] of this.#assemblies) {
      if (assembly.changes.length >= SNAPSHOT_CHANGES_MAX) this.#assemblies.delete(server);
      else assembly.changes.push({ bind, binding });
    }
  }
}
