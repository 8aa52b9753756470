/**
 * The merge of flags over the config file over the defaults, for every long-running command:
 * which value each setting has, and where it came from (a flag, or `FILE:LINE:COL`).
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import { type ConfigFile, ConfigFileError, readConfigFile } from "./file.ts";
import { camel, type SettingSchema } from "./setting.ts";
import { placeOf } from "./toml_places.ts";

/** Flags merged over the config file and the defaults, with where each value came from. */
export interface Settings {
  /** camelCase name → value in flag form (string, boolean, string[]; false for `--no-X`). */
  readonly values: Record<string, unknown>;
  /** Rewrites a UsageError about `--NAME` when NAME came from the file: `FILE:LINE:COL: NAME…`. */
  explain(error: unknown): unknown;
  /**
   * `FILE:LINE:COL` of a key path in the config file (e.g. ["pool", 0, "share"]: the key;
   * a missing key: its table's header), if one was read.
   */
  where(keys: readonly (string | number)[]): string | undefined;
  /** `FILE:LINE:COL` of the setting when its value came from the config file, else undefined. */
  fromFile(name: string): string | undefined;
}

export interface MergeOptions {
  /** Whether the flag `camelName` was given on the command line (default: its value is defined). */
  fromCli?: (camelName: string) => boolean;
  /** Fill in each setting's `default` when neither flag nor file gives it (default true). */
  defaults?: boolean;
  /** Deprecation warnings (default: `dstm: …` on stderr). */
  warn?: (text: string) => void;
}

/**
 * Merges parsed flags over `--config FILE` (read and checked strictly now, so a reload that
 * calls this again reads the file again) over the schema's defaults. Deprecated flag names
 * and TOML keys are accepted with a warning. Throws UsageError (exit 2) with
 * `FILE:LINE:COL:` for anything wrong in the file.
 */
export function mergeSettings(
  schema: SettingSchema,
  flags: Readonly<Record<string, unknown>>,
  opts: MergeOptions = {},
): Settings {
  const values: Record<string, unknown> = { ...flags };
  const warn = opts.warn ?? ((text: string) => process.stderr.write(`dstm: ${text}\n`));
  const fromCli = opts.fromCli ?? ((key: string) => flags[key] !== undefined);
  const given = new Set<string>();
  for (const s of schema.settings) {
    const key = camel(s.name);
    if (fromCli(key)) given.add(key);
    for (const old of s.deprecated ?? []) {
      const value = values[camel(old)];
      delete values[camel(old)];
      if (value === undefined) continue;
      if (given.has(key))
        throw new UsageError(`--${old} and --${s.name} are the same setting; give --${s.name}`);
      warn(`--${old} is deprecated; use --${s.name}`);
      values[key] = value;
      given.add(key);
    }
  }
  const origins = new Map<string, string>();
  const path = values.config as string | undefined;
  let file: ConfigFile | undefined;
  if (path !== undefined) {
    try {
      file = readConfigFile(path, schema);
    } catch (error) {
      throw error instanceof ConfigFileError ? new UsageError(error.message) : error;
    }
    for (const note of file.notes) warn(note);
    for (const s of schema.settings) {
      const entry = file.values.get(s.name);
      if (!entry || given.has(camel(s.name))) continue;
      values[camel(s.name)] = entry.value;
      origins.set(s.name, entry.where);
    }
  }
  if (opts.defaults !== false) {
    for (const s of schema.settings) {
      if (values[camel(s.name)] === undefined && s.default !== undefined)
        values[camel(s.name)] = s.default;
    }
  }
  return {
    values,
    explain(error) {
      if (!(error instanceof UsageError)) return error;
      // An error about a setting's value that does not name the flag (a key file it names).
      const origin = error.setting === undefined ? undefined : origins.get(error.setting);
      if (origin) return new UsageError(`${origin}: ${error.message}`);
      const match = /^--([a-z0-9-]+)(.*)$/s.exec(error.message);
      const where = match ? origins.get(match[1] as string) : undefined;
      return where ? new UsageError(`${where}: ${match?.[1]}${match?.[2]}`) : error;
    },
    fromFile: (name) => origins.get(name),
    where(keys) {
      if (!file) return undefined;
      const { line, column } = placeOf(file.places, keys);
      return `${file.path}:${line}:${column}`;
    },
  };
}
