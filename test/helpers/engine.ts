/** A started AllocationEngine on a controllable clock, for the allocation tests. */
import {
  AllocationEngine,
  type EngineOptions,
  type EngineResult,
  type PoolConfig,
} from "../../lib/alloc/engine.ts";
import type { Lease } from "../../lib/lease/lease.ts";
import { MemoryLeaseStore } from "../../lib/lease/memory.ts";

/** The tests' epoch (ms). */
export const T0 = 1_700_000_000_000;

/** An engine over `pools` (lease time 600 s, memory store unless given) whose clock is `clock.now`. */
export async function startEngine(pools: PoolConfig[], options: Partial<EngineOptions> = {}) {
  const clock = { now: T0 };
  const store = options.store ?? new MemoryLeaseStore();
  const engine = new AllocationEngine({
    pools,
    store,
    leaseTime: 600,
    now: () => clock.now,
    ...options,
  });
  await engine.start();
  return { engine, clock, store };
}

/** The lease of a successful result, with its outcome; throws on a failure. */
export function ok(result: EngineResult): Lease & { outcome: string } {
  if (!result.ok) throw new Error(`expected ok, got ${result.reason}: ${result.message}`);
  return { ...result.lease, outcome: result.outcome };
}

/**
 * What `stats()` says of the tests' 4-way shared pool 198.51.100.0/30 (two usable addresses,
 * eight port-set slots, none reserved or blocked) holding `active` leases.
 */
export function sharedPool30Stats(active: number) {
  return {
    pool: "198.51.100.0/30",
    size: 8,
    active,
    free: 8 - active,
    reserved: 0,
    blocked: 0,
    addresses: 2,
    share: 4,
  };
}
