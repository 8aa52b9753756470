/**
 * Reading a Prometheus text page (what `/metrics` on a control socket answers) in tests and
 * benches. Pure: imports nothing, so a bench may use it (docs/architecture.md, "Outside lib/").
 */

/**
 * The value of `name` in Prometheus text: the sum of its series whose labels include every
 * one of `labels` (all its series when none are given; the one series when they name it);
 * 0 when there is none.
 */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!wanted.every((pair) => line.includes(pair))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
