/**
 * Address sharing (A+P): how a pool splits each IPv4 address into port sets.
 *
 * A pool with sharing ratio 2^k gives each of 2^k hosts one RFC 7597 §5.1 port set of the
 * same address: PSID length k, offset a (RFC 7618 OPTION_V4_PORTPARAMS carries the same
 * three numbers). With m = 16 − a − k, PSID p owns the ports (A << (16 − a)) | (p << m) | j,
 * 0 < A < 2^a, 0 ≤ j < 2^m (A = 0 too when a = 0). Every PSID of one address uses the same
 * k and a, so two hosts of one address never hold a common port.
 *
 * Well-known ports (0–1023): RFC 7618 §4 says a port set that contains them must not be
 * assigned unless the operator says so. With 1 ≤ a ≤ 6 the formula already keeps ports
 * 0..2^(16−a)−1 (at least 0–1023) out of every set. With a = 0 the low PSIDs cover them (PSID 0
 * of a 4-way share is ports 0–16383), and with a ≥ 7 every set does (A = 1 starts below 1024);
 * those PSIDs are then skipped unless `allowWellKnownPorts` is set. The PSIDs handed out are
 * therefore always a contiguous range `firstPsid … share − 1`.
 *
 * Sharing ratio 1 (k = 0) is a whole address: the lease's port set is WHOLE_ADDRESS.
 *
 * @example
 * const s = portSharing({ share: 4 });
 * s.psidLength  // 2
 * s.portsPerSet // 16128: (2^6 − 1) · 2^8
 * s.portSetOf(1) // { offset: 6, psidLength: 2, psid: 1 }
 *
 * @module
 */
import { type PortSet, WHOLE_ADDRESS } from "../lease/lease.ts";
import { portSetSize } from "../net/portset.ts";

/** How a pool is to be shared, as the operator wrote it. */
export interface SharingSpec {
  /** Hosts per address: a power of two 1…65536; 1 (the default) = whole addresses. */
  readonly share?: number;
  /** RFC 7597 offset bits `a`, 0–15; default {@link DEFAULT_PSID_OFFSET}. */
  readonly psidOffset?: number;
  /** Also hand out the PSIDs whose port set contains a port 0–1023. */
  readonly allowWellKnownPorts?: boolean;
}

/** MAP's default offset (RFC 7597 §5.1): excludes ports 0–1023 from every set. */
export const DEFAULT_PSID_OFFSET = 6;
/** A port set must hold at least this many ports to be worth a lease. */
export const MIN_PORTS_PER_SET = 64;
/** Largest sharing ratio: a PSID length of 16. */
export const MAX_SHARE = 65536;
/** Ports below this are well-known (RFC 6335 system ports). */
export const WELL_KNOWN_PORTS = 1024;

/** A validated sharing of a pool's addresses. */
export interface PortSharing {
  /** Hosts per address, 2^psidLength. */
  readonly share: number;
  /** PSID length `k`. */
  readonly psidLength: number;
  /** Offset bits `a` (as configured; meaningless when share is 1). */
  readonly psidOffset: number;
  /** Whether PSIDs holding well-known ports are handed out. */
  readonly allowWellKnownPorts: boolean;
  /** Lowest PSID handed out; the ones below hold well-known ports. */
  readonly firstPsid: number;
  /** PSIDs handed out per address: share − firstPsid. */
  readonly usablePsids: number;
  /** Ports in each set (65536 for a whole address). */
  readonly portsPerSet: number;
  /** The port set of `psid` (one shared frozen object per PSID). */
  portSetOf(psid: number): PortSet;
}

/**
 * Why `spec` is not a usable sharing, or `null` when it is: share not a power of two
 * 1…65536, offset not 0–15, offset + k > 16, fewer than {@link MIN_PORTS_PER_SET} ports per
 * set, or no PSID left once the sets holding well-known ports are left out. One line, in the
 * words of the configuration (`share`, `psid-offset`, `allow-well-known-ports`).
 *
 * @example sharingProblem({ share: 3 }) // "share 3 is not a power of two from 1 to 65536 (1, 2, 4, 8, …)"
 */
