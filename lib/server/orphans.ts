/**
 * Orphaned leases: active leases the configured pools no longer serve, after a pool was
 * removed or narrowed (`outside`: the address is in no pool) or re-shared (`other-layout`: the
 * address is in a pool whose `share` no longer gives that port set, e.g. a whole-address lease
 * in a pool now shared 4 ways, or a lease of PSID 3 in a pool shared 2 ways). They are kept
 * until they expire or are released (the host keeps its address meanwhile); their units are
 * not handed out. Said the same way at start and at reload (warn `orphaned`), and counted in
 * `dstm_leases_active` like every active lease (as `dstm lease ls` lists them) and in
 * `dstm_leases_orphaned{kind}` (docs/metrics.md).
 *
 * @module
 */
import type { AllocationEngine } from "../alloc/engine.ts";
import type { Logger } from "../control/log.ts";

/** Active leases the pools do not serve, by kind. */
export interface OrphanCount {
  /** In no pool. */
  readonly outside: number;
  /** In a pool, on a port set its share no longer gives (or a slot now another's). */
  readonly otherLayout: number;
}

/**
 * Counts the orphans of `engine`; cheap when there are none (the engine keeps a count of rows
 * outside its slots, which includes ended history: only then are the active leases looked at).
 */
export function countOrphans(engine: AllocationEngine): OrphanCount {
  if (engine.orphans() === 0) return { outside: 0, otherLayout: 0 };
  let outside = 0;
  let otherLayout = 0;
  for (const lease of engine.leases({ state: "active" })) {
    const view = engine.slotView(lease.ipv4, lease.portSet.psid);
    if (view === undefined) outside++;
    else if (view.state !== "active" || view.row !== lease) otherLayout++;
  }
  return { outside, otherLayout };
}

/** Total orphans. */
export const orphanTotal = (c: OrphanCount): number => c.outside + c.otherLayout;

/** The `orphaned` warning (start and reload alike), when there are any. */
export function warnOrphans(log: Logger, c: OrphanCount, when: "start" | "reload"): void {
  if (orphanTotal(c) === 0) return;
  const parts: string[] = [];
  if (c.outside > 0) parts.push(`${c.outside} in no pool`);
  if (c.otherLayout > 0)
    parts.push(
      `${c.otherLayout} on a port set their pool's share no longer gives (a whole address in a shared pool, or the reverse)`,
    );
  log.warn("orphaned", {
    leases: orphanTotal(c),
    outside: c.outside || undefined,
    "other-layout": c.otherLayout || undefined,
    at: when,
    detail: `active leases the pools no longer serve: ${parts.join(", ")}; kept until they expire or are released (their hosts keep them meanwhile), their addresses not handed out until then`,
  });
}
