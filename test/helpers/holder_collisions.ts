/**
 * Holders that share a holderHash (lib/lease/holder_index.ts) in this process. The hash is
 * keyed per process (lib/lease/halfsiphash.ts), so tests find such holders by a birthday
 * search at load; they collide in this process only.
 *
 * @module
 */
import { holderHash } from "../../lib/lease/holder_index.ts";

/**
 * `count` pairs (a, b) of distinct texts with one holderHash in this process, a from
 * `left(i)` and b from `right(i)` (i = 0, 1, …): a birthday search over both lists at once,
 * bounded (32-bit hashes of a few hundred thousand texts per side always hold a few pairs).
 */
export function pairsWithOneHash(
  count: number,
  left: (i: number) => string,
  right: (i: number) => string = left,
): [string, string][] {
  const lefts = new Map<number, string>();
  const rights = new Map<number, string>();
  const pairs: [string, string][] = [];
  const used = new Set<string>();
  for (let i = 0; i < 3_000_000 && pairs.length < count; i++) {
    const a = left(i);
    const b = right(i);
    const ha = holderHash(a);
    const hb = holderHash(b);
    const withA = rights.get(ha);
    if (withA !== undefined && withA !== a && !used.has(a) && !used.has(withA)) {
      pairs.push([a, withA]);
      used.add(a).add(withA);
    } else lefts.set(ha, a);
    const withB = lefts.get(hb);
    if (withB !== undefined && withB !== b && !used.has(b) && !used.has(withB)) {
      pairs.push([withB, b]);
      used.add(b).add(withB);
    } else rights.set(hb, b);
  }
  if (pairs.length < count) throw new Error(`only ${pairs.length} of ${count} colliding pairs`);
  return pairs.slice(0, count);
}
