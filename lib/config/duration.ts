/**
 * Durations as users type them: `90` (seconds), `90s`, `15m`, `2h`, `1d`, `1h30m`, `1.5h`.
 *
 * @module
 */

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Seconds (a whole number, rounded) of a duration: a number of seconds, or one or more
 * `NUMBER UNIT` parts (units s, m, h, d; decimals allowed: `1.5h`), e.g. `1h30m`.
 * Returns null when the text is no duration.
 */
export function parseDurationSeconds(text: string | number): number | null {
  if (typeof text === "number") return Number.isFinite(text) && text >= 0 ? Math.round(text) : null;
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed));
  if (!/^(\d+(\.\d+)?[smhd])+$/.test(trimmed)) return null;
  let seconds = 0;
  const units = new Set<string>();
  for (const part of trimmed.matchAll(/(\d+(?:\.\d+)?)([smhd])/g)) {
    const unit = part[2] as string;
    if (units.has(unit)) return null; // "1h1h": a typo, not a duration
    units.add(unit);
    seconds += Number(part[1]) * (UNIT_SECONDS[unit] as number);
  }
  return Math.round(seconds);
}
