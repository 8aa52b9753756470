/**
 * The "did you mean" of an unknown flag, for every command (cli/main.ts adds it to
 * commander's `unknown option '…'` refusal): commander takes `--NAME=VALUE` only for a flag
 * that has a value, so a switch given one (`--rx-ring=yes`, `--no-hairpin=true`) is an
 * "unknown option" without a hint, and so is a flag written as its TOML key would be with `_`
 * (`--rx_ring`). The hint names the flag meant (lib/config/did_you_mean.ts) and, for a switch,
 * how it is written: present for on, `--no-NAME` or absent for off, never `=VALUE`.
 *
 * @module
 */
import { closestName } from "../lib/config/did_you_mean.ts";

/** What the hint needs of a commander Option. */
export interface FlagShape {
  /** `--rx-ring`; undefined for a short-only option. */
  readonly long?: string;
  /** Takes a value (`<value>`). */
  readonly required: boolean;
  /** Takes an optional value (`[value]`). */
  readonly optional: boolean;
}

const OFF = new Set(["false", "no", "off", "0"]);

/**
 * The hint for the unknown `flag` among `options`, or undefined when there is none.
 *
 * @example unknownFlagHint("--rx-ring=yes", tepOptions)
 * // "did you mean --rx-ring? (a switch: it takes no value)"
 * @example unknownFlagHint("--rx-ring=no", tepOptions)
 * // "did you mean to leave --rx-ring out? (a switch, off unless given: it takes no value)"
 * @example unknownFlagHint("--hairpin=false", tepOptions) // "did you mean --no-hairpin?"
 */
export function unknownFlagHint(flag: string, options: readonly FlagShape[]): string | undefined {
  const match = /^--([^=]+)(?:=(.*))?$/s.exec(flag);
  if (!match) return undefined;
  const given = match[1]!;
  const value = match[2];
  const off = value !== undefined && OFF.has(value.toLowerCase());
  const byName = new Map<string, FlagShape>();
  for (const o of options) if (o.long?.startsWith("--")) byName.set(o.long.slice(2), o);
  const name = byName.has(given) ? given : closestName(given, byName.keys());
  if (name === undefined) {
    // Only --no-NAME exists: NAME is on unless --no-NAME is given.
    const no = closestName(`no-${given}`, byName.keys());
    if (!no?.startsWith("no-")) return undefined;
    return off ? `did you mean --${no}?` : `did you mean to leave it out? (on unless --${no})`;
  }
  const option = byName.get(name)!;
  if (option.required || option.optional)
    return value === undefined ? `did you mean --${name}?` : `did you mean --${name}=${value}?`;
  if (value === undefined) return `did you mean --${name}?`;
  if (!off) return `did you mean --${name}? (a switch: it takes no value)`;
  if (byName.has(`no-${name}`)) return `did you mean --no-${name}? (a switch: it takes no value)`;
  return name.startsWith("no-")
    ? `did you mean to leave --${name} out? (a switch: it takes no value)`
    : `did you mean to leave --${name} out? (a switch, off unless given: it takes no value)`;
}

/**
 * Commander's error `text` (`unknown option '--rx-ring=yes'\n`, maybe with its own
 * `(Did you mean …?)` line) with the {@link unknownFlagHint} on the same line in place of
 * commander's suggestion; any other text as it is.
 */
export function withFlagHint(text: string, options: readonly FlagShape[]): string {
  const match = /^unknown option '([^']*)'(?:\n\(Did you mean [^)]*\))?\n$/.exec(text);
  if (!match) return text;
  const hint = unknownFlagHint(match[1]!, options);
  return hint === undefined ? text : `unknown option '${match[1]}'; ${hint}\n`;
}
