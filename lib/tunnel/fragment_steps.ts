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
  FragmentTable,
  isFirstFragment,
} from "./fragments.ts";

/** What the steps need of a TEP Worker's context (pipeline.ts TepContext). */
export interface FragmentContext {
  readonly bindings: BindingTable;
  readonly decapFragments: FragmentTable;
  readonly encapFragments: FragmentTable;
  /** Clock (ms). */
  now(): number;
}

/**
 * The two tables of a TEP context: held fragments up to max(2,048, link MTU) bytes, counted
 * in `counters` under `decap-frag-*` and `encap-frag-*`.
 */
export function tepFragmentTables(
  counters: Float64Array,
  linkMtu: number,
  options: { datagrams?: number; holdSlots?: number; timeoutMs?: number } = {},
): { decap: FragmentTable; encap: FragmentTable } {
  const slotBytes = Math.max(2048, linkMtu);
  const table = (direction: "decap" | "encap") =>
    new FragmentTable({
      ...options,
      slotBytes,
      counters,
      indexes: fragmentCounterIndexes(direction),
    });
  return { decap: table("decap"), encap: table("encap") };
}

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
  ctx: FragmentContext,
  pkt: Uint8Array,
  off: number,
  total: number,
  port: number,
  status: number,
  host6: Uint8Array,
  host6Off: number,
): number {
  const { bindings, encapFragments: table } = ctx;
  if (isFirstFragment(pkt, off)) {
    if (
      port >= 0 &&
      bindings.find(_u32(pkt, off + 16), -1, _scratch6, 0) === LookupStatus.NO_PORT_SET
    )
      table.resolve(pkt, off, total, status, host6, host6Off, ctx.now());
    return status;
  }
  if (status !== LookupStatus.NO_PORT_SET) return status;
  return table.lookup(pkt, off, total, host6, host6Off, null, 0, ctx.now());
}

/**
 * TEP decapsulation (host → IPv4) of a fragment: `status` is the binding match of
 * (source, `port`) against the outer source `src6[src6Off ..]`. A later fragment of a shared
 * address gets its first fragment's status, and OTHER_HOST when it came from another host
 * than the first fragment; or HELD / NO_ROOM as in `trackEncapFragment`.
 */
export function trackDecapFragment(
  ctx: FragmentContext,
  pkt: Uint8Array,
  off: number,
  total: number,
  port: number,
  status: number,
  src6: Uint8Array,
  src6Off: number,
): number {
  const { bindings, decapFragments: table } = ctx;
  if (isFirstFragment(pkt, off)) {
    if (
      port >= 0 &&
      bindings.match(_u32(pkt, off + 12), -1, src6, src6Off) === LookupStatus.NO_PORT_SET
    )
      table.resolve(pkt, off, total, status, src6, src6Off, ctx.now());
    return status;
  }
  if (status !== LookupStatus.NO_PORT_SET) return status;
  const r = table.lookup(pkt, off, total, null, 0, src6, src6Off, ctx.now(), true);
  return r === FragmentLookup.MISMATCH ? LookupStatus.OTHER_HOST : r;
}

function _u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