export function sharingProblem(spec: SharingSpec): string | null {
  const share = spec.share ?? 1;
  const a = spec.psidOffset ?? DEFAULT_PSID_OFFSET;
  if (!Number.isInteger(share) || share < 1 || share > MAX_SHARE || (share & (share - 1)) !== 0) {
    return `share ${share} is not a power of two from 1 to ${MAX_SHARE} (1, 2, 4, 8, …)`;
  }
  if (!Number.isInteger(a) || a < 0 || a > 15) return `psid-offset ${a} is not 0–15 (MAP uses 6)`;
  const k = Math.log2(share);
  if (k === 0) return null;
  if (a + k > 16) {
    return `psid-offset ${a} + PSID length ${k} (share ${share}) is ${a + k}, more than 16; lower one of them`;
  }
  const ports = portSetSize({ offset: a, psidLength: k, psid: 0 });
  if (ports < MIN_PORTS_PER_SET) {
    return `share ${share} with psid-offset ${a} leaves ${ports} ports per host, fewer than ${MIN_PORTS_PER_SET}; share less`;
  }
  if (!spec.allowWellKnownPorts && _firstClearPsid(a, k) >= share) {
    return `with psid-offset ${a} every port set holds well-known ports (below ${WELL_KNOWN_PORTS}); use psid-offset 1–6, or allow-well-known-ports`;
  }
  return null;
}

/**
 * The sharing `spec` describes: which PSIDs are handed out and their port sets. Throws a
 * RangeError when {@link sharingProblem} finds a problem (check with it first).
 *
 * @example portSharing({ share: 4, psidOffset: 0 }).firstPsid // 1: PSID 0 is ports 0–16383
 */
export function portSharing(spec: SharingSpec): PortSharing {
  const problem = sharingProblem(spec);
  if (problem !== null) throw new RangeError(problem);
  const share = spec.share ?? 1;
  const a = spec.psidOffset ?? DEFAULT_PSID_OFFSET;
  const allow = spec.allowWellKnownPorts ?? false;
  const k = Math.log2(share);
  if (k === 0) return _sharing(1, 0, a, allow, 0, 65536);
  const ports = portSetSize({ offset: a, psidLength: k, psid: 0 });
  return _sharing(share, k, a, allow, allow ? 0 : _firstClearPsid(a, k), ports);
}

/**
 * The lowest port of a PSID's set: PSID · 2^m when a = 0, else 2^(16−a) + PSID · 2^m (A = 1).
 *
 * @example lowestPort(6, 6, 17) // 1296
 */
export function lowestPort(offset: number, psidLength: number, psid: number): number {
  const m = 16 - offset - psidLength;
  return (offset === 0 ? 0 : 2 ** (16 - offset)) + psid * 2 ** m;
}

/** Lowest PSID whose set starts at or above port 1024 (2^k when there is none). */
function _firstClearPsid(a: number, k: number): number {
  const m = 16 - a - k;
  const base = a === 0 ? 0 : 2 ** (16 - a);
  if (base >= WELL_KNOWN_PORTS) return 0;
  return Math.min(2 ** k, Math.ceil((WELL_KNOWN_PORTS - base) / 2 ** m));
}

function _sharing(
  share: number,
  k: number,
  a: number,
  allow: boolean,
  first: number,
  ports: number,
): PortSharing {
  const sets: PortSet[] =
    k === 0
      ? [WHOLE_ADDRESS]
      : Array.from({ length: share }, (_, psid) =>
          Object.freeze({ offset: a, psidLength: k, psid }),
        );
  return {
    share,
    psidLength: k,
    psidOffset: a,
    allowWellKnownPorts: allow,
    firstPsid: first,
    usablePsids: share - first,
    portsPerSet: ports,
    portSetOf: (psid) => sets[psid] as PortSet,
  };
}
