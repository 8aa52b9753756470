/**
 * RFC 7597 §5.1 port sets: which ports a PSID owns when 2^k hosts share one IPv4 address.
 *
 * With offset bits `a`, PSID length `k` and `m = 16 − a − k`, the ports of PSID `p` are
 * `(A << (16 − a)) | (p << m) | j` for `0 < A < 2^a` (A starts at 1 when a > 0, which keeps
 * the well-known ports 0..2^(16−a)−1 out of every set) and `0 ≤ j < 2^m`.
 *
 * Read the other way (the binding table does this per packet): the PSID of a port is the
 * k bits that follow the `a` offset bits, `(port >> m) & (2^k − 1)`, and a port whose
 * offset bits are all zero belongs to no set at all when a > 0.
 *
 * `psidLength` 0 means no sharing: the set is the whole port space 0–65535 and the offset
 * is meaningless (a lease of a whole address).
 *
 * @example
 * portSetRanges({ offset: 6, psidLength: 6, psid: 17 }).slice(0, 2) // [[1296, 1311], [2320, 2335]]
 * psidOfPort(1300, 6, 6) // 17
 *
 * @module
 */

export interface PortSetValue {
  readonly offset: number;
  readonly psidLength: number;
  readonly psid: number;
}

/** `"all"` for the whole port space, else `offset/psidLength/psid`, e.g. `6/6/17`. */
export function formatPortSet(set: PortSetValue): string {
  return set.psidLength === 0 ? "all" : `${set.offset}/${set.psidLength}/${set.psid}`;
}

/**
 * Parses `"all"` or `offset/psidLength/psid` (the form `formatPortSet` writes). Returns
 * `null` for anything else, including a set that `portSetProblem` rejects.
 *
 * @example parsePortSet("6/6/17") // { offset: 6, psidLength: 6, psid: 17 }
 */
export function parsePortSet(text: string): PortSetValue | null {
  if (text === "all") return { offset: 0, psidLength: 0, psid: 0 };
  const m = /^(\d{1,2})\/(\d{1,2})\/(\d{1,5})$/.exec(text);
  if (!m) return null;
  const set = { offset: Number(m[1]), psidLength: Number(m[2]), psid: Number(m[3]) };
  return portSetProblem(set) === null ? set : null;
}

/**
 * Why a port set is not a valid RFC 7597 set, or `null` when it is: offset 0–15, PSID length
 * 0–16, offset + PSID length ≤ 16, 0 ≤ PSID < 2^k (PSID 0 when k is 0).
 *
 * @example portSetProblem({ offset: 6, psidLength: 11, psid: 0 }) // "offset + psidLength is 17, more than 16"
 */
export function portSetProblem(set: PortSetValue): string | null {
  const { offset: a, psidLength: k, psid } = set;
  if (!Number.isInteger(a) || a < 0 || a > 15) return `offset ${a} is not 0–15`;
  if (!Number.isInteger(k) || k < 0 || k > 16) return `psidLength ${k} is not 0–16`;
  if (a + k > 16) return `offset + psidLength is ${a + k}, more than 16`;
  if (!Number.isInteger(psid) || psid < 0 || psid >= 2 ** k) {
    return `psid ${psid} does not fit in ${k} bits`;
  }
  return null;
}

/**
 * The PSID that owns `port` under offset `a` and PSID length `k`, or −1 when `a > 0` and the
 * port lies in the excluded low range 0..2^(16−a)−1. With `k` 0 every port belongs to PSID 0.
 * Allocation-free: the binding table calls it per packet.
 *
 * @example psidOfPort(2330, 6, 6) // 17
 * @example psidOfPort(80, 6, 6)   // -1
 */
export function psidOfPort(port: number, offset: number, psidLength: number): number {
  if (psidLength === 0) return 0;
  if (offset > 0 && port >>> (16 - offset) === 0) return -1;
  return (port >>> (16 - offset - psidLength)) & ((1 << psidLength) - 1);
}

/**
 * True when `port` belongs to `set`.
 *
 * @example portInSet(1296, { offset: 6, psidLength: 6, psid: 17 }) // true
 */
export function portInSet(port: number, set: PortSetValue): boolean {
  if (port < 0 || port > 0xffff) return false;
  return psidOfPort(port, set.offset, set.psidLength) === set.psid;
}

/**
 * Number of ports in a set: (2^a − 1) · 2^m when a > 0, 2^m when a = 0, 65536 when k = 0.
 *
 * @example portSetSize({ offset: 6, psidLength: 6, psid: 17 }) // 1008
 */
export function portSetSize(set: PortSetValue): number {
  if (set.psidLength === 0) return 65536;
  const m = 16 - set.offset - set.psidLength;
  return (set.offset === 0 ? 1 : 2 ** set.offset - 1) * 2 ** m;
}

/**
 * The ports of a set as inclusive `[first, last]` ranges in ascending order: one range per
 * value of A (2^a − 1 ranges of 2^m ports when a > 0, a single range when a = 0).
 *
 * @example
 * portSetRanges({ offset: 6, psidLength: 6, psid: 17 })
 * // [[1296, 1311], [2320, 2335], …, [64784, 64799]] (63 ranges)
 */
export function portSetRanges(set: PortSetValue): [number, number][] {
  const problem = portSetProblem(set);
  if (problem !== null) throw new RangeError(`port set ${formatPortSet(set)}: ${problem}`);
  if (set.psidLength === 0) return [[0, 0xffff]];
  const a = set.offset;
  const m = 16 - a - set.psidLength;
  const span = 2 ** m;
  const ranges: [number, number][] = [];
  if (a === 0) {
    const first = set.psid * span;
    ranges.push([first, first + span - 1]);
    return ranges;
  }
  for (let A = 1; A < 2 ** a; A++) {
    const first = A * 2 ** (16 - a) + set.psid * span;
    ranges.push([first, first + span - 1]);
  }
  return ranges;
}

/**
 * The key of one (IPv4 address, PSID) pair, the unit a lease and a binding stand for:
 * `ipv4 * 65536 + psid`, exact in a double (PSID 0 for an address that is not shared). The
 * lease store (`leaseKey`), the allocation engine and the TEP's control plane key by it.
 *
 * @example bindingKey(0xc6336409, 17) // 0xc6336409 * 65536 + 17
 */
export function bindingKey(ipv4: number, psid: number): number {
  return ipv4 * 65536 + psid;
}
