/**
 * The `share` log line of a shared pool (RFC 7597 §5.1 port sets): how its addresses are
 * split and which PSIDs are handed out.
 *
 * @module
 */
import type { Pool } from "../alloc/pool.ts";
import { lowestPort, WELL_KNOWN_PORTS } from "../alloc/sharing.ts";
import type { Logger } from "../control/log.ts";

/** One `share` log line per shared pool (nothing for a pool whose addresses are not shared). */
export function logPoolSharing(log: Logger, pool: Pool): void {
  const s = pool.sharing;
  if (s.share === 1) return;
  let wellKnown = 0; // PSIDs whose set holds a port below 1024
  for (let psid = 0; psid < s.share; psid++) {
    if (lowestPort(s.psidOffset, s.psidLength, psid) < WELL_KNOWN_PORTS) wellKnown++;
  }
  log.info("share", {
    pool: pool.name,
    addresses: pool.addresses,
    share: s.share,
    "psid-offset": s.psidOffset,
    psids: `${s.usablePsids}/${s.share}`,
    ports: s.portsPerSet,
    leases: pool.size,
    "well-known":
      wellKnown === 0
        ? undefined
        : s.allowWellKnownPorts
          ? `${wellKnown} PSID(s) with ports below 1024 assigned (allow-well-known-ports)`
          : `${wellKnown === 1 ? "PSID 0 holds" : `PSIDs 0-${wellKnown - 1} hold`} ports below 1024: not assigned (allow-well-known-ports assigns them)`,
  });
}
