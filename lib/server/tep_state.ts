/**
 * What the server keeps for one TEP (./tep_sync.ts): the bindings it should hold, their
 * running digest, when it last synced, and its snapshot allowance.
 *
 * The digest is the sum (mod 2³²) of each binding's hash (lib/wire/digest.ts), updated as a
 * binding is added or removed, so it is compared with the TEP's SYNC without walking the
 * table (docs/protocol.md, "TEP synchronisation"). A TEP is connected while its last SYNC is
 * less than 3 periods ({@link SYNC_INTERVAL_MS}) old.
 *
 * @module
 */
import { LeaseTable } from "../alloc/lease_table.ts";
import type { Pool } from "../alloc/pool.ts";
import { type Lease, leaseKey } from "../lease/lease.ts";
import { parseIPv6Into } from "../net/addr.ts";
import { bindingHash } from "../wire/digest.ts";
import type { Host6Bytes } from "./binding_sink.ts";
import type { SnapshotRun } from "./tep_snapshot.ts";
import type { KeptSnapshot } from "./tep_snapshot_keep.ts";

/** How often a TEP sends SYNC (ms); the server calls a TEP gone after 3 missed periods. */
export const SYNC_INTERVAL_MS = 2000;

/** Snapshots a TEP may get at once on an unauthenticated channel. */
export const UNAUTH_SNAPSHOT_BURST = 2;
/** Then at most one per this many ms (unauthenticated channel only). */
export const UNAUTH_SNAPSHOT_INTERVAL_MS = 1000;

/** The server's state of one TEP. */
export interface TepState {
  readonly tep6: string;
  /**
   * The lease behind each binding, by lease key (the engine's own row object: no copy), in
   * slot-indexed pages of the pools (lib/alloc/lease_table.ts): no Map entry per binding.
   */
  readonly bindings: LeaseTable;
  digest: number;
  /** Last SYNC (ms), 0 = never. */
  lastSync: number;
  /** When the TEP was reported disconnected (its last SYNC, ms); 0 = not reported. */
  downSince: number;
  /** A configured TEP that had not synced 3 periods after the start was said (`tep-not-synced`). */
  notSyncedSaid: boolean;
  /** When the server last answered a SYNC of this TEP with its own (ms). */
  answeredAt: number;
  snapshotId: number;
  /** Unauthenticated channel: snapshots that may still be sent now, and when that was computed. */
  snapshotTokens: number;
  snapshotTokensAt: number;
  /** The snapshot still being sent in chunks (./tep_snapshot.ts), if any. */
  snapshot: SnapshotRun | undefined;
  /** When the last snapshot of more than one chunk finished (ms), 0 = never. */
  chunkedSnapshotEnded: number;
  /** The cut of the last snapshot sent, to send lost parts again (./tep_snapshot_keep.ts). */
  kept: KeptSnapshot | undefined;
}

/**
 * A TEP with no bindings that has never synced, at `now` (ms). The bindings of `pools`' slots
 * are kept in slot-indexed pages, others (pools added by a reload) in a Map.
 */
export function newTepState(tep6: string, pools: readonly Pool[], now: number): TepState {
  const bindings = new LeaseTable();
  bindings.setPools(pools);
  return {
    tep6,
    bindings,
    digest: 0,
    lastSync: 0,
    downSince: 0,
    notSyncedSaid: false,
    answeredAt: 0,
    snapshotId: (Math.random() * 2 ** 32) >>> 0,
    snapshotTokens: UNAUTH_SNAPSHOT_BURST,
    snapshotTokensAt: now,
    snapshot: undefined,
    chunkedSnapshotEnded: 0,
    kept: undefined,
  };
}

/** True while the TEP's last SYNC is less than 3 periods old at `now` (ms). */
export function tepConnected(tep: TepState, now: number): boolean {
  return tep.lastSync > 0 && now - tep.lastSync < 3 * SYNC_INTERVAL_MS;
}

/**
 * Adds the binding of `lease` to the table and digest (replacing the one of its key, if any).
 * `host6`: the bytes of an address the caller holds (./binding_sink.ts), used for each
 * binding hashed here whose `host6` is theirs.
 */
export function addBinding(tep: TepState, lease: Lease, host6?: Host6Bytes): void {
  const key = leaseKey(lease.ipv4, lease.portSet.psid);
  const entry = tep.bindings.get(key);
  if (entry !== undefined) tep.digest = (tep.digest - _hash(entry, host6)) >>> 0;
  tep.bindings.set(key, lease);
  tep.digest = (tep.digest + _hash(lease, host6)) >>> 0;
}

/**
 * Takes the binding of `lease`'s key out of the table and digest; none: nothing happens.
 * `host6`: as {@link addBinding}'s.
 */
export function removeBinding(tep: TepState, lease: Lease, host6?: Host6Bytes): void {
  const key = leaseKey(lease.ipv4, lease.portSet.psid);
  const entry = tep.bindings.get(key);
  if (!entry) return;
  tep.bindings.delete(key);
  tep.digest = (tep.digest - _hash(entry, host6)) >>> 0;
}

/**
 * Token bucket per TEP for snapshots on an unauthenticated channel: {@link UNAUTH_SNAPSHOT_BURST}
 * at once, then one per {@link UNAUTH_SNAPSHOT_INTERVAL_MS}. True (and a token taken) when a
 * snapshot may go out at `now` (ms).
 */
export function takeSnapshotToken(tep: TepState, now: number): boolean {
  const elapsed = Math.max(0, now - tep.snapshotTokensAt);
  tep.snapshotTokens = Math.min(
    UNAUTH_SNAPSHOT_BURST,
    tep.snapshotTokens + elapsed / UNAUTH_SNAPSHOT_INTERVAL_MS,
  );
  tep.snapshotTokensAt = now;
  if (tep.snapshotTokens < 1) return false;
  tep.snapshotTokens -= 1;
  return true;
}

/** The host6 bytes of the binding being hashed (the hash reads them at once; one thread). */
const _host6 = new Uint8Array(16);

/**
 * The digest hash of the binding of `lease` (lib/wire/digest.ts), computed when it is added or
 * removed: from `host6`'s bytes when they are those of the lease's host6 (the text they were
 * decoded to is the lease's), else from its host6 parsed into a scratch array, not a new one
 * per lease. A lease's host6 is canonical text (lib/lease/lease.ts), so it parses; if it did
 * not, the hash throws, as before. The bytes and the parse give one value (the text is the
 * canonical form of those bytes, and parsing it gives them back).
 */
function _hash(lease: Lease, host6: Host6Bytes | undefined): number {
  const { offset, psidLength, psid } = lease.portSet;
  if (host6 !== undefined && host6.text === lease.host6)
    return bindingHash(lease.ipv4, host6.bytes, offset, psidLength, psid, host6.offset);
  if (!parseIPv6Into(lease.host6, _host6))
    throw new TypeError(`not an IPv6 address: ${lease.host6}`);
  return bindingHash(lease.ipv4, _host6, offset, psidLength, psid);
}
