/**
 * "Did you mean …?" for a setting name that is not one: the known name it was meant to be.
 * Used for unknown TOML keys (./file.ts) and unknown flags (cli/flag_hint.ts), so a flag and
 * its key get the same hint.
 *
 * A name is compared after {@link normalName} (lower case, `_` read as `-`: TOML keys are
 * spelled as the flags, `rx-ring`, never `rx_ring`), then by edit distance (Damerau–Levenshtein,
 * optimal string alignment: one insertion, deletion, substitution or swap of two neighbours
 * each count 1). A name within 1 edit (2 for names of 8 characters or more) of exactly one
 * known name is taken as a typo of it; a tie names none. Pure: no I/O.
 *
 * @module
 */

/** Lower case with `_` read as `-`: `RX_Ring` → `rx-ring`. */
export function normalName(name: string): string {
  return name.toLowerCase().replace(/_/g, "-");
}

/**
 * The one name of `known` that `name` was most likely meant to be, or undefined: equal after
 * {@link normalName}, else the closest within the edit budget (none on a tie).
 *
 * @example closestName("rx_ring", ["rx-ring", "hairpin"]) // "rx-ring"
 * @example closestName("lease-tme", ["lease-time"]) // "lease-time"
 * @example closestName("ipv5", ["ipv4", "ipv6"]) // undefined (a tie)
 */
export function closestName(name: string, known: Iterable<string>): string | undefined {
  const wanted = normalName(name);
  const budget = wanted.length >= 8 ? 2 : 1;
  let best: string | undefined;
  let bestDistance = budget + 1;
  let tie = false;
  for (const candidate of known) {
    const distance = editDistance(wanted, normalName(candidate));
    if (distance === 0) return candidate;
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
      tie = false;
    } else if (distance === bestDistance) tie = true;
  }
  return tie ? undefined : best;
}

/** Optimal string alignment distance between `a` and `b` (edits, a swap of neighbours is one). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(
        d[(i - 1) * cols + j]! + 1,
        d[i * cols + j - 1]! + 1,
        d[(i - 1) * cols + j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[(i - 2) * cols + j - 2]! + 1);
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1]!;
}
