/**
 * The fragment steps of the TEP (RFC 7597 §8.3.3) on top of the fragment table
 * (fragments.ts): which fragments need it, and what a later fragment's verdict is.
 *
 * @module
 */
import type { BindingTable } from "./binding.ts";
import { LookupStatus } from "./binding_slots.ts";
import { Counter, type CounterName } from "./counters.ts";
import {
  type FragmentCounterIndexes,
  FragmentLookup,
  type FragmentTable,
  isFirstFragment,
} from "./fragments.ts";

/** The counters of one direction: `decap-frag-*`, `encap-frag-*`, `client-out-frag-*`, `client-in-frag-*`. */
export function fragmentCounterIndexes(
  direction: "decap" | "encap" | "client-out" | "client-in",
): FragmentCounterIndexes {
  return {
    tracked: Counter[`${direction}-frag-tracked` as CounterName],
    held: Counter[`${direction}-frag-held` as CounterName],
    dropTimeout: Counter[`${direction}-frag-drop-timeout` as CounterName],
    dropNoRoom: Counter[`${direction}-frag-drop-no-room` as CounterName],
  };
}

/** Scratch for the "is this address shared" lookups and the stored host (one per thread). */
const _scratch6 = new Uint8Array(16);

/**
 * TEP encapsulation (IPv4 → host) of a fragment: `status` is the binding lookup of
 * (destination, `port`) that wrote the host to `host6[host6Off ..]`. A first fragment to a
 * shared address is remembered; a later fragment (no port: NO_PORT_SET) gets its first
 * fragment's status and host, or is held (FragmentLookup.HELD) or dropped (NO_ROOM).
 * Whole addresses need no table: their fragments find the binding without a port.
 */
export function trackEncapFragment(
  table: FragmentTable,
  bindings: BindingTable,
  pkt: Uint8Array,
  off: number,
  total: number,
  port: number,
  status: number,
  host6: Uint8Array,
  host6Off: number,
  nowMs: number,
): number {
  if (isFirstFragment(pkt, off)) {
    if (
      port >= 0 &&
      bindings.find(_u32(pkt, off + 16), -1, _scratch6, 0) === LookupStatus.NO_PORT_SET
    )
      table.resolve(pkt, off, total, status, host6, host6Off, nowMs);
    return status;
  }
  if (status !== LookupStatus.NO_PORT_SET) return status;
  return table.lookup(pkt, off, total, host6, host6Off, null, 0, nowMs);
}

/**
 * TEP decapsulation (host → IPv4) of a fragment: `status` is the binding match of
 * (source, `port`) against the outer source `src6[src6Off ..]`. A later fragment of a shared
 * address gets its first fragment's status, and OTHER_HOST when it came from another host
 * than the first fragment; or HELD / NO_ROOM as in `trackEncapFragment`.
 */
export function trackDecapFragment(
  table: FragmentTable,
  bindings: BindingTable,
  pkt: Uint8Array,
  off: number,
  total: number,
  port: number,
  status: number,
  src6: Uint8Array,
  src6Off: number,
  nowMs: number,
): number {
  if (isFirstFragment(pkt, off)) {
    if (
      port >= 0 &&
      bindings.match(_u32(pkt, off + 12), -1, src6, src6Off) === LookupStatus.NO_PORT_SET
    )
      table.resolve(pkt, off, total, status, src6, src6Off, nowMs);
    return status;
  }
  if (status !== LookupStatus.NO_PORT_SET) return status;
  const r = table.lookup(pkt, off, total, null, 0, src6, src6Off, nowMs, true);
  return r === FragmentLookup.MISMATCH ? LookupStatus.OTHER_HOST : r;
}

function _u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
